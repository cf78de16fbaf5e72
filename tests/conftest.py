"""Every test process (and the processes its tests start) uses a floor cache of its own, a fresh
temporary folder, never the user's: tests share its entries (floors once per target and size per
session) and leave nothing behind."""

import os
import shutil
import tempfile

import pytest

_CACHE = tempfile.mkdtemp(prefix="difflab-test-cache-")
os.environ["DIFFLAB_CACHE_DIR"] = _CACHE


@pytest.fixture(scope="session", autouse=True)
def _floor_cache():
    yield _CACHE
    shutil.rmtree(_CACHE, ignore_errors=True)
