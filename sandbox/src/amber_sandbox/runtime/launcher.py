"""The program that becomes a container: namespaces, root filesystem, mounts, user, then exec.

The runtime runs it as ``python -I -S launcher.py run PLAN STATUS_FD AGENT_PID`` for a
container's main process and as ``python -I -S launcher.py exec PLAN PID ARGV...`` for a command
inside a running container (``kubectl exec``, exec probes, hooks).

Why a separate program rather than a ``preexec_fn``: the runtime is multi-threaded, and
``unshare(CLONE_NEWNS)``, ``setns`` and a fork followed by Python code are only safe in a
single-threaded process; a fresh interpreter holds no lock another thread could have taken. It
imports only the standard library (``-S`` skips site-packages), so it starts in ~25 ms and needs
nothing from the virtualenv. The runtime imports this module too, for the plan's types.

``run`` mode, in order:

1. ``unshare(CLONE_NEWPID)`` then fork: the child is PID 1 of a new PID namespace, so when it
   exits the kernel kills every process left in the container, and ``stop()`` can never leak one.
   The parent stays outside, reports the child's host PID on the status pipe, forwards signals and
   exits with the child's status (128 + signal number when killed, as container runtimes do).
   Both get SIGKILL when their parent dies, so a container never outlives its agent.
2. The child takes private mount, UTS and IPC namespaces, and builds its root: an overlay whose
   lower layer is the host's ``/`` and whose upper layer is a tmpfs private to the container. The
   container therefore sees the host's binaries, but what it writes outside its volumes (mount
   points, ``/etc/passwd`` entries, files in ``/tmp``) lands in its own layer and vanishes with it,
   as a container's writable layer does. The host's other top-level mounts are bound in (except
   ``/proc`` and ``/dev``, which are made fresh: a ``/proc`` for the new PID namespace and a tmpfs
   ``/dev`` with the usual device nodes, so nothing the container creates in ``/dev`` reaches the
   host).
3. ``pivot_root`` into it, then bind every volume from the old root (reached as
   ``/.amber-oldroot``) at its mount path, read-only ones remounted read-only last so nested mount
   points can still be created; then the old root is detached. Every mount lives only in this
   namespace: nothing needs unmounting on the host, even after a crash.
4. Add ``/etc/passwd`` and ``/etc/group`` entries for a ``runAsUser``/``runAsGroup`` the host does
   not know (initdb and others refuse to run as a user without a name), change directory, drop
   to the user, restore the signal dispositions Python changed, and ``execvpe``.

Errors before the exec are written to the status pipe as ``error <message>``; the pipe is
close-on-exec, so EOF without an error means the command is running.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import platform
import re
import signal
import socket
import sys
from typing import Any, NoReturn, TypedDict

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWPID = 0x20000000
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
MNT_DETACH = 2
PR_SET_PDEATHSIG = 1
OLD_ROOT = "/.amber-oldroot"
#: pivot_root(2) has no glibc wrapper; its syscall number per architecture.
PIVOT_ROOT_SYSCALL = {"x86_64": 155, "aarch64": 41, "riscv64": 41, "ppc64le": 203, "s390x": 217}
#: Device nodes bound from the host into the container's private /dev, as runc creates them.
DEVICES = ("null", "zero", "full", "random", "urandom", "tty")
#: Exit status of a container whose command could not be started (containerd reports 128 too).
START_FAILED = 128


class MountEntry(TypedDict):
    """One bind mount: a host path (symlinks already resolved) at a path inside the container."""

    source: str
    target: str
    read_only: bool


class Plan(TypedDict):
    """All the launcher needs, written by the runtime as JSON (mode 0600: env holds secrets)."""

    argv: list[str]
    env: dict[str, str]
    working_dir: str
    uid: int | None
    gid: int | None
    groups: list[int]
    hostname: str
    staging: str
    mounts: list[MountEntry]
    read_only_root: bool


_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _b(value: str | None) -> bytes | None:
    return None if value is None else os.fsencode(value)


def mount(source: str | None, target: str, fstype: str | None, flags: int,
          data: str | None = None) -> None:
    _check(_libc.mount(_b(source), _b(target), _b(fstype), ctypes.c_ulong(flags), _b(data)),
           f"mount {source or fstype} on {target}")


def umount(target: str, flags: int = 0) -> None:
    _check(_libc.umount2(_b(target), ctypes.c_int(flags)), f"umount {target}")


def unshare(flags: int) -> None:
    _check(_libc.unshare(ctypes.c_int(flags)), "unshare")


def setns(fd: int, nstype: int = 0) -> None:
    _check(_libc.setns(ctypes.c_int(fd), ctypes.c_int(nstype)), "setns")


def pivot_root(new_root: str, put_old: str) -> None:
    number = PIVOT_ROOT_SYSCALL.get(platform.machine())
    if number is None:
        raise OSError(f"pivot_root: unsupported architecture {platform.machine()}")
    _check(_libc.syscall(ctypes.c_long(number), _b(new_root), _b(put_old)), "pivot_root")


def set_parent_death_signal(sig: int) -> None:
    _check(_libc.prctl(ctypes.c_int(PR_SET_PDEATHSIG), ctypes.c_ulong(sig), 0, 0, 0), "prctl")


def _unescape(field: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def host_top_level_mounts() -> list[str]:
    """Mount points directly on the root mount, in mount order (each once)."""
    entries: list[tuple[int, int, str]] = []
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
        for line in f:
            fields = line.split()
            entries.append((int(fields[0]), int(fields[1]), _unescape(fields[4])))
    roots = [e for e in entries if e[2] == "/"]
    parents = {e[1] for e in roots}
    root_id = next((e[0] for e in roots if e[0] not in parents), roots[-1][0])
    points: list[str] = []
    for _, parent, point in entries:
        if parent == root_id and point != "/" and point not in points:
            points.append(point)
    return points


def _under(path: str, parent: str) -> bool:
    return path == parent or path.startswith(parent.rstrip("/") + "/")


def _make_mount_point(target: str, directory: bool) -> None:
    if directory:
        os.makedirs(target, exist_ok=True)
        return
    os.makedirs(os.path.dirname(target), exist_ok=True)
    if not os.path.lexists(target):
        with open(target, "a"):
            pass


def _private_dev(dev: str) -> None:
    """A tmpfs /dev with the host's basic device nodes, fresh ptys and a private /dev/shm."""
    mount("tmpfs", dev, "tmpfs", MS_NOSUID, "mode=0755,size=65536k")
    for name in DEVICES:
        if os.path.exists(f"/dev/{name}"):
            _make_mount_point(f"{dev}/{name}", directory=False)
            mount(f"/dev/{name}", f"{dev}/{name}", None, MS_BIND)
    os.mkdir(f"{dev}/pts")
    try:
        mount("devpts", f"{dev}/pts", "devpts", MS_NOSUID | MS_NOEXEC,
              "newinstance,ptmxmode=0666,mode=0620")
        os.symlink("pts/ptmx", f"{dev}/ptmx")
    except OSError:
        pass  # no pseudo-terminals: containers here get no TTY anyway
    os.mkdir(f"{dev}/shm")
    mount("shm", f"{dev}/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777,size=65536k")
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
                         ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2")):
        os.symlink(target, f"{dev}/{name}")


