"""``amber sandbox up``: a local sandbox cluster for trying Amber without Kubernetes."""

from __future__ import annotations

import errno
import os
import shutil
import signal
import threading

import click
import platformdirs

from amber.cli import context
from amber.util import errors


@click.group()
def sandbox() -> None:
    """A local sandbox Kubernetes cluster (API server, controllers, pods as local processes)."""


@sandbox.command()
@click.option("--port", type=click.IntRange(0, 65535), default=0,
              help="Port for the API server (default: any free).")
@click.option("--kubeconfig", "kubeconfig_out", type=click.Path(dir_okay=False), default=None,
              help="Where to write the admin kubeconfig (default: under your state dir).")
@click.pass_obj
def up(ctx: context.Context, port: int, kubeconfig_out: str | None) -> None:
    """Start the sandbox, print its kubeconfig path, and run until interrupted (Ctrl-C)."""
    try:  # only this command needs the sandbox, a second distribution (decision 0021)
        from amber_sandbox import sandbox as sandbox_mod
    except ModuleNotFoundError as exc:
        if exc.name != "amber_sandbox":
            raise
        raise errors.UsageError("the sandbox is not installed: run scripts/bootstrap in Amber's "
                                "source tree (or pip install -e ./sandbox there)") from None

    state = platformdirs.user_state_dir("amber")
    target = kubeconfig_out or os.path.join(state, "sandbox", "kubeconfig")
    os.makedirs(os.path.dirname(os.path.abspath(target)), exist_ok=True)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda _s, _f: stop.set())
    box = sandbox_mod.Sandbox(port=port)
    try:
        box.start()  # on failure it has stopped what it started and removed its directory
    except OSError as exc:
        if not _cannot_listen(exc, port):
            raise
        reason = exc.strerror or str(exc)  # "Address already in use"
        reason = reason[:1].lower() + reason[1:]
        raise errors.AmberError(f"cannot listen on 127.0.0.1:{port}: {reason}") from None
    with box:
        shutil.copyfile(box.kubeconfig_path(), target)
        os.chmod(target, 0o600)
        ctx.emit({"kubeconfig": target, "server": box.url, "pods": box.run_pods}, target)
        ctx.info(f"sandbox API server at {box.url}; export KUBECONFIG={target}; "
                 "Ctrl-C stops it" + ("" if box.run_pods else
                                      " (not root: pods will stay Pending)"))
        # The kernel hands a signal to any of the sandbox's ~80 threads, and Python runs the
        # handler only once the main thread runs bytecode again, which a wait without a
        # timeout never does: a Ctrl-C would go unheard (seen in the test suite). Wake up.
        while not stop.wait(0.25):
            pass
    os.unlink(target)


def _cannot_listen(exc: OSError, port: int) -> bool:
    """Whether starting failed because the API server's port cannot be had: taken, or below
    1024 without the privilege."""
    return port != 0 and (exc.errno == errno.EADDRINUSE
                          or (exc.errno == errno.EACCES and port < 1024))
