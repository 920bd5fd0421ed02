"""On object storage a create whose answer is lost is retried, and the retry meets the object
its first attempt made (412). The maintenance lease must know its own lease then, not report
the repository locked by... itself."""

from __future__ import annotations

from pathlib import Path

import pytest

from amber.repo import format as fmt
from amber.repo import locks
from amber.storage import local
from amber.util import errors


class LostAnswers(local.LocalBackend):
    """Every exclusive create is made, then answered "already there", as a retried PUT with
    If-None-Match is after its first attempt's answer was lost."""

    def create_exclusive(self, name: str, data: bytes) -> bool:
        super().create_exclusive(name, data)
        return False


def test_a_lease_whose_create_answer_was_lost_is_ours(tmp_path: Path) -> None:
    backend = LostAnswers(str(tmp_path))
    with locks.MaintenanceLease(backend):
        assert backend.exists(fmt.MAINTENANCE_LEASE)
    assert not backend.exists(fmt.MAINTENANCE_LEASE)


def test_a_lease_held_by_another_is_still_refused(tmp_path: Path) -> None:
    backend = LostAnswers(str(tmp_path))
    with locks.MaintenanceLease(local.LocalBackend(str(tmp_path))), \
            pytest.raises(errors.LockedError):
        locks.MaintenanceLease(backend)
