"""``amber mover``: what runs inside the Jobs that move a volume's data (docs/internals/volumes.md).

An application backup starts one mover Job per claim (``amber.backup.volumes``): the claim is
mounted read-only, ``amber mover backup`` stores its files in the repository as a tree and says
which, and the backup grafts that tree into its snapshot at ``volumes/<namespace>/<claim>``. A
restore runs ``amber mover restore`` in a Job that mounts the new claim read-write before any
workload does. The repository's location comes in ``AMBER_REPO`` (a location URL holds no
secret); its passphrase and any storage credentials come from a short-lived Secret, as a file
(``AMBER_PASSWORD_FILE``) and ``secretKeyRef`` variables, never as arguments or literal values.

The result is one JSON line, on stdout and in the file ``AMBER_MOVER_RESULT`` names (the
container's termination message, which the caller reads from the pod's status: at most 4 KiB,
so only the first few unreadable paths are listed there; stdout, the pod's log, has them all).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator
from typing import Any, BinaryIO

import click

from amber.cli import context, output
from amber.repo import archiver, fsmeta, restorer, tree
from amber.util import errors

pass_ctx = click.make_pass_decorator(context.Context)

#: Where the caller asks for the result (the termination message path).
RESULT_ENV = "AMBER_MOVER_RESULT"
#: A termination message is cut at 4096 bytes; the result stays well under.
RESULT_LIMIT = 3900
#: Unreadable paths listed in the result (the log has every one).
LISTED_ERRORS = 10


@click.group(hidden=True)
def mover() -> None:
    """Move one volume's data into or out of the repository (run by Amber's Jobs)."""


def parse_ids(text: str, what: str) -> tuple[bytes, ...]:
    """Tree ids as the mover and its caller pass them: hex, comma-separated."""
    try:
        ids = tuple(bytes.fromhex(part) for part in text.split(",") if part)
    except ValueError:
        raise errors.UsageError(f"{what}: {text!r} is not a comma-separated list of hex "
                                "tree ids") from None
    if not ids or any(len(i) != 32 for i in ids):
        raise errors.UsageError(f"{what}: {text!r} is not a list of 32-byte tree ids")
    return ids


def format_ids(ids: tuple[bytes, ...]) -> str:
    return ",".join(i.hex() for i in ids)


def termination_message(doc: dict[str, Any]) -> str:
    """``doc`` as JSON short enough for a termination message: the first ``LISTED_ERRORS``
    errors, fewer if they are long (the summary still counts them all)."""
    short = dict(doc)
    short["errors"] = [e[:300] for e in doc.get("errors", [])[:LISTED_ERRORS]]
    data = json.dumps(short, sort_keys=True)
    while len(data.encode()) > RESULT_LIMIT and short["errors"]:
        short["errors"] = short["errors"][:-1]
        data = json.dumps(short, sort_keys=True)
    return data


def _publish(ctx: context.Context, doc: dict[str, Any]) -> None:
    """The result, on stdout and where ``AMBER_MOVER_RESULT`` says (cut to fit)."""
    ctx.emit(doc, json.dumps(doc, sort_keys=True))
    path = os.environ.get(RESULT_ENV)
    if path:
        with open(path, "w", encoding="utf-8") as f:
            f.write(termination_message(doc))


@mover.command("backup")
@click.argument("source", type=click.Path())
@click.option("--name", default="volume", show_default=True,
              help="Name of the tree's one entry (the claim's).")
@click.option("--parent", default="",
              help="Tree ids of the volume in the previous backup (files cache).")
@click.option("--clone", is_flag=True,
              help="SOURCE is a clone made from a snapshot: its inodes and ctimes are new, so "
                   "the files cache compares size and mtime only.")
@pass_ctx
def backup(ctx: context.Context, source: str, name: str, parent: str, clone: bool) -> None:
    """Store the content of directory SOURCE as a tree; print its ids and counts."""
    parent_ids = parse_ids(parent, "--parent") if parent else ()
    repo = ctx.open_repo()
    arch = archiver.Archiver(repo, reporter=ctx.reporter, stable_inodes=not clone)
    try:
        root, summary = arch.save_directory(source, name=name, parent_subtree=parent_ids)
    except errors.AmberError as exc:
        _publish(ctx, {"ok": False, "error": str(exc)})
        raise
    _publish(ctx, {"ok": True, "root": format_ids(root),
                   "summary": output.camel_keys(summary), "errors": arch.errors})


@mover.command("restore")
@click.argument("root")
@click.argument("target", type=click.Path(file_okay=False))
@click.option("--entry", default=None,
              help="The directory of ROOT's tree to restore (default: its only entry, as "
                   "'mover backup' stores it).")
@click.option("--contents-only", is_flag=True,
              help="Leave TARGET's own mode and owner as they are.")
@pass_ctx
def restore(ctx: context.Context, root: str, target: str, entry: str | None,
            contents_only: bool) -> None:
    """Restore a directory of tree ROOT (what 'mover backup' printed, or the tree of a
    backup's volumes/<namespace> with --entry CLAIM) into TARGET.

    TARGET itself takes the directory's mode and owner; what it holds at the tree's names is
    replaced, anything else there (a fresh file system's lost+found) is left alone.
    """
    ids = parse_ids(root, "ROOT")
    repo = ctx.open_repo()
    repo.load_index()
    try:
        nodes = tree.load(repo, ids)
    except errors.IntegrityError as exc:
        _publish(ctx, {"ok": False, "error": f"the volume's tree cannot be read: {exc}"})
        raise
    if entry is not None:
        nodes = [n for n in nodes if n.name == entry]
    if len(nodes) != 1 or nodes[0].meta.type is not fsmeta.NodeType.DIR:
        what = f"no directory {entry!r}" if entry is not None else "not one directory"
        raise errors.IntegrityError(f"tree {root[:16]} holds {what} to restore")
    node = nodes[0]
    result = restorer.Restorer(repo, reporter=ctx.reporter).run_tree(
        node.subtree, target, what=f"volume {node.meta.name}")
    warnings = list(result.warnings)
    if not contents_only:
        warnings += fsmeta.apply_meta(target, node.meta, restore_owner=os.geteuid() == 0)
    problems = [f"damaged: {p}" for p in result.damaged]
    problems += [f"unreadable: {p}/ ({why})" for p, why in result.unreadable]
    if result.no_space:
        problems.append(result.no_space)
    _publish(ctx, {"ok": not problems, "files": result.files, "dirs": result.dirs,
                   "bytes": result.bytes, "errors": problems, "warnings": warnings})
    if problems:
        raise errors.IntegrityError(f"volume {node.meta.name}: {len(problems)} problem(s), "
                                    f"first: {problems[0]}")


#: How long a mover waits for a program's exit status after its stream ended.
STATUS_WAIT = 120.0


def _pipe(pipes: str, number: int) -> str:
    return os.path.join(pipes, str(number))


def _ended(pipes: str, number: int, what: str) -> None:
    """Wait for the exit status the program of pipe ``number`` left (``N.status``); raise,
    with the end of its stderr (``N.err``), unless it is 0."""
    path = _pipe(pipes, number)
    deadline = time.monotonic() + STATUS_WAIT
    while not os.path.exists(path + ".status"):
        if time.monotonic() > deadline:
            raise errors.SourceError(f"{what}: its program left no exit status within "
                                     f"{STATUS_WAIT:.0f}s after its stream ended")
        time.sleep(0.05)
    time.sleep(0.05)  # the status is written in one echo; let it land
    with open(path + ".status", encoding="utf-8") as f:
        code = f.read().strip()
    if code == "0":
        return
    said = ""
    with contextlib.suppress(OSError), open(path + ".err", "rb") as f:
        lines = f.read()[-2000:].decode("utf-8", "replace").strip().splitlines()
        said = f": {lines[-1]}" if lines else ""
    raise errors.SourceError(f"{what}: the program exited {code}{said}")


@mover.command("dump")
@click.option("--pipes", required=True, type=click.Path(file_okay=False),
              help="Directory shared with the program's container (an emptyDir).")
@click.option("--name", required=True, help="Name of the directory the files go in.")
@click.option("--file", "files", multiple=True, required=True,
              help="Name of the file each program's output becomes, in order.")
@pass_ctx
def dump(ctx: context.Context, pipes: str, name: str, files: tuple[str, ...]) -> None:
    """Store what programs write into named pipes, each read to its end as one file.

    For each --file N (numbered from 0) a pipe PIPES/N is made; the program's container (the
    database's own image: its dump tool matches its server) writes into it, then its exit
    status into PIPES/N.status and its stderr into PIPES/N.err. A status other than 0
    abandons everything: no result, the Job fails, the backup says why.
    """
    for number in range(len(files)):
        os.mkfifo(_pipe(pipes, number), 0o600)

    def streams() -> Iterator[tuple[str, BinaryIO]]:
        for number, file_name in enumerate(files):
            with open(_pipe(pipes, number), "rb") as stream:
                yield file_name, stream
            _ended(pipes, number, file_name)

    repo = ctx.open_repo()
    arch = archiver.Archiver(repo, reporter=ctx.reporter)
    try:
        root, summary = arch.save_streams(streams(), name=name)
    except errors.AmberError as exc:
        _publish(ctx, {"ok": False, "error": str(exc)})
        raise
    _publish(ctx, {"ok": True, "root": format_ids(root),
                   "summary": output.camel_keys(summary), "errors": []})


@mover.command("feed")
@click.argument("root")
@click.option("--entry", required=True, help="The directory of ROOT's tree holding the files.")
@click.option("--pipes", required=True, type=click.Path(file_okay=False),
              help="Directory shared with the program's container (an emptyDir).")
@click.option("--file", "files", multiple=True, required=True,
              help="Name of a file of the directory, fed to pipe N in order.")
@pass_ctx
def feed(ctx: context.Context, root: str, entry: str, pipes: str,
         files: tuple[str, ...]) -> None:
    """Write stored files into named pipes for programs that load them (a restore's
    ``pg_restore``): file N into PIPES/N, then wait for PIPES/N.status to be 0."""
    ids = parse_ids(root, "ROOT")
    repo = ctx.open_repo()
    repo.load_index()
    nodes = [n for n in tree.load(repo, ids) if n.name == entry]
    if len(nodes) != 1 or nodes[0].meta.type is not fsmeta.NodeType.DIR:
        raise errors.IntegrityError(f"tree {root[:16]} holds no directory {entry!r}")
    stored = {n.name: n for n in tree.load(repo, nodes[0].subtree)}
    missing = [f for f in files if f not in stored]
    if missing:
        raise errors.IntegrityError(f"{entry}: the backup holds no {', '.join(missing)}")
    for number in range(len(files)):
        os.mkfifo(_pipe(pipes, number), 0o600)
    fed = 0
    for number, file_name in enumerate(files):
        try:
            with open(_pipe(pipes, number), "wb") as stream:
                for blob_id in stored[file_name].content:
                    data = repo.read_blob(blob_id)
                    stream.write(data)
                    fed += len(data)
        except BrokenPipeError:
            pass  # the program stopped reading: its exit status says why
        _ended(pipes, number, file_name)
    _publish(ctx, {"ok": True, "files": len(files), "bytes": fed, "errors": []})
