"""Speed of the sandbox API server, so that it never hides Amber's own.

Issue 3's targets: list 10,000 objects in one request in under 1 s; create at least 1,000
objects per second.

Not a test: it prints numbers. The server runs in its own process (as for kubectl or Amber), the
client here keeps its connections alive. Run from the repository root:

    .venv/bin/python sandbox/bench/sandbox_bench.py [--objects 10000] [--clients 1,4] [--tls]
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import ssl
import statistics
import threading
import time
from multiprocessing.connection import Connection
from typing import Any


def _serve(conn: Connection, stop: Any) -> None:
    from amber_sandbox.apiserver import server

    cluster = server.Cluster.start()
    conn.send((cluster.http_url, cluster.url, cluster.token(), cluster.ca_pem))
    stop.wait()
    cluster.stop()


class Client:
    def __init__(self, url: str, token: str, ca_pem: bytes | None) -> None:
        host, port = url.split("://")[1].split(":")
        if url.startswith("https"):
            ctx = ssl.create_default_context(cadata=(ca_pem or b"").decode())
            self.conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                host, int(port), context=ctx, timeout=60)
        else:
            self.conn = http.client.HTTPConnection(host, int(port), timeout=60)
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json",
                        "Accept": "application/json"}

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, bytes]:
        data = None if body is None else json.dumps(body).encode()
        self.conn.request(method, path, body=data, headers=self.headers)
        resp = self.conn.getresponse()
        return resp.status, resp.read()


def configmap(i: int) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": f"cm-{i:06d}", "labels": {"app": "bench", "shard": str(i % 10)}},
            "data": {"key": "value", "index": str(i)}}


def create_many(url: str, token: str, ca: bytes | None, ns: str, indexes: list[int]) -> None:
    client = Client(url, token, ca)
    for i in indexes:
        status, body = client.call("POST", f"/api/v1/namespaces/{ns}/configmaps", configmap(i))
        if status != 201:
            raise RuntimeError(f"create failed: {status} {body[:200]!r}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--objects", type=int, default=10_000)
    parser.add_argument("--clients", default="1,4", help="client thread counts to try")
    parser.add_argument("--tls", action="store_true", help="use https:// (as kubectl does)")
    parser.add_argument("--list-rounds", type=int, default=5)
    args = parser.parse_args()

    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    stop = ctx.Event()
    started = time.perf_counter()
    proc = ctx.Process(target=_serve, args=(child, stop), daemon=True)
    proc.start()
    try:
        http_url, https_url, token, ca = parent.recv()
        print(f"server ready in {time.perf_counter() - started:.2f} s "
              "(including the Python interpreter start)")
        url = https_url if args.tls else http_url
        cafile = ca if args.tls else None
        admin = Client(url, token, cafile)

        created = 0
        for threads in [int(c) for c in args.clients.split(",")]:
            ns = f"bench-{threads}"
            admin.call("POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                                      "metadata": {"name": ns}})
            count = args.objects
            shards = [list(range(k, count, threads)) for k in range(threads)]
            workers = [threading.Thread(target=create_many, args=(url, token, cafile, ns, s))
                       for s in shards]
            t0 = time.perf_counter()
            for w in workers:
                w.start()
            for w in workers:
                w.join()
            elapsed = time.perf_counter() - t0
            created += count
            print(f"create {count} configmaps with {threads} client thread(s): "
                  f"{elapsed:.2f} s = {count / elapsed:,.0f} objects/s")

        ns = f"bench-{args.clients.split(',')[0]}"
        times, parse = [], []
        items = 0
        for _ in range(args.list_rounds):
            t0 = time.perf_counter()
            status, body = admin.call("GET", f"/api/v1/namespaces/{ns}/configmaps")
            t1 = time.perf_counter()
            doc = json.loads(body)
            t2 = time.perf_counter()
            assert status == 200
            items = len(doc["items"])
            times.append(t1 - t0)
            parse.append(t2 - t1)
        print(f"list {items} configmaps in one request: median {statistics.median(times):.3f} s "
              f"(min {min(times):.3f}, {len(body) / 1e6:.1f} MB), client JSON decode "
              f"{statistics.median(parse):.3f} s")

        t0 = time.perf_counter()
        status, body = admin.call("GET", "/api/v1/configmaps?labelSelector=shard%3D3")
        print(f"list across namespaces with a label selector ({len(json.loads(body)['items'])} "
              f"of {created} match): {time.perf_counter() - t0:.3f} s")
        pages, t0, token_ = 0, time.perf_counter(), ""
        while True:
            q = "?limit=500" + (f"&continue={token_}" if token_ else "")
            status, body = admin.call("GET", f"/api/v1/namespaces/{ns}/configmaps{q}")
            pages += 1
            token_ = json.loads(body)["metadata"].get("continue", "")
            if not token_:
                break
        print(f"paginate {items} configmaps by 500: {pages} pages in "
              f"{time.perf_counter() - t0:.3f} s")
    finally:
        stop.set()
        proc.join(timeout=10)
        if proc.is_alive():
            proc.terminate()


if __name__ == "__main__":
    main()
