"""Each operator test removes the policies it made (they are cluster-scoped and would act on
the next test's namespaces); the module's location stays for the module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from amber.operator import api


@pytest.fixture(autouse=True)
def _policies_removed(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "env" in request.fixturenames:
        request.getfixturevalue("env").drop(api.POLICY)
