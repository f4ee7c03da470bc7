"""Training a few steps reproduces the stored losses and gradient norms (see trajectory.py)."""

from __future__ import annotations

import json

import pytest

from .trajectory import CASES, STEPS, STORE, run_case

TOLERANCE = {"rel": 1e-4, "abs": 1e-6}


@pytest.mark.parametrize("method", list(CASES))
def test_training_reproduces_the_stored_trajectory(method, tmp_path):
    stored = json.loads(STORE.read_text())[method]
    assert len(stored) == STEPS
    assert run_case(method, tmp_path) == [
        {field: pytest.approx(value, **TOLERANCE) for field, value in step.items()}
        for step in stored
    ]
