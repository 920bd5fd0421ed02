"""``amber repo ...``: create, inspect, verify and maintain a repository."""

from __future__ import annotations

import datetime
import sys
from collections.abc import Callable

import click

from amber.cli import context, durations, progress
from amber.repo import checker, keyfile, locks, pruner, repository, retention
from amber.repo import format as fmt
from amber.repo import repair as repairs
from amber.repo import snapshot as snapshots
from amber.util import errors

pass_ctx = click.make_pass_decorator(context.Context)


@click.group()
def repo() -> None:
    """Create, inspect, verify and maintain a repository."""


@repo.command()
@click.option("--cipher", type=click.Choice(sorted(fmt.SUITE_NAMES)), default="aes-256-gcm",
              show_default=True, help="AEAD for new objects.")
@click.option("--kdf-n", type=int, default=fmt.SCRYPT_N, hidden=True,
              help="scrypt cost (power of two); lower only for tests.")
@pass_ctx
def init(ctx: context.Context, cipher: str, kdf_n: int) -> None:
    """Create a new, empty repository."""
    if kdf_n < 1024 or kdf_n & (kdf_n - 1) or keyfile.kdf_memory(
            keyfile.KdfParams(n=kdf_n)) > keyfile.MAX_KDF_MEMORY:
        raise errors.UsageError("--kdf-n must be a power of two from 1024 to 2^20")
    backend = ctx.backend()
    repository.ensure_can_init(backend)  # fail before asking for a passphrase
    passphrase = context.read_passphrase(confirm=True)
    r = repository.Repository.init(backend, passphrase, cipher=cipher,
                                   kdf=keyfile.KdfParams(n=kdf_n))
    ctx.emit({"id": r.config.repo_id.hex(), "location": backend.url},
             f"created repository {r.config.repo_id.hex()[:8]} at {backend.url}")


@repo.command()
@pass_ctx
def info(ctx: context.Context) -> None:
    """Show what the repository holds."""
    r = ctx.open_repo()
    r.load_index()
    sizes: dict[str, int] = {}
    counts: dict[str, int] = {}
    for obj in r.backend.list(""):
        top = obj.name.split("/", 1)[0]
        sizes[top] = sizes.get(top, 0) + obj.size
        counts[top] = counts.get(top, 0) + 1
    data = {
        "id": r.config.repo_id.hex(), "location": r.backend.url,
        "format_version": r.config.version, "cipher": r.config.raw["cipher"],
        "chunker": r.config.chunker, "compression": r.config.raw["compression"],
        "snapshots": counts.get("snapshots", 0), "packs": counts.get("data", 0),
        "index_files": counts.get("index", 0), "blobs": len(r.index),
        "stored_bytes": sum(sizes.values()), "index_memory_bytes": r.index.nbytes,
    }
    ctx.emit(data, "\n".join([
        f"repository  {data['id']}",
        f"location    {data['location']}",
        f"format      version {data['format_version']}, {data['cipher']}, zstd "
        f"level {r.config.compression_level}",
        f"snapshots   {data['snapshots']}",
        f"packs       {data['packs']} ({data['blobs']} blobs, {data['index_files']} index files)",
        f"size        {progress.human_bytes(data['stored_bytes'])}",
    ]))


def snapshot_rows(snaps: list[snapshots.Snapshot]) -> list[dict[str, object]]:
    return [{
        "id": s.id, "short_id": s.short_id, "time": snapshots.format_time(s.time),
        "hostname": s.hostname, "username": s.username, "paths": s.paths, "tags": s.tags,
        "parent": s.parent, "summary": s.summary, "partial": s.partial, "errors": s.errors,
    } for s in snaps]


