"""The options every command shares, accepted before or after the command's name.

Users of kubectl and velero type ``amber backup list -o json`` as readily as
``amber -o json backup list``, and ``kubectl amber -n shop app list`` as kubectl itself takes
``-n``. So the shared options are declared once here: the root group takes them (with their
defaults and ``AMBER_REPO``), and :class:`AmberGroup` adds them, without defaults, to every
command and group below it when it is added, so they show in each command's help. A value given
after a command's name overrides one given before it (the innermost wins, as with kubectl).

``-n/--namespace`` is different: it means namespace everywhere, so before the command it is
handed to the command's own ``--namespace`` option (which wins when both are given), and a
command without one refuses it rather than silently ignoring it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import click

from amber.cli import context

F = TypeVar("F", bound=Callable[..., Any])

#: Parameter names of the shared options added to subcommands (never clash with their own).
_PREFIX = "amber_shared_"
_INSTALLED = "_amber_shared_options"


@dataclass(frozen=True)
class Shared:
    """One shared option: its flags, the ``context.Context`` field it sets, its help."""

    decls: tuple[str, ...]
    field: str
    help: str
    metavar: str | None = None
    choices: tuple[str, ...] | None = None
    flag: bool = False


SHARED = (
    Shared(("--repo", "-r"), "repo_location", metavar="PATH|URL",
           help="Repository location (a path, file://, s3:// or amber+http(s):// URL). "
                "Env: AMBER_REPO. Default: a directory under your data dir."),
    Shared(("--output", "-o"), "output", choices=("text", "json"),
           help="Output format; json is for scripts."),
    Shared(("--quiet", "-q"), "quiet", flag=True, help="Only print results and errors."),
    Shared(("--kubeconfig",), "kubeconfig", metavar="PATH",
           help="Kubeconfig file (default: $KUBECONFIG, ~/.kube/config, or in-cluster)."),
    Shared(("--context",), "kube_context", metavar="NAME",
           help="Kubeconfig context (default: its current-context)."),
)
NAMESPACE_HELP = ("Namespace, for the commands that take one (the same as giving the command "
                  "-n; repeatable).")


def root_options(func: F) -> F:
    """Decorate the root group's callback with the shared options, with their defaults.

    Parameter names are the ``Context`` fields, plus ``namespaces`` for ``-n``.
    """
    for s in reversed(SHARED):
        kwargs: dict[str, Any] = {"help": s.help}
        if s.flag:
            kwargs["is_flag"] = True
        elif s.choices:
            kwargs.update(type=click.Choice(s.choices), default=s.choices[0], show_default=True)
        else:
            kwargs.update(metavar=s.metavar, default=None)
        if s.field == "repo_location":
            kwargs["envvar"] = "AMBER_REPO"
        func = click.option(*s.decls, s.field, **kwargs)(func)
    option = click.option("--namespace", "-n", "namespaces", multiple=True, metavar="NS",
                          help=NAMESPACE_HELP)
    return option(func)


def _subcommand_options(cmd: click.Command) -> list[click.Option]:
    """Shared options for ``cmd``, minus any whose flags it already uses for itself (``sandbox
    up --kubeconfig`` is where to write one, not which to read)."""
    taken = {o for p in cmd.params for o in (*p.opts, *p.secondary_opts)}
    out = []
    for s in SHARED:
        if taken.intersection(s.decls):
            continue
        kwargs: dict[str, Any] = {"help": s.help}
        if s.flag:
            kwargs.update(is_flag=True, default=False)
        else:
            kwargs.update(default=None, metavar=s.metavar,
                          type=click.Choice(s.choices) if s.choices else None)
        out.append(click.Option([*s.decls, _PREFIX + s.field], **kwargs))
    return out


def _namespace_param(cmd: click.Command) -> str | None:
    """The name of ``cmd``'s own ``--namespace`` parameter, if it has one."""
    for p in cmd.params:
        if "--namespace" in p.opts and p.name is not None:
            return p.name
    return None


