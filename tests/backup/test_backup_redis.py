"""A Redis StatefulSet backed up through the built-in blueprint and restored, on a cluster (the
sandbox runs this machine's redis-server as the pod's container): an RDB snapshot taken over the
replication protocol by the server image's redis-cli, streamed by a mover; after the namespace
is deleted, the restore puts the RDB into the new claim before Redis starts, and every key
(strings, lists, sets, hashes) comes back.
"""

from __future__ import annotations

import json
import random
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from amber.kube.client import Client
from amber_cli import Amber
from cluster_objects import delete_namespace
from polling import wait_for

NS = f"redis-{uuid.uuid4().hex[:6]}"
PORT = str(random.randint(40000, 49999))
PASSWORD = f"pw-{uuid.uuid4().hex[:10]}"
#: The password reaches the server on stdin, as a config line (not as an argument).
START = ('printf "requirepass %s\\n" "$REDIS_PASSWORD" | exec redis-server - --port "$REDIS_PORT" '
         '--bind 0.0.0.0 --dir /data --save "" --appendonly no')
SEED = ("for i in $(seq 1 300); do echo \"SET key:$i value-$i\"; echo \"RPUSH list:$((i % 7)) $i\";"
        " echo \"SADD set:$((i % 5)) m$i\"; echo \"HSET hash:$((i % 3)) f$i $i\"; done | "
        "redis-cli -p \"$REDIS_PORT\" > /dev/null")
DIGEST = """local keys = redis.call('KEYS', '*')
table.sort(keys)
local out = {}
for _, k in ipairs(keys) do
  local t = redis.call('TYPE', k)['ok']
  local v
  if t == 'string' then v = redis.call('GET', k)
  elseif t == 'list' then v = table.concat(redis.call('LRANGE', k, 0, -1), ',')
  elseif t == 'set' then
    local m = redis.call('SMEMBERS', k); table.sort(m); v = table.concat(m, ',')
  else local h = redis.call('HGETALL', k); local p = {}
    for i = 1, #h, 2 do p[#p + 1] = h[i] .. '=' .. h[i + 1] end
    table.sort(p); v = table.concat(p, ',') end
  out[#out + 1] = k .. ':' .. t .. ':' .. v
end
return #keys .. ' ' .. redis.sha1hex(table.concat(out, '|'))"""


@pytest.fixture(scope="module")
def client(cluster_kubeconfig: Path) -> Iterator[Client]:
    c = Client.from_kubeconfig(cluster_kubeconfig, qps=0)
    d = c.discover()
    c.create(d.find("namespaces"), {"metadata": {"name": NS}})
    c.create(d.find("secrets"), {"metadata": {"name": "cache-credentials"},
                                 "stringData": {"password": PASSWORD}}, NS)
    c.create(d.find("statefulsets", "apps"), _statefulset(), NS)
    _wait_ready(c)
    yield c
    delete_namespace(c, NS, timeout=120)


def _statefulset() -> dict[str, Any]:
    env = [{"name": "REDIS_PASSWORD",
            "valueFrom": {"secretKeyRef": {"name": "cache-credentials", "key": "password"}}},
           {"name": "REDIS_PORT", "value": PORT}]
    return {
        "metadata": {"name": "cache", "labels": {"app.kubernetes.io/name": "shop-cache"}},
        "spec": {"serviceName": "cache", "replicas": 1,
                 "selector": {"matchLabels": {"run": "cache"}},
                 "template": {"metadata": {"labels": {"run": "cache"}}, "spec": {"containers": [{
                     "name": "redis", "image": "docker.io/library/redis:7",
                     "command": ["sh", "-c", START], "env": env,
                     "ports": [{"containerPort": int(PORT)}],
                     "readinessProbe": {"exec": {"command": [
                         "sh", "-c", 'REDISCLI_AUTH="$REDIS_PASSWORD" redis-cli -p '
                                     '"$REDIS_PORT" ping | grep -q PONG']}, "periodSeconds": 1},
                     "volumeMounts": [{"name": "data", "mountPath": "/data"}]}]}},
                 "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {
                     "accessModes": ["ReadWriteOnce"],
                     "resources": {"requests": {"storage": "1Gi"}}}}]}}


def _wait_ready(c: Client) -> None:
    sets = c.discover().find("statefulsets", "apps")
    wait_for(lambda: (c.get(sets, "cache", NS).get("status") or {}).get("readyReplicas") == 1,
             timeout=180, message="redis ready")


def _redis(kubeconfig: Path, script: str, stdin: str | None = None) -> str:
    out = subprocess.run(
        ["kubectl", "--kubeconfig", str(kubeconfig), "-n", NS, "exec", "-i", "cache-0", "--",
         "sh", "-c", f'export REDISCLI_AUTH="$REDIS_PASSWORD"; {script}'],
        input=stdin, capture_output=True, text=True, timeout=300, check=False)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def _digest(kubeconfig: Path) -> str:
    """Key count and a SHA-1 of every key's type and value, computed by the server."""
    return _redis(kubeconfig, 'cat > /tmp/digest.lua && redis-cli --no-auth-warning -p '
                  '"$REDIS_PORT" --eval /tmp/digest.lua', stdin=DIGEST)


def test_backup_and_restore_of_redis(
        repo: Amber, client: Client, cluster_kubeconfig: Path) -> None:
    _redis(cluster_kubeconfig, SEED)
    before = _digest(cluster_kubeconfig)
    assert before.startswith("315 "), before  # 300 strings, 7 lists, 5 sets, 3 hashes
    out = repo.on_cluster(cluster_kubeconfig)("-o", "json", "backup", "create", "-n", NS,
                                              timeout=600, check=False)
    assert out.returncode == 0, out.stderr
    backup = json.loads(out.stdout)
    manifest = repo("-o", "json", "backup", "show", backup["id"]).json()
    (db,) = manifest["databases"]
    assert db["captured"] is True and db["blueprint"] == "redis", db
    assert db["volumeFiles"] == {"dump.rdb": {"claim": "data-cache-0", "path": "dump.rdb"}}

    delete_namespace(client, NS, timeout=180)
    restored = repo.on_cluster(cluster_kubeconfig)("-o", "json", "restore", backup["id"],
                                                   "--wait-timeout", "240", timeout=900,
                                                   check=False)
    assert restored.returncode == 0, restored.stderr + restored.stdout
    volumes = json.loads(restored.stdout)["volumes"]
    claim = next(v for v in volumes if v.get("claim") == "data-cache-0")
    assert claim["restored"] is True and claim["files"] == 1, volumes
    _wait_ready(client)
    assert _digest(cluster_kubeconfig) == before
