"""``amber``: the command group, global options, and the one place errors become exit codes."""

from __future__ import annotations

import errno
import io
import os
import signal
import sys
from types import FrameType

import click

from amber import __version__
from amber.cli import (
    app_cmds,
    backup_cmds,
    context,
    demo_cmd,
    drill_cmd,
    options,
    repo_cmds,
    restore_cmds,
    sandbox_cmd,
    snapshot_cmds,
)
from amber.util import errors


@click.group(cls=options.AmberGroup,
             context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="amber")
@options.root_options
@click.pass_context
def cli(ctx: click.Context, repo_location: str | None, output: str, quiet: bool,
        kubeconfig: str | None, kube_context: str | None, namespaces: tuple[str, ...]) -> None:
    """Amber: Kubernetes-native backup and disaster recovery.

    The passphrase comes from AMBER_PASSWORD_FILE (a path), AMBER_PASSWORD, or a prompt.
    Global options may also follow the command (amber backup list -o json).
    """
    ctx.obj = context.Context(repo_location=repo_location or context.default_repo_location(),
                              output=output, quiet=quiet, kubeconfig=kubeconfig,
                              kube_context=kube_context, namespaces=namespaces)


cli.add_command(repo_cmds.repo)
cli.add_command(snapshot_cmds.snapshot)
cli.add_command(app_cmds.app)
cli.add_command(backup_cmds.backup)
cli.add_command(restore_cmds.restore)
cli.add_command(drill_cmd.drill)
cli.add_command(demo_cmd.demo)
cli.add_command(sandbox_cmd.sandbox)


def _usage_line(exc: click.ClickException) -> str:
    """Click's message as one line in Amber's style, naming the help to read for a usage error
    (click's own format is three lines: usage, a "Try" hint and "Error: ...")."""
    text = " ".join(exc.format_message().split()).rstrip(".")
    if len(text) > 1 and text[1].islower():
        text = text[0].lower() + text[1:]
    if isinstance(exc, click.UsageError) and exc.ctx is not None:
        text += f" (see '{exc.ctx.command_path} -h')"
    return text


def _install_interrupt_handlers(prog: str) -> None:
    """The first Ctrl-C raises KeyboardInterrupt, so workers finish what they hold and the
    command ends with its usual message; a second one means "now": one line, exit 130 at once,
    whatever the workers (or the interpreter's shutdown joining them) are doing. Without this the
    second KeyboardInterrupt lands inside a thread join and prints a traceback."""
    def again(_signum: int, _frame: FrameType | None) -> None:
        os.write(2, f"{prog}: interrupted again, exiting now\n".encode())
        os._exit(errors.ExitCode.INTERRUPTED)

    def first(_signum: int, _frame: FrameType | None) -> None:
        signal.signal(signal.SIGINT, again)
        raise KeyboardInterrupt

    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, first)


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; map every failure to a one-line message and a documented exit code."""
    # File names need not be valid UTF-8; print them as the bytes they are.
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(errors="surrogateescape")
    prog = "kubectl amber" if os.path.basename(sys.argv[0]).startswith("kubectl-") else "amber"
    _install_interrupt_handlers(prog)
    try:
        cli.main(args=argv, prog_name=prog, standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.Abort:
        print(f"{prog}: interrupted", file=sys.stderr)
        sys.exit(errors.ExitCode.INTERRUPTED)
    except click.exceptions.NoArgsIsHelpError as exc:
        exc.show()  # a bare group: its help, on stderr
        sys.exit(errors.ExitCode.USAGE)
    except click.ClickException as exc:
        print(f"{prog}: error: {_usage_line(exc)}", file=sys.stderr)
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
