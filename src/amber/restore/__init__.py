"""Restores of backups: plan, order, transform, apply."""
