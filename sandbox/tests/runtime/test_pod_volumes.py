"""Volumes at their mount paths: configMap/secret files and modes, emptyDir, PVC, hostPath,
/etc/hosts, the service-account token, and the container's private root filesystem."""

from __future__ import annotations

import base64
import os
from pathlib import Path

from runtime_helpers import container, new_pod_ip, phase_in, pod, running, state_of

from amber_sandbox.runtime import PodRuntime, ResolvedPod, ServiceAddress


def test_config_map_and_secret_files_with_items_and_modes(runtime: PodRuntime) -> None:
    spec = pod("files", [container("main", "sleep 30", volumeMounts=[
        {"name": "cfg", "mountPath": "/etc/app"},
        {"name": "picked", "mountPath": "/etc/picked"},
        {"name": "creds", "mountPath": "/etc/creds"},
        {"name": "all", "mountPath": "/etc/all"},
    ])], volumes=[
        {"name": "cfg", "configMap": {"name": "cfg"}},
        {"name": "picked", "configMap": {"name": "cfg", "defaultMode": 0o600, "items": [
            {"key": "a.conf", "path": "conf/renamed.conf"},
            {"key": "b.conf", "path": "b.conf", "mode": 0o444}]}},
        {"name": "creds", "secret": {"secretName": "creds", "defaultMode": 0o400}},
        {"name": "all", "projected": {"sources": [
            {"configMap": {"name": "cfg", "items": [{"key": "a.conf", "path": "a.conf"}]}},
            {"secret": {"name": "creds"}},
            {"downwardAPI": {"items": [{"path": "labels",
                                        "fieldRef": {"fieldPath": "metadata.labels"}}]}}]}},
    ])
    resolved = ResolvedPod(
        pod_ip=new_pod_ip(),
        config_maps={"cfg": {"data": {"a.conf": "alpha", "b.conf": "beta"},
                             "binaryData": {"blob": base64.b64encode(b"\x00\x01").decode()}}},
        secrets={"creds": {"data": {"token": base64.b64encode(b"t0k3n").decode()}}},
    )
    handle = runtime.start(spec, resolved)
    handle.wait_for(running("main"), 10)

    def sh(script: str) -> str:
        result = handle.exec("main", ["sh", "-c", script])
        assert result.exit_code == 0, result
        return result.stdout.decode()

    assert sh("cat /etc/app/a.conf /etc/app/b.conf") == "alphabeta"
    assert sh("od -An -tx1 /etc/app/blob").split() == ["00", "01"]
    assert sh("stat -L -c %a /etc/app/a.conf") == "644\n"
    assert sh("ls /etc/picked | sort") == "b.conf\nconf\n"
    assert sh("cat /etc/picked/conf/renamed.conf") == "alpha"
    assert sh("stat -L -c %a /etc/picked/conf/renamed.conf /etc/picked/b.conf") == "600\n444\n"
    assert sh("cat /etc/creds/token; stat -L -c %a /etc/creds/token") == "t0k3n400\n"
    assert sh("cat /etc/all/a.conf /etc/all/token; echo; cat /etc/all/labels") == \
        'alphat0k3n\napp="files"'
    # kubelet's atomic-writer layout, read-only like kubelet mounts it
    assert sh("readlink /etc/app/a.conf") == "..data/a.conf\n"
    assert handle.exec("main", ["touch", "/etc/app/new"]).exit_code != 0

    # an update of the ConfigMap appears in the running container
    handle.refresh(ResolvedPod(pod_ip=resolved.pod_ip, secrets=resolved.secrets, config_maps={
        "cfg": {"data": {"a.conf": "ALPHA", "b.conf": "beta", "c.conf": "new"}}}))
    assert sh("cat /etc/app/a.conf /etc/app/c.conf") == "ALPHAnew"
    assert sh("ls /etc/app") == "a.conf\nb.conf\nc.conf\n"


