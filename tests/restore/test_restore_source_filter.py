"""``--app`` with ``latest`` and ``backup list`` resolves as ``app show`` does: an exact id first
(a namespace application ``shop`` is not ``shop/shop``), else a name unique among the backups'
ids, and a name shared by several ids is ambiguous rather than a coin toss."""

from __future__ import annotations

from types import SimpleNamespace
from typing import cast

import pytest

from amber.backup.catalogue import BackupFilter
from amber.repo import snapshot as snapshots
from amber.util import errors


def _backup(*apps: str) -> snapshots.Snapshot:
    return cast(snapshots.Snapshot, SimpleNamespace(summary={"applications": list(apps)},
                                                    tags=["kubernetes"]))


def test_an_exact_id_wins_over_a_name() -> None:
    both = [_backup("shop"), _backup("shop/shop")]
    chosen = BackupFilter(app="shop").canonical(both)
    assert chosen.app == "shop"
    assert [chosen.matches(b) for b in both] == [True, False]


def test_a_unique_name_stands_for_its_id() -> None:
    found = [_backup("shop/web", "shop/db"), _backup("shop/web")]
    chosen = BackupFilter(app="web").canonical(found)
    assert chosen.app == "shop/web" and all(chosen.matches(b) for b in found)
    assert not BackupFilter(app="nothing").canonical(found).matches(found[0])


def test_a_name_of_several_ids_is_ambiguous() -> None:
    with pytest.raises(errors.UsageError, match=r"ambiguous.*dev/web, shop/web"):
        BackupFilter(app="web").canonical([_backup("shop/web"), _backup("dev/web")])
