"""Small data files for multi-process runs, and a private cache per test."""

from __future__ import annotations

import pytest

from preftune.testing import write_preference_files


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("PREFTUNE_CACHE", str(cache))
    return cache


@pytest.fixture()
def data_files(tmp_path):
    """paired, binary and scored (4 responses a prompt) versions of the same 8 prompts."""
    return write_preference_files(tmp_path)