def build_root(plan: Plan) -> None:
    """Steps 2 and 3 of the module docstring: this process ends up inside the container's root."""
    staging = plan["staging"]
    unshare(CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC)
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    socket.sethostname(plan["hostname"])
    host_mounts = [p for p in host_top_level_mounts()
                   if p not in ("/proc", "/dev") and not _under(p, staging)]
    mount("tmpfs", staging, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755")
    os.chdir(staging)
    for name in ("upper", "work", "root"):
        os.mkdir(name)
    # relative layer paths: no escaping of commas or colons in the staging path
    mount("overlay", "root", "overlay", 0, "lowerdir=/,upperdir=upper,workdir=work")
    root = f"{staging}/root"
    for point in host_mounts:
        target = root + point
        try:
            _make_mount_point(target, os.path.isdir(point))
        except OSError:
            continue  # hidden under another mount: the container cannot see it either
        mount(point, target, None, MS_BIND | MS_REC)
    if os.path.ismount(root + staging):
        # the staging tmpfs came along with a host mount above it (a tmpfs /tmp, say)
        umount(root + staging, MNT_DETACH)
    mount("proc", f"{root}/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    _private_dev(f"{root}/dev")
    os.mkdir(root + OLD_ROOT)
    os.chdir(root)
    pivot_root(".", OLD_ROOT.lstrip("/"))
    os.chdir("/")
    entries = sorted(plan["mounts"], key=lambda m: os.path.normpath(m["target"]).count("/"))
    for entry in entries:
        source = OLD_ROOT + entry["source"]
        target = os.path.normpath(entry["target"])
        _make_mount_point(target, os.path.isdir(source))
        mount(source, target, None, MS_BIND | MS_REC)
    for entry in reversed(entries):
        if entry["read_only"]:
            mount(None, os.path.normpath(entry["target"]), None, MS_BIND | MS_REMOUNT | MS_RDONLY)
    umount(OLD_ROOT, MNT_DETACH)
    os.rmdir(OLD_ROOT)
    try:
        with open("/etc/hostname", "w", encoding="utf-8") as f:
            f.write(plan["hostname"] + "\n")
    except OSError:
        pass


def _read_db(path: str) -> list[list[str]]:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return [line.rstrip("\n").split(":") for line in f if line.count(":") >= 2]
    except OSError:
        return []


def _append(path: str, line: str) -> None:
    try:
        with open(path, "a", encoding="utf-8") as f:
            f.write(line + "\n")
    except OSError:
        pass  # a read-only /etc (a volume over it): the command runs without a name


def resolve_identity(plan: Plan, create: bool) -> tuple[int, int, list[int], str]:
    """(uid, gid, supplementary groups, home) inside the container, adding unknown ids by name.

    Docker's rules: without ``runAsGroup`` the primary group is the user's from ``/etc/passwd``,
    else 0; supplementary groups are fsGroup/supplementalGroups plus the user's ``/etc/group``
    memberships.
    """
    uid = plan["uid"] if plan["uid"] is not None else 0
    users = _read_db("/etc/passwd")
    user = next((u for u in users if len(u) >= 7 and u[2] == str(uid)), None)
    gid = plan["gid"]
    if gid is None:
        gid = int(user[3]) if user is not None and user[3].isdigit() else 0
    if user is None and create:
        user = [f"user{uid}", "x", str(uid), str(gid), "sandbox user", "/", "/bin/sh"]
        _append("/etc/passwd", ":".join(user))
    group_db = _read_db("/etc/group")
    if create and not any(len(g) >= 3 and g[2] == str(gid) for g in group_db):
        _append("/etc/group", f"group{gid}:x:{gid}:")
    groups = list(plan["groups"])
    if user is not None:
        for g in group_db:
            if len(g) >= 4 and user[0] in g[3].split(",") and g[2].isdigit():
                groups.append(int(g[2]))
    home = user[5] if user is not None and user[5] else "/"
    return uid, gid, sorted(set(groups)), home


def _reset_signals() -> None:
    for sig in (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT, signal.SIGTERM, signal.SIGHUP,
                signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2):
        signal.signal(sig, signal.SIG_DFL)


def become_user_and_exec(plan: Plan, argv: list[str], new_container: bool) -> NoReturn:
    """Create the working directory as root (as runc does), make the root read-only if asked
    (after the passwd entries and the working directory exist), drop privileges, exec."""
    uid, gid, groups, home = resolve_identity(plan, create=new_container)
    workdir = plan["working_dir"] or "/"
    os.makedirs(workdir, exist_ok=True)
    if new_container and plan["read_only_root"]:
        mount(None, "/", None, MS_BIND | MS_REMOUNT | MS_RDONLY)
    os.chdir(workdir)
    env = dict(plan["env"])
    env.setdefault("HOME", home)
    os.setgroups(groups)
    os.setgid(gid)
    os.setuid(uid)
    set_parent_death_signal(signal.SIGKILL)  # cleared by setuid, so set again here
    _reset_signals()
    try:
        os.execvpe(argv[0], argv, env)  # noqa: S606 - argv is the container's command
    except FileNotFoundError:
        raise OSError(f'exec: "{argv[0]}": executable file not found in $PATH') from None
    except OSError as e:
        raise OSError(f'exec: "{argv[0]}": {e.strerror}') from None


_child_pid = 0


def _forward(sig: int, _frame: Any) -> None:
    if _child_pid > 0:
        with contextlib.suppress(OSError):
            os.kill(-_child_pid, sig)


def _wait_and_exit(pid: int) -> NoReturn:
    global _child_pid  # noqa: PLW0603 - read by the signal handler
    _child_pid = pid
    while True:
        _, status = os.waitpid(pid, 0)
        if os.WIFEXITED(status) or os.WIFSIGNALED(status):
            break
    code = os.waitstatus_to_exitcode(status)
    os._exit(code if code >= 0 else 128 - code)


def _install_forwarding() -> None:
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1,
                signal.SIGUSR2):
        signal.signal(sig, _forward)


def _report(fd: int, message: str) -> None:
    with contextlib.suppress(OSError):
        os.write(fd, (" ".join(message.split()) + "\n").encode("utf-8", "replace"))


def _load(path: str) -> Plan:
    with open(path, encoding="utf-8") as f:
        plan: Plan = json.load(f)
    return plan


def run(plan_path: str, status_fd: int, agent_pid: int) -> NoReturn:
    """A container's main process (module docstring, step 1).

    It dies with the agent (SIGKILL when the agent's thread that started it is gone; that
    thread waits for the container, so only the agent's death triggers it), and PID 1 dies with
    it: a crashed agent or test run leaves no container behind. ``agent_pid`` closes the race
    of an agent that died before the ``prctl``.
    """
    try:
        set_parent_death_signal(signal.SIGKILL)
        if os.getppid() != agent_pid:
            os._exit(START_FAILED)
        plan = _load(plan_path)
        _install_forwarding()
        unshare(CLONE_NEWPID)
        pid = os.fork()
    except BaseException as e:
        _report(status_fd, f"error {e}")
        os._exit(START_FAILED)
    if pid == 0:
        try:
            _reset_signals()
            os.set_inheritable(status_fd, False)  # closed by the exec: EOF means "started"
            os.setsid()
            set_parent_death_signal(signal.SIGKILL)
            build_root(plan)
            become_user_and_exec(plan, plan["argv"], new_container=True)
        except BaseException as e:
            _report(status_fd, f"error {e}")
            os._exit(START_FAILED)
    _report(status_fd, f"pid {pid}")
    os.close(status_fd)
    _wait_and_exit(pid)


def exec_in(plan_path: str, pid: int, argv: list[str]) -> NoReturn:
    """A command in the namespaces of the container whose PID 1 has host PID ``pid``."""
    try:
        plan = _load(plan_path)
        fds = [(os.open(f"/proc/{pid}/ns/{ns}", os.O_RDONLY), ns)
               for ns in ("ipc", "uts", "pid", "mnt")]
        for fd, _ in fds:
            setns(fd)
            os.close(fd)
        _install_forwarding()
        child = os.fork()
    except BaseException as e:
        print(f"amber-sandbox: cannot enter the container: {e}", file=sys.stderr)
        os._exit(126)
    if child == 0:
        try:
            set_parent_death_signal(signal.SIGKILL)
            become_user_and_exec(plan, argv, new_container=False)
        except BaseException as e:
            print(f"amber-sandbox: {e}", file=sys.stderr)
            os._exit(127 if "not found" in str(e) else 126)
    _wait_and_exit(child)


def main(args: list[str]) -> NoReturn:
    if len(args) == 4 and args[0] == "run":
        run(args[1], int(args[2]), int(args[3]))
    if len(args) >= 4 and args[0] == "exec":
        exec_in(args[1], int(args[2]), args[3:])
    print("usage: launcher.py run PLAN STATUS_FD AGENT_PID | exec PLAN PID ARGV...",
          file=sys.stderr)
    os._exit(2)


if __name__ == "__main__":
    main(sys.argv[1:])
