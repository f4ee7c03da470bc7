"""A run stopped at any point after its last training step resumes to the finished run.

Each stop is a KeyboardInterrupt raised at one point of the end of `train` (what a kill leaves
on disk: the atomic writes before it are complete, the one in progress is a staging folder).
"""

import json

import pytest
import torch
from safetensors.torch import load_file

import preftune.train.loop as loop
import preftune.train.run as run_module
from preftune.train import train
from preftune.train.checkpoint import latest_checkpoint
from preftune.train.metrics import TIMING_KEYS


def _stop(*args, **kwargs):
    raise KeyboardInterrupt


def _stop_in_final(monkeypatch):
    real = run_module.atomic_save  # writes the model, then the stop comes before the tokenizer
    monkeypatch.setattr(
        run_module, "atomic_save", lambda target, model, _: real(target, model, _stop)
    )


def _stop_before_summary(monkeypatch):
    real = loop.atomic_write_json

    def write(path, data, **kwargs):
        if path.name == "summary.json":
            raise KeyboardInterrupt
        return real(path, data, **kwargs)

    monkeypatch.setattr(loop, "atomic_write_json", write)


STOPS = {
    "after the final checkpoint": lambda mp: mp.setattr(loop, "save_final", _stop),
    "while writing final/": _stop_in_final,
    "after final/, before summary.json": _stop_before_summary,
}


def _metrics(run_dir):
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in row.items() if k not in TIMING_KEYS} for row in rows]


def _same_final(a, b) -> bool:
    a, b = (
        load_file(a / "final" / "model.safetensors"),
        load_file(b / "final" / "model.safetensors"),
    )
    return a.keys() == b.keys() and all(torch.equal(a[name], b[name]) for name in a)


@pytest.mark.parametrize("save_every", [2, None])
def test_every_stop_after_training_resumes_to_the_finished_run(
    make_config, paired_file, monkeypatch, save_every
):
    settings = {"max_steps": 3, "save_every": save_every}
    straight = train(make_config("dpo", paired_file, run_name="straight", **settings))
    for name, stop in STOPS.items():
        config = make_config("dpo", paired_file, run_name=name.replace("/", ""), **settings)
        with monkeypatch.context() as patch:
            stop(patch)
            with pytest.raises(KeyboardInterrupt):
                train(config)
        assert not (config.run_dir / "summary.json").exists(), name

        resumed = train(config.model_copy(update={"resume": True}))
        assert (resumed / "summary.json").exists(), name
        assert _same_final(resumed, straight), name
        assert _metrics(resumed) == _metrics(straight), name
        assert not list(resumed.glob(".final-*")), f"{name}: staging left behind"
        kept = latest_checkpoint(resumed)
        assert (kept.name if kept else None) == ("step-3" if save_every else None), name
