"""Process checks shared by the pod-runtime and node-agent tests: which launcher processes run,
and which processes share a PID namespace.

Both suites assert that stopping a pod (or an agent) leaves no process behind; they look in
``/proc`` because a leftover is by definition something the runtime no longer knows about.
"""

from __future__ import annotations

import os

from amber_sandbox.runtime.process import LAUNCHER


def launcher_processes() -> list[int]:
    """PIDs of the runtime's launcher processes (one per running container or exec) that this
    test process is answerable for.

    Other sandboxes may run on the same machine (``amber sandbox up``, other test sessions);
    their launchers are left out while the runtime that owns them is alive and is not this
    process or one of its descendants. A launcher whose runtime died (a leak) always counts."""
    needle = str(LAUNCHER).encode()
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    argv = f.read().split(b"\0")
                if needle in argv and not _foreign(int(entry), argv):
                    found.append(int(entry))
            except OSError:
                continue
    return found


def _foreign(pid: int, argv: list[bytes]) -> bool:
    """Whether the launcher ``pid`` belongs to a live runtime outside this process's tree.
    Its owner: the runtime PID a ``run`` launcher is given last, or an ``exec`` one's parent."""
    rest = argv[argv.index(str(LAUNCHER).encode()) + 1:]
    owner = int(rest[3]) if rest[:1] == [b"run"] and len(rest) > 3 and rest[3].isdigit() \
        else _parent(pid)
    me = os.getpid()
    while owner > 1:
        if owner == me:
            return False
        owner = _parent(owner)
    return owner == 1 and _parent(pid) != 0


def _parent(pid: int) -> int:
    """The parent PID of ``pid``; 0 when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return int(f.read().rsplit(b")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return 0


def pid_namespace(pid: int) -> int:
    """The inode that identifies the PID namespace of ``pid``."""
    return os.stat(f"/proc/{pid}/ns/pid").st_ino


def processes_in_namespace(ns: int) -> list[int]:
    """PIDs of every process in the PID namespace ``ns`` (see ``pid_namespace``)."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.stat(f"/proc/{entry}/ns/pid").st_ino == ns:
                    out.append(int(entry))
            except OSError:
                continue
    return out


def processes_in_pid_namespace(pid: int) -> list[int]:
    """PIDs of every process in the PID namespace of ``pid``."""
    return processes_in_namespace(pid_namespace(pid))
