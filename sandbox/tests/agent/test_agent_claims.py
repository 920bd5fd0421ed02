"""Claims: a pod waits (Pending, ContainerCreating) until its PVC is bound, then gets the bound
PV's host directory at its mount path. The PV and the binding are made here by hand (the
provisioner and binder are controllers, not the agent's business)."""

from __future__ import annotations

from pathlib import Path

from agent_helpers import (
    Api,
    Kubectl,
    bind,
    claim,
    container,
    pod,
    pod_path,
    static_pv,
    wait_for,
    wait_phase,
)

from amber_sandbox.agent import NodeAgent


def test_pod_waits_for_its_claim_then_writes_to_the_volume(
        api: Api, kubectl: Kubectl, agent: NodeAgent, namespace: str, tmp_path: Path) -> None:
    directory = tmp_path / "pv-data"
    directory.mkdir()
    (directory / "seed.txt").write_text("from the host\n")
    pv = f"pv-{namespace}"
    static_pv(api, pv, directory)
    pvc = claim(api, namespace, "data")
    writer = container("main", "cat /data/seed.txt; echo written > /data/out.txt",
                       volumeMounts=[{"name": "data", "mountPath": "/data"}])
    kubectl.apply(pod("writer", writer, restartPolicy="Never",
                      volumes=[{"name": "data",
                                "persistentVolumeClaim": {"claimName": "data"}}]),
                  namespace=namespace)

    def waiting_reason() -> str | None:
        found = api.get(pod_path(namespace, "writer"))
        statuses = found.get("status", {}).get("containerStatuses") or [{}]
        return statuses[0].get("state", {}).get("waiting", {}).get("reason")  # type: ignore[no-any-return]
    wait_for(lambda: waiting_reason() == "ContainerCreating", timeout=10,
             message="ContainerCreating while the claim is unbound")
    found = api.get(pod_path(namespace, "writer"))
    assert found["status"]["phase"] == "Pending"
    assert "not bound" in found["status"]["containerStatuses"][0]["state"]["waiting"]["message"]

    bind(api, namespace, pvc, pv)
    done = wait_phase(api, namespace, "writer", "Succeeded", "Failed")
    assert done["status"]["phase"] == "Succeeded"
    assert (directory / "out.txt").read_text() == "written\n"
    assert kubectl("logs", "writer", "-n", namespace).stdout == "from the host\n"
    api.delete(f"/api/v1/persistentvolumes/{pv}")