def print_snapshots(ctx: context.Context,
                    keep: Callable[[snapshots.Snapshot], bool] = lambda _s: True) -> None:
    """The snapshot table (or JSON list) of the snapshots ``keep`` accepts, oldest first."""
    r = ctx.open_repo()
    snaps = [s for s in r.list_snapshots() if keep(s)]
    if ctx.json:
        ctx.emit(snapshot_rows(snaps))
        return
    if not snaps:
        print("no snapshots")
        return
    print(f"{'ID':<10}{'TIME (UTC)':<21}{'HOST':<14}{'FILES':>8}{'SIZE':>12}  TAGS / PATHS")
    for s in snaps:
        mark = " (partial)" if s.partial else ""
        size = progress.human_bytes(s.summary.get("bytes", 0))
        tags = ",".join(s.tags)
        print(f"{s.short_id:<10}{s.time.strftime('%Y-%m-%d %H:%M:%S'):<21}{s.hostname[:13]:<14}"
              f"{s.summary.get('files', 0):>8}{size:>12}  {tags + ' ' if tags else ''}"
              f"{' '.join(s.paths)}{mark}")


@repo.command("snapshots")
@pass_ctx
def list_snapshots(ctx: context.Context) -> None:
    """List every snapshot, oldest first: file snapshots and resource backups."""
    print_snapshots(ctx)


@repo.command()
@click.option("--read-data", is_flag=True, help="Also read and verify every stored byte.")
@pass_ctx
def check(ctx: context.Context, read_data: bool) -> None:
    """Verify the repository's structure (and with --read-data, all data).

    Exits 14 when anything is damaged or missing, naming the blobs and the snapshots that need them.
    """
    r = ctx.open_repo()
    state = {"done": 0, "total": 0}

    def on_progress(done: int, total: int) -> None:
        state.update(done=done, total=total)

    with progress.Display(lambda t: f"checking packs {state['done']}/{state['total']}  "
                                    f"{progress.human_duration(t)}",
                          enabled=sys.stderr.isatty() and not ctx.json and not ctx.quiet):
        report = checker.Checker(r, on_progress=on_progress).run(read_data=read_data)
    ctx.emit({
        "ok": report.ok, "errors": report.errors, "warnings": report.warnings,
        "damaged_blobs": sorted(b.hex() for b in report.damaged_blobs),
        "damaged_snapshots": report.damaged_snapshots, "snapshots": report.snapshots,
        "healed_snapshots": report.healed_snapshots,
        "packs": report.packs, "blobs": report.blobs, "bytes_read": report.bytes_read,
    })
    if not ctx.json:
        for w in report.warnings:
            print(f"warning: {w}")
        for e in report.errors:
            print(f"error: {e}")
        for sid in report.healed_snapshots:
            print(f"snapshot {sid[:8]} is whole again: data it needs was found damaged, and a "
                  "later backup stored a good copy")
        what = "all data read and verified" if read_data else "structure verified"
        if report.ok:
            print(f"no errors: {report.snapshots} snapshots, {report.packs} packs, "
                  f"{report.blobs} blobs; {what}")
    if not report.ok:
        raise errors.IntegrityError(f"check found {len(report.errors)} problem(s)")


@repo.command()
@click.option("--keep-last", type=int, default=0, help="Keep the N newest snapshots (-1: all).")
@click.option("--keep-hourly", type=int, default=0, help="Keep the newest of each of N hours.")
@click.option("--keep-daily", type=int, default=0, help="... of each of N days.")
@click.option("--keep-weekly", type=int, default=0, help="... of each of N ISO weeks.")
@click.option("--keep-monthly", type=int, default=0, help="... of each of N months.")
@click.option("--keep-yearly", type=int, default=0, help="... of each of N years.")
@click.option("--keep-within", type=durations.DURATION, default=None,
              help="Keep everything newer than this before the newest snapshot (e.g. 7d).")
@click.option("--keep-tag", multiple=True, help="Always keep snapshots with this tag.")
@click.option("--group-by", default="host,paths", show_default=True,
              help="Apply the policy per group of host, paths and/or tags.")
@click.option("--dry-run", is_flag=True, help="Show what would be removed; change nothing.")
@click.option("--prune", "and_prune", is_flag=True, help="Run prune afterwards.")
@click.option("--keep-younger-than", type=durations.DURATION, default="1h", show_default=True,
              help="With --prune: prune's safety margin.")
