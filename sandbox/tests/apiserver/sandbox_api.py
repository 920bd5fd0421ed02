"""A small Kubernetes REST client for the sandbox tests, built from any kubeconfig.

Deliberately independent of the emulator: it reads the kubeconfig through ``kubectl config view``
(so real clusters' YAML kubeconfigs, client certificates included, work too), speaks plain
HTTP(S) with ``http.client`` on a kept-alive connection, and returns raw status codes and JSON, so
tests assert exactly what a real API server answers.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import ssl
import subprocess
import tempfile
import threading
import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polling
from amber_sandbox.wire import Obj


@dataclass
class Response:
    status: int
    body: bytes
    content_type: str

    def json(self) -> Any:
        return json.loads(self.body)


class Endpoint:
    """Requests to one API server as one identity."""

    def __init__(self, *, server: str, token: str | None, ssl_context: ssl.SSLContext | None,
                 kubeconfig: str | None = None) -> None:
        url = urllib.parse.urlsplit(server)
        self.scheme = url.scheme
        self.host = url.hostname or "127.0.0.1"
        self.port = url.port or (443 if url.scheme == "https" else 80)
        self.prefix = url.path.rstrip("/")
        self.server = server
        self.token = token
        self.ssl_context = ssl_context
        self.kubeconfig = kubeconfig
        self._local = threading.local()

    @classmethod
    def from_kubeconfig(cls, path: str) -> Endpoint:
        out = subprocess.run(["kubectl", "config", "view", "--raw", "--minify", "--flatten",
                              "-o", "json", "--kubeconfig", path],
                             check=True, capture_output=True, text=True).stdout
        cfg = json.loads(out)
        cluster = cfg["clusters"][0]["cluster"]
        user = cfg["users"][0]["user"] if cfg.get("users") else {}
        ctx: ssl.SSLContext | None = None
        if cluster["server"].startswith("https"):
            if cluster.get("insecure-skip-tls-verify"):
                ctx = ssl.create_default_context()
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            else:
                ca = base64.b64decode(cluster["certificate-authority-data"]).decode()
                ctx = ssl.create_default_context(cadata=ca)
            if user.get("client-certificate-data"):
                tmp = tempfile.mkdtemp()
                cert, key = os.path.join(tmp, "c.pem"), os.path.join(tmp, "k.pem")
                with open(cert, "wb") as f:
                    f.write(base64.b64decode(user["client-certificate-data"]))
                with open(key, "wb") as f:
                    f.write(base64.b64decode(user["client-key-data"]))
                ctx.load_cert_chain(cert, key)
        return cls(server=cluster["server"], token=user.get("token"), ssl_context=ctx,
                   kubeconfig=path)

    def as_token(self, token: str | None) -> Endpoint:
        """The same server, authenticating with another bearer token (None: none at all).
        Client certificates of the original identity are not carried over."""
        ctx = None
        if self.ssl_context is not None and self.kubeconfig:
            cfg = json.loads(subprocess.run(
                ["kubectl", "config", "view", "--raw", "--minify", "--flatten", "-o", "json",
                 "--kubeconfig", self.kubeconfig],
                check=True, capture_output=True, text=True).stdout)
            cluster = cfg["clusters"][0]["cluster"]
            if cluster.get("certificate-authority-data"):
                ctx = ssl.create_default_context(
                    cadata=base64.b64decode(cluster["certificate-authority-data"]).decode())
            else:
                ctx = ssl.create_default_context()
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
        return Endpoint(server=self.server, token=token, ssl_context=ctx)

    def kubeconfig_for_token(self, token: str, directory: str) -> str:
        """A kubeconfig for this server and ``token`` (for kubectl as another identity)."""
        cfg = json.loads(subprocess.run(
            ["kubectl", "config", "view", "--raw", "--minify", "--flatten", "-o", "json",
             "--kubeconfig", str(self.kubeconfig)],
            check=True, capture_output=True, text=True).stdout)
        cluster = cfg["clusters"][0]
        out = {"apiVersion": "v1", "kind": "Config",
               "clusters": [cluster],
               "users": [{"name": "restricted", "user": {"token": token}}],
               "contexts": [{"name": "restricted", "context": {"cluster": cluster["name"],
                                                               "user": "restricted"}}],
               "current-context": "restricted"}
        path = os.path.join(directory, f"kubeconfig-{abs(hash(token))}.json")
        with open(path, "w") as f:
            json.dump(out, f)
        return path

    # ---------------------------------------------------------------------------------------

    def _connection(self, *, fresh: bool = False, timeout: float = 60
                    ) -> http.client.HTTPConnection:
        if fresh:
            if self.scheme == "https":
                return http.client.HTTPSConnection(self.host, self.port, timeout=timeout,
                                                   context=self.ssl_context)
            return http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connection(fresh=True)
            self._local.conn = conn
        return conn

    def _headers(self, content_type: str | None, accept: str) -> dict[str, str]:
        headers = {"Accept": accept}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        if content_type:
            headers["Content-Type"] = content_type
        return headers

    def request(self, method: str, path: str, body: Any = None, *,
                content_type: str = "application/json", query: dict[str, Any] | None = None,
                accept: str = "application/json") -> Response:
        url = self.prefix + path
        if query:
            url += "?" + urllib.parse.urlencode(query)
        data = None if body is None else (body if isinstance(body, bytes)
                                          else json.dumps(body).encode())
        headers = self._headers(content_type if data is not None else None, accept)
        for attempt in range(2):
            conn = self._connection()
            try:
                conn.request(method, url, body=data, headers=headers)
                resp = conn.getresponse()
                payload = resp.read()
                return Response(resp.status, payload, resp.getheader("Content-Type", ""))
            except (http.client.HTTPException, ConnectionError, ssl.SSLError):
                conn.close()
                self._local.conn = None
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def get(self, path: str, **query: Any) -> Response:
        return self.request("GET", path, query=query or None)

    def post(self, path: str, body: Any, **query: Any) -> Response:
        return self.request("POST", path, body, query=query or None)

    def put(self, path: str, body: Any) -> Response:
        return self.request("PUT", path, body)

    def patch(self, path: str, body: Any, kind: str = "merge") -> Response:
        types = {"merge": "application/merge-patch+json", "json": "application/json-patch+json",
                 "strategic": "application/strategic-merge-patch+json"}
        return self.request("PATCH", path, body, content_type=types[kind])

    def delete(self, path: str, body: Any = None, **query: Any) -> Response:
        return self.request("DELETE", path, body, query=query or None)

    def ok(self, resp: Response, *codes: int) -> Any:
        """The JSON body, asserting a success code."""
        allowed = codes or (200, 201)
        assert resp.status in allowed, f"{resp.status}: {resp.body[:2000]!r}"
        return resp.json()

    def watch(self, path: str, *, timeout: float = 10, **query: Any) -> Iterator[Obj]:
        """Events of a watch, as they arrive (ends with the stream or at ``timeout``)."""
        params = {"watch": "1", **query}
        conn = self._connection(fresh=True, timeout=timeout)
        conn.request("GET", self.prefix + path + "?" + urllib.parse.urlencode(params),
                     headers=self._headers(None, "application/json"))
        resp = conn.getresponse()
        assert resp.status == 200, resp.read()
        try:
            while True:
                try:
                    line = resp.readline()
                except TimeoutError:
                    return
                if not line:
                    return
                if line.strip():
                    yield json.loads(line)
        finally:
            conn.close()

    def wait_for(self, what: Callable[[], Any], *, timeout: float = 30,
                 message: str = "condition") -> Any:
        """Poll until ``what()`` is truthy (effects of controllers are asynchronous on any
        cluster)."""
        return polling.wait_for(what, timeout=timeout, message=message)

    def gone(self, path: str) -> bool:
        return self.get(path).status == 404


def configmap(name: str, *, labels: dict[str, str] | None = None,
              data: dict[str, str] | None = None, **meta: Any) -> Obj:
    metadata: Obj = {"name": name, **meta}
    if labels:
        metadata["labels"] = labels
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata,
            "data": data or {"k": "v"}}


def make_namespace(api: Endpoint, prefix: str) -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    api.ok(api.post("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                           "metadata": {"name": name}}), 201)
    return name


def restricted_identity(api: Endpoint) -> tuple[str, str, str, str]:
    """(own namespace, other namespace, user name, token): a ServiceAccount that may only work
    with configmaps in its own namespace."""
    own, other = make_namespace(api, "own"), make_namespace(api, "other")
    api.ok(api.post(f"/api/v1/namespaces/{own}/serviceaccounts", {
        "apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "alice"}}), 201)
    api.ok(api.post(f"/apis/rbac.authorization.k8s.io/v1/namespaces/{own}/roles", {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": {"name": "configmap-editor"},
        "rules": [{"apiGroups": [""], "resources": ["configmaps"],
                   "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]}]}),
        201)
    api.ok(api.post(f"/apis/rbac.authorization.k8s.io/v1/namespaces/{own}/rolebindings", {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": "alice-configmaps"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                    "name": "configmap-editor"},
        "subjects": [{"kind": "ServiceAccount", "name": "alice", "namespace": own}]}), 201)
    token = api.ok(api.post(f"/api/v1/namespaces/{own}/serviceaccounts/alice/token", {
        "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
        "spec": {"expirationSeconds": 3600}}), 201)["status"]["token"]
    return own, other, f"system:serviceaccount:{own}:alice", token



@dataclass
class Kube:
    kubeconfig: str
    api: Endpoint
    #: the emulator when the tests run against it, None against a real cluster
    sandbox: Any
    home: Path



@dataclass
class KubectlResult:
    returncode: int
    stdout: str
    stderr: str


class Kubectl:
    """Runs the real kubectl binary against the test cluster."""

    def __init__(self, kube: Kube, kubeconfig: str | None = None) -> None:
        self.kube = kube
        self.kubeconfig = kubeconfig or kube.kubeconfig

    def __call__(self, *args: str, check: bool = True, stdin: str | None = None,
                 timeout: float = 60) -> KubectlResult:
        env = {**os.environ, "KUBECONFIG": self.kubeconfig, "HOME": str(self.kube.home),
               "KUBECACHEDIR": str(self.kube.home / "cache")}
        proc = subprocess.run(["kubectl", *args], input=stdin, capture_output=True, text=True,
                              env=env, timeout=timeout)
        result = KubectlResult(proc.returncode, proc.stdout, proc.stderr)
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({proc.returncode}):\n"
                                 f"{proc.stderr}")
        return result

    def json(self, *args: str) -> Any:
        return json.loads(self(*args, "-o", "json").stdout)

    def as_kubeconfig(self, kubeconfig: str) -> Kubectl:
        return Kubectl(self.kube, kubeconfig)


