"""Restoring a snapshot (or part of it) into a directory.

Files are laid out first under temporary names next to their final ones (created and sized, so
unwritten ranges stay holes and sparse files come back sparse), then the blobs they need are
read pack by pack with coalesced range reads and written with ``pwrite`` by a pool of threads:
each pack is read once however many files share its blobs. A file whose last blob is written
gets its metadata and is renamed over its final name in one step, so what the target held before
the restore is replaced only by a complete file, never truncated or removed first (decision
0019). A file the target already holds with the snapshot's content (verified by blob id) is
kept and only given its metadata, so running the same restore again needs space and work only
for what is missing or different. Directory metadata is applied last, deepest first, so writes
do not disturb their times.

A blob that fails authentication damages only the files that need it, and an unreadable tree
blob only the directory it lists: those are listed and left out (whatever the target held at
their names stays), everything else is restored, and the caller exits non-zero. A full target
stops the restore; the temporaries of this run are removed and the result lists what was not
restored.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import errno
import fnmatch
import os
import re
import secrets
import shutil
import stat
import threading
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from amber.repo import fsmeta, locks, memindex, repository, tree
from amber.repo import snapshot as snapshots
from amber.util import errors, progress

MAX_READ = 32 * 1024 * 1024
MAX_GAP = 1024 * 1024
SPARSE_BLOCK = 64 * 1024
#: Temporary names are ``.amber-restore-<run token>-<kind><number>``: fixed length (a long final
#: name plus a suffix could exceed NAME_MAX), hidden, and unique to one run.
TEMP_PREFIX = ".amber-restore-"
#: Any run's temporaries (8 hex digits of its token, then a file number, "s" or "l").
_TEMP_NAME = re.compile(re.escape(TEMP_PREFIX) + r"[0-9a-f]{8}-(?:[0-9]+|s|l)")
_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
_GLOB_CHARS = re.compile(r"[*?\[]")

#: pack number -> [(offset in pack, blob id, location, [(file number, offset in file)])]
_Work = dict[int, list[tuple[int, bytes, memindex.Location, list[tuple[int, int]]]]]


@dataclass
class RestoreResult:
    files: int = 0
    dirs: int = 0
    bytes: int = 0
    damaged: list[str] = field(default_factory=list)
    #: Directories whose listing (tree blob) cannot be read: (path, why). Nothing below them
    #: was restored.
    unreadable: list[tuple[str, str]] = field(default_factory=list)
    #: Set when the target filled up: the one-line reason; ``not_restored`` lists what was left.
    no_space: str = ""
    not_restored: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    #: Temporaries of an earlier, killed restore removed from the directories restored into.
    temps_removed: int = 0


@dataclass
class _Plan:
    dirs: list[tuple[str, fsmeta.FileMeta]] = field(default_factory=list)
    files: list[tuple[str, tree.TreeNode]] = field(default_factory=list)
    specials: list[tuple[str, fsmeta.FileMeta]] = field(default_factory=list)
    links: list[tuple[str, str, fsmeta.FileMeta]] = field(default_factory=list)
    #: (device, inode) -> first restored path, for hard links anywhere in the snapshot
    hard: dict[tuple[int, int], str] = field(default_factory=dict)
    unreadable: list[tuple[str, str]] = field(default_factory=list)

    def empty(self) -> bool:
        return not (self.files or self.specials or self.links or self.dirs)


class _Matcher:
    """``--include`` globs, matched against the absolute path inside the snapshot."""

    def __init__(self, patterns: Sequence[str]) -> None:
        self.patterns = ["/" + p.strip("/") if not p.startswith("*") else p for p in patterns]
        #: What every match starts with: the pattern up to its first wildcard.
        self.prefixes = [_GLOB_CHARS.split(p, maxsplit=1)[0] for p in self.patterns]

    def matches(self, path: str) -> bool:
        return any(fnmatch.fnmatchcase(path, p) for p in self.patterns)

    def may_match_below(self, path: str) -> bool:
        """Whether anything below directory ``path`` can match: if not, its tree is not read,
        which saves the reads and keeps damage elsewhere from failing a restore of intact
        directories. Conservative: a pattern that starts with a wildcard may match anywhere."""
        below = path + "/"
        return any(p.startswith(below) or below.startswith(p) for p in self.prefixes)


class Restorer:
    def __init__(self, repo: repository.Repository, *, workers: int | None = None,
                 reporter: progress.Reporter = progress.SILENT) -> None:
        self.repo = repo
        self.workers = workers or max(2, (os.cpu_count() or 2) + 1)
        self.reporter = reporter
        #: The running restore's meter: bytes in place of ``total`` (known once planned).
        self.meter = progress.Meter("restore", "restoring", progress.Unit.BYTES,
                                    counts_items=True)
        self._damaged: set[int] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._token = secrets.token_hex(4)
        self._restore_owner = os.geteuid() == 0
        self._finals: list[str] = []  # file number -> final path
        self._temps: list[str] = []  # file number -> temporary path
        self._metas: list[fsmeta.FileMeta] = []
        #: Blob writes each file still waits for; at 0 it is complete and is committed.
        self._remaining: list[int] = []
        self._committed: dict[int, list[str]] = {}  # file number -> metadata warnings
        #: Files of one blob, not created at layout: the worker that restores the blob creates
        #: the file, so creating thousands of small files is spread over the workers and
        #: overlaps the reads instead of coming first on one thread (and each is opened once).
        self._unmade: set[int] = set()

    def run(self, snap: snapshots.Snapshot, target: str, *,
            includes: Sequence[str] = ()) -> RestoreResult:
        with locks.reading(self.repo.backend), self.reporter.task(
                "restore", "restoring", progress.Unit.BYTES, counts_items=True) as self.meter:
            return self._run(tuple(snap.tree), f"snapshot {snap.short_id}", target, includes)

    def run_tree(self, root: tuple[bytes, ...], target: str, *, what: str) -> RestoreResult:
        """Restore the entries of tree ``root`` (a directory's content, not a snapshot's: a
        volume a mover fills, ``amber mover restore``) into ``target``; ``what`` names the
        tree in errors."""
        with locks.reading(self.repo.backend), self.reporter.task(
                "restore", "restoring", progress.Unit.BYTES, counts_items=True) as self.meter:
            return self._run(root, what, target, ())

    def _run(self, root: tuple[bytes, ...], what: str, target: str,
             includes: Sequence[str]) -> RestoreResult:
        target = os.path.abspath(target)
        _check_target(target)
        self.repo.load_index()
        matcher = _Matcher(includes) if includes else None
        plan = self._plan(root, what, matcher)
        if matcher is not None and plan.empty():
            _nothing_matches(what, includes, plan)
        result = RestoreResult(unreadable=plan.unreadable)
        done: set[str] = set()  # links and specials in place
        try:
            try:
                self._restore(target, plan, result, done)
            finally:
                self._remove_temps()
        except OSError as exc:
            if exc.errno not in _NO_SPACE:
                raise
            self._tally(plan, result, done)
            self._list_left(target, plan, result, done)
            return result
        self._tally(plan, result, done)
        return result

    def _restore(self, target: str, plan: _Plan, result: RestoreResult, done: set[str]) -> None:
        if os.path.isdir(target):
            result.temps_removed += _remove_stale_temps(target)
        os.makedirs(target, exist_ok=True)
        for rel, _meta in plan.dirs:
            path = target + rel
            if not os.path.isdir(path) or os.path.islink(path):
                _remove(path)
                os.makedirs(path, exist_ok=True)
            else:
                result.temps_removed += _remove_stale_temps(path)
            result.dirs += 1
        work = self._layout_files(target, plan)
        self._write_data(work)
        for rel, meta in plan.specials:
            result.warnings += self._put_special(target, rel, meta)
            done.add(rel)
        self._put_links(target, plan, done)
        for rel, meta in sorted(plan.dirs, key=lambda d: d[0].count("/"), reverse=True):
            result.warnings += fsmeta.apply_meta(target + rel, _with_atime(meta),
                                                 restore_owner=self._restore_owner)

    def _tally(self, plan: _Plan, result: RestoreResult, done: set[str]) -> None:
        """Count what is in place and name what is damaged."""
        committed = sorted(self._committed.items())
        links_done = [rel for rel, _first, _meta in plan.links if rel in done]
        result.files = len(committed) + len(links_done)
        result.bytes = sum(plan.files[i][1].meta.size for i, _w in committed)
        result.warnings[:0] = [w for _i, warnings in committed for w in warnings]
        damaged = {plan.files[i][0] for i in self._damaged}
        damaged |= {rel for rel, first, _meta in plan.links if first in damaged}
        result.damaged = sorted(damaged)

    def _list_left(self, target: str, plan: _Plan, result: RestoreResult,
                   done: set[str]) -> None:
        """After a full target: what was not restored (its old entry, if any, is unchanged)."""
        damaged = set(result.damaged)
        left = [rel for i, (rel, _node) in enumerate(plan.files)
                if i not in self._committed and rel not in damaged]
        left += [rel for rel, _first, _meta in plan.links if rel not in done | damaged]
        left += [rel for rel, meta in plan.specials
                 if rel not in done and meta.type is not fsmeta.NodeType.SOCKET]
        result.not_restored = sorted(left)
        result.no_space = (
            f"no space left on the restore target {target}: {len(left)} file(s) not restored "
            f"(listed above), {result.files} restored; the target's entries at the names not "
            "restored are unchanged; free space and run the restore again")

    # -- planning ----------------------------------------------------------------------------

    def _plan(self, root: tuple[bytes, ...], what: str, matcher: _Matcher | None) -> _Plan:
        plan = _Plan()
        try:
            nodes = tree.load(self.repo, root)
        except errors.IntegrityError as exc:
            self._note_damaged(root)
            raise errors.IntegrityError(
                f"the root directory of {what} cannot be read ({exc}); nothing "
                "can be restored from it, try another snapshot") from None
        self._walk(nodes, "", included=matcher is None, matcher=matcher, plan=plan)
        return plan

    def _walk(self, nodes: list[tree.TreeNode], rel: str, *, included: bool,
              matcher: _Matcher | None, plan: _Plan) -> bool:
        """Collect what to restore below ``rel``; return True if anything was selected."""
        hard = plan.hard
        selected_any = False
        for node in nodes:
            path = f"{rel}/{node.name}"
            inc = included or (matcher is not None and matcher.matches(path))
            meta = node.meta
            if meta.type is fsmeta.NodeType.DIR:
                if not inc and matcher is not None and not matcher.may_match_below(path):
                    continue
                children = self._load_dir(node, path, plan)
                if children is None:
                    continue
                n_before = len(plan.dirs)
                below = self._walk(children, path, included=inc, matcher=matcher, plan=plan)
                if inc or below:
                    plan.dirs.insert(n_before, (path, meta))
                    selected_any = True
                continue
            if not inc:
                continue
            selected_any = True
            if meta.type is fsmeta.NodeType.FILE:
                key = (meta.device, meta.inode)
                if meta.nlink > 1 and key in hard:
                    plan.links.append((path, hard[key], meta))
                    continue
                if meta.nlink > 1:
                    hard[key] = path
                plan.files.append((path, node))
            else:
                plan.specials.append((path, meta))
        return selected_any

    def _load_dir(self, node: tree.TreeNode, path: str,
                  plan: _Plan) -> list[tree.TreeNode] | None:
        """The listing of directory ``path``, or None (recorded) when its tree blob is damaged
        or missing: that costs the directory, not the restore."""
        try:
            return tree.load(self.repo, node.subtree)
        except errors.IntegrityError as exc:
            self._note_damaged(node.subtree)
            plan.unreadable.append((path, str(exc)))
            return None

    def _note_damaged(self, ids: Sequence[bytes]) -> None:
        """Record the tree blobs that cannot be read, as data blobs are, so the next backup of
        the directory writes its listing anew instead of deduplicating against the bad copy."""
        for blob_id in ids:
            loc = self.repo.locate(blob_id)
            if loc is None:
                continue
            try:
                self.repo.read_blob(blob_id)
            except errors.IntegrityError:
                self.repo.note_damaged(blob_id, loc)

    def _layout_files(self, target: str, plan: _Plan) -> _Work:
        """Create every file at its final size under a temporary name; group the blobs to fetch
        by pack. A file that needs no blob is complete at once."""
        by_blob: dict[bytes, list[tuple[int, int]]] = defaultdict(list)
        total = 0
        for i, (rel, node) in enumerate(plan.files):
            self._finals.append(target + rel)
            self._temps.append(_temp_path(target + rel, self._token, str(i)))
            self._metas.append(node.meta)
            locs = [self.repo.locate(blob_id) for blob_id in node.content]
            self._remaining.append(len(locs))
            total += node.meta.size
            if self._holds(target + rel, node, locs):
                self._keep_file(i)
                continue
            if len(locs) == 1 and locs[0] is not None:
                self._unmade.add(i)  # created by the worker that writes its one blob
            else:
                _make_temp(self._temps[i], node.meta.size)
            if any(loc is None for loc in locs):
                self._damaged.add(i)
                continue
            offset = 0
            for blob_id, loc in zip(node.content, locs, strict=True):
                assert loc is not None
                by_blob[blob_id].append((i, offset))
                offset += loc.raw_length
            if not locs:
                self._commit_file(i)
        self.meter.set_total(total, len(plan.files))
        by_pack: _Work = defaultdict(list)
        for blob_id, targets in by_blob.items():
            loc = self.repo.locate(blob_id)
            if loc is not None:
                by_pack[loc.pack].append((loc.offset, blob_id, loc, targets))
        return by_pack

    def _holds(self, final: str, node: tree.TreeNode,
               locs: Sequence[memindex.Location | None]) -> bool:
        """Whether the target's entry at ``final`` already is this file: a regular file whose
        bytes, read in the ranges of the node's blobs, have the node's blob ids. Then it is
        kept and only its metadata applied, so running a restore again (after freeing space,
        after an interruption) needs no space and no repository reads for what is already
        there. Type and size are compared first, so most changed files cost one ``lstat``. Kept only
        where a fresh copy would not differ in what metadata does not set: a file linked from
        elsewhere (metadata would change there too), another user's file when owners are not
        restored, or one with extended attributes the snapshot lacks (an ACL, say) is
        rewritten."""
        if any(loc is None for loc in locs):
            return False
        meta = node.meta
        try:
            # Never open what is not a regular file: opening a device can act on it.
            st = os.lstat(final)
            if not stat.S_ISREG(st.st_mode) or st.st_size != meta.size:
                return False
            fd = os.open(final, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            return False
        try:
            st = os.fstat(fd)  # what was opened, should the name have changed meanwhile
            if (not stat.S_ISREG(st.st_mode) or st.st_size != meta.size
                    or (st.st_nlink > 1 and meta.nlink <= 1)
                    or (not self._restore_owner and st.st_uid != os.geteuid())
                    or not _xattrs_within(fd, meta)):
                return False
            for blob_id, loc in zip(node.content, locs, strict=True):
                assert loc is not None
                # A short read (the file is shrinking under us) is a mismatch: rewritten.
                data = os.read(fd, loc.raw_length)
                if len(data) != loc.raw_length or self.repo.sealer.blob_id(data) != blob_id:
                    return False
            return os.read(fd, 1) == b""
        finally:
            os.close(fd)

    def _keep_file(self, i: int) -> None:
        """A file already in place (``_holds``) takes the snapshot's metadata where it is."""
        warnings = fsmeta.apply_meta(self._finals[i], _with_atime(self._metas[i]),
                                     restore_owner=self._restore_owner)
        self._committed[i] = warnings
        self._remaining[i] = 0
        self.meter.add(self._metas[i].size, items=1)

    # -- data ----------------------------------------------------------------------------------

    def _write_data(self, work: _Work) -> None:
        with concurrent.futures.ThreadPoolExecutor(max_workers=self.workers,
                                                   thread_name_prefix="amber-restore") as pool:
            futures = [pool.submit(self._restore_pack, pack, sorted(items))
                       for pack, items in work.items()]
            try:
                for f in futures:
                    f.result()
            except BaseException:
                self._stop.set()
                for f in futures:
                    f.cancel()
                raise

    def _restore_pack(self, pack: int,
                      items: list[tuple[int, bytes, memindex.Location, list[tuple[int, int]]]]
                      ) -> None:
        try:
            self._read_pack(pack, items)
        except BaseException:
            self._stop.set()  # a full target or an error: the other workers stop too
            raise

    def _read_pack(self, pack: int,
                   items: list[tuple[int, bytes, memindex.Location, list[tuple[int, int]]]]
                   ) -> None:
        name = self.repo.pack_name(self.repo.pack_ids[pack])
        start = 0
        while start < len(items) and not self._stop.is_set():
            end = start + 1
            first_loc = items[start][2]
            span_end = first_loc.offset + first_loc.length
            while end < len(items):
                loc = items[end][2]
                too_far = loc.offset - span_end > MAX_GAP
                if too_far or loc.offset + loc.length - first_loc.offset > MAX_READ:
                    break
                span_end = max(span_end, loc.offset + loc.length)
                end += 1
            try:
                buf = memoryview(self.repo.backend.read_range(
                    name, first_loc.offset, span_end - first_loc.offset))
            except FileNotFoundError:
                self.repo.note_missing_pack(self.repo.pack_ids[pack])  # warns: "is missing"
                buf = memoryview(b"")
            for _offset, blob_id, loc, targets in items[start:end]:
                rel = loc.offset - first_loc.offset
                self._restore_blob(blob_id, loc, buf[rel : rel + loc.length], targets)
            start = end

    def _restore_blob(self, blob_id: bytes, loc: memindex.Location, envelope: memoryview,
                      targets: list[tuple[int, int]]) -> None:
        try:
            if len(envelope) != loc.length:
                raise errors.IntegrityError(f"blob {blob_id.hex()[:16]} is truncated")
            data = self.repo.open_blob(envelope, blob_id, loc)
        except errors.IntegrityError:
            self.repo.note_damaged(blob_id, loc)  # so the next backup stores it anew
            with self._lock:
                self._damaged.update(i for i, _ in targets)
            return
        runs = _nonzero_runs(data)
        for file_index, offset in targets:
            if file_index in self._unmade:  # its only blob: created, written, committed here
                fd = _make_temp(self._temps[file_index], self._metas[file_index].size, keep=True)
            elif runs:
                fd = os.open(self._temps[file_index], os.O_WRONLY | os.O_CLOEXEC)
            else:
                fd = -1
            if fd >= 0:
                try:
                    view = memoryview(data)
                    for start, end in runs:
                        _pwrite_all(fd, view[start:end], offset + start)
                finally:
                    os.close(fd)
            self.meter.add(len(data))
            with self._lock:
                self._remaining[file_index] -= 1
                complete = self._remaining[file_index] == 0
            if complete:
                self._commit_file(file_index)

    # -- putting entries in place --------------------------------------------------------------

    def _commit_file(self, i: int) -> None:
        """A complete file takes its metadata and its name (replacing whatever was there)."""
        warnings = _commit(self._temps[i], self._finals[i], self._metas[i], self._restore_owner)
        with self._lock:
            self._committed[i] = warnings
        self.meter.add(items=1)

    def _remove_temps(self) -> None:
        """Remove the temporaries of files this run did not complete (damaged, interrupted,
        no space): the target's own files at those names were never touched."""
        for i in range(len(self._finals)):
            if i not in self._committed:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self._temps[i])

    def _put_special(self, target: str, rel: str, meta: fsmeta.FileMeta) -> list[str]:
        """Symlinks, FIFOs and devices, created aside and renamed into place like files.
        Sockets are not recreated (fsmeta says why); the target's entry stays."""
        final = target + rel
        temp = _temp_path(final, self._token, "s")
        if meta.type is fsmeta.NodeType.SOCKET:  # nothing at temp: the "not recreated" warning
            return _renamed(fsmeta.apply_meta(temp, meta), temp, final)
        try:
            fsmeta.create_special(temp, meta)
            return _commit(temp, final, meta, self._restore_owner)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)
            raise

    def _put_links(self, target: str, plan: _Plan, done: set[str]) -> None:
        """Further names of hard-linked files whose first name was restored."""
        restored = {plan.files[i][0] for i in self._committed}
        for rel, first_rel, _meta in plan.links:
            if first_rel not in restored:
                continue
            final = target + rel
            if _same_inode(target + first_rel, final):  # kept from an earlier restore
                done.add(rel)
                continue
            temp = _temp_path(final, self._token, "l")
            try:
                os.link(target + first_rel, temp)
                _replace(temp, final)
            except BaseException:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(temp)
                raise
            done.add(rel)


