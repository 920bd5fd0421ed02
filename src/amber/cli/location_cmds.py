"""``amber repo location ...`` and ``amber repo status``: where the copies are, and 3-2-1.

The engine (``repo/locations.py``, ``repo/placement.py``) decides; this module only renders.
"""

from __future__ import annotations

import click

from amber.cli import context, output
from amber.repo import locations, placement
from amber.repo import snapshot as snapshots
from amber.util import errors

pass_ctx = click.make_pass_decorator(context.Context)


@click.group("location")
def location_group() -> None:
    """Register the locations that hold copies of this repository (for 'repo status' and
    'repo copy --to NAME')."""


@location_group.command("add")
@click.argument("name")
@click.argument("url", metavar="LOCATION")
@click.option("--medium", type=click.Choice(locations.MEDIA), default=None,
              help="What the copy is stored on (3-2-1 counts distinct media). Default: disk "
                   "for a path, object for s3://, other otherwise.")
@click.option("--offsite", is_flag=True, help="The location is at another site.")
@pass_ctx
def location_add(ctx: context.Context, name: str, url: str, medium: str | None,
                 offsite: bool) -> None:
    """Register LOCATION (a path or URL, as --repo takes) as NAME. Never give credentials in
    the URL: the record is stored in the repository."""
    record = locations.add(ctx.open_repo(), name, url, medium=medium, offsite=offsite)
    ctx.emit(_record_doc(record), f"registered location {record.name}: {record.url} "
             f"({record.medium}{', off-site' if record.offsite else ''})")


@location_group.command("list")
@pass_ctx
def location_list(ctx: context.Context) -> None:
    """The registered locations, by name."""
    found = locations.current(ctx.open_repo())
    ctx.emit([_record_doc(r) for r in found.values()], output.table(
        ["NAME", "MEDIUM", "OFFSITE", "REGISTERED", "LOCATION"],
        ([r.name, r.medium, _yes(r.offsite), r.created[:19].replace("T", " "), r.url]
         for r in found.values())))


@location_group.command("remove")
@click.argument("name")
@pass_ctx
def location_remove(ctx: context.Context, name: str) -> None:
    """Unregister NAME (a newer record says it is removed; the copy there is left alone)."""
    record = locations.remove(ctx.open_repo(), name)
    ctx.emit(_record_doc(record), f"removed location {record.name} ({record.url}); the copy "
             "there is left as it is")


@click.command("status")
@click.option("--check", "strict", is_flag=True,
              help="Exit 19 when a snapshot breaks 3-2-1 or a location is unreachable.")
@pass_ctx
def status(ctx: context.Context, strict: bool) -> None:
    """Per snapshot: how many copies exist, on which media, whether one is off-site; flags
    every snapshot that breaks 3-2-1 (3 copies, 2 media, 1 off-site)."""
    found = placement.survey(ctx.open_repo(), opener=ctx.backend)
    ctx.emit(_status_doc(found), _status_text(found))
    if strict and (found.breaking or found.unreachable):
        raise errors.NotProtectedError(
            f"{len(found.breaking)} snapshot(s) break 3-2-1, {len(found.unreachable)} "
            "location(s) unreachable")


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def _record_doc(record: locations.Record) -> dict[str, object]:
    return {"name": record.name, "location": record.url, "medium": record.medium,
            "offsite": record.offsite, "created": record.created, "removed": record.removed,
            "id": record.id}


def _status_doc(found: placement.Status) -> dict[str, object]:
    return {
        "locations": [{"name": s.name, "location": s.url, "medium": s.medium,
                       "offsite": s.offsite, "opened": s.opened, "registered": s.registered,
                       "state": str(s.state), "reason": s.reason or None,
                       "snapshots": len(s.snapshot_ids)} for s in found.sites],
        "snapshots": [{"id": p.snapshot_id,
                       "time": _time(p) or None,
                       "hostname": p.snapshot.hostname if p.snapshot else None,
                       "paths": p.snapshot.paths if p.snapshot else None,
                       "tags": p.snapshot.tags if p.snapshot else None,
                       "copies": p.copies, "locations": p.sites, "media": p.media,
                       "offsite": p.offsite, "ok": not p.broken,
                       "broken": [str(r) for r in p.broken], "reasons": p.reasons}
                      for p in found.placements],
        "summary": {"snapshots": len(found.placements),
                    "ok": len(found.placements) - len(found.breaking),
                    "breaking": len(found.breaking), "locations": len(found.sites),
                    "unreachable": len(found.unreachable)},
    }


def _time(p: placement.Placement) -> str:
    return snapshots.format_time(p.snapshot.time) if p.snapshot else ""


def _status_text(found: placement.Status) -> str:
    sites = output.table(
        ["", "LOCATION", "MEDIUM", "OFFSITE", "SNAPSHOTS", "STATE", "URL"],
        (["*" if s.opened else "", s.name, s.medium, _yes(s.offsite),
          len(s.snapshot_ids) if s.state is not placement.State.UNREACHABLE else "-",
          str(s.state), s.url] for s in found.sites), right=[4])
    lines = [sites]
    lines += [f"{s.name} is {s.state}: {s.reason}" for s in found.sites if s.reason]
    if found.placements:
        lines.append("")
        lines.append(output.table(
            ["SNAPSHOT", "TIME", "HOST", "COPIES", "LOCATIONS", "MEDIA", "OFFSITE", "3-2-1"],
            ([p.snapshot_id[:8], _time(p)[:19].replace("T", " ") or "?",
              p.snapshot.hostname if p.snapshot else "?", p.copies, ",".join(p.sites),
              ",".join(p.media), _yes(p.offsite),
              "ok" if not p.broken else "breaks: " + "; ".join(p.reasons)]
             for p in found.placements), right=[3]))
    total, bad = len(found.placements), len(found.breaking)
    summary = (f"{total} snapshot(s): {total - bad} meet 3-2-1, {bad} break it"
               if total else "no snapshots yet")
    if found.unreachable:
        summary += f"; {len(found.unreachable)} of {len(found.sites)} location(s) unreachable"
    lines.append(summary)
    return "\n".join(lines)
