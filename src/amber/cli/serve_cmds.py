"""``amber repo serve`` and ``amber repo append-only``: keep a repository safe from the
machines that write to it (decision 0026). Registered in the ``repo`` group by ``main``."""

from __future__ import annotations

import errno
import os
import signal
import ssl
import threading

import click

from amber.cli import context
from amber.repo import repository
from amber.storage import httpserve, local, served
from amber.util import errors


def _local_backend(ctx: context.Context, command: str) -> local.LocalBackend:
    """The repository at --repo, which must be a directory on this machine holding one."""
    backend = ctx.backend()
    if not isinstance(backend, local.LocalBackend):
        raise errors.UsageError(f"'{command}' works on a directory of this machine; --repo is "
                                f"{backend.url}")
    repository.read_config(backend)  # a repository, and one this Amber can serve
    return backend


@click.command("serve")
@click.option("--token-file", required=True, type=click.Path(dir_okay=False),
              help="File holding the token clients must send (at least 16 characters; "
                   "e.g. 'openssl rand -hex 32 > token').")
@click.option("--append-only", is_flag=True,
              help="Clients may add objects, never delete or overwrite them.")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (0.0.0.0 or :: for every interface).")
@click.option("--port", type=click.IntRange(0, 65535), default=8470, show_default=True,
              help="Port to listen on (0: any free one; the address is printed).")
@click.option("--tls-cert", type=click.Path(dir_okay=False), default=None,
              help="PEM certificate (chain): serve HTTPS.")
@click.option("--tls-key", type=click.Path(dir_okay=False), default=None,
              help="PEM private key of --tls-cert.")
@click.pass_obj
def serve(ctx: context.Context, token_file: str, append_only: bool, host: str, port: int,
          tls_cert: str | None, tls_key: str | None) -> None:
    """Serve the repository at --repo (a directory) over HTTP(S) to a less trusted writer.

    Clients use amber+http://HOST:PORT/ (or amber+https://HOST:PORT/?ca=/ca.pem) as their
    --repo and read the token from AMBER_SERVE_TOKEN_FILE. With --append-only (or the owner's
    marker, 'amber repo append-only on') they can back up and restore but never delete or
    overwrite: prune and forget run here, on the owner's side. Runs until Ctrl-C or SIGTERM.
    """
    if (tls_cert is None) != (tls_key is None):
        raise errors.UsageError("--tls-cert and --tls-key go together")
    backend = _local_backend(ctx, "amber repo serve")
    token = served.read_token_file(token_file, "--token-file")
    if os.stat(token_file).st_mode & 0o077:
        ctx.warn(f"--token-file {token_file} can be read by other users of this machine; "
                 "chmod 600 it")
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda _s, _f: stop.set())
    tls = (tls_cert, tls_key) if tls_cert is not None and tls_key is not None else None
    try:
        server = httpserve.Server(backend.root, token=token, host=host, port=port,
                                  append_only=append_only or backend.append_only, tls=tls,
                                  log=ctx.info)
    except ssl.SSLError as exc:
        raise errors.UsageError(f"cannot use --tls-cert {tls_cert} with --tls-key {tls_key}: "
                                "they are not a PEM certificate (chain) and its private key "
                                f"({exc.reason or 'unreadable'})") from None
    except OSError as exc:
        if exc.filename is not None:
            raise
        reason = exc.strerror or str(exc)
        if exc.errno in (errno.EADDRINUSE, errno.EACCES, errno.EADDRNOTAVAIL):
            raise errors.AmberError(f"cannot listen on {host}:{port}: "
                                    f"{reason[:1].lower() + reason[1:]}") from None
        raise
    thread = threading.Thread(target=server.serve_forever, name="amber-serve", daemon=True)
    thread.start()
    try:
        ctx.emit({"url": server.url, "location": backend.url, "appendOnly": server.append_only},
                 f"serving {backend.url}{' append-only' if server.append_only else ''} at "
                 f"{server.url}")
        ctx.info("clients: --repo " + server.url + " with AMBER_SERVE_TOKEN_FILE; Ctrl-C stops")
        # A wait without a timeout would never run the signal handler (see 'sandbox up').
        while not stop.wait(0.25):
            pass
    finally:
        server.shutdown()
        thread.join()


@click.command("append-only")
@click.argument("state", required=False, type=click.Choice(["on", "off"]))
@click.pass_obj
def append_only(ctx: context.Context, state: str | None) -> None:
    """Show, or turn on or off, the owner's append-only marker of the repository at --repo
    (a directory): while it is on, every Amber client of the directory, and 'amber repo
    serve', refuses deletes and overwrites (prune, forget, key remove).

    It guards against mistakes, not against someone who can write the directory (they can
    remove it too): to keep a writer from destroying backups, give it 'amber repo serve
    --append-only' and no other access.
    """
    backend = _local_backend(ctx, "amber repo append-only")
    if state is not None:
        local.set_marker(backend.root, state == "on")
    on = local.has_marker(backend.root)
    ctx.emit({"location": backend.url, "appendOnly": on},
             f"{backend.url} is {'append-only for every client' if on else 'not append-only'}"
             + (" (the owner turns it off with 'amber repo append-only off')" if on else ""))