def _nothing_matches(what: str, includes: Sequence[str], plan: _Plan) -> None:
    if plan.unreadable:
        paths = ", ".join(path for path, _why in plan.unreadable)
        raise errors.IntegrityError(
            f"nothing readable in {what} matches {', '.join(includes)}; "
            f"these directories cannot be read (damaged): {paths}")
    raise errors.NotFoundError(
        f"nothing in {what} matches {', '.join(includes)}")


def _check_target(target: str) -> None:
    """A TARGET that cannot be a directory is a usage error, said before any work."""
    try:
        st = os.stat(target)
    except FileNotFoundError:
        return  # created
    except NotADirectoryError:
        raise errors.UsageError(f"restore target {target}: part of the path is a file, not a "
                                "directory; give a directory (it is created if missing)") from None
    if not stat.S_ISDIR(st.st_mode):
        kind = "a file" if stat.S_ISREG(st.st_mode) else "not a directory"
        raise errors.UsageError(f"restore target {target} is {kind}; give a directory (it is "
                                "created if missing)")


def _remove_stale_temps(directory: str) -> int:
    """Remove the temporaries a killed restore (SIGKILL, power loss) left in a directory this
    one restores into; return how many. The names are Amber's own (``_TEMP_NAME``, matched
    exactly), so nothing of the user's goes; the cost is one directory listing per directory
    that already existed."""
    removed = 0
    with os.scandir(directory) as entries:
        for entry in entries:
            if _TEMP_NAME.fullmatch(entry.name) and not entry.is_dir(follow_symlinks=False):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)
                    removed += 1
    return removed


