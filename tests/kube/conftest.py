"""Fixtures shared by tests/kube (helpers: kube_helpers.py)."""

import pytest

from kube_helpers import Procs


@pytest.fixture()
def procs(tmp_path):
    """Starts processes for a test; every one is killed by PID at teardown."""
    p = Procs(tmp_path)
    yield p
    p.stop_all()
