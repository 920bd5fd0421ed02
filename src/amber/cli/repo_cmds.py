"""``amber repo ...``: create, inspect, verify and maintain a repository."""

from __future__ import annotations

import datetime
from collections.abc import Callable

import click

from amber.cli import context, durations, output, reports
from amber.repo import (
    checker,
    copier,
    datakeys,
    keyfile,
    keys,
    kmsslot,
    locations,
    locks,
    maintenance,
    pruner,
    repository,
    retention,
)
from amber.repo import format as fmt
from amber.repo import repair as repairs
from amber.storage import base
from amber.util import errors

pass_ctx = click.make_pass_decorator(context.Context)


@click.group()
def repo() -> None:
    """Create, inspect, verify and maintain a repository."""


def _kdf_option(func: Callable[..., None]) -> Callable[..., None]:
    return click.option("--kdf-n", type=int, default=fmt.SCRYPT_N, hidden=True,
                        help="scrypt cost (power of two); lower only for tests.")(func)


def _kdf(kdf_n: int) -> keyfile.KdfParams:
    if kdf_n < 1024 or kdf_n & (kdf_n - 1) or keyfile.kdf_memory(
            keyfile.KdfParams(n=kdf_n)) > keyfile.MAX_KDF_MEMORY:
        raise errors.UsageError("--kdf-n must be a power of two from 1024 to 2^20")
    return keyfile.KdfParams(n=kdf_n)


