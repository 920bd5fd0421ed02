"""Backups of applications: their Kubernetes resources (and, in later issues, their data)."""
