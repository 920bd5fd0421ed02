"""Timeouts are finite, non-negative seconds: ``nan`` once made a restore wait for ever and a
negative one printed "not ready within -1s". Refused on the command line, before anything is
read, in one line with the usage exit code."""

from __future__ import annotations

import pytest

from amber.util.errors import ExitCode
from amber_cli import Amber


@pytest.mark.parametrize(("command", "option"), [
    (("restore", "latest"), "--wait-timeout"),
    (("restore", "latest"), "--namespace-timeout"),
    (("drill", "latest"), "--timeout"),
])
@pytest.mark.parametrize("value", ["nan", "inf", "-1", "soon"])
def test_bad_timeouts_are_usage_errors(amber: Amber, command: tuple[str, ...], option: str,
                                       value: str) -> None:
    result = amber(*command, option, value, check=False)
    assert result.returncode == ExitCode.USAGE, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("amber: error:") and option in line and value in line, line


def test_a_drill_timeout_of_zero_is_refused_and_a_restore_wait_of_zero_is_not(
        amber: Amber) -> None:
    drill = amber("drill", "latest", "--timeout", "0", check=False)
    assert drill.returncode == ExitCode.USAGE and "--timeout" in drill.stderr
    # 0 is a valid wait for a restore (check once, do not wait): it gets past the options
    # and fails only for want of a repository.
    restore = amber("restore", "latest", "--wait-timeout", "0", check=False)
    assert restore.returncode == ExitCode.REPO_NOT_FOUND, restore.stderr
