"""No command module imports another: each parses, calls the library, prints.

A command module used as a library (``restore`` calling ``backup``'s resolver) hides library
code in the entry layer, where the operator cannot reach it and where a change to one command's
output silently changes another's. Commands share only the CLI plumbing below; everything else
they share belongs in a library package (the backup catalogue, ``repo/maintenance.py``).
A new command module is covered without being listed here.
"""

from __future__ import annotations

import ast
from pathlib import Path

import amber.cli

CLI = Path(amber.cli.__file__).parent
#: Shared CLI plumbing, not commands: commands may import these, and these only each other.
PLUMBING = {"context", "options", "output", "durations", "reports", "operated"}
#: The entry point registers every command group.
ENTRY = "main"


def _cli_imports(path: Path) -> set[str]:
    """The ``amber.cli`` modules that ``path`` imports, at any depth in the file."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module is not None and not node.level:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[:2] == ["amber", "cli"] and len(parts) >= 3:
                found.add(parts[2])
    return found


def _offences() -> list[str]:
    out = []
    for path in sorted(CLI.glob("*.py")):
        module = path.stem
        if module in (ENTRY, "__init__"):
            continue
        out += [f"amber.cli.{module} imports amber.cli.{imported}"
                for imported in sorted(_cli_imports(path) - PLUMBING - {module})]
    return out


def test_no_command_module_imports_another() -> None:
    assert _offences() == []


def test_plumbing_imports_no_command() -> None:
    for module in PLUMBING:
        assert _cli_imports(CLI / f"{module}.py") <= PLUMBING, module


def test_the_check_sees_a_cross_import(tmp_path: Path) -> None:
    """The checker is not vacuous: both import forms are seen."""
    sample = tmp_path / "x.py"
    sample.write_text("from amber.cli import backup_cmds, context\n"
                      "import amber.cli.repo_cmds\n"
                      "def f() -> None:\n    from amber.cli.drill_cmd import drill\n")
    assert _cli_imports(sample) == {"backup_cmds", "context", "repo_cmds", "drill_cmd"}
