"""The Job a mover runs in, as built (no cluster needed): secrets only by reference, the claim
read-only for a backup and pinned to the node of the pod that uses it, the repository
directory mounted where the location says, nothing of the host's identity in it."""

from __future__ import annotations

import json
from typing import cast

from amber.backup import volumes
from amber.kube.client import Client
from amber.storage import base

PASSPHRASE = "correct horse battery staple"
ACCESS_KEY = "AKIAEXAMPLEEXAMPLE42"


class _Discovery:
    def find(self, resource: str, group: str | None = None) -> str:
        return resource


class _Client:
    """Building a Job reads nothing from the cluster."""

    def discover(self) -> _Discovery:
        return _Discovery()


def _movers(handoff: base.Handoff) -> volumes.Movers:
    class Backend:
        def handoff(self) -> base.Handoff:
            return handoff

    return volumes.Movers(cast(Client, _Client()), cast(base.Backend, Backend()),
                          lambda: PASSPHRASE)


def test_secrets_reach_the_mover_only_as_files_of_a_secret() -> None:
    handoff = base.Handoff(
        url="s3://bucket/repo?endpoint=https://s3.example.com",
        files={"aws-credentials": f"aws_access_key_id = {ACCESS_KEY}\n".encode()},
        env={"AWS_SHARED_CREDENTIALS_FILE": f"{base.HANDOFF_DIR}/aws-credentials"})
    movers = _movers(handoff)
    claim = volumes.Claim("shop", "data", phase="Bound", node="n1")
    job = movers._job("amber-mover-x", claim, ["mover", "backup", volumes.MOUNT], "sec",
                      read_only=True)
    text = json.dumps(job)
    assert PASSPHRASE not in text and ACCESS_KEY not in text
    pod = job["spec"]["template"]["spec"]
    container = pod["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["AMBER_PASSWORD_FILE"].startswith(base.HANDOFF_DIR)
    assert env["AMBER_REPO"] == handoff.url
    secret_volume = next(v for v in pod["volumes"] if "secret" in v)
    assert secret_volume["secret"] == {"secretName": "sec", "defaultMode": 0o400}
    claim_volume = next(v for v in pod["volumes"] if "persistentVolumeClaim" in v)
    assert claim_volume["persistentVolumeClaim"] == {"claimName": "data", "readOnly": True}
    assert pod["nodeName"] == "n1"  # where the pod that uses the claim runs
    assert pod["automountServiceAccountToken"] is False
    # this Amber where the container sees this machine's programs (a sandbox node), else the
    # image's amber: decided in the container, no node read
    command = container["command"]
    assert command[:2] == ["sh", "-c"] and "exec amber" in command[2]
    assert container["image"] == volumes.Settings().image
    assert job["spec"]["backoffLimit"] == 0 and job["spec"]["ttlSecondsAfterFinished"] > 0


def test_a_directory_repository_is_mounted_at_its_own_path() -> None:
    movers = _movers(base.Handoff(url="file:///srv/backups", host_paths=("/srv/backups",)))
    job = movers._job("amber-mover-y", volumes.Claim("shop", "data"),
                      ["mover", "restore", "ab" * 32, volumes.MOUNT], "sec", read_only=False)
    pod = job["spec"]["template"]["spec"]
    mounts = pod["containers"][0]["volumeMounts"]
    assert {"name": "repository-0", "mountPath": "/srv/backups"} in mounts
    assert {"name": "repository-0", "hostPath": {"path": "/srv/backups", "type": "Directory"}
            } in pod["volumes"]
    assert "nodeName" not in pod  # no pod uses the claim: the scheduler places the mover
    claim_volume = next(v for v in pod["volumes"] if "persistentVolumeClaim" in v)
    assert claim_volume["persistentVolumeClaim"]["readOnly"] is False
