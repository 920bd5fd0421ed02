"""The one error style of a hand-written file (modifiers, checks, order): one line, the file,
line and column, what the parser expected, and none of the file's text."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from amber.restore import drill_checks, modifiers, order
from amber.util import errors, yamlfile


@pytest.mark.parametrize("loader", [modifiers.load, drill_checks.load_checks, order.load])
def test_each_loader_reports_yaml_errors_alike(tmp_path: Path,
                                               loader: Callable[[str], object]) -> None:
    path = tmp_path / "f.yaml"
    path.write_text("a: [1, 2\nb: c\n")
    with pytest.raises(errors.UsageError) as err:
        loader(str(path))
    message = str(err.value)
    assert message.startswith(f"{path}: the ") and "\n" not in message
    assert message.endswith("is not valid YAML at line 2, column 2: expected ',' or ']', "
                            "but got ':'")


@pytest.mark.parametrize("text", ["a: *hunter2secret\n", "a: !!python/object:hunter2secret x\n"])
def test_no_file_text_is_echoed(tmp_path: Path, text: str) -> None:
    path = tmp_path / "f.yaml"
    path.write_text(text)
    with pytest.raises(errors.UsageError) as err:
        yamlfile.load(str(path), "order file")
    assert "hunter2" not in str(err.value) and "line 1, column 4" in str(err.value)


def test_unreadable(tmp_path: Path) -> None:
    with pytest.raises(errors.UsageError, match=r"x\.yaml: cannot read the checks file: "):
        yamlfile.load(str(tmp_path / "x.yaml"), "checks file")
