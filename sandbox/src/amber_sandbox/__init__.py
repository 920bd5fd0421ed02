"""A sandbox Kubernetes cluster for tests and the quickstart.

An API server emulator that speaks the real REST protocol (so kubectl and client libraries work
against it) and a node agent that runs pods as local processes. Nothing outside this package and
the CLI's ``sandbox`` command imports it (an import-linter contract checks the engine side).
"""
