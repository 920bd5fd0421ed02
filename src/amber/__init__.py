"""Amber: Kubernetes-native backup and disaster recovery."""

__version__ = "0.1.0"