def _make_temp(temp: str, size: int, *, keep: bool = False) -> int:
    """Create a file's temporary (never an existing entry: O_EXCL) at its final size, so the
    ranges not written stay holes. Returns the open descriptor when ``keep``, else -1."""
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        os.ftruncate(fd, size)
    except BaseException:
        os.close(fd)
        raise
    if keep:
        return fd
    os.close(fd)
    return -1


def _temp_path(final: str, token: str, tag: str) -> str:
    return os.path.join(os.path.dirname(final), f"{TEMP_PREFIX}{token}-{tag}")


def _commit(temp: str, final: str, meta: fsmeta.FileMeta, restore_owner: bool) -> list[str]:
    """Give the complete entry at ``temp`` its metadata, then its final name in one rename: the
    name shows the old entry or the complete new one, never a partial one. Returns the
    metadata warnings, naming the final path."""
    warnings = fsmeta.apply_meta(temp, _with_atime(meta), restore_owner=restore_owner)
    _replace(temp, final)
    return _renamed(warnings, temp, final)


def _renamed(warnings: list[str], temp: str, final: str) -> list[str]:
    """Warnings about ``temp`` as the user must read them: about ``final``."""
    shown_temp, shown_final = repr(os.fsdecode(temp)), repr(os.fsdecode(final))
    return [w.replace(shown_temp, shown_final) for w in warnings]


