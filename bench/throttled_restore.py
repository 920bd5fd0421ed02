"""`amber restore` of 3,009 objects (2,500 ConfigMaps, 508 Secrets, their namespace) through a
proxy that answers every 5th POST 429 (20%, Retry-After 0), with the real CLI on the sandbox
(issue 10, item 9). Prints one JSON line: exit code, seconds, 429s injected, restore counts,
objects present afterwards, the first failures. NCM / NSECRETS in the environment change the
counts. Results: bench/results/throttled-restore.md.

    .venv/bin/python bench/throttled_restore.py
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from amber.kube import config as kconfig
from amber.kube.client import Client
from amber_sandbox import sandbox
from api_proxy import FaultProxy

NS = "throttled"


def _amber(env: dict[str, str], *args: str) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "amber.cli.main", *args], env=env,
                          capture_output=True, text=True, check=False)
    return proc, time.monotonic() - started


def _populate(client: Client, configmaps: int, secrets: int) -> None:
    find = client.discover().find
    client.create(find("namespaces"), {"metadata": {"name": NS}})
    cms, secs = find("configmaps"), find("secrets")

    def make(i: int) -> None:
        if i < configmaps:
            client.create(cms, {"metadata": {"name": f"cm-{i:04d}"}, "data": {"i": str(i)}}, NS)
        else:
            client.create(secs, {"metadata": {"name": f"s-{i:04d}"},
                                 "stringData": {"i": str(i)}}, NS)

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(make, range(configmaps + secrets)))


def _delete_namespace(client: Client) -> None:
    namespaces = client.discover().find("namespaces")
    client.delete(namespaces, NS)
    deadline = time.monotonic() + 300
    while any(n["metadata"]["name"] == NS for n in client.list(namespaces)):
        if time.monotonic() > deadline:
            raise SystemExit(f"namespace {NS} is still there after 300 s")
        time.sleep(0.5)


def main() -> None:
    configmaps = int(os.environ.get("NCM", "2500"))
    secrets = int(os.environ.get("NSECRETS", "508"))
    work = Path(tempfile.mkdtemp(prefix="amber-throttled-", dir="/var/tmp"))
    (work / "pw").write_text("bench\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AMBER_")}
    env.update(AMBER_PASSWORD_FILE=str(work / "pw"), AMBER_REPO=str(work / "repo"))
    with sandbox.Sandbox(root_dir=work / "sandbox") as box:
        admin = {**env, "KUBECONFIG": str(box.kubeconfig_path())}
        client = Client.from_kubeconfig(box.kubeconfig_path(), qps=0)
        _populate(client, configmaps, secrets)
        _amber(env, "repo", "init", "--kdf-n", "1024")
        backup, _ = _amber(admin, "backup", "create", "-n", NS,
                           "--include-resources", "configmaps,secrets")
        if backup.returncode:
            raise SystemExit(backup.stderr)
        _delete_namespace(client)
        with FaultProxy(kconfig.load(box.kubeconfig_path()), every=5, methods=("POST",),
                        statuses=(429,)) as proxy:
            (work / "proxy.kubeconfig").write_text(proxy.kubeconfig())
            proc, seconds = _amber({**env, "KUBECONFIG": str(work / "proxy.kubeconfig")},
                                   "-o", "json", "restore", "latest", "--no-wait")
            injected = len(proxy.injected)
        report: dict[str, Any] = json.loads(proc.stdout) if proc.stdout.strip() else {}
        find = client.discover().find
        print(json.dumps({
            "exit": proc.returncode, "seconds": round(seconds, 1), "injected_429": injected,
            "counts": report.get("counts"),
            "configmaps": sum(1 for o in client.list(find("configmaps"), NS)
                              if o["metadata"]["name"].startswith("cm-")),
            "secrets": sum(1 for o in client.list(find("secrets"), NS)
                           if o["metadata"]["name"].startswith("s-")),
            "first_failures": [o for o in report.get("objects", [])
                               if o.get("result") == "failed"][:3],
        }))


if __name__ == "__main__":
    main()
