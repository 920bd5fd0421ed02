"""Run one tool invocation and measure it: wall time, exit status, peak RSS.

``repo_bench.py`` runs this file as a small separate process for every timed phase
(``python -I -S bench/measure.py`` with a JSON spec on stdin, a JSON result on stdout)
instead of spawning the tool from the benchmark process itself. The reason is a Linux detail:
a child's ``ru_maxrss`` is never below the memory high-water mark of the address space it was
spawned from, because the kernel folds that address space's peak into the child's at ``exec``
(vfork and posix_spawn share the parent's memory until then; fork copies it). Spawned from the
benchmark process (numpy, hash buffers: 70+ MiB) every tool would report at least that much,
and a ``/bin/true`` would "use" hundreds of MiB. Spawned from this launcher the floor is the
launcher's own ~12 MiB; it is reported as ``rss_floor_kib`` so nobody mistakes it for a peak.

Only the standard library is imported, to keep that floor low. The tool itself is still run
directly (``subprocess.Popen``, no shell) and reaped with ``os.wait4``, so the RSS is its own.

Given a JSON *list* of specs instead of one, it runs them all at once (a producer and the
consumer reading its named pipe, as data_bench.py does) and returns a ``GroupResult``: the wall
time from the first spawn to the last reap, and each process's own result (``seconds`` from the
common start to its own reap).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TypedDict


class Spec(TypedDict):
    """What to run: argv without a shell, its environment, cwd and where its output goes."""

    argv: list[str]
    env: dict[str, str]
    cwd: str | None
    stdout: str
    stderr: str
    timeout: float


class Result(TypedDict):
    """What was measured. ``error`` is set when the tool could not be started at all."""

    seconds: float
    #: User plus system CPU seconds of the tool and the children it reaped (``wait4`` rusage).
    cpu_seconds: float
    returncode: int
    peak_rss_kib: int
    tree_rss_kib: int
    rss_floor_kib: int
    timed_out: bool
    error: str | None


class TreeRssSampler(threading.Thread):
    """Samples the summed RSS of a process and all its descendants until stopped.

    Complements ``ru_maxrss`` (the largest single process): a tool that forks workers could
    stay under a memory target per process while using far more in total.
    """

    def __init__(self, pid: int, interval: float = 0.1) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.interval = interval
        self.peak_kib = 0
        self._stop_event = threading.Event()
        self._page_kib = os.sysconf("SC_PAGE_SIZE") // 1024

    def run(self) -> None:
        """Sample immediately, then every ``interval`` seconds until :meth:`stop`."""
        while True:
            total = sum(self._rss_pages(p) for p in self.tree(self.pid)) * self._page_kib
            self.peak_kib = max(self.peak_kib, total)
            if self._stop_event.wait(self.interval):
                return

    def stop(self) -> None:
        """Stop sampling and wait for the thread, so ``peak_kib`` is final."""
        self._stop_event.set()
        self.join()

    @staticmethod
    def tree(pid: int) -> list[int]:
        pids = [pid]
        for current in pids:  # grows while iterating: a breadth-first walk
            try:
                tasks = os.listdir(f"/proc/{current}/task")
            except OSError:
                continue
            for tid in tasks:
                try:
                    children = Path(f"/proc/{current}/task/{tid}/children").read_text()
                except OSError:
                    continue
                pids.extend(int(c) for c in children.split())
        return pids

    @staticmethod
    def _rss_pages(pid: int) -> int:
        try:
            return int(Path(f"/proc/{pid}/statm").read_text().split()[1])
        except (OSError, IndexError, ValueError):
            return 0


def own_hwm_kib() -> int:
    """This process's own peak RSS (VmHWM): the floor below which no child's peak can go."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except (OSError, IndexError, ValueError):
        pass
    return 0


def _kill_group(pid: int, flag: threading.Event) -> None:
    """Timeout handler: kill the tool's whole session (it was started in its own)."""
    flag.set()
    with contextlib.suppress(OSError):  # already gone
        os.killpg(pid, signal.SIGKILL)


