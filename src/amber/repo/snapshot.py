"""Snapshot manifests: the small encrypted JSON document that names a root tree (format doc §8)."""

from __future__ import annotations

import datetime
import json
from dataclasses import dataclass, field
from typing import Any

from amber.util import errors


def utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def format_time(t: datetime.datetime) -> str:
    return t.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))


@dataclass
class Snapshot:
    time: datetime.datetime
    hostname: str
    username: str
    paths: list[str]
    tree: list[bytes]
    tags: list[str] = field(default_factory=list)
    parent: str | None = None
    program: str = ""
    summary: dict[str, Any] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    #: Hex id (hash of the stored file); set once saved or loaded, not part of the content.
    id: str = ""

    @property
    def short_id(self) -> str:
        return self.id[:8]

    @property
    def partial(self) -> bool:
        return bool(self.errors)

    def to_json(self) -> bytes:
        doc = {
            "v": 1,
            "time": format_time(self.time),
            "hostname": self.hostname,
            "username": self.username,
            "paths": self.paths,
            "tags": self.tags,
            "tree": [t.hex() for t in self.tree],
            "parent": self.parent,
            "program": self.program,
            "summary": self.summary,
            "errors": self.errors,
        }
        return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, data: bytes, snapshot_id: str) -> Snapshot:
        try:
            doc = json.loads(data)
            if doc.get("v") != 1:
                raise errors.UnsupportedFormatError(
                    f"snapshot {snapshot_id[:8]} has version {doc.get('v')}, "
                    "which this Amber cannot read"
                )
            return cls(
                time=parse_time(doc["time"]),
                hostname=doc["hostname"],
                username=doc["username"],
                paths=list(doc["paths"]),
                tree=[bytes.fromhex(t) for t in doc["tree"]],
                tags=list(doc.get("tags", [])),
                parent=doc.get("parent"),
                program=doc.get("program", ""),
                summary=dict(doc.get("summary", {})),
                errors=list(doc.get("errors", [])),
                id=snapshot_id,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise errors.IntegrityError(f"snapshot {snapshot_id[:8]} is malformed") from exc
