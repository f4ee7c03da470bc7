"""Shared fixtures: a tiny random Llama-style model and tokenizer (see `preftune.testing`)."""

from __future__ import annotations

import pytest

from preftune.testing import build_tiny_model, build_tiny_tokenizer, save_tiny_model


@pytest.fixture(scope="session")
def tiny_tokenizer():
    return build_tiny_tokenizer()


@pytest.fixture()
def tiny_model(tiny_tokenizer):
    return build_tiny_model(len(tiny_tokenizer))


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tiny_tokenizer):
    return save_tiny_model(tmp_path_factory.mktemp("tiny-llama"))
