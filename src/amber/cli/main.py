"""``amber``: the command group, global options, and the one place errors become exit codes."""

from __future__ import annotations

import errno
import io
import os
import re
import signal
import sys
from types import FrameType
from typing import Any, NoReturn

import click

from amber import __version__
from amber.cli import (
    app_cmds,
    backup_cmds,
    context,
    demo_cmd,
    drill_cmd,
    location_cmds,
    mover_cmds,
    operator_cmds,
    options,
    output,
    repo_cmds,
    restore_cmds,
    sandbox_cmd,
    serve_cmds,
    snapshot_cmds,
)
from amber.util import errors, pending


class _Interrupted(BaseException):
    """A Ctrl-C carried past ``click``'s ``main``, which on a KeyboardInterrupt prints an empty
    line (to end a terminal's ``^C``), even when stderr is not a terminal, and raises Abort."""


class _RootGroup(options.AmberGroup):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt as exc:
            raise _Interrupted from exc


@click.group(cls=_RootGroup,
             context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="amber")
@options.root_options
@click.pass_context
def cli(ctx: click.Context, repo_location: str | None, output: str, quiet: bool,
        kubeconfig: str | None, kube_context: str | None, namespaces: tuple[str, ...]) -> None:
    """Amber: Kubernetes-native backup and disaster recovery.

    The passphrase comes from AMBER_PASSWORD_FILE (a path), AMBER_PASSWORD, or a prompt.
    Global options may also follow the command (backup list -o json).
    """
    ctx.obj = context.Context(repo_location=repo_location or context.default_repo_location(),
                              output=output, quiet=quiet, kubeconfig=kubeconfig,
                              kube_context=kube_context, namespaces=namespaces)
    ctx.call_on_close(ctx.obj.close)


# before the group joins the root, which gives every command in it the shared options
repo_cmds.repo.add_command(location_cmds.location_group)
repo_cmds.repo.add_command(location_cmds.status)
repo_cmds.repo.add_command(serve_cmds.serve)
repo_cmds.repo.add_command(serve_cmds.append_only)
cli.add_command(repo_cmds.repo)
cli.add_command(snapshot_cmds.snapshot)
cli.add_command(app_cmds.app)
cli.add_command(backup_cmds.backup)
cli.add_command(restore_cmds.restore)
cli.add_command(drill_cmd.drill)
cli.add_command(demo_cmd.demo)
cli.add_command(sandbox_cmd.sandbox)
cli.add_command(mover_cmds.mover)
cli.add_command(operator_cmds.operator)
cli.add_command(operator_cmds.install)


def _usage_line(exc: click.ClickException) -> str:
    """Click's message as one line in Amber's style, naming the help to read for a usage error
    (click's own format is three lines: usage, a "Try" hint and "Error: ...")."""
    text = " ".join(exc.format_message().split()).rstrip(".")
    if len(text) > 1 and text[1].islower():
        text = text[0].lower() + text[1:]
    if isinstance(exc, click.UsageError) and exc.ctx is not None:
        text += f" (see '{exc.ctx.command_path} -h')"
    return text


def _as_invoked(message: str, prog: str) -> str:
    """``message`` with the commands it suggests (`` `amber app list` ``, ``'amber repo init'``:
    the library names them so) spelled as the program was invoked, ``kubectl amber ...``."""
    if prog == "amber":
        return message
    names = "|".join(map(re.escape, sorted(cli.commands)))
    return re.sub(rf"([`'])amber (?=(?:{names})\b)", rf"\1{prog} ", message)


#: Erases a line a terminal shows (the progress line, the ``^C`` it echoed) before a message.
_CLEAR_LINE = output.CLEAR_LINE


def _interrupted(prog: str) -> NoReturn:
    clear = _CLEAR_LINE if sys.stderr.isatty() else ""
    print(f"{clear}{prog}: interrupted", file=sys.stderr)
    for line in pending.lines():  # what the cleanup could not undo
        print(f"{prog}: left behind: {line}", file=sys.stderr)
    sys.exit(errors.ExitCode.INTERRUPTED)


def _install_interrupt_handlers(prog: str) -> None:
    """The first Ctrl-C raises KeyboardInterrupt, so workers finish what they hold and the
    command ends with its usual message; a second one means "now": one line, exit 130 at once,
    whatever the workers (or the interpreter's shutdown joining them) are doing. Without this the
    second KeyboardInterrupt lands inside a thread join and prints a traceback."""
    clear = _CLEAR_LINE if os.isatty(2) else ""

    def again(_signum: int, _frame: FrameType | None) -> None:
        left = "".join(f"{prog}: left behind: {line}\n" for line in pending.lines())
        os.write(2, f"{clear}{prog}: interrupted again, exiting now\n{left}".encode())
        os._exit(errors.ExitCode.INTERRUPTED)

    def first(_signum: int, _frame: FrameType | None) -> None:
        signal.signal(signal.SIGINT, again)
        raise KeyboardInterrupt

    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, first)


#: The deepest directory nesting a path of PATH_MAX bytes allows (one-letter names).
MAX_TREE_DEPTH = 4096 // 2


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; map every failure to a one-line message and a documented exit code."""
    # File names need not be valid UTF-8; print them as the bytes they are.
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(errors="surrogateescape")
    prog = "kubectl amber" if os.path.basename(sys.argv[0]).startswith("kubectl-") else "amber"
    # Trees are walked recursively, a level a frame or two; a path holds at most PATH_MAX
    # (4096) bytes, so directories nest at most ~2048 deep: make room for that, or a user who
    # nests 1,000 directories in a shared path stops everyone's backups of it.
    sys.setrecursionlimit(max(sys.getrecursionlimit(), MAX_TREE_DEPTH * 3))
    _install_interrupt_handlers(prog)
    try:
        cli.main(args=argv, prog_name=prog, standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except (_Interrupted, KeyboardInterrupt, click.Abort):  # Abort: a Ctrl-C at a click prompt
        _interrupted(prog)
    except click.exceptions.NoArgsIsHelpError as exc:
        exc.show()  # a bare group: its help, on stderr
        sys.exit(errors.ExitCode.USAGE)
    except click.ClickException as exc:
        print(f"{prog}: error: {_usage_line(exc)}", file=sys.stderr)
        sys.exit(errors.ExitCode.USAGE)
    except errors.AmberError as exc:
        print(f"{prog}: error: {_as_invoked(str(exc), prog)}", file=sys.stderr)
        sys.exit(exc.exit_code)
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