def measure(spec: Spec) -> Result:
    """Run the tool once: wall time from spawn to reap, ``wait4`` rusage, sampled tree RSS."""
    timed_out = threading.Event()
    floor = own_hwm_kib()
    with open(spec["stdout"], "wb") as out, open(spec["stderr"], "wb") as err:
        start = time.perf_counter()
        try:
            proc = subprocess.Popen(
                spec["argv"],
                cwd=spec["cwd"],
                env=spec["env"],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,  # so a timeout can kill worker processes too
            )
        except OSError as exc:
            return Result(
                seconds=0.0, cpu_seconds=0.0, returncode=127, peak_rss_kib=0, tree_rss_kib=0,
                rss_floor_kib=floor, timed_out=False, error=str(exc),
            )  # fmt: skip
        sampler = TreeRssSampler(proc.pid)
        sampler.start()
        killer = threading.Timer(spec["timeout"], _kill_group, (proc.pid, timed_out))
        killer.start()
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        killer.cancel()
        sampler.stop()
    proc.returncode = os.waitstatus_to_exitcode(status)  # tell Popen the child is reaped
    return Result(
        seconds=seconds,
        cpu_seconds=usage.ru_utime + usage.ru_stime,
        returncode=proc.returncode,
        peak_rss_kib=usage.ru_maxrss,
        tree_rss_kib=sampler.peak_kib,
        rss_floor_kib=floor,
        timed_out=timed_out.is_set(),
        error=None,
    )


class GroupResult(TypedDict):
    """Several processes run at once: wall time from the first spawn to the last reap, and each
    one's own measurement (its ``seconds`` run from the common start to its own reap)."""

    seconds: float
    timed_out: bool
    results: list[Result]


def measure_group(specs: list[Spec]) -> GroupResult:
    """Start every spec at once, reap each with ``wait4`` as it ends, and time the whole.

    The processes run concurrently and talk through whatever they set up themselves (named
    pipes): nothing here connects them. The timeout is the first spec's, for the whole group;
    it kills every process's session.
    """
    timed_out = threading.Event()
    floor = own_hwm_kib()
    files = []
    procs: list[subprocess.Popen[bytes]] = []
    results: dict[int, Result] = {}
    try:
        for spec in specs:
            files.append(open(spec["stdout"], "wb"))  # noqa: SIM115 (closed below)
            files.append(open(spec["stderr"], "wb"))  # noqa: SIM115
        start = time.perf_counter()
        for number, spec in enumerate(specs):
            try:
                procs.append(subprocess.Popen(
                    spec["argv"], cwd=spec["cwd"], env=spec["env"], stdin=subprocess.DEVNULL,
                    stdout=files[2 * number], stderr=files[2 * number + 1],
                    start_new_session=True,
                ))  # fmt: skip
            except OSError as exc:
                for proc in procs:
                    _kill_group(proc.pid, timed_out)
                    proc.wait()
                failed = Result(
                    seconds=0.0, cpu_seconds=0.0, returncode=127, peak_rss_kib=0,
                    tree_rss_kib=0, rss_floor_kib=floor, timed_out=False, error=str(exc),
                )  # fmt: skip
                return GroupResult(seconds=0.0, timed_out=False, results=[failed] * len(specs))
        samplers = [TreeRssSampler(proc.pid) for proc in procs]
        for sampler in samplers:
            sampler.start()

        def kill_all() -> None:
            for proc in procs:
                _kill_group(proc.pid, timed_out)

        killer = threading.Timer(specs[0]["timeout"], kill_all)
        killer.start()
        index = {proc.pid: number for number, proc in enumerate(procs)}
        while len(results) < len(procs):
            pid, status, usage = os.wait4(-1, 0)
            if pid not in index:
                continue
            number = index[pid]
            seconds = time.perf_counter() - start
            samplers[number].stop()
            procs[number].returncode = os.waitstatus_to_exitcode(status)
            results[number] = Result(
                seconds=seconds,
                cpu_seconds=usage.ru_utime + usage.ru_stime,
                returncode=procs[number].returncode,
                peak_rss_kib=usage.ru_maxrss,
                tree_rss_kib=samplers[number].peak_kib,
                rss_floor_kib=floor,
                timed_out=timed_out.is_set(),
                error=None,
            )
        total = time.perf_counter() - start
        killer.cancel()
    finally:
        for f in files:
            f.close()
    return GroupResult(
        seconds=total,
        timed_out=timed_out.is_set(),
        results=[results[n] for n in range(len(procs))],
    )


def main() -> int:
    """Spec (or a list of specs, run at once) on stdin, result on stdout, both JSON."""
    spec: Spec | list[Spec] = json.load(sys.stdin)
    if isinstance(spec, list):
        json.dump(measure_group(spec), sys.stdout)
    else:
        json.dump(measure(spec), sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
