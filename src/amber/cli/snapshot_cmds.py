"""``amber snapshot ...``: back up paths, restore them, browse and compare snapshots."""

from __future__ import annotations

import datetime
import stat

import click

from amber.backup import catalogue
from amber.cli import context, output, reports
from amber.repo import archiver, differ, fsmeta, repository, restorer, walker
from amber.repo import snapshot as snapshots
from amber.util import errors

pass_ctx = click.make_pass_decorator(context.Context)


@click.group()
def snapshot() -> None:
    """Back up paths, restore them, browse and compare snapshots."""


def is_file_snapshot(snap: snapshots.Snapshot) -> bool:
    """File snapshots are what these commands handle; resource backups (``amber backup``)
    are snapshots too, but of Kubernetes objects, tagged so."""
    return not catalogue.is_resource_backup(snap)


def resolve(r: repository.Repository, ref: str) -> snapshots.Snapshot:
    """SNAPSHOT_ID: ``latest``, the newest file snapshot (a newer resource backup does not
    count), or an id prefix. An explicit id may name a resource backup: it is an ordinary
    snapshot, and restoring its files is how one reads the objects as stored
    (docs/internals/resource-backups.md)."""
    if ref != "latest":
        return r.resolve_snapshot(ref)
    found = [s for s in r.list_snapshots() if is_file_snapshot(s)]
    if not found:
        raise errors.NotFoundError("the repository has no snapshots of files yet")
    return found[-1]


@snapshot.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option("--tag", "tags", multiple=True, help="Tag the snapshot (repeatable).")
@click.option("--host", default=None, help="Host name to record (default: this machine's).")
@click.option("--force", is_flag=True, help="Read every file, ignoring the parent snapshot.")
@pass_ctx
def create(ctx: context.Context, paths: tuple[str, ...], tags: tuple[str, ...],
           host: str | None, force: bool) -> None:
    """Back up PATHS into a new snapshot.

    Exits 3 when some files could not be read (the snapshot is saved and marked partial).
    """
    r = ctx.open_repo()
    snap = archiver.Archiver(r, reporter=ctx.reporter).run(
        paths, tags=tags, hostname=host, parent=not force)
    s = snap.summary
    ctx.emit(reports.snapshot_rows([snap])[0], "\n".join([
        f"files: {s['files_new']} new, {s['files_changed']} changed, "
        f"{s['files_unchanged']} unchanged; {s['dirs']} directories",
        f"added {output.human_bytes(s['bytes_new_stored'])} stored "
        f"({output.human_bytes(s['bytes_new_raw'])} before compression) "
        f"of {output.human_bytes(s['bytes'])} in {s['duration_s']:.1f}s",
        f"snapshot {snap.short_id} saved" + (" (partial)" if snap.partial else ""),
    ]))
    if snap.partial:
        for line in snap.errors[:20]:
            ctx.warn(f"could not read {line}")
        raise errors.PartialError(f"{len(snap.errors)} item(s) could not be read; snapshot "
                                  f"{snap.short_id} is partial")


@snapshot.command("list")
@pass_ctx
def list_cmd(ctx: context.Context) -> None:
    """List file snapshots, oldest first ('backup list' lists resource backups)."""
    reports.print_snapshots(ctx, is_file_snapshot)


@snapshot.command()
@click.argument("snapshot_id")
@click.argument("target", type=click.Path())
@click.option("--include", "includes", multiple=True, metavar="GLOB",
              help="Restore only paths matching GLOB (absolute path in the snapshot; a matching "
                   "directory brings everything below it). Repeatable.")
@pass_ctx
def restore(ctx: context.Context, snapshot_id: str, target: str,
            includes: tuple[str, ...]) -> None:
    """Restore SNAPSHOT_ID ('latest' or an id prefix) below TARGET.

    Paths are recreated under TARGET as they were (TARGET/<absolute path>); an entry already
    there is replaced only once its restored version is complete. Files whose data is damaged
    and directories whose listing is damaged are left out and listed, everything else is
    restored; the exit code is then 14. A full TARGET stops the restore with exit 15 and a list
    of the files not restored (what TARGET held at their names is left as it was).
    """
    r = ctx.open_repo()
    snap = resolve(r, snapshot_id)
    result = restorer.Restorer(r, reporter=ctx.reporter).run(snap, target, includes=includes)
    ctx.emit({"snapshot": snap.id, "target": target, "files": result.files,
              "dirs": result.dirs, "bytes": result.bytes, "damaged": result.damaged,
              "unreadable": [path for path, _why in result.unreadable],
              "notRestored": result.not_restored, "warnings": result.warnings,
              "temporariesRemoved": result.temps_removed},
             f"restored {_count(result.files, 'file', 'files')}, "
             f"{_count(result.dirs, 'directory', 'directories')}, "
             f"{output.human_bytes(result.bytes)} from snapshot {snap.short_id} to {target}")
    if result.temps_removed:
        ctx.info(f"removed {_count(result.temps_removed, 'temporary', 'temporaries')} "
                 f"({restorer.TEMP_PREFIX}*) left by an interrupted restore")
    _report_restore_problems(ctx, result)