def _merge(ctx: click.Context, kwargs: dict[str, Any], namespace_param: str | None,
           leaf: bool) -> None:
    """Move the shared options out of ``kwargs`` into the shared ``Context``; hand a namespace
    given before the command to the command's own ``--namespace``."""
    obj = ctx.find_object(context.Context)
    for name in [k for k in kwargs if k.startswith(_PREFIX)]:
        value = kwargs.pop(name)
        if obj is not None and value not in (None, False):
            setattr(obj, name[len(_PREFIX):], value)
    if not leaf or obj is None or not obj.namespaces:
        return
    if namespace_param is None:
        raise click.UsageError(f"-n/--namespace does not apply to '{ctx.command_path}'",
                               ctx=ctx)
    if not kwargs.get(namespace_param):
        kwargs[namespace_param] = tuple(obj.namespaces)


def install(cmd: click.Command) -> None:
    """Give ``cmd`` (and, for a group, every command below it) the shared options."""
    if getattr(cmd, _INSTALLED, False):
        return
    setattr(cmd, _INSTALLED, True)
    extra = _subcommand_options(cmd)
    # before --help, which click appends last
    cmd.params.extend(extra)
    leaf = not isinstance(cmd, click.Group)
    namespace_param = _namespace_param(cmd)
    callback = cmd.callback

    @functools.wraps(callback or (lambda **_kw: None))
    def run(*args: Any, **kwargs: Any) -> Any:
        _merge(click.get_current_context(), kwargs, namespace_param, leaf)
        return callback(*args, **kwargs) if callback is not None else None

    cmd.callback = run
    if isinstance(cmd, click.Group):
        for sub in cmd.commands.values():
            install(sub)


class AmberGroup(click.Group):
    """The root group: every command added to it, at any depth, takes the shared options."""

    def add_command(self, cmd: click.Command, name: str | None = None) -> None:
        install(cmd)
        super().add_command(cmd, name)


def split_values(values: tuple[str, ...]) -> list[str]:
    """Repeatable options that also take comma-separated lists, as kubectl's do."""
    return [v.strip() for value in values for v in value.split(",") if v.strip()]


def selection(func: F) -> F:
    """``--app``, ``-n/--namespace``, ``-l/--selector``, ``--tag``: which part of a backup a
    command works on (and, with ``latest``, which backup: see ``catalogue.BackupFilter``).
    ``restore`` and ``drill`` take the same selection, so they say it the same way."""
    for option in reversed((
            click.option("--app", "app", default=None,
                         help="Only this application (an id in the backup)."),
            click.option("--namespace", "-n", "namespaces", multiple=True,
                         help="Only these namespaces of the backup (and the cluster objects "
                              "they need)."),
            click.option("--selector", "-l", default=None,
                         help="Only objects matching this label selector (and the cluster "
                              "objects they need)."),
            click.option("--tag", "tags", multiple=True, metavar="TAG",
                         help="With 'latest': the newest backup carrying TAG (repeatable: "
                              "any)."))):
        func = option(func)
    return func


def mappings(func: F) -> F:
    """``--storage-class-mapping`` and ``--image-registry-mapping``: what differs on another
    cluster, for ``restore`` and ``drill``."""
    func = click.option("--image-registry-mapping", multiple=True, metavar="OLD=NEW",
                        help="Rewrite image prefix OLD (e.g. docker.io/library) to NEW.")(func)
    return click.option("--storage-class-mapping", multiple=True, metavar="OLD=NEW",
                        help="Use storage class NEW where the backup says OLD.")(func)


def workers(func: F) -> F:
    """``--workers``: objects created in parallel within a tier (``restore``, ``drill``)."""
    return click.option("--workers", type=click.IntRange(1, 64), default=16, show_default=True,
                        help="Objects created in parallel within a tier.")(func)
