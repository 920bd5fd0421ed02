"""``amber``: the command group, global options, and the one place errors become exit codes."""

from __future__ import annotations

import errno
import io
import os
import sys

import click

from amber import __version__
from amber.cli import (
    app_cmds,
    backup_cmds,
    context,
    demo_cmd,
    drill_cmd,
    repo_cmds,
    restore_cmds,
    sandbox_cmd,
    snapshot_cmds,
)
from amber.util import errors


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="amber")
@click.option("--repo", "-r", envvar="AMBER_REPO", metavar="PATH|URL",
              help="Repository location (a path or file:// URL). Env: AMBER_REPO. "
                   "Default: a directory under your data dir.")
@click.option("--output", "-o", type=click.Choice(["text", "json"]), default="text",
              show_default=True, help="Output format; json is for scripts.")
@click.option("--quiet", "-q", is_flag=True, help="Only print results and errors.")
@click.option("--kubeconfig", metavar="PATH", default=None,
              help="Kubeconfig file (default: $KUBECONFIG, ~/.kube/config, or in-cluster).")
@click.option("--context", "kube_context", metavar="NAME", default=None,
              help="Kubeconfig context (default: its current-context).")
@click.pass_context
def cli(ctx: click.Context, repo: str | None, output: str, quiet: bool,
        kubeconfig: str | None, kube_context: str | None) -> None:
    """Amber: Kubernetes-native backup and disaster recovery.

    The passphrase comes from AMBER_PASSWORD_FILE (a path), AMBER_PASSWORD, or a prompt.
    """
    ctx.obj = context.Context(repo_location=repo or context.default_repo_location(),
                              output=output, quiet=quiet, kubeconfig=kubeconfig,
                              kube_context=kube_context)


cli.add_command(repo_cmds.repo)
cli.add_command(snapshot_cmds.snapshot)
cli.add_command(app_cmds.app)
cli.add_command(backup_cmds.backup)
cli.add_command(restore_cmds.restore)
cli.add_command(drill_cmd.drill)
cli.add_command(demo_cmd.demo)
cli.add_command(sandbox_cmd.sandbox)


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; map every failure to a one-line message and a documented exit code."""
    # File names need not be valid UTF-8; print them as the bytes they are.
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(errors="surrogateescape")
    prog = "kubectl amber" if os.path.basename(sys.argv[0]).startswith("kubectl-") else "amber"
    try:
        cli.main(args=argv, prog_name=prog, standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.Abort:
        print(f"{prog}: interrupted", file=sys.stderr)
        sys.exit(errors.ExitCode.INTERRUPTED)
    except click.ClickException as exc:
        exc.show()
        sys.exit(errors.ExitCode.USAGE)
    except errors.AmberError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        sys.exit(errors.ExitCode.INTERRUPTED)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            print(f"{prog}: error: no space left on device ({exc.filename or 'write'})",
                  file=sys.stderr)
            sys.exit(errors.ExitCode.NO_SPACE)
        where = f" ({exc.filename})" if exc.filename else ""
        print(f"{prog}: error: {exc.strerror or exc}{where}", file=sys.stderr)
        sys.exit(errors.ExitCode.FAILURE)
    sys.exit(0)


if __name__ == "__main__":  # pragma: no cover
    main()
