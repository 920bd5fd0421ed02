"""What the operator tests share: a repository, its credentials Secret and BackupLocation in an
operator namespace of the module's own, and helpers to create policies and read Backups.

Names carry a per-module suffix and policies select namespaces by a label of the module's own,
so tests hold on a shared real cluster (AMBER_TEST_KUBECONFIG) and never touch what they did
not create. Policies and locations are cluster-scoped: each test deletes its own.
"""

from __future__ import annotations

import base64
import contextlib
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from amber.kube import errors as kerrors
from amber.kube.client import Client
from amber.kube.objects import Obj
from amber.operator import api, install, state
from amber_cli import TEST_KDF_N, Amber
from cluster_objects import delete_namespace
from polling import wait_for

PASSPHRASE = "operator tests passphrase"


@dataclass
class OperatorEnv:
    client: Client
    kubeconfig: Path
    suffix: str
    namespace: str  # the operator's
    location: str
    repo: Amber
    #: The label a namespace needs to be selected by this module's policies.
    label: str
    made: list[tuple[api.Kind, str, str | None]] = field(default_factory=list)

    def create(self, kind: api.Kind, name: str, spec: Obj, namespace: str | None = None,
               labels: dict[str, str] | None = None) -> Obj:
        body: Obj = {"apiVersion": api.API_VERSION, "kind": kind.kind,
                     "metadata": {"name": name, "labels": labels or {}}, "spec": spec}
        out = self.client.create(state.resource(self.client, kind), body, namespace)
        self.made.append((kind, name, namespace))
        return out

    def get(self, kind: api.Kind, name: str, namespace: str | None = None) -> Obj:
        return self.client.get(state.resource(self.client, kind), name, namespace)

    def backups(self, namespace: str) -> list[Obj]:
        return list(self.client.list(state.resource(self.client, api.BACKUP), namespace))

    def policy(self, name: str, **spec: Any) -> Obj:
        """A policy on this module's location selecting namespaces labelled ``self.label``."""
        body = {"location": self.location,
                "selector": {"namespaceSelector": {"matchLabels": {self.label: "yes"}}},
                **spec}
        return self.create(api.POLICY, name, body)

    def app_namespace(self, name: str) -> str:
        """A namespace this module's policies select, holding a small application."""
        c = self.client
        c.create(c.discover().find("namespaces"), {
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": name, "labels": {self.label: "yes"}}})
        c.create(c.discover().find("configmaps"), {
            "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"},
            "data": {"colour": "amber"}}, name)
        return name

    def drop(self, kind: api.Kind) -> None:
        """Delete what this module made of ``kind``."""
        for made in [m for m in self.made if m[0] is kind]:
            with contextlib.suppress(kerrors.NotFound):
                self.client.delete(state.resource(self.client, kind), made[1], made[2])
            self.made.remove(made)

    def cleanup(self) -> None:
        for kind, name, namespace in reversed(self.made):
            with contextlib.suppress(kerrors.NotFound):
                self.client.delete(state.resource(self.client, kind), name, namespace)
        self.made.clear()


def terminal(env: OperatorEnv, namespace: str, name: str | None = None, *,
             timeout: float = 60) -> Obj:
    """The (first) Backup in ``namespace`` once it has ended."""
    def ended() -> Obj | None:
        for b in env.backups(namespace):
            if (name is None or b["metadata"]["name"] == name) and state.phase(
                    b) in api.TERMINAL:
                return b
        return None
    return wait_for(ended, timeout=timeout, interval=0.2,
                    message=f"a Backup in {namespace} to end")


@contextlib.contextmanager
def operator_env(client: Client, kubeconfig: Path, tmp: Path, module: str
                 ) -> Iterator[OperatorEnv]:
    """CRDs installed, an initialised repository, its Secret and BackupLocation."""
    suffix = uuid.uuid4().hex[:6]
    ns = f"amber-{module}-{suffix}"
    passfile = tmp / "passphrase"
    passfile.write_text(PASSPHRASE + "\n")
    env_vars = {k: v for k, v in os.environ.items()
                if not k.startswith("AMBER_") or k == "AMBER_MOVER_IMAGE"}
    env_vars["AMBER_PASSWORD_FILE"] = str(passfile)
    repo = Amber(repo=tmp / "repo", env=env_vars).on_cluster(kubeconfig)
    repo("repo", "init", "--kdf-n", str(TEST_KDF_N), "--no-recovery-key")
    # everything but the operator's Deployment: tests run the operator in this process (or
    # install it themselves); worker Jobs need their accounts and roles
    install.apply(client, [d for d in install.manifests(install.Options(namespace=ns))
                           if d["kind"] not in ("Deployment", "Service", "ServiceMonitor")])
    client.create(client.discover().find("secrets", ""), {
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "repository"},
        "data": {"password": base64.b64encode(PASSPHRASE.encode()).decode()}}, ns)
    env = OperatorEnv(client, kubeconfig, suffix, ns, f"local-{suffix}", repo,
                      f"amber-test-{suffix}")
    env.create(api.LOCATION, env.location, {
        "url": str(tmp / "repo"), "credentialsSecret": {"name": "repository"}})
    try:
        yield env
    finally:
        env.cleanup()
        delete_namespace(client, ns, timeout=60)


__all__ = ["OperatorEnv", "operator_env", "terminal"]
