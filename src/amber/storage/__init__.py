"""Blob backends: where repository objects live (local filesystem now, object storage later)."""
