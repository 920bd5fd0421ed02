"""``amber demo`` ends with a hint (``see it with: amber backup show ID --items``); with a
generated passphrase and a repository given by ``--repo``, the hint must work as printed in the
user's shell, which knows neither (issue 9, item 9)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path


def test_the_demo_hint_works_as_printed_in_a_new_shell(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AMBER_", "XDG_", "KUBECONFIG"))}
    # As scripts/quickstart runs it: .venv/bin/amber, with .venv/bin not on the user's PATH.
    installed = Path(sys.executable).parent / "amber"
    assert installed.is_file(), "the tests run from Amber's virtual environment"
    path = [p for p in env.get("PATH", "").split(os.pathsep)
            if p and Path(p).resolve() != installed.parent.resolve()]
    env.update(HOME=str(home), XDG_DATA_HOME=str(home / "data"),
               XDG_CONFIG_HOME=str(home / "config"), PATH=os.pathsep.join(path))
    repo = tmp_path / "my repo"  # a space, so the printed line must quote it
    demo = subprocess.run([str(installed), "--repo", str(repo), "demo"],
                          capture_output=True, text=True, env=env, timeout=300, check=False,
                          stdin=subprocess.DEVNULL)
    lines = demo.stdout.splitlines()
    shown = [i for i, line in enumerate(lines) if line.startswith("see it with: amber ")]
    assert len(shown) == 1, (demo.returncode, demo.stderr, demo.stdout)
    hint = lines[shown[0]][len("see it with: "):]
    assert re.fullmatch(r"amber backup show [0-9a-f]{8} --items", hint), hint
    setup = lines[shown[0] + 1].strip()
    assert setup.startswith("in your shell, first: export "), setup
    export = setup[len("in your shell, first: "):]
    assert "AMBER_PASSWORD_FILE=" in export and "AMBER_REPO=" in export
    assert f"PATH={installed.parent}:" in export  # `amber` is not on this PATH

    # a new shell: nothing but what the demo printed
    shell = subprocess.run(["bash", "-c", f"{export}\n{hint}"], capture_output=True, text=True,
                           env=env, timeout=120, check=False, stdin=subprocess.DEVNULL)
    assert shell.returncode == 0, shell.stderr
    assert shell.stdout.startswith("backup ") and "amber-demo/shop" in shell.stdout
    # and without the printed settings the hint cannot work: that is why they are printed
    bare = subprocess.run(["bash", "-c", hint], capture_output=True, text=True, env=env,
                          timeout=120, check=False, stdin=subprocess.DEVNULL)
    assert bare.returncode != 0