def test_empty_dir_is_shared_between_containers_and_deleted_with_the_pod(
        runtime: PodRuntime) -> None:
    mounts = [{"name": "scratch", "mountPath": "/scratch"}]
    spec = pod("shared", [
        container("writer", "echo from-writer > /scratch/note; sleep 30", volumeMounts=mounts),
        container("reader", "until [ -f /scratch/note ]; do sleep 0.05; done; cat /scratch/note;"
                  " sleep 30", volumeMounts=mounts,
                  securityContext={"runAsUser": 4242}),
    ], volumes=[{"name": "scratch", "emptyDir": {}}])
    handle = runtime.start(spec, ResolvedPod(pod_ip=new_pod_ip()))
    handle.wait_for(running("reader"), 10)
    handle.wait_for(lambda _: handle.logs("reader") == b"from-writer\n", 10)
    # emptyDir is world-writable, so a non-root container can write into it too
    assert handle.exec("reader", ["sh", "-c", "echo x > /scratch/mine"]).exit_code == 0
    on_host = list(handle.pod_dir.glob("volumes/empty-dir/scratch/*"))
    assert sorted(p.name for p in on_host) == ["mine", "note"]
    handle.stop(0)
    assert not (handle.pod_dir / "volumes").exists()
    assert handle.logs("reader").startswith(b"from-writer\n")  # logs outlive stop


def test_pvc_host_dir_read_only_and_sub_path(runtime: PodRuntime, tmp_path: Path) -> None:
    pv = tmp_path / "pv-data"
    (pv / "sub").mkdir(parents=True)
    (pv / "existing.txt").write_text("kept\n")
    spec = pod("pvc", [container("main", "sleep 30", volumeMounts=[
        {"name": "data", "mountPath": "/data"},
        {"name": "data", "mountPath": "/ro", "readOnly": True},
        {"name": "data", "mountPath": "/only-sub", "subPath": "sub"},
        {"name": "data", "mountPath": "/made-sub", "subPath": "created/here"},
        {"name": "host", "mountPath": "/host-file"},
    ])], volumes=[
        {"name": "data", "persistentVolumeClaim": {"claimName": "pgdata"}},
        {"name": "host", "hostPath": {"path": str(tmp_path / "hp" / "f"), "type": "FileOrCreate"}},
    ])
    handle = runtime.start(spec, ResolvedPod(pod_ip=new_pod_ip(),
                                             pvc_paths={"pgdata": str(pv)}))
    handle.wait_for(running("main"), 10)
    ok = handle.exec("main", ["sh", "-c", "cat /data/existing.txt && echo written > /data/new "
                              "&& echo in-sub > /only-sub/file && echo hp > /host-file"])
    assert ok.exit_code == 0, ok
    assert ok.stdout == b"kept\n"
    denied = handle.exec("main", ["sh", "-c", "echo no > /ro/denied"])
    assert denied.exit_code != 0
    assert b"Read-only file system" in denied.stderr
    assert handle.exec("main", ["cat", "/ro/new"]).stdout == b"written\n"
    assert (pv / "new").read_text() == "written\n"
    assert (pv / "sub" / "file").read_text() == "in-sub\n"
    assert (pv / "created" / "here").is_dir()
    assert not (pv / "denied").exists()
    assert (tmp_path / "hp" / "f").read_text() == "hp\n"
    handle.stop(0)
    assert (pv / "new").exists()  # a PVC's data is never deleted by the runtime


def test_hosts_file_resolves_service_names(runtime: PodRuntime) -> None:
    services = [ServiceAddress("postgres", "shop", "127.0.1.21"),
                ServiceAddress("cache", "infra", "127.0.1.22")]
    spec = pod("resolver", [container("main", "sleep 30")], namespace="shop",
               hostAliases=[{"ip": "127.0.1.30", "hostnames": ["legacy.example"]}])
    handle = runtime.start(spec, ResolvedPod(pod_ip=new_pod_ip(), services=services))
    handle.wait_for(running("main"), 10)

    def resolve(name: str) -> str:
        result = handle.exec("main", ["getent", "hosts", name])
        return result.stdout.split()[0].decode() if result.exit_code == 0 else ""

    for name in ("postgres.shop.svc.cluster.local", "postgres.shop.svc", "postgres.shop",
                 "postgres"):
        assert resolve(name) == "127.0.1.21", name
    assert resolve("cache.infra.svc.cluster.local") == "127.0.1.22"
    assert resolve("cache") == ""  # short names only within the pod's namespace
    assert resolve("legacy.example") == "127.0.1.30"
    assert resolve("resolver") == handle.pod_ip
    assert handle.exec("main", ["hostname"]).stdout == b"resolver\n"
    # a Service created later appears without restarting the pod
    handle.refresh(ResolvedPod(pod_ip=handle.pod_ip, services=[
        *services, ServiceAddress("late", "shop", "127.0.1.23")]))
    assert resolve("late") == "127.0.1.23"
    # the host's /etc/hosts is untouched
    assert "postgres.shop" not in Path("/etc/hosts").read_text()


