"""The sandbox's Kubernetes API server emulator: the real REST protocol over loopback HTTP,
with the object semantics of a real server (see docs/decisions/0010-sandbox-apiserver.md).

Entry point: ``server.Cluster.start()``.
"""