def _report_restore_problems(ctx: context.Context, result: restorer.RestoreResult) -> None:
    """One stderr line per thing left out, then the error that sets the exit code: a full
    target (15) outranks damage (14), since the restore did not finish."""
    for w in result.warnings[:20]:
        ctx.warn(w)
    for path, why in result.unreadable:
        ctx.problem(f"unreadable, not restored: {path}/ ({why})")
    for path in result.damaged:
        ctx.problem(f"damaged, not restored: {path}")
    for path in result.not_restored:
        ctx.problem(f"not restored (no space): {path}")
    if result.no_space:
        raise errors.NoSpaceError(result.no_space)
    problems = []
    if result.damaged:
        n = len(result.damaged)
        problems.append(f"{_count(n, 'file', 'files')} could not be restored because "
                        f"{'its' if n == 1 else 'their'} data is damaged")
    if result.unreadable:
        n = len(result.unreadable)
        problems.append(f"{_count(n, 'directory', 'directories')} could not be read (damaged); "
                        f"nothing below {'it' if n == 1 else 'them'} was restored")
    if problems:
        raise errors.IntegrityError("; ".join(problems))


def _mode_string(meta: fsmeta.FileMeta) -> str:
    kind = {fsmeta.NodeType.DIR: stat.S_IFDIR, fsmeta.NodeType.SYMLINK: stat.S_IFLNK,
            fsmeta.NodeType.FIFO: stat.S_IFIFO, fsmeta.NodeType.CHARDEV: stat.S_IFCHR,
            fsmeta.NodeType.BLOCKDEV: stat.S_IFBLK, fsmeta.NodeType.SOCKET: stat.S_IFSOCK,
            }.get(meta.type, stat.S_IFREG)
    return stat.filemode(kind | meta.mode)


@snapshot.command("ls")
@click.argument("snapshot_id")
@click.argument("path", default="/")
@click.option("--long", "-l", "long_", is_flag=True, help="Show mode, owner, size and time.")
@pass_ctx
def ls(ctx: context.Context, snapshot_id: str, path: str, long_: bool) -> None:
    """List the files in a snapshot, at or below PATH.

    A directory whose listing is damaged is listed, its contents are not: one warning names it,
    everything else is listed, and the exit code is 14.
    """
    r = ctx.open_repo()
    r.load_index()
    snap = resolve(r, snapshot_id)
    unreadable: dict[str, str] = {}

    def skipped(where: str, exc: errors.IntegrityError) -> None:
        unreadable[where] = str(exc)
        ctx.warn(f"directory {where.rstrip('/')}/ cannot be read ({exc}); its contents are "
                 "not listed")

    rows = []
    for entry in walker.walk(r, snap, path, on_unreadable=skipped):
        m = entry.node.meta
        if ctx.json:
            rows.append({"path": entry.path, "type": m.type.value, "mode": m.mode,
                         "size": m.size, "uid": m.uid, "gid": m.gid, "user": m.user,
                         "group": m.group, "mtime": snapshots.format_time(_time(m.mtime_ns)),
                         "linkTarget": m.link_target})
        elif long_:
            when = _time(m.mtime_ns)
            target = f" -> {m.link_target}" if m.link_target else ""
            print(f"{_mode_string(m)} {m.user or m.uid:>8} {m.group or m.gid:>8} {m.size:>12} "
                  f"{when.strftime('%Y-%m-%d %H:%M:%S')} {entry.path}{target}")
        else:
            print(entry.path + ("/" if m.type is fsmeta.NodeType.DIR else ""))
    if ctx.json:
        for row in rows:
            if row["path"] in unreadable:
                row["unreadable"] = unreadable[row["path"]]
        ctx.emit(rows)
    _fail_if_unreadable(list(unreadable), "its contents are not listed",
                        "their contents are not listed")


def _fail_if_unreadable(paths: list[str], it: str, them: str) -> None:
    """Exit 14 at the end of a command that went on around damaged directories (each already
    named in a warning, so the error counts them and says what they cost)."""
    if paths:
        n = len(paths)
        raise errors.IntegrityError(
            f"{_count(n, 'directory', 'directories')} could not be read (damaged); "
            f"{it if n == 1 else them}")


def _count(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def _time(ns: int) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(ns / 1e9, datetime.UTC)


@snapshot.command("diff")
@click.argument("snapshot_a")
@click.argument("snapshot_b")
@pass_ctx
def diff_cmd(ctx: context.Context, snapshot_a: str, snapshot_b: str) -> None:
    """Show what changed from snapshot A to snapshot B.

    + added, - removed, M content changed, U metadata (mode, owner, time) changed, ? a
    directory whose listing is damaged (named in a warning; exit 14 at the end).
    """
    r = ctx.open_repo()
    r.load_index()
    a, b = resolve(r, snapshot_a), resolve(r, snapshot_b)
    changes = list(differ.diff(r, a, b))
    counts = {k: sum(1 for c in changes if c.kind == k) for k in "+-MU"}
    unknown = [c for c in changes if c.kind == "?"]
    for c in unknown:
        ctx.warn(f"cannot compare {c.path}: {c.why}; what changed below it is not known")
    unreadable = [c.path.rstrip("/") or "/" for c in unknown]
    if ctx.json:
        ctx.emit({"from": a.id, "to": b.id, "counts": counts, "unreadable": unreadable,
                  "changes": [{"kind": c.kind, "path": c.path} for c in changes]})
    else:
        for c in changes:
            print(f"{c.kind} {c.path}")
        tail = f", {len(unknown)} unreadable" if unknown else ""
        print(f"{counts['+']} added, {counts['-']} removed, {counts['M']} modified, "
              f"{counts['U']} metadata changed{tail}")
    _fail_if_unreadable(unreadable, "what changed below it is not known",
                        "what changed below them is not known")