def test_service_account_token_is_mounted(runtime: PodRuntime) -> None:
    spec = pod("sa", [container("main", "sleep 30", securityContext={"runAsUser": 1000})],
               namespace="apps")
    handle = runtime.start(spec, ResolvedPod(pod_ip=new_pod_ip(), service_account_token="tok",
                                             ca_cert=b"PEM"))
    handle.wait_for(running("main"), 10)
    out = handle.exec("main", ["sh", "-c", "cd /var/run/secrets/kubernetes.io/serviceaccount && "
                               "cat token; echo; cat namespace; echo; cat ca.crt"])
    assert out.stdout == b"tok\napps\nPEM", out


def test_container_root_is_private(runtime: PodRuntime) -> None:
    marker = "/etc/amber-sandbox-test-marker"
    spec = pod("private", [container(
        "main", f"echo x > {marker} && mkdir -p /opt/amber-test-dir && sleep 30",
        volumeMounts=[{"name": "v", "mountPath": "/amber-test-mountpoint/deep"}])],
        volumes=[{"name": "v", "emptyDir": {}}])
    handle = runtime.start(spec, ResolvedPod(pod_ip=new_pod_ip()))
    handle.wait_for(running("main"), 10)
    assert handle.exec("main", ["cat", marker]).stdout == b"x\n"
    ps = handle.exec("main", ["ps", "-e", "-o", "pid="]).stdout.split()
    assert b"1" in ps and len(ps) <= 4  # its own PID namespace: sh, sleep, ps
    # nothing of it reached the host
    assert not os.path.exists(marker)
    assert not os.path.exists("/opt/amber-test-dir")
    assert not os.path.exists("/amber-test-mountpoint")
    assert state_of(handle.status(), "main")["ready"] is True


def test_unsatisfiable_volume_keeps_the_pod_pending(runtime: PodRuntime) -> None:
    spec = pod("nopvc", [container("main", "true")],
               volumes=[{"name": "d", "persistentVolumeClaim": {"claimName": "missing"}}])
    handle = runtime.start(spec, ResolvedPod(pod_ip=new_pod_ip()))
    status = handle.wait_for(
        lambda s: "missing" in state_of(s, "main")["state"]["waiting"].get("message", ""), 10)
    assert status["phase"] == "Pending"
    assert phase_in("Pending")(status)


def test_read_only_root_filesystem_keeps_volumes_writable(runtime: PodRuntime) -> None:
    spec = pod("rofs", [container(
        "main", "sleep 30", workingDir="/app/work",
        securityContext={"readOnlyRootFilesystem": True, "runAsUser": 3000},
        volumeMounts=[{"name": "tmp", "mountPath": "/tmp"}])],
        volumes=[{"name": "tmp", "emptyDir": {}}])
    handle = runtime.start(spec, ResolvedPod(pod_ip=new_pod_ip()))
    handle.wait_for(running("main"), 10)
    denied = handle.exec("main", ["touch", "/etc/nope"])
    assert denied.exit_code != 0 and b"Read-only file system" in denied.stderr
    assert handle.exec("main", ["touch", "/tmp/yes"]).exit_code == 0
    # the working directory and the user's passwd entry were made before the root went read-only
    assert handle.exec("main", ["sh", "-c", "pwd; id -un"]).stdout == b"/app/work\nuser3000\n"
