"""``amber sandbox up``: a local sandbox cluster for trying Amber without Kubernetes."""

from __future__ import annotations

import os
import shutil
import signal
import threading

import click
import platformdirs

from amber.cli import context


@click.group()
def sandbox() -> None:
    """A local sandbox Kubernetes cluster (API server, controllers, pods as local processes)."""


@sandbox.command()
@click.option("--port", type=int, default=0, help="Port for the API server (default: any free).")
@click.option("--kubeconfig", "kubeconfig_out", type=click.Path(dir_okay=False), default=None,
              help="Where to write the admin kubeconfig (default: under your state dir).")
@click.pass_obj
def up(ctx: context.Context, port: int, kubeconfig_out: str | None) -> None:
    """Start the sandbox, print its kubeconfig path, and run until interrupted (Ctrl-C)."""
    from amber.sandbox import sandbox as sandbox_mod  # only this command needs the sandbox

    state = platformdirs.user_state_dir("amber")
    target = kubeconfig_out or os.path.join(state, "sandbox", "kubeconfig")
    os.makedirs(os.path.dirname(os.path.abspath(target)), exist_ok=True)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda _s, _f: stop.set())
    with sandbox_mod.Sandbox(port=port) as box:
        shutil.copyfile(box.kubeconfig_path(), target)
        os.chmod(target, 0o600)
        ctx.emit({"kubeconfig": target, "server": box.url, "pods": box.run_pods}, target)
        ctx.info(f"sandbox API server at {box.url}; export KUBECONFIG={target}; "
                 "Ctrl-C stops it" + ("" if box.run_pods else
                                      " (not root: pods will stay Pending)"))
        stop.wait()
    os.unlink(target)
