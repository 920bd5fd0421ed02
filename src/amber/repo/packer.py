"""Writing blobs: seal, group into packs, upload, and index them, in that order.

One ``BlobWriter`` serves a whole backup (or a prune repack). Worker threads call ``add``
concurrently; sealing runs outside the lock (zstd and AEAD release the GIL), and full packs go
through a bounded queue to the uploader threads (one for a disk, where parallel writes only
compete for the same device; several for object storage, where each PUT waits mostly on the
network: ``Backend.write_concurrency``), so memory stays flat however much data flows.
The uploader writes an index file after the first pack and then after every few packs, and only
after those packs are durable, so a killed backup leaves reusable, indexed packs behind (format doc
§10-11); the next backup adopts whatever packs it had not indexed yet (``repair.adopt_unindexed``).
"""

from __future__ import annotations

import contextlib
import queue
import struct
import threading
import time
from dataclasses import dataclass

from amber.repo import crypto, indexfile, memindex, repository
from amber.repo import format as fmt
from amber.util import errors

_U32 = struct.Struct("<I")
_STOP = object()


class _OpenPack:
    """A pack being filled: a reusable buffer written in place, and its entries.

    Buffers are recycled between packs (``BlobWriter._spare``) and written by slice assignment,
    never by ``+=``, so filling a pack never reallocates or copies what is already in it.
    """

    __slots__ = ("blob_type", "buffer", "entries", "pending", "size")

    def __init__(self, blob_type: fmt.ObjectType, buffer: bytearray) -> None:
        self.blob_type = blob_type
        self.buffer = buffer
        self.size = 0
        #: Envelopes reserved in ``buffer`` but still being encrypted into it by a worker.
        self.pending = 0
        self.entries: list[indexfile.PackEntry] = []

    def reserve(self, extra: int) -> None:
        """Make room for ``extra`` more bytes (only while no envelope is pending)."""
        end = self.size + extra
        if end > len(self.buffer):
            self.buffer.extend(bytes(max(end - len(self.buffer), len(self.buffer) // 2)))

    def append(self, data: bytes | bytearray | memoryview) -> None:
        self.reserve(len(data))
        end = self.size + len(data)
        self.buffer[self.size : end] = data
        self.size = end

    def view(self) -> memoryview:
        return memoryview(self.buffer)[: self.size]


@dataclass
class WriterStats:
    blobs_new: int = 0
    bytes_new_raw: int = 0
    bytes_new_stored: int = 0
    packs_written: int = 0
    index_files_written: int = 0


class BlobWriter:
    def __init__(
        self,
        repo: repository.Repository,
        *,
        index_every: int = 4,
        early_index: bool = True,
        pack_size: int = fmt.PACK_TARGET_SIZE,
        queue_size: int = 1,
        supersedes: tuple[bytes, ...] = (),
        dedup_index: memindex.BlobIndex | None = None,
    ) -> None:
        self.repo = repo
        #: What counts as stored already (the repository's index unless told otherwise).
        self._dedup = repo.index if dedup_index is None else dedup_index
        self.stats = WriterStats()
        self._index_every = index_every
        #: Index the first pack at once: most killed backups die before their fourth pack.
        self._early_index = early_index
        self._pack_size = pack_size
        self._supersedes = supersedes
        self._lock = threading.Lock()
        #: Signalled when a pack's last pending envelope is written (same lock as ``_lock``).
        self._written = threading.Condition(self._lock)
        self._spare: list[bytearray] = []
        self._open = {t: self._new_pack(t) for t in fmt.BLOB_TYPES}
        self._inflight: set[bytes] = set()
        self._unindexed: dict[bytes, list[indexfile.PackEntry]] = {}
        self._unsynced: list[str] = []
        self._written_index_ids: list[bytes] = []
        self._queue: queue.Queue[object] = queue.Queue(maxsize=queue_size)
        self._error: BaseException | None = None
        self._uploaders = [
            threading.Thread(target=self._upload_loop, name=f"amber-upload-{i}", daemon=True)
            for i in range(max(1, repo.backend.write_concurrency))]
        for thread in self._uploaders:
            thread.start()
        self._closed = False
        self._index_started = False

    def _new_pack(self, blob_type: fmt.ObjectType) -> _OpenPack:
        """A pack with a recycled buffer if one is free (called with the lock held or in init)."""
        if self._spare:
            return _OpenPack(blob_type, self._spare.pop())
        # Data packs start at their full size plus room for the header (they will fill); tree
        # packs are mostly small and grow if needed.
        size = self._pack_size + (1 << 20) if blob_type is fmt.ObjectType.DATA else 1 << 20
        return _OpenPack(blob_type, bytearray(size))

    # -- producer side ------------------------------------------------------------------

    def known(self, blob_id: bytes) -> bool:
        """True if the blob is stored already or on its way (so it must not be added again)."""
        return blob_id in self._dedup or blob_id in self._inflight

    def add(
        self,
        blob_type: fmt.ObjectType,
        blob_id: bytes,
        plaintext: bytes | memoryview,
        codec: crypto.Codec,
    ) -> bool:
        """Store a blob unless it is known; return True when it was new.

        The envelope is encrypted straight into its place in the pack: the lock is held only to
        reserve the room, so workers encrypt side by side and no envelope is copied.
        """
        self._raise_pending()
        with self._lock:
            if blob_id in self._dedup or blob_id in self._inflight:
                return False
            self._inflight.add(blob_id)
        body, compression = codec.compress_body(plaintext)
        key = codec.write_key  # sizes the envelope and seals it: one generation for both
        need = key.overhead + len(body)
        full: _OpenPack | None = None
        with self._written:
            pack = self._open[blob_type]
            if pack.size and pack.size + need > self._pack_size:
                # Close the pack before it would pass the target, so data buffers never grow.
                full = pack
                pack = self._open[blob_type] = self._new_pack(blob_type)
            if pack.size + need > len(pack.buffer):  # a small tree pack growing
                while pack.pending:  # a buffer cannot be resized while views of it exist
                    self._written.wait()
                pack.reserve(need)
            offset = pack.size
            pack.size += need
            pack.pending += 1
            pack.entries.append(indexfile.PackEntry(blob_type, blob_id, offset, need,
                                                    len(plaintext)))
            self.stats.blobs_new += 1
            self.stats.bytes_new_raw += len(plaintext)
            self.stats.bytes_new_stored += need
            if full is None and pack.size >= self._pack_size:
                full = pack
                self._open[blob_type] = self._new_pack(blob_type)
        try:
            with memoryview(pack.buffer) as whole:
                codec.seal_into(whole[offset : offset + need], body, compression, key,
                                obj_type=blob_type, obj_id=blob_id)
        except BaseException as exc:
            self._error = self._error or exc  # the pack now holds a hole: the backup must fail
            raise
        finally:
            with self._written:
                pack.pending -= 1
                if not pack.pending:
                    self._written.notify_all()
        if full is not None:
            self._put(full)
        return True

    def _put(self, item: object) -> None:
        while True:
            self._raise_pending()
            try:
                self._queue.put(item, timeout=0.5)
                return
            except queue.Full:
                continue

    def _raise_pending(self) -> None:
        if self._error is not None:
            raise self._error

    def flush(self) -> list[bytes]:
        """Upload open packs, write the last index file; return ids of index files written."""
        if self._closed:
            return self._written_index_ids
        with self._lock:
            packs = [p for p in self._open.values() if p.entries]
            self._open = {t: _OpenPack(t, bytearray()) for t in fmt.BLOB_TYPES}
            # The last packs are indexed together below: a small backup writes one index file.
            self._early_index = False
        for p in packs:
            self._put(p)
        for _ in self._uploaders:
            self._put(_STOP)
        for thread in self._uploaders:
            thread.join()
        self._closed = True
        self._raise_pending()
        self._write_index()
        return self._written_index_ids

    def abort(self) -> None:
        """Stop the uploader without uploading anything more (after an error or interrupt), and
        index the packs already uploaded.

        Those packs are complete, and an interrupted process removes its writer marker, so no
        later backup would see a dead writer and adopt them: indexed here, they are reused
        instead of uploaded again. Best effort: a failure (the error that stopped us, say)
        leaves them unindexed, as a kill would.
        """
        if self._closed:
            return
        self._closed = True
        self._error = self._error or RuntimeError("aborted")
        try:
            while True:
                self._queue.get_nowait()
        except queue.Empty:
            pass
        deadline = time.monotonic() + 30
        try:
            for _ in self._uploaders:  # each uploader takes one; the queue was drained
                self._queue.put(_STOP, timeout=max(0.0, deadline - time.monotonic()))
        except queue.Full:
            return  # uploaders still writing packs: their list of finished packs is not settled
        for thread in self._uploaders:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
        if any(thread.is_alive() for thread in self._uploaders):
            return  # still writing a pack: its list of finished packs is not settled
        with contextlib.suppress(OSError, errors.AmberError):
            self._write_index()

    # -- uploader thread ----------------------------------------------------------------

    def _upload_loop(self) -> None:
        codec = self.repo.sealer.codec()
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            if self._error is not None:
                continue  # drain after a failure
            assert isinstance(item, _OpenPack)
            try:
                self._upload(item, codec)
            except BaseException as exc:
                self._error = exc

    def _upload(self, pack: _OpenPack, codec: crypto.Codec) -> None:
        with self._written:
            while pack.pending:  # workers still encrypting into this pack
                self._written.wait()
        header = codec.seal(indexfile.encode_pack_header(pack.entries),
                            obj_type=fmt.ObjectType.PACK_HEADER)
        pack.append(header)
        pack.append(_U32.pack(len(header)))
        view = pack.view()
        pack_id = repository.object_id(view)
        name = self.repo.pack_name(pack_id)
        self.repo.backend.write(name, view, durable=False)
        view.release()
        number = self.repo.pack_number(pack_id)
        with self._lock:
            for e in pack.entries:
                loc = memindex.Location(number, e.offset, e.length, e.raw_length,
                                        int(e.blob_type))
                self.repo.index.add(e.blob_id, loc)
                if self._dedup is not self.repo.index:
                    self._dedup.add(e.blob_id, loc)
                self._inflight.discard(e.blob_id)
            self._unindexed[pack_id] = pack.entries
            self._unsynced.append(name)
            self.stats.packs_written += 1
            # Keep every returned buffer: at most queue size + 2 exist at once anyway, and a
            # recycled buffer costs no zero-filling or page faults.
            if pack.blob_type is fmt.ObjectType.DATA and len(self._spare) < 4:
                self._spare.append(pack.buffer)
            first = self._early_index and not self._index_started
            self._index_started = self._index_started or first
            due = first or len(self._unindexed) >= self._index_every
        if due:
            self._write_index()

    def _write_index(self) -> None:
        """Index the packs uploaded and not yet indexed (uploaders may call this side by side:
        each takes its own batch, and the superseded list goes with exactly one of them)."""
        with self._lock:
            packs, self._unindexed = self._unindexed, {}
            unsynced, self._unsynced = self._unsynced, []
            supersedes, self._supersedes = self._supersedes, ()
        self.repo.backend.sync(unsynced)  # packs are durable before the index that names them
        if not packs and not supersedes:
            return
        content = indexfile.IndexContent(supersedes=supersedes, packs=packs)
        index_id = self.repo.save_file_object(
            fmt.INDEX_PREFIX, fmt.ObjectType.INDEX, indexfile.encode_index(content)
        )
        with self._lock:
            self._written_index_ids.append(index_id)
            self.repo.loaded_index_ids.add(index_id)
            self.stats.index_files_written += 1