def _replace(temp: str, final: str) -> None:
    """Rename over ``final``; a directory there (the snapshot has a file) goes first: the
    snapshot wins, but only once its entry is complete."""
    try:
        os.rename(temp, final)
    except IsADirectoryError:
        shutil.rmtree(final)
        os.rename(temp, final)


def _same_inode(a: str, b: str) -> bool:
    """Whether ``b`` exists and is a hard link to ``a``: renaming a link over its own inode
    would do nothing and leave the temporary name behind."""
    try:
        sa, sb = os.lstat(a), os.lstat(b)
    except FileNotFoundError:
        return False
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


def _pwrite_all(fd: int, data: memoryview, offset: int) -> None:
    """``pwrite`` until every byte is written: a filling file system writes what fits and
    says so only in the count (the next call then fails with ENOSPC)."""
    while data:
        n = os.pwrite(fd, data, offset)
        data, offset = data[n:], offset + n


def _nonzero_runs(data: bytes) -> list[tuple[int, int]]:
    """Byte ranges of ``data`` to write, leaving out zero blocks (they stay holes).

    Files are created at their final size, so a range that is not written reads back as zeros
    without taking space. The first byte of a block rules most blocks in quickly; only blocks
    that start with zero are counted in full.
    """
    n = len(data)
    runs: list[tuple[int, int]] = []
    start = -1
    for pos in range(0, n, SPARSE_BLOCK):
        end = min(pos + SPARSE_BLOCK, n)
        zero = data[pos] == 0 and data.count(0, pos, end) == end - pos
        if zero:
            if start >= 0:
                runs.append((start, pos))
                start = -1
        elif start < 0:
            start = pos
    if start >= 0:
        runs.append((start, n))
    return runs


def _xattrs_within(fd: int, meta: fsmeta.FileMeta) -> bool:
    """Whether the open file has no extended attribute the snapshot's entry lacks (the kernel's
    own SELinux label aside: a fresh file gets one too)."""
    try:
        names = os.listxattr(fd)
    except OSError:
        return True  # no xattr support: nothing there
    wanted = {attr for attr, _value in meta.xattrs}
    return all(name in wanted or name == "security.selinux" for name in names)


def _remove(path: str) -> None:
    """Clear the way for a restored directory: whatever is at ``path`` goes (the snapshot wins)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(path)
    else:
        os.unlink(path)


def _with_atime(meta: fsmeta.FileMeta) -> fsmeta.FileMeta:
    """Access times are not stored (format doc §7); restore sets them to the modification time."""
    return meta if meta.atime_ns else dataclasses.replace(meta, atime_ns=meta.mtime_ns)
