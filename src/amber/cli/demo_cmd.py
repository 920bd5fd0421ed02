"""``amber demo``: the README's first command; shows the main job on the embedded default.

With no configuration it uses the default repository location and, when no passphrase is
configured, generates one into a private file (mode 0600) under the user's config directory and
says where it is. There is still no built-in passphrase: each demo repository gets its own.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shlex
import shutil
import sys
import tempfile
from collections.abc import Iterator

import click
import platformdirs

from amber.apps import model as appmodel
from amber.apps import render
from amber.backup import runner
from amber.cli import context, reports
from amber.demo import application
from amber.kube.client import Client
from amber.repo import archiver, repository
from amber.util import errors


def _ensure_passphrase(ctx: context.Context) -> None:
    if os.environ.get("AMBER_PASSWORD_FILE") or os.environ.get("AMBER_PASSWORD"):
        return
    path = os.path.join(platformdirs.user_config_dir("amber"), "demo-passphrase")
    if not os.path.exists(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(32) + "\n")
        ctx.info(f"generated a passphrase for the demo repository in {path} (keep it safe)")
    os.environ["AMBER_PASSWORD_FILE"] = path


def _install_dir() -> str | None:
    """The directory of the running ``amber`` when a shell would not find it (or would find
    another one) by that name; None when ``amber`` on PATH is this one."""
    script = os.path.join(os.path.dirname(os.path.abspath(sys.argv[0])), "amber")
    if not os.path.isfile(script):  # run as `python -m amber.cli.main`
        script = os.path.join(os.path.dirname(sys.executable), "amber")
        if not os.path.isfile(script):
            return None
    found = shutil.which("amber")
    if found and os.path.realpath(found) == os.path.realpath(script):
        return None
    return os.path.dirname(script)


@contextlib.contextmanager
def _shell_hint(ctx: context.Context) -> Iterator[None]:
    """After the demo's "see it with: amber backup show ..." hint, the settings that make it work
    as printed in the user's shell: the demo may have used a passphrase file it generated (or
    one, or a repository, given for this command only), which a new command would not find."""
    settings = []
    here = _install_dir()
    if here is not None:  # e.g. scripts/quickstart ran .venv/bin/amber: `amber` is not on PATH
        settings.append(f"PATH={shlex.quote(here)}:\"$PATH\"")
    if os.path.abspath(os.path.expanduser(ctx.repo_location)) != context.default_repo_location():
        where = repository.display_location(ctx.backend())
        settings.append(f"AMBER_REPO={shlex.quote(where)}")
    if os.environ.get("AMBER_PASSWORD_FILE"):
        path = os.path.abspath(os.environ["AMBER_PASSWORD_FILE"])
        settings.append(f"AMBER_PASSWORD_FILE={shlex.quote(path)}")
    line = f"  in your shell, first: export {' '.join(settings)}" if settings else ""
    try:
        yield
    except errors.AmberError:
        if line and not ctx.json:
            print(line)
        raise
    if line and not ctx.json:
        print(line)


def _open_or_create(ctx: context.Context) -> repository.Repository:
    backend = ctx.backend()
    try:
        repository.read_config(backend)
        return ctx.open_repo()
    except errors.RepositoryNotFoundError:
        repository.ensure_can_init(backend)
        repo = repository.Repository.init(backend, context.read_passphrase())
        ctx.info(f"created repository at {backend.url}")
        return repo


def _sample_dir() -> str:
    path = os.path.join(platformdirs.user_data_dir("amber"), "demo-data")
    os.makedirs(os.path.join(path, "config"), exist_ok=True)
    files = {
        "config/app.yaml": "replicas: 3\nimage: shop:1.4\n",
        "README.txt": "Sample data that 'amber demo' backs up.\n",
        "orders.csv": "".join(f"{i},item-{i % 17},{i * 3 % 101}\n" for i in range(20000)),
    }
    for rel, text in files.items():
        full = os.path.join(path, rel)
        if not os.path.exists(full):
            with open(full, "w") as f:
                f.write(text)
    return path


def _require_sandbox() -> None:
    """The sandbox is a second distribution (decision 0021): say how to install it if missing."""
    try:
        import amber_sandbox  # noqa: F401
    except ModuleNotFoundError as exc:
        if exc.name != "amber_sandbox":
            raise
        raise errors.UsageError("the demo's cluster needs the sandbox: run scripts/bootstrap in "
                                "Amber's source tree (or pip install -e ./sandbox there), or "
                                "use --current-cluster") from None


def _application(ctx: context.Context, client: Client, repo: repository.Repository,
                 where: str, *, pods_run: bool = True) -> None:
    """The application demo (amber.demo.application), printed."""

    def backed_up(app: appmodel.Application, result: runner.Result) -> None:
        if not ctx.json:
            print(render.tree(app))
            print()
            print(f"backup {result.snapshot.short_id} saved: {result.items} objects of "
                  f"{application.APP}" + (" (partial)" if result.partial else ""))

    out = application.run(client, repo, where, pods_run=pods_run, reporter=ctx.reporter,
                          backed_up=backed_up)
    snap, result, report = out.backup.snapshot, out.backup, out.restore
    for w in [*result.warnings, *report.warnings]:
        ctx.warn(w)
    counts = report.counts()
    if ctx.json:
        ctx.emit({"application": out.app.to_json(), "backup": snap.id, "objects": result.items,
                  "partial": result.partial, "warnings": result.warnings,
                  "restore": counts, "verified": out.verified,
                  "mismatched": out.mismatched, "workloadsChecked": pods_run,
                  "notReady": [{"ref": r, "message": w} for r, w in report.not_ready.items()]})
    else:
        print(f"restored {counts.get('created', 0)} objects in {report.duration_s:.1f}s "
              f"({', '.join(f'{n} {k}' for k, n in counts.items())})")
        print(f"verified: {out.verified} of {out.checked} objects are as they "
              "were before the deletion" + (f"; different: {', '.join(out.mismatched)}"
                                             if out.mismatched else ""))
        for ref, why in report.not_ready.items():
            print(f"not ready: {ref}: {why}")
        if not report.not_ready:
            print("ready: the claim is bound" + (" and the workload is ready" if pods_run else
                  "; the workload was not checked: this sandbox runs no pods (that needs "
                  "root; or try --current-cluster)"))
        print(f"see it with: {_program()} backup show {snap.short_id} --items")
    if report.failed or out.mismatched:
        raise errors.PartialError("the demo's restore did not bring everything back as it was")
    if report.not_ready:
        raise errors.NotReadyError("the demo's restore brought the objects back, but "
                                   f"{len(report.not_ready)} did not become ready")


def _program() -> str:
    """How the user invoked us (``amber`` or ``kubectl amber``), for hints they can type."""
    current = click.get_current_context(silent=True)
    return (current.find_root().info_name if current else None) or "amber"


@click.command()
@click.argument("paths", nargs=-1, type=click.Path(exists=True))
@click.option("--files", "sample_files", is_flag=True,
              help="Back up a small sample directory instead of a sample application.")
@click.option("--current-cluster", is_flag=True,
              help="Create the sample application on the current kubeconfig cluster instead "
                   "of an in-process sandbox.")
@click.pass_obj
def demo(ctx: context.Context, paths: tuple[str, ...], sample_files: bool,
         current_cluster: bool) -> None:
    """Show Amber's main job: back up a sample application, delete it, restore it, verify it.

    Without options the cluster is a sandbox started in this process (nothing to install) and
    the application is created in it. With PATHS (or --files) it backs up files instead.
    Exits 3 if the restored application differs from the original, 4 if its claim did not
    bind or its workload did not become ready.
    Creates the repository (at --repo / AMBER_REPO, or the default location) if it is missing.
    """
    if not paths and not sample_files and not current_cluster:
        _require_sandbox()  # before a repository is made
    _ensure_passphrase(ctx)
    repo = _open_or_create(ctx)
    if not paths and not sample_files:
        if current_cluster:
            client = ctx.kube_client()
            with _shell_hint(ctx):
                _application(ctx, client, repo,
                             f"the cluster of context {client.config.context}")
            return
        from amber_sandbox import sandbox  # a demo-only dependency, loaded on demand

        # Pods run (as local processes) when we are root; otherwise the demo says the
        # workload's readiness was not checked.
        with _shell_hint(ctx), tempfile.TemporaryDirectory(prefix="amber-demo-") as tmp, \
                sandbox.Sandbox(root_dir=tmp) as box:
            client = Client.from_kubeconfig(box.kubeconfig_path(), qps=0)
            _application(ctx, client, repo, f"a sandbox cluster at {box.url}",
                         pods_run=box.run_pods)
        return
    sources = list(paths) or [_sample_dir()]
    snap = archiver.Archiver(repo, reporter=ctx.reporter).run(sources, tags=["demo"])
    ctx.info(f"backed up {', '.join(sources)} as snapshot {snap.short_id}")
    ctx.info(f"repository: {ctx.backend().url}")
    reports.print_snapshots(ctx)