@click.argument("snapshot_ids", nargs=-1)
@pass_ctx
def forget(ctx: context.Context, keep_last: int, keep_hourly: int, keep_daily: int,
           keep_weekly: int, keep_monthly: int, keep_yearly: int,
           keep_within: datetime.timedelta | None, keep_tag: tuple[str, ...], group_by: str,
           dry_run: bool, and_prune: bool, keep_younger_than: datetime.timedelta,
           snapshot_ids: tuple[str, ...]) -> None:
    """Remove snapshots by a retention policy (GFS) or by id.

    Only the snapshot manifests go; 'repo prune' (or --prune) frees the data nobody needs.
    """
    policy = retention.Policy(last=keep_last, hourly=keep_hourly, daily=keep_daily,
                              weekly=keep_weekly, monthly=keep_monthly, yearly=keep_yearly,
                              within=keep_within, keep_tags=frozenset(keep_tag))
    if policy.is_empty() and not snapshot_ids:
        raise errors.UsageError("give a --keep-* policy or snapshot ids; refusing to remove all")
    if not policy.is_empty() and snapshot_ids:
        raise errors.UsageError("give either a --keep-* policy or snapshot ids, not both")
    r = ctx.open_repo()
    with locks.MaintenanceLease(r.backend):
        if snapshot_ids:
            # By id, not loaded: a damaged snapshot file must be removable too.
            remove = [r.resolve_snapshot_id(i) for i in snapshot_ids]
            decisions: list[dict[str, object]] = [
                {"id": i, "keep": False, "reasons": []} for i in remove]
        else:
            snaps = r.list_snapshots()
            try:
                groups = retention.apply(
                    [retention.SnapshotInfo(id=s.id, time=s.time, hostname=s.hostname,
                                            paths=tuple(s.paths), tags=tuple(s.tags),
                                            partial=s.partial)
                     for s in snaps], policy, group_by=group_by)
            except ValueError as exc:
                raise errors.UsageError(str(exc)) from None
            decisions = [{"id": d.snapshot.id, "keep": d.keep, "reasons": list(d.reasons),
                          "group": list(key), "partial": d.snapshot.partial, "note": d.note}
                         for key, ds in groups.items() for d in ds]
            remove = [s.id for s in snaps
                      if any(d["id"] == s.id and not d["keep"] for d in decisions)]
        if not dry_run:
            pruner.forget(r, remove)
    forget_data = {"dry_run": dry_run, "decisions": decisions}
    prune_data: dict[str, object] | None = None
    if and_prune and not dry_run:
        prune_data, prune_text = run_prune(r, keep_younger_than.total_seconds(),
                                            pruner.DEFAULT_MAX_UNUSED, False, ctx.info)
    if ctx.json:
        # one document per command, so scripts can parse it whole
        ctx.emit({**forget_data, "prune": prune_data} if and_prune else forget_data)
        return
    else:
        for d in decisions:
            verdict = "keep  " if d["keep"] else ("would remove" if dry_run else "remove")
            reasons = d["reasons"]
            assert isinstance(reasons, list)
            print(f"{verdict} {str(d['id'])[:8]}  {', '.join(reasons) or d.get('note', '')}")
        print(f"{len(remove)} snapshot(s) {'would be ' if dry_run else ''}removed")
        if prune_data is not None:
            print(prune_text)


def run_prune(r: repository.Repository, margin_s: float, max_unused: float, dry_run: bool,
              log: Callable[[str], None]) -> tuple[dict[str, object], str]:
    """Prune under the maintenance lease; return the report as data and as text."""
    with locks.MaintenanceLease(r.backend):
        report = pruner.Pruner(r, margin_s=margin_s, max_unused=max_unused, dry_run=dry_run,
                               log=log).run()
    data: dict[str, object] = dict(vars(report))
    data["dry_run"] = dry_run
    data["held_until"] = _utc(report.held_until)
    lines = [
        *report.messages,
        f"packs: {report.packs_before} indexed, {report.packs_kept} kept, "
        f"{report.packs_young} younger than the safety margin, {report.packs_dropped} dropped "
        f"({report.packs_repacked} repacked: {report.blobs_repacked} blobs copied), "
        f"{report.packs_deleted} deleted",
        f"{'would free' if dry_run else 'freed'} {progress.human_bytes(report.bytes_freed)}"
        + (" (deletion deferred: a backup is running)" if report.deferred else ""),
    ]
    held = held_line(report, margin_s)
    return data, "\n".join([*lines, held] if held else lines)


