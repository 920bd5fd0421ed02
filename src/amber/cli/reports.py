"""How the results several commands share are printed: snapshot tables, prune reports.

CLI plumbing, not a command: ``repo snapshots``, ``snapshot list`` and ``demo`` print the same
snapshot table, and ``repo prune``, ``repo forget --prune`` and ``backup delete --prune`` the same
prune report. Command modules import this (and ``context``, ``options``, ``progress``,
``durations``), never each other (tests/cli/test_cli_imports.py).
"""

from __future__ import annotations

import datetime
from collections.abc import Callable

from amber.cli import context, output
from amber.repo import pruner
from amber.repo import snapshot as snapshots


def snapshot_rows(snaps: list[snapshots.Snapshot]) -> list[dict[str, object]]:
    return [{
        "id": s.id, "shortId": s.short_id, "time": snapshots.format_time(s.time),
        "hostname": s.hostname, "username": s.username, "paths": s.paths, "tags": s.tags,
        "parent": s.parent, "summary": output.camel_keys(s.summary), "partial": s.partial,
        "errors": s.errors,
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
    print(output.table(
        ["ID", "TIME (UTC)", "HOST", "FILES", "SIZE", "TAGS / PATHS"],
        ([s.short_id, s.time.strftime("%Y-%m-%d %H:%M:%S"), s.hostname,
          s.summary.get("files", 0), output.human_bytes(s.summary.get("bytes", 0)),
          " ".join([",".join(s.tags)] * bool(s.tags) + s.paths)
          + (" (partial)" if s.partial else "")] for s in snaps), right=[3, 4]))


def prune_report(report: pruner.PruneReport, margin_s: float,
                 dry_run: bool) -> tuple[dict[str, object], str]:
    """A prune's report as data (for -o json) and as text."""
    data = output.camel_keys(vars(report))
    data["dryRun"] = dry_run
    data["heldUntil"] = utc(report.held_until)
    data["lockedUntil"] = utc(report.locked_until)
    data["extendedUntil"] = utc(report.extended_until)
    lines = [
        *report.messages,
        f"packs: {report.packs_before} indexed, {report.packs_kept} kept, "
        f"{report.packs_young} younger than the safety margin, {report.packs_dropped} dropped "
        f"({report.packs_repacked} repacked: {report.blobs_repacked} blobs copied), "
        f"{report.packs_deleted} deleted",
        f"{'would free' if dry_run else 'freed'} {output.human_bytes(report.bytes_freed)}"
        + (" (deletion deferred: a backup is running)" if report.deferred else ""),
    ]
    if report.objects_extended and report.extended_until is not None:
        lines.append(f"retention of {report.objects_extended} object(s) that snapshots need "
                     f"extended to {utc(report.extended_until)}")
    if report.versions_removed:
        lines.append(f"{report.versions_removed} retained version(s) of deleted objects "
                     "removed for good (their retention had passed)")
    held = held_line(report, margin_s)
    return data, "\n".join([*lines, held] if held else lines)


def held_line(report: pruner.PruneReport, margin_s: float) -> str:
    """One line on the unused data the safety margin kept, and from when a prune frees it; empty
    when the margin held nothing back."""
    if not report.bytes_held_young or report.held_until is None:
        return ""
    when = datetime.datetime.fromtimestamp(report.held_until, datetime.UTC)
    head = "nothing freed: " if report.bytes_freed <= 0 else "not yet freed: "
    return (f"{head}{output.human_bytes(report.bytes_held_young)} that no snapshot needs is "
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


def utc(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return snapshots.format_time(datetime.datetime.fromtimestamp(epoch, datetime.UTC))


