"""Trees: a directory listing as canonical JSON, chunked and deduplicated like file data.

An unchanged directory serializes to the same bytes, hence to the same tree blob ids, so it
costs nothing in a new snapshot (format doc §7). Access times are left out on purpose: reading a
file changes them, which would make every tree new.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from amber.repo import format as fmt
from amber.repo import fsmeta, packer, repository
from amber.util import errors

TREE_VERSION = 1


@dataclass(frozen=True, slots=True)
class TreeNode:
    meta: fsmeta.FileMeta
    #: Regular files: blob ids of the content, in order.
    content: tuple[bytes, ...] = ()
    #: Directories: blob ids of the serialized subtree.
    subtree: tuple[bytes, ...] = ()

    @property
    def name(self) -> str:
        return self.meta.name


def strip_volatile(meta: fsmeta.FileMeta) -> fsmeta.FileMeta:
    """Drop what must not influence a tree's bytes (access time)."""
    return dataclasses.replace(meta, atime_ns=0) if meta.atime_ns else meta


def encode(nodes: Iterable[TreeNode]) -> bytes:
    items: list[dict[str, Any]] = []
    for node in sorted(nodes, key=lambda n: n.meta.name):
        d: dict[str, Any] = fsmeta.to_dict(strip_volatile(node.meta))
        if node.meta.type is fsmeta.NodeType.FILE:
            d["content"] = [c.hex() for c in node.content]
        elif node.meta.type is fsmeta.NodeType.DIR:
            d["subtree"] = [c.hex() for c in node.subtree]
        items.append(d)
    return json.dumps({"v": TREE_VERSION, "nodes": items}, sort_keys=True,
                      separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def decode(data: bytes) -> list[TreeNode]:
    try:
        doc = json.loads(data)
        if doc.get("v") != TREE_VERSION:
            raise errors.UnsupportedFormatError(f"tree version {doc.get('v')} is not supported")
        out = []
        for d in doc["nodes"]:
            meta = fsmeta.from_dict(d)
            out.append(TreeNode(
                meta=meta,
                content=tuple(bytes.fromhex(c) for c in d.get("content", ())),
                subtree=tuple(bytes.fromhex(c) for c in d.get("subtree", ())),
            ))
        return out
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise errors.IntegrityError("a tree blob is malformed") from exc


def save(nodes: Iterable[TreeNode], repo: repository.Repository,
         writer: packer.BlobWriter) -> list[bytes]:
    """Store a directory listing; return its tree blob ids."""
    data = encode(nodes)
    codec = repo.codec()
    ids = []
    for chunk in repo.new_chunker().cut_buf(data):
        piece = bytes(chunk.data)
        blob_id = repo.sealer.blob_id(piece)
        writer.add(fmt.ObjectType.TREE, blob_id, piece, codec)
        ids.append(blob_id)
    return ids


def load(repo: repository.Repository, ids: Sequence[bytes]) -> list[TreeNode]:
    return decode(b"".join(repo.read_blob(i) for i in ids))