def held_line(report: pruner.PruneReport, margin_s: float) -> str:
    """One line on the unused data the safety margin kept, and from when a prune frees it; empty
    when the margin held nothing back."""
    if not report.bytes_held_young or report.held_until is None:
        return ""
    when = datetime.datetime.fromtimestamp(report.held_until, datetime.UTC)
    head = "nothing freed: " if report.bytes_freed <= 0 else "not yet freed: "
    return (f"{head}{progress.human_bytes(report.bytes_held_young)} that no snapshot needs is "
            f"in packs younger than the safety margin (--keep-younger-than {_span(margin_s)}); "
            f"a prune after {when:%Y-%m-%d %H:%M:%S} UTC frees it")


def _span(seconds: float) -> str:
    """``3600`` -> ``1h``, ``5400`` -> ``1h30m``: as --keep-younger-than takes it."""
    rest, parts = int(seconds), []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        n, rest = divmod(rest, size)
        if n:
            parts.append(f"{n}{unit}")
    return "".join(parts) or "0s"


def _utc(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return snapshots.format_time(datetime.datetime.fromtimestamp(epoch, datetime.UTC))


@repo.command()
@click.option("--keep-younger-than", type=durations.DURATION, default="1h", show_default=True,
              help="Safety margin: never touch packs younger than this.")
@click.option("--max-unused", type=click.FloatRange(0.0, 1.0), default=pruner.DEFAULT_MAX_UNUSED,
              show_default=True, help="Repack a pack once this share of it is unused.")
@click.option("--dry-run", is_flag=True, help="Report what would be freed; change nothing.")
@pass_ctx
def prune(ctx: context.Context, keep_younger_than: datetime.timedelta, max_unused: float,
          dry_run: bool) -> None:
    """Delete data that no snapshot needs (takes the maintenance lease)."""
    data, text = run_prune(ctx.open_repo(), keep_younger_than.total_seconds(), max_unused,
                            dry_run, ctx.info)
    ctx.emit(data, text)


@repo.group("repair")
def repair_group() -> None:
    """Repair a damaged repository."""


@repair_group.command("index")
@pass_ctx
def repair_index(ctx: context.Context) -> None:
    """Rebuild the index from the packs, verifying every pack and blob.

    Takes the maintenance lease. Blobs that fail verification are left out (the next backup of
    the files holding them stores them anew); packs are never deleted. Exits 14 when damaged
    blobs or unreadable packs were found (the rebuilt index is written all the same).
    """
    r = ctx.open_repo()
    state = {"done": 0, "total": 0}

    def on_progress(done: int, total: int) -> None:
        state.update(done=done, total=total)

    with locks.MaintenanceLease(r.backend), progress.Display(
            lambda t: f"verifying packs {state['done']}/{state['total']}  "
                      f"{progress.human_duration(t)}",
            enabled=sys.stderr.isatty() and not ctx.json and not ctx.quiet):
        report = repairs.rebuild_index(r, on_progress=on_progress)
    lines = [f"unreadable pack {p[:16]} left in place: {why}"
             for p, why in report.unreadable_packs.items()]
    lines += [f"pack {p[:16]}: {why}; the damaged pack stays until 'amber repo prune' removes it"
              for p, why in report.rescued_packs.items()]
    lines += [f"pack {p[:16]} is missing (the old index named it): its blobs are lost; the next "
              "backup stores them anew, 'amber repo check' names the snapshots that need them"
              for p in report.missing_packs]
    lines += [f"damaged, left out of the index: {b}" for b in report.damaged_blobs]
    lines.append(
        f"index rebuilt: {report.packs} packs, {report.blobs} blobs; "
        f"{len(report.damaged_blobs)} damaged blob(s) left out; replaced "
        f"{report.index_files_replaced} index file(s) ({report.damaged_index_files} damaged)")
    ctx.emit(dict(vars(report)), "\n".join(lines))
    if report.damaged_blobs or report.unreadable_packs or report.missing_packs:
        raise errors.IntegrityError(
            f"{len(report.damaged_blobs)} damaged blob(s), {len(report.unreadable_packs)} "
            f"unreadable and {len(report.missing_packs)} missing pack(s) could not be indexed; "
            "'amber repo check' names the snapshots that need them")
