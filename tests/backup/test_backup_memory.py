"""A namespace with 2,000 objects backs up with memory that does not grow with the object count
beyond the per-object records (summary, manifest item, index entry): objects stream through a
few list pages and are not kept.

Measured in-process with tracemalloc (Python allocations, which is where retained objects would
show), comparing a 400-object and a 2,000-object namespace backed up the same way, with list
pages of 100 so that 2,000 objects are 20 pages. The growth compared is the memory in use
when the last object has been written: what the backup keeps per object. (The highest value
while streaming also counts the list pages queued at that moment, which depends on how fast the
lists run next to the writer, so it varies with the machine's load; the pages are bounded, and
the overall peak, which includes them and the sealing of the last pack at commit, gets its own
bound.)
"""

from __future__ import annotations

import base64
import os
import tracemalloc
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from amber.backup.runner import ResourceBackup, Scope
from amber.kube.client import Client
from amber.repo import keyfile, repository
from amber.storage import local
from amber.util import progress

SUFFIX = uuid.uuid4().hex[:6]
SIZES = {f"mem-small-{SUFFIX}": 400, f"mem-big-{SUFFIX}": 2000}
#: Data per object; a retained object would cost at least this much (JSON-decoded: more).
OBJECT_BYTES = 6000
#: Allowed growth per extra object: the summary, the manifest item and the index entry.
PER_OBJECT_BUDGET = 2000


@pytest.fixture(scope="module")
def client(cluster_kubeconfig: Path) -> Iterator[Client]:
    c = Client.from_kubeconfig(cluster_kubeconfig, qps=0)
    ns_res = c.discover().find("namespaces")
    cms = c.discover().find("configmaps")
    for ns, count in SIZES.items():
        c.create(ns_res, {"metadata": {"name": ns}})

        def make(i: int, ns: str = ns) -> None:
            blob = base64.b64encode(os.urandom(OBJECT_BYTES * 3 // 4)).decode()
            c.create(cms, {"metadata": {"name": f"cm-{i:05d}", "labels": {"i": str(i)}},
                           "data": {"blob": blob}}, ns)

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(make, range(count)))
    yield c
    for ns in SIZES:
        c.delete(ns_res, ns)


def _peak(client: Client, repo_dir: Path, namespace: str) -> tuple[int, int, int]:
    """(memory in use after the last object, overall peak, objects backed up)."""
    repo = repository.Repository.init(local.LocalBackend(str(repo_dir)), "pw",
                                      kdf=keyfile.KdfParams(n=1024))
    streaming = [0]

    class Sampling(progress.Reporter):
        """Samples the memory in use each time an object is written."""

        def started(self, meter: progress.Meter) -> None:
            add = meter.add

            def sample(done: int = 0, items: int = 0) -> None:
                add(done, items)
                streaming[0] = tracemalloc.get_traced_memory()[0]

            meter.add = sample  # type: ignore[method-assign]

    backup = ResourceBackup(client, repo, page_size=100, workers=2, reporter=Sampling())
    client.discover()  # cached, so both runs measure the same work
    tracemalloc.start()
    try:
        result = backup.run(Scope(namespaces=[namespace], include_resources=["configmaps"]))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return streaming[0], peak, result.items


def test_memory_does_not_grow_with_object_count(client: Client, tmp_path: Path) -> None:
    (small_ns, small_n), (big_ns, big_n) = SIZES.items()
    _peak(client, tmp_path / "warm", small_ns)  # imports, caches, first-use allocations
    small_peak, _, small_items = _peak(client, tmp_path / "small", small_ns)
    big_peak, overall, big_items = _peak(client, tmp_path / "big", big_ns)
    assert small_items >= small_n and big_items >= big_n  # (+ kube-root-ca.crt)
    per_object = (big_peak - small_peak) / (big_n - small_n)
    print(f"in use {small_peak / 1e6:.1f} MB for {small_n}, {big_peak / 1e6:.1f} MB for {big_n}: "
          f"{per_object:.0f} bytes per extra object")
    assert per_object < PER_OBJECT_BUDGET, (
        f"{per_object:.0f} bytes per object: objects ({OBJECT_BYTES} bytes each) are retained")
    # Two open packs, one being sealed, a few list pages: bounded, whatever the object count.
    assert overall < 64 * 2**20, f"peak {overall / 2**20:.0f} MiB"
