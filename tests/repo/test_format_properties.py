"""Property tests of the repository byte format, at the library level (no CLI).

Each section checks one codec of docs/internals/repository.md against arbitrary input:

* the content-defined chunker (pyfastcdc with a repository-derived seed);
* the envelope (section 4): round trip, tamper detection, compression choice;
* pack headers and index files (sections 5-6): round trip, truncation;
* trees (section 7): round trip, determinism, canonical form;
* a whole repository: backup then restore of a generated directory tree;
* key files (section 3): wrong passphrase and repository binding.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import random
import tempfile

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from pyfastcdc import FastCDC

from amber.repo import (
    archiver,
    checker,
    crypto,
    fsmeta,
    indexfile,
    keyfile,
    repository,
    restorer,
    tree,
)
from amber.repo import format as fmt
from amber.repo.fsmeta import FileMeta, NodeType
from amber.storage import local
from amber.util import errors

TEST_KDF = keyfile.KdfParams(n=1024)

ids32 = st.binary(min_size=32, max_size=32)
masters = st.binary(min_size=32, max_size=32)


def _random_bytes(seed: int, size: int) -> bytes:
    """Incompressible bytes without making hypothesis generate (and shrink) megabytes."""
    return random.Random(seed).randbytes(size)


# --------------------------------------------------------------------------- #
# 1. Chunking
# --------------------------------------------------------------------------- #

#: (avg, min, max) shaped like the repository default (min = avg/4, max = avg*4), but small so
#: that a few MiB of input give hundreds of chunks.
chunker_params = st.sampled_from([256, 512, 1024, 2048, 4096, 8192]).map(
    lambda avg: (avg, max(64, avg // 4), max(1024, avg * 4)))


@st.composite
def segment(draw: st.DrawFn, max_len: int = 256 * 1024) -> bytes:
    kind = draw(st.sampled_from(["random", "zeros", "pattern", "literal"]))
    if kind == "random":
        return _random_bytes(draw(st.integers(0, 2**32)), draw(st.integers(1, max_len)))
    if kind == "zeros":
        return bytes(draw(st.integers(1, max_len)))
    if kind == "pattern":
        unit = draw(st.binary(min_size=1, max_size=64))
        return unit * (draw(st.integers(1, max_len)) // len(unit) + 1)
    return draw(st.binary(min_size=1, max_size=512))


def _chunker(params: tuple[int, int, int], master: bytes) -> FastCDC:
    avg, lo, hi = params
    # Exactly what Repository.new_chunker does, with the seed derived from a master secret.
    return FastCDC(avg, min_size=lo, max_size=hi,
                   seed=crypto.MasterKeys.derive(master).chunker_seed)


CHUNK_SETTINGS = settings(max_examples=40, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow,
                                                 HealthCheck.data_too_large])


@CHUNK_SETTINGS
@given(params=chunker_params, master=masters,
       segments=st.lists(segment(), min_size=0, max_size=12))
def test_chunks_reassemble_and_respect_size_limits(
        params: tuple[int, int, int], master: bytes, segments: list[bytes]) -> None:
    data = b"".join(segments)
    __avg, lo, hi = params
    chunker = _chunker(params, master)
    chunks = list(chunker.cut_buf(data))
    assert b"".join(bytes(c.data) for c in chunks) == data
    offset = 0
    for i, c in enumerate(chunks):
        assert c.offset == offset
        assert c.length == len(c.data)
        offset += c.length
        assert 1 <= c.length <= hi
        if i < len(chunks) - 1:
            assert c.length >= lo, f"chunk {i} of {len(chunks)} is {c.length} < min {lo}"
    assert offset == len(data)
    # The archiver cuts big files with cut_stream and small ones with cut_buf: same chunks.
    streamed = [bytes(c.data) for c in _chunker(params, master).cut_stream(io.BytesIO(data))]
    assert streamed == [bytes(c.data) for c in chunks]


#: Bytes of random data after which two chunk sequences over the same content must have met at a
#: common cut point. With max = 4 x avg that is ~100 chunks; measured resynchronisation takes at
#: most ~10 chunks in thousands of trials, so this bound is loose, but a position-based chunker
#: (fixed-size blocks) fails it for every insertion that is not a multiple of the block size.
RESYNC_MAX_SIZES = 32


@CHUNK_SETTINGS
@given(params=chunker_params, master=masters,
       before=st.lists(segment(max_len=64 * 1024), max_size=4),
       after=st.lists(segment(), max_size=4),
       random_seed=st.integers(0, 2**32), extra_random=st.integers(0, 512 * 1024),
       insert=st.one_of(st.binary(min_size=1, max_size=4096),
                        st.tuples(st.integers(0, 2**32), st.integers(1, 64 * 1024)).map(
                            lambda t: _random_bytes(*t))))
def test_inserting_at_the_front_changes_only_chunks_near_the_front(
        params: tuple[int, int, int], master: bytes, before: list[bytes], after: list[bytes],
        random_seed: int, extra_random: int, insert: bytes) -> None:
    hi = params[2]
    # Content-defined boundaries need content: guarantee one long random stretch, anywhere after
    # arbitrary zero runs, repeated patterns and literals.
    long_random = _random_bytes(random_seed, RESYNC_MAX_SIZES * hi + extra_random)
    head = b"".join(before)
    data = head + long_random + b"".join(after)
    chunker = _chunker(params, master)
    old = [bytes(c.data) for c in chunker.cut_buf(data)]
    new = [bytes(c.data) for c in chunker.cut_buf(insert + data)]
    common = 0
    while common < min(len(old), len(new)) and old[-1 - common] == new[-1 - common]:
        common += 1
    changed_bytes = sum(len(c) for c in old[: len(old) - common])
    # Every chunk boundary after the first resynchronisation point is shared, so all but the
    # chunks before (and just into) the long random stretch must be unchanged.
    assert changed_bytes <= len(head) + RESYNC_MAX_SIZES * hi, (
        f"{len(old) - common} of {len(old)} chunks changed ({changed_bytes} bytes) after "
        f"inserting {len(insert)} bytes at the front")
    assert common >= 1
    if not head:
        # Random data from the start: only the first few chunks differ (measured: at most ~10).
        assert len(old) - common <= 24, f"{len(old) - common} of {len(old)} chunks changed"


# --------------------------------------------------------------------------- #
# 2. Envelope
# --------------------------------------------------------------------------- #

suites = st.sampled_from(list(fmt.Suite))
obj_types = st.sampled_from(list(fmt.ObjectType))
plaintexts = st.one_of(
    st.binary(max_size=4096),
    st.tuples(st.integers(0, 2**32), st.integers(0, 200_000)).map(lambda t: _random_bytes(*t)),
    st.tuples(st.binary(min_size=1, max_size=16), st.integers(1, 5000)).map(
        lambda t: t[0] * t[1]),
)


def _codec(master: bytes, suite: fmt.Suite) -> crypto.Codec:
    return crypto.Sealer(crypto.MasterKeys.derive(master), suite,
                         fmt.DEFAULT_COMPRESSION_LEVEL).codec()


ENVELOPE_SETTINGS = settings(max_examples=60, deadline=None,
                             suppress_health_check=[HealthCheck.too_slow])


@ENVELOPE_SETTINGS
@given(master=masters, suite=suites, plain=plaintexts, obj_type=obj_types, obj_id=ids32)
def test_envelope_round_trip(master: bytes, suite: fmt.Suite, plain: bytes,
                             obj_type: fmt.ObjectType, obj_id: bytes) -> None:
    codec = _codec(master, suite)
    env = codec.seal(plain, obj_type=obj_type, obj_id=obj_id)
    assert env[0] == suite
    assert env[1] in (fmt.Compression.NONE, fmt.Compression.ZSTD)
    if env[1] == fmt.Compression.NONE:
        assert len(env) == len(plain) + fmt.ENVELOPE_OVERHEAD
    else:
        assert len(env) < len(plain) + fmt.ENVELOPE_OVERHEAD
    assert codec.open(env, obj_type=obj_type, obj_id=obj_id) == plain
    assert codec.open(env, obj_type=obj_type, obj_id=obj_id, raw_length=len(plain)) == plain
    # Readers accept either suite whatever the repository writes (the suite byte says which).
    other = _codec(master, next(s for s in fmt.Suite if s != suite))
    assert other.open(env, obj_type=obj_type, obj_id=obj_id) == plain


@ENVELOPE_SETTINGS
@given(master=masters, suite=suites, plain=plaintexts, obj_type=obj_types, obj_id=ids32,
       data=st.data())
def test_envelope_any_single_byte_change_is_detected(
        master: bytes, suite: fmt.Suite, plain: bytes, obj_type: fmt.ObjectType, obj_id: bytes,
        data: st.DataObject) -> None:
    codec = _codec(master, suite)
    env = bytearray(codec.seal(plain, obj_type=obj_type, obj_id=obj_id))
    pos = data.draw(st.integers(0, len(env) - 1), label="position")
    env[pos] ^= data.draw(st.integers(1, 255), label="xor")
    with pytest.raises(errors.IntegrityError):
        codec.open(bytes(env), obj_type=obj_type, obj_id=obj_id)


@ENVELOPE_SETTINGS
@given(master=masters, suite=suites, plain=plaintexts, obj_type=obj_types, obj_id=ids32,
       data=st.data())
def test_envelope_truncation_is_detected(
        master: bytes, suite: fmt.Suite, plain: bytes, obj_type: fmt.ObjectType, obj_id: bytes,
        data: st.DataObject) -> None:
    codec = _codec(master, suite)
    env = codec.seal(plain, obj_type=obj_type, obj_id=obj_id)
    cut = data.draw(st.integers(0, len(env) - 1), label="length")
    with pytest.raises(errors.IntegrityError):
        codec.open(env[:cut], obj_type=obj_type, obj_id=obj_id)


@ENVELOPE_SETTINGS
@given(master=masters, suite=suites, plain=plaintexts, obj_type=obj_types, obj_id=ids32,
       data=st.data())
def test_envelope_is_bound_to_type_id_and_key(
        master: bytes, suite: fmt.Suite, plain: bytes, obj_type: fmt.ObjectType, obj_id: bytes,
        data: st.DataObject) -> None:
    codec = _codec(master, suite)
    env = codec.seal(plain, obj_type=obj_type, obj_id=obj_id)
    other_type = data.draw(st.sampled_from([t for t in fmt.ObjectType if t != obj_type]))
    with pytest.raises(errors.IntegrityError):
        codec.open(env, obj_type=other_type, obj_id=obj_id)
    other_id = data.draw(ids32.filter(lambda i: i != obj_id), label="other id")
    with pytest.raises(errors.IntegrityError):
        codec.open(env, obj_type=obj_type, obj_id=other_id)
    other_master = data.draw(masters.filter(lambda m: m != master), label="other master")
    with pytest.raises(errors.IntegrityError):
        _codec(other_master, suite).open(env, obj_type=obj_type, obj_id=obj_id)


@ENVELOPE_SETTINGS
@given(master=masters, suite=suites, obj_type=obj_types, obj_id=ids32,
       unit=st.binary(min_size=1, max_size=16), repeat=st.integers(0, 5000),
       seed=st.integers(0, 2**32), size=st.integers(0, 100_000))
def test_envelope_compresses_only_what_shrinks(
        master: bytes, suite: fmt.Suite, obj_type: fmt.ObjectType, obj_id: bytes, unit: bytes,
        repeat: int, seed: int, size: int) -> None:
    codec = _codec(master, suite)
    compressible = unit * (repeat + 256 // len(unit) + 1)  # > 256 bytes of a short pattern
    env = codec.seal(compressible, obj_type=obj_type, obj_id=obj_id)
    assert env[1] == fmt.Compression.ZSTD
    assert len(env) < len(compressible)
    assert codec.open(env, obj_type=obj_type, obj_id=obj_id) == compressible
    noise = _random_bytes(seed, size)
    env = codec.seal(noise, obj_type=obj_type, obj_id=obj_id)
    assert env[1] == fmt.Compression.NONE
    assert len(env) == size + fmt.ENVELOPE_OVERHEAD
    assert codec.open(env, obj_type=obj_type, obj_id=obj_id) == noise


# --------------------------------------------------------------------------- #
# 3. Pack headers and index files
# --------------------------------------------------------------------------- #

u32 = st.integers(0, 2**32 - 1)
pack_entries = st.builds(indexfile.PackEntry, blob_type=st.sampled_from(fmt.BLOB_TYPES),
                         blob_id=ids32, offset=u32, length=u32, raw_length=u32)
index_contents = st.builds(
    indexfile.IndexContent,
    supersedes=st.lists(ids32, max_size=5).map(tuple),
    packs=st.dictionaries(ids32, st.lists(pack_entries, max_size=6), max_size=4),
)
CODEC_SETTINGS = settings(max_examples=100, deadline=None)


@CODEC_SETTINGS
@given(entries=st.lists(pack_entries, max_size=20))
def test_pack_header_round_trip_and_truncation(entries: list[indexfile.PackEntry]) -> None:
    data = indexfile.encode_pack_header(entries)
    assert len(data) == 4 + fmt.ENTRY_SIZE * len(entries)
    assert indexfile.decode_pack_header(data) == entries
    for cut in range(len(data)):
        # The header carries no count (its envelope authenticates it): a cut on an entry boundary
        # is a shorter valid header; any other cut must be an IntegrityError, nothing else.
        if cut >= 4 and (cut - 4) % fmt.ENTRY_SIZE == 0:
            assert indexfile.decode_pack_header(data[:cut]) == entries[
                : (cut - 4) // fmt.ENTRY_SIZE]
        else:
            with pytest.raises(errors.IntegrityError):
                indexfile.decode_pack_header(data[:cut])


@CODEC_SETTINGS
@given(content=index_contents)
def test_index_file_round_trip_and_truncation(content: indexfile.IndexContent) -> None:
    data = indexfile.encode_index(content)
    assert indexfile.decode_index(data) == content
    for cut in range(len(data)):
        with pytest.raises(errors.IntegrityError):
            indexfile.decode_index(data[:cut])
    with pytest.raises(errors.IntegrityError):
        indexfile.decode_index(data + b"\0")


@CODEC_SETTINGS
@given(entries=st.lists(pack_entries, min_size=1, max_size=5), data=st.data())
def test_unknown_blob_type_byte_is_an_integrity_error(
        entries: list[indexfile.PackEntry], data: st.DataObject) -> None:
    raw = bytearray(indexfile.encode_pack_header(entries))
    which = data.draw(st.integers(0, len(entries) - 1))
    raw[4 + which * fmt.ENTRY_SIZE] = data.draw(
        st.integers(0, 255).filter(lambda b: b not in fmt.BLOB_TYPES))
    with pytest.raises(errors.IntegrityError):
        indexfile.decode_pack_header(bytes(raw))


# --------------------------------------------------------------------------- #
# 4. Trees
# --------------------------------------------------------------------------- #

#: File-system text: ordinary text, or arbitrary bytes decoded the way os.listdir does
#: (surrogateescape), which is what every name, link target and xattr name is.
fs_text = st.one_of(
    st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=24),
    st.binary(max_size=24).map(os.fsdecode),
)
u64 = st.integers(0, 2**64 - 1)
times_ns = st.integers(-(2**62), 2**62)


@st.composite
def file_metas(draw: st.DrawFn) -> FileMeta:
    xattr_map = draw(st.dictionaries(fs_text.filter(bool), st.binary(max_size=40), max_size=3))
    return FileMeta(
        name=draw(fs_text), type=draw(st.sampled_from(list(NodeType))),
        mode=draw(st.integers(0, 0o7777)), uid=draw(u32), gid=draw(u32),
        user=draw(st.none() | fs_text), group=draw(st.none() | fs_text),
        mtime_ns=draw(times_ns), ctime_ns=draw(times_ns), atime_ns=draw(times_ns),
        size=draw(u64), inode=draw(u64), device=draw(u64), nlink=draw(u32), rdev=draw(u64),
        link_target=draw(st.none() | fs_text),
        xattrs=tuple(sorted(xattr_map.items())),
    )


@st.composite
def tree_nodes(draw: st.DrawFn) -> tree.TreeNode:
    meta = draw(file_metas())
    blob_ids = st.lists(ids32, max_size=4).map(tuple)
    return tree.TreeNode(
        meta=meta,
        content=draw(blob_ids) if meta.type is NodeType.FILE else (),
        subtree=draw(blob_ids) if meta.type is NodeType.DIR else (),
    )


node_lists = st.lists(tree_nodes(), max_size=12, unique_by=lambda n: n.meta.name)
TREE_SETTINGS = settings(max_examples=150, deadline=None)


@TREE_SETTINGS
@given(nodes=node_lists)
def test_tree_round_trip_drops_only_atime(nodes: list[tree.TreeNode]) -> None:
    decoded = tree.decode(tree.encode(nodes))
    expected = [dataclasses.replace(n, meta=dataclasses.replace(n.meta, atime_ns=0))
                for n in sorted(nodes, key=lambda n: n.meta.name)]
    assert decoded == expected
    # Names come back as the same bytes on disk.
    assert [os.fsencode(n.name) for n in decoded] == [os.fsencode(n.name) for n in expected]


@TREE_SETTINGS
@given(nodes=node_lists, data=st.data())
def test_tree_encoding_is_deterministic_and_canonical(
        nodes: list[tree.TreeNode], data: st.DataObject) -> None:
    encoded = tree.encode(nodes)
    shuffled = data.draw(st.permutations(nodes), label="order")
    assert tree.encode(shuffled) == encoded
    new_atimes = [dataclasses.replace(n, meta=dataclasses.replace(
        n.meta, atime_ns=data.draw(times_ns, label="atime"))) for n in nodes]
    assert tree.encode(new_atimes) == encoded
    # Canonical JSON: UTF-8, keys sorted, no whitespace, nodes sorted by name (code points).
    doc = json.loads(encoded.decode("utf-8"))
    assert json.dumps(doc, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False).encode("utf-8") == encoded
    names = [fsmeta.from_dict(d).name for d in doc["nodes"]]
    assert names == sorted(names)


# --------------------------------------------------------------------------- #
# 5. A whole repository: backup and restore at the library level
# --------------------------------------------------------------------------- #

entry_names = st.binary(min_size=1, max_size=16).map(
    lambda b: b.replace(b"/", b"_").replace(b"\0", b"_")).filter(lambda b: b not in (b".", b".."))
file_contents = st.one_of(
    st.just(b""),
    st.binary(max_size=3000),
    st.tuples(st.integers(0, 2**32), st.integers(0, 700_000)).map(lambda t: _random_bytes(*t)),
    st.integers(1, 600_000).map(bytes),  # zeros: restored as holes, must still read back
    st.tuples(st.binary(min_size=1, max_size=8), st.integers(1, 50_000)).map(
        lambda t: t[0] * t[1]),
)
dir_trees = st.recursive(
    file_contents,
    lambda children: st.dictionaries(entry_names, children, max_size=5),
    max_leaves=12,
)
root_trees = st.dictionaries(entry_names, dir_trees, max_size=6)

Tree = dict[bytes, "bytes | Tree"]


def _write(root: bytes, layout: Tree) -> None:
    for name, value in layout.items():
        path = os.path.join(root, name)
        if isinstance(value, dict):
            os.mkdir(path)
            _write(path, value)
        else:
            with open(path, "wb") as f:
                f.write(value)


def _read(root: bytes) -> Tree:
    out: Tree = {}
    for name in os.listdir(root):
        path = os.path.join(root, name)
        if os.path.isdir(path) and not os.path.islink(path):
            out[name] = _read(path)
        else:
            with open(path, "rb") as f:
                out[name] = f.read()
    return out


def _first_file(layout: Tree, prefix: bytes = b"") -> bytes | None:
    for name, value in sorted(layout.items()):
        path = os.path.join(prefix, name) if prefix else name
        found = _first_file(value, path) if isinstance(value, dict) else path
        if found is not None:
            return found
    return None


@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(layout=root_trees, cipher=st.sampled_from(sorted(fmt.SUITE_NAMES)))
def test_backup_then_restore_reproduces_every_file(layout: Tree, cipher: str) -> None:
    with tempfile.TemporaryDirectory(prefix="amber-prop-") as tmp:
        src = os.path.join(tmp, "src")
        os.mkdir(src)
        _write(os.fsencode(src), layout)
        repo = repository.Repository.init(local.LocalBackend(os.path.join(tmp, "repo")), "pw",
                                          cipher=cipher, kdf=TEST_KDF)
        snap = archiver.Archiver(repo).run([src])
        assert not snap.errors

        # A second backup after a change goes through the files cache (the parent snapshot).
        changed = _first_file(layout)
        if changed is not None:
            with open(os.path.join(os.fsencode(src), changed), "ab") as f:
                f.write(b"appended")
        after = _read(os.fsencode(src))
        snap2 = archiver.Archiver(repo).run([src])
        assert snap2.parent == snap.id

        reopened = repository.Repository.open(local.LocalBackend(os.path.join(tmp, "repo")), "pw")
        for n, (s, expected) in enumerate([(snap, layout), (snap2, after)]):
            target = os.path.join(tmp, f"out{n}")
            restorer.Restorer(reopened).run(reopened.load_snapshot(s.id), target)
            restored_src = os.path.join(target, src.lstrip("/"))
            assert _read(os.fsencode(restored_src)) == expected
        report = checker.Checker(reopened).run(read_data=True)
        assert report.ok, report.errors


# --------------------------------------------------------------------------- #
# 6. Key files
# --------------------------------------------------------------------------- #

passphrases = st.text(min_size=1, max_size=40)
repo_ids = st.binary(min_size=16, max_size=16)


@settings(max_examples=30, deadline=None)
@given(master=masters, right=passphrases, wrong=passphrases, repo_id=repo_ids,
       other_id=repo_ids)
def test_keyfile_opens_only_with_its_passphrase_and_repository(
        master: bytes, right: str, wrong: str, repo_id: bytes, other_id: bytes) -> None:
    assume(right != wrong and repo_id != other_id)
    kf = keyfile.create(master, right, repo_id, TEST_KDF)
    assert keyfile.unwrap(kf, right, repo_id) == master
    assert keyfile.unwrap(kf, wrong, repo_id) is None
    assert keyfile.unwrap(kf, right, other_id) is None


@pytest.mark.parametrize("damage", [
    pytest.param({"n": 1000}, id="n-not-power-of-two"),
    pytest.param({"r": 0}, id="r-zero"),
    pytest.param({"p": -1}, id="p-negative"),
    pytest.param({"n": 2**62}, id="n-huge"),
])
def test_keyfile_with_damaged_kdf_parameters_is_an_integrity_error(
        damage: dict[str, int]) -> None:
    repo_id = bytes(16)
    doc = json.loads(keyfile.create(bytes(32), "pw", repo_id, TEST_KDF))
    doc["kdf"].update(damage)
    with pytest.raises(errors.IntegrityError):
        keyfile.unwrap(json.dumps(doc).encode(), "pw", repo_id)


def test_keyfile_of_another_shape_is_an_integrity_error() -> None:
    for bad in (b"", b"[]", b"{}", b"null", b"not json", b'{"kdf": 1, "wrap": 2}'):
        with pytest.raises(errors.IntegrityError):
            keyfile.unwrap(bad, "pw", bytes(16))