def _kms_options(*, key_help: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    def decorate(func: Callable[..., None]) -> Callable[..., None]:
        func = click.option("--kms-region", metavar="REGION",
                            help="The KMS key's region (default: a key ARN's, else the AWS "
                                 "configuration's).")(func)
        func = click.option("--kms-endpoint", metavar="URL",
                            help="A KMS speaking the AWS KMS API elsewhere than AWS "
                                 "(default: AWS KMS of the region).")(func)
        return click.option("--kms-key", metavar="KEY", help=key_help)(func)
    return decorate


def _kms_key(kms_key: str | None, kms_endpoint: str | None,
             kms_region: str | None) -> kmsslot.KeyRef | None:
    """The KMS key the options name, or None without --kms-key (then the others are refused)."""
    if not kms_key:
        if kms_endpoint or kms_region:
            raise errors.UsageError("--kms-endpoint and --kms-region go with --kms-key")
        return None
    return kmsslot.KeyRef(kms_key, kmsslot.check_endpoint(kms_endpoint, "--kms-endpoint"),
                          kms_region or None)


@repo.command()
@click.option("--cipher", type=click.Choice(sorted(fmt.SUITE_NAMES)), default="aes-256-gcm",
              show_default=True, help="AEAD for new objects.")
@_kdf_option
@click.option("--recovery-key/--no-recovery-key", default=True, show_default=True,
              help="Also make a recovery key (a second key slot) and print it, once.")
@_kms_options(key_help="Wrap the master key with this KMS key (id, ARN or alias) instead "
                       "of a passphrase.")
@click.option("--immutable-days", type=click.IntRange(*fmt.IMMUTABLE_DAYS_RANGE), default=None,
              metavar="N", help="S3 Object Lock: write every object retained for N days "
              "(the bucket must have Object Lock); prune extends what snapshots need.")
@click.option("--lock-mode", type=click.Choice(base.LOCK_MODES), default=None,
              help="With --immutable-days: Object Lock mode.  [default: governance]")
@pass_ctx
def init(ctx: context.Context, cipher: str, kdf_n: int, recovery_key: bool,
         kms_key: str | None, kms_endpoint: str | None, kms_region: str | None,
         immutable_days: int | None, lock_mode: str | None) -> None:
    """Create a new, empty repository.

    Prints a recovery key, once: it opens the repository as a passphrase does (set it as
    AMBER_PASSWORD). Keep it apart from the passphrase, on paper or in a vault. With
    --kms-key no passphrase is asked for: the KMS key opens the repository, and the recovery
    key is what still opens it if that key is ever deleted.
    """
    kdf = _kdf(kdf_n)
    if lock_mode is not None and immutable_days is None:
        raise errors.UsageError("--lock-mode needs --immutable-days N")
    kms = _kms_key(kms_key, kms_endpoint, kms_region)
    backend = ctx.backend()
    retained = (None if immutable_days is None
                else base.Retention(immutable_days, lock_mode or "governance"))
    if retained is not None:
        backend.check_retention_support()  # fail before asking for a passphrase
    repository.ensure_can_init(backend)  # fail before asking for a passphrase
    first = kms or context.read_passphrase(confirm=True)
    r = repository.Repository.init(backend, first, cipher=cipher, kdf=kdf, retention=retained)
    doc: dict[str, object] = {"id": r.config.repo_id.hex(), "location": backend.url}
    lines = [f"created repository {r.config.repo_id.hex()[:8]} at {backend.url}"]
    if kms is not None:
        doc["kmsKeyId"] = kms.key_id
        lines.append(f"its master key is wrapped by KMS key {kms.key_id}")
    if retained is not None:
        doc["immutability"] = retained.to_json()
        lines.append(f"immutable: every object is retained for {_count(retained.days, 'day')} "
                     f"(Object Lock, {retained.mode} mode); run 'amber repo prune' at least "
                     f"every {_half(retained.days)} so that what snapshots need stays "
                     "retained")
    if recovery_key:
        recovery = keys.recovery_passphrase()
        doc["recoveryKey"] = recovery
        doc["recoveryKeyId"] = keys.add(r, recovery, kdf)
        lines += [f"recovery key: {recovery}",
                  ("  it opens this repository as the KMS key does, and still does if that key "
                   "is ever disabled or deleted; it is shown only now: write it down and keep "
                   "it apart from the repository" if kms else
                   "  it opens this repository as the passphrase does; it is shown only now: "
                   "write it down and keep it apart from the passphrase")]
    elif kms is not None:
        ctx.warn(f"no recovery key: if KMS key {kms.key_id} is deleted, or access to it is "
                 "lost, nothing opens this repository ('amber repo key add' adds a passphrase)")
    ctx.emit(doc, "\n".join(lines))


@repo.command()
@pass_ctx
def info(ctx: context.Context) -> None:
    """Show what the repository holds."""
    st = maintenance.statistics(ctx.open_repo())
    doc = output.camel_keys(st.to_json())
    if isinstance(st.chunker, dict):  # the config's record of the chunker's parameters
        doc["chunker"] = output.camel_keys(st.chunker)
    ctx.emit(doc, "\n".join([
        f"repository  {st.id}",
        f"location    {st.location}",
        f"format      version {st.format_version}, {st.cipher}, zstd "
        f"level {st.compression_level}",
        f"snapshots   {st.snapshots}",
        f"packs       {st.packs} ({_count(st.blobs, 'blob')}, "
        f"{_count(st.index_files, 'index file')})",
        f"size        {output.human_bytes(st.stored_bytes)}",
        f"data key    generation {st.data_key_generation} ({_count(st.data_keys, 'key')})",
        *([] if st.immutability is None else [
            f"immutable   {st.immutability['days']} {_noun(st.immutability['days'], 'day')}, "
            f"Object Lock {st.immutability['mode']} mode"]),
    ]))


@repo.command("snapshots")
@pass_ctx
def list_snapshots(ctx: context.Context) -> None:
    """List every snapshot, oldest first: file snapshots and resource backups."""
    reports.print_snapshots(ctx)


@repo.command()
@click.option("--read-data", is_flag=True, help="Also read and verify every stored byte.")
@pass_ctx
def check(ctx: context.Context, read_data: bool) -> None:
    """Verify the repository's structure (and with --read-data, all data).

    Exits 14 when anything is damaged or missing, naming the blobs and the snapshots that need them.
    """
    r = ctx.open_repo()
    report = checker.Checker(r, reporter=ctx.reporter).run(read_data=read_data)
    ctx.emit({
        "ok": report.ok, "errors": report.errors, "warnings": report.warnings,
        "damagedBlobs": sorted(b.hex() for b in report.damaged_blobs),
        "damagedSnapshots": report.damaged_snapshots, "snapshots": report.snapshots,
        "healedSnapshots": report.healed_snapshots,
        "packs": report.packs, "blobs": report.blobs, "bytesRead": report.bytes_read,
    })
    for w in report.warnings:
        ctx.warn(w)
    if not ctx.json:
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
    r = ctx.open_repo(rewrites="amber repo forget")
    result = maintenance.forget(r, policy, snapshot_ids, group_by=group_by, dry_run=dry_run)
    forget_data = {"dryRun": dry_run, "decisions": [
        {**d.to_json(), "retainedUntil": reports.utc(result.retained.get(d.id))}
        if d.id in result.retained else d.to_json() for d in result.decisions]}
    prune_data: dict[str, object] | None = None
    if and_prune and not dry_run:
        margin_s = keep_younger_than.total_seconds()
        prune_data, prune_text = reports.prune_report(
            maintenance.prune(r, margin_s=margin_s, max_unused=pruner.DEFAULT_MAX_UNUSED,
                              dry_run=False, reporter=ctx.reporter), margin_s, False)
    if ctx.json:
        # one document per command, so scripts can parse it whole
        ctx.emit({**forget_data, "prune": prune_data} if and_prune else forget_data)
        return
    for d in result.decisions:
        verdict = "keep  " if d.keep else ("would remove" if dry_run else "remove")
        print(f"{verdict} {d.id[:8]}  {', '.join(d.reasons) or d.note}")
        if d.id in result.retained and not d.keep:
            until = reports.utc(result.retained[d.id])
            print(f"       its file would stay under Object Lock until {until} (hidden from "
                  "every listing); a prune after that date deletes it" if dry_run else
                  f"       its file stays under Object Lock until {until} (hidden from every "
                  "listing now); a prune after that date deletes it")
    print(f"{len(result.removed)} snapshot(s) {'would be ' if dry_run else ''}removed")
    if prune_data is not None:
        print(prune_text)


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
    margin_s = keep_younger_than.total_seconds()
    r = ctx.open_repo(rewrites="amber repo prune")
    report = maintenance.prune(r, margin_s=margin_s, max_unused=max_unused, dry_run=dry_run,
                               reporter=ctx.reporter)
    ctx.emit(*reports.prune_report(report, margin_s, dry_run))


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
    r = ctx.open_repo(rewrites="amber repo repair index")
    with locks.MaintenanceLease(r.backend):
        report = repairs.rebuild_index(r, reporter=ctx.reporter)
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
    ctx.emit(output.camel_keys(vars(report)), "\n".join(lines))
    if report.damaged_blobs or report.unreadable_packs or report.missing_packs:
        raise errors.IntegrityError(
            f"{len(report.damaged_blobs)} damaged blob(s), {len(report.unreadable_packs)} "
            f"unreadable and {len(report.missing_packs)} missing pack(s) could not be indexed; "
            "'amber repo check' names the snapshots that need them")


def _half(days: int) -> str:
    """Half a retention period, said the way a person would: ``12 hours``, ``15 days``."""
    return f"{days * 12} hours" if days < 4 else f"{days / 2:g} days"


def _count(n: int, noun: str) -> str:
    """``1 blob``, ``2 blobs``."""
    return f"{n} {_noun(n, noun)}"


def _noun(n: object, noun: str) -> str:
    """``noun`` in the number ``n`` calls for."""
    return noun if n == 1 else noun + "s"


@repo.command("copy")
@click.option("--to", "to", required=True, metavar="LOCATION",
              help="Where the copy goes: a registered location's name, or a path or URL, as "
                   "--repo takes (empty, or a copy of this repository).")
@click.option("--snapshot", "snapshot_ids", multiple=True, metavar="ID",
              help="Copy only this snapshot (an id prefix or 'latest'; repeatable). "
                   "Default: every snapshot.")
@pass_ctx
def copy_cmd(ctx: context.Context, to: str, snapshot_ids: tuple[str, ...]) -> None:
    """Copy snapshots, and only the packs they need, to another location: the same repository
    (same keys), its objects copied as they are, never decrypted; each checked against its name
    and read back. Run it again to finish an interrupted copy or to add new snapshots."""
    r = ctx.open_repo()
    chosen = ([r.resolve_snapshot(ref) for ref in snapshot_ids] if snapshot_ids
              else r.list_snapshots())
    target = ctx.backend(locations.resolve(r, to))
    if target.url == r.backend.url:
        raise errors.UsageError("--to names the repository itself")
    report = copier.copy(r, target, chosen, reporter=ctx.reporter)
    ctx.emit({**output.camel_keys(vars(report)), "to": target.url}, (
        f"copied {len(report.snapshots_copied)} snapshot(s) ({report.snapshots_present} were "
        f"there), {report.packs_copied} pack(s) ({report.packs_present} were there), "
        f"{output.human_bytes(report.bytes_copied)} to {target.url}"
        + (" (a new copy of this repository)" if report.initialized else "")
        + (f"; {report.locations_copied} location record(s)" if report.locations_copied
           else "")))


@repo.group("key")
def key_group() -> None:
    """Key slots: several passphrases (and the recovery key) open one repository."""


@key_group.command("list")
@pass_ctx
def key_list(ctx: context.Context) -> None:
    """The key slots, oldest first; * marks the one that opened the repository."""
    found = keys.slots(ctx.open_repo())
    ctx.emit([output.camel_keys(vars(k)) for k in found], output.table(
        ["", "ID", "KIND", "CREATED", "HOST", "USER"],
        (["*" if k.current else "", k.id[:8] + ("" if k.intact else " (damaged)"),
          f"kms {k.kms_key_id}" if k.kind == "kms" else k.kind,
          k.created[:19].replace("T", " "), k.hostname, k.username] for k in found)))


@key_group.command("add")
@_kdf_option
@_kms_options(key_help="Add a slot for this KMS key (id, ARN or alias) instead of a "
                       "passphrase.")
@pass_ctx
def key_add(ctx: context.Context, kdf_n: int, kms_key: str | None, kms_endpoint: str | None,
            kms_region: str | None) -> None:
    """Add a key slot for a new passphrase (AMBER_NEW_PASSWORD_FILE, AMBER_NEW_PASSWORD or a
    prompt), or with --kms-key for a KMS key. The repository is opened with a key it has (a
    KMS slot, else the passphrase from AMBER_PASSWORD_FILE, ...)."""
    kdf = _kdf(kdf_n)
    kms = _kms_key(kms_key, kms_endpoint, kms_region)
    r = ctx.open_repo()
    if kms is not None:
        new = keys.add_kms(r, kms)
        ctx.emit({"id": new, "kmsKeyId": kms.key_id},
                 f"added key {new[:8]} (KMS key {kms.key_id})")
        return
    new = keys.add(r, context.read_passphrase(new=True), kdf)
    ctx.emit({"id": new}, f"added key {new[:8]}")


@key_group.command("rewrap")
@click.argument("key_id", required=False, default="")
@_kms_options(key_help="The KMS key to wrap with from now on (default: the slot's own key, "
                       "to pick up KMS's rotation of its material).")
@pass_ctx
def key_rewrap(ctx: context.Context, key_id: str, kms_key: str | None,
               kms_endpoint: str | None, kms_region: str | None) -> None:
    """Re-wrap the master key of the KMS slot KEY_ID (default: the one that opened the
    repository) with --kms-key, or again with its own key. A new slot replaces the old one;
    no data is rewritten."""
    r = ctx.open_repo(rewrites="amber repo key rewrap")
    ref = kmsslot.KeyRef(kms_key or "", kmsslot.check_endpoint(kms_endpoint, "--kms-endpoint"),
                         kms_region or None)
    old, new = keys.rewrap(r, key_id, ref)
    new_key = next(k.kms_key_id for k in keys.slots(r) if k.id == new)
    ctx.emit({"id": new, "replaced": old.id, "kmsKeyId": new_key},
             f"key {old.id[:8]} (KMS key {old.kms_key_id}) replaced by {new[:8]} "
             f"(KMS key {new_key})")


@key_group.command("remove")
@click.argument("key_id")
@pass_ctx
def key_remove(ctx: context.Context, key_id: str) -> None:
    """Remove the key slot KEY_ID (an id prefix from 'repo key list'). The last key, and the
    one the repository was opened with, are never removed (a KMS slot opens first: removing it
    takes a passphrase, AMBER_PASSWORD_FILE, ..., that opens another slot)."""
    r = ctx.open_repo(rewrites="amber repo key remove")
    if keys.resolve(r, key_id).current and kmsslot.is_kms(r.backend.read(r.key_name)):
        # the KMS slot in use goes only if a passphrase (or the recovery key) still opens
        r = ctx.open_repo(rewrites="amber repo key remove", use_kms=False)
    slot = keys.remove(r, key_id)
    ctx.emit({"id": slot.id}, f"removed key {slot.id[:8]}")


@key_group.command("passwd")
@_kdf_option
@pass_ctx
def key_passwd(ctx: context.Context, kdf_n: int) -> None:
    """Change the passphrase of the key slot the passphrase (AMBER_PASSWORD_FILE, ...) opens: a
    slot for the new passphrase (AMBER_NEW_PASSWORD_FILE, AMBER_NEW_PASSWORD or a prompt)
    replaces it. KMS slots are left alone."""
    kdf = _kdf(kdf_n)
    # the slot to change is the one the passphrase opens
    r = ctx.open_repo(rewrites="amber repo key passwd", use_kms=False)
    old = r.key_name.rsplit("/", 1)[-1]
    new = keys.change(r, context.read_passphrase(new=True), kdf)
    ctx.emit({"id": new, "replaced": old}, f"key {old[:8]} replaced by {new[:8]}")


@key_group.command("rotate-data")
@pass_ctx
def key_rotate_data(ctx: context.Context) -> None:
    """Seal new data with a new random data key; data stored before stays readable under the
    keys it was written with (it is not re-encrypted). Key slots are not touched: every
    passphrase and the recovery key open every data key."""
    data_key = datakeys.rotate(ctx.open_repo())
    ctx.emit({"generation": data_key.generation, "created": data_key.created},
             f"new data is sealed with data key generation {data_key.generation} from now on; "
             "data stored before keeps its key")
