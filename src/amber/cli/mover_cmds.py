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

import json
import os
from typing import Any

import click

from amber.cli import context
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
@pass_ctx
def backup(ctx: context.Context, source: str, name: str, parent: str) -> None:
    """Store the content of directory SOURCE as a tree; print its ids and counts."""
    parent_ids = parse_ids(parent, "--parent") if parent else ()
    repo = ctx.open_repo()
    arch = archiver.Archiver(repo, reporter=ctx.reporter)
    try:
        root, summary = arch.save_directory(source, name=name, parent_subtree=parent_ids)
    except errors.AmberError as exc:
        _publish(ctx, {"ok": False, "error": str(exc)})
        raise
    _publish(ctx, {"ok": True, "root": format_ids(root), "summary": summary,
                   "errors": arch.errors})


@mover.command("restore")
@click.argument("root")
@click.argument("target", type=click.Path(file_okay=False))
@click.option("--entry", default=None,
              help="The directory of ROOT's tree to restore (default: its only entry, as "
                   "'mover backup' stores it).")
@pass_ctx
def restore(ctx: context.Context, root: str, target: str, entry: str | None) -> None:
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
    warnings = list(result.warnings) + fsmeta.apply_meta(
        target, node.meta, restore_owner=os.geteuid() == 0)
    problems = [f"damaged: {p}" for p in result.damaged]
    problems += [f"unreadable: {p}/ ({why})" for p, why in result.unreadable]
    if result.no_space:
        problems.append(result.no_space)
    _publish(ctx, {"ok": not problems, "files": result.files, "dirs": result.dirs,
                   "bytes": result.bytes, "errors": problems, "warnings": warnings})
    if problems:
        raise errors.IntegrityError(f"volume {node.meta.name}: {len(problems)} problem(s), "
                                    f"first: {problems[0]}")
