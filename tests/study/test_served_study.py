"""A study whose rows and baseline are sampled from `preftune serve` (the `generation` key):
greedy answers from the server are the local backend's, so every figure but the KL is too."""

from __future__ import annotations

import json
import re
import threading

import pytest
import torch

from preftune.errors import ConfigError
from preftune.experiments.config import study_from_dict
from preftune.experiments.layout import START, StudyLayout
from preftune.experiments.results import KL_SERVED
from preftune.experiments.runner import StudyRunner
from preftune.generate.server import make_server
from preftune.io import read_jsonl
from preftune.testing import (
    build_tiny_model,
    build_tiny_tokenizer,
    save_tiny_model,
    write_preference_files,
)


@pytest.fixture(scope="module")
def varied_model_dir(tmp_path_factory):
    """The tiny model with large weights, so its greedy answers differ from prompt to prompt
    (at the default init every answer is the same token repeated, which would prove little)."""
    folder = save_tiny_model(tmp_path_factory.mktemp("varied"))
    model = build_tiny_model(len(build_tiny_tokenizer()))
    torch.manual_seed(1)
    with torch.no_grad():
        for weight in (p for p in model.parameters() if p.dim() == 2):
            weight.normal_(std=0.3)
    model.save_pretrained(folder)
    return folder


@pytest.fixture()
def serve():
    """serve(model_path, name) -> base URL of `preftune serve`'s server on 127.0.0.1."""
    servers = []

    def start(model_path, name: str) -> str:
        server = make_server(str(model_path), port=0, name=name)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        host, port = server.server_address[:2]
        return f"http://{host}:{port}/v1"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def longer_answer_wins(messages, attempt):
    """A judge that prefers the longer response (the dpo-hh prompt's format)."""
    text = messages[-1]["content"]
    a = text.split("Response A:\n")[1].split("\n\nResponse B:")[0]
    b = text.split("Response B:\n")[1].split("\n\nFIRST")[0]
    return f"Comparison: lengths.\nMore helpful: {'A' if len(a) >= len(b) else 'B'}"


def study(tmp_path, model_dir, judge_url, **served) -> dict:
    pairs = str(write_preference_files(tmp_path)["paired"])
    judge = {"type": "openai", "base_url": judge_url, "model": "judge", "prompt": "dpo-hh"}
    evaluations = [{"name": "vs-start", "judge": judge}]
    if "baseline" in served:
        evaluations.append(
            {"name": "vs-served", "judge": judge, "baseline": "served", **served["baseline"]}
        )
    return {
        "name": "served",
        "model": str(model_dir),
        "generation": served.get("start"),
        "data": {"train": {"path": pairs}, "heldout": {"path": pairs, "limit": 4}},
        "train": {"batch_size": 4, "max_prompt_length": 48, "max_length": 64, "lr": 1e-3},
        "methods": [{"method": "dpo", "generation": served.get("dpo")}],
        "evaluation": {
            "num_prompts": 4,
            "max_new_tokens": 8,
            "batch_size": 4,
            "kl_samples": 0,
            "evaluations": evaluations,
        },
    }


def test_rows_and_a_baseline_from_served_models_equal_the_local_ones(
    tmp_path, varied_model_dir, chat_server, serve
):
    judge_url = chat_server(longer_answer_wins).base_url
    local = StudyLayout(tmp_path / "local")
    config = study_from_dict(study(tmp_path, varied_model_dir, judge_url))
    StudyRunner(config, local.root, log=lambda _: None).run()

    start_url = serve(varied_model_dir, "start")
    dpo_url = serve(local.run("dpo"), "dpo")  # the run the local study trained
    start = {"backend": "openai", "base_url": start_url, "model": "start", "concurrency": 2}
    dpo = {"backend": "openai", "base_url": dpo_url, "model": "dpo"}
    config = study(
        tmp_path, varied_model_dir, judge_url, start=start, dpo=dpo, baseline={"generation": start}
    )
    served = StudyLayout(tmp_path / "served")
    lines = []
    StudyRunner(study_from_dict(config), served.root, log=lines.append).run()
    assert not (served.root / "failures").exists(), lines

    for label in (START, "dpo"):
        mine, theirs = _by_id(served.samples(label)), _by_id(local.samples(label))
        assert [r["response"] for r in mine] == [r["response"] for r in theirs]
        assert [r["finish_reason"] for r in mine] == [r["finish_reason"] for r in theirs]
        assert {r["generation_config"]["backend"] for r in mine} == {"openai"}
        assert all("logp" not in r for r in mine) and all("logp" in r for r in theirs)
    assert len({r["response"] for r in read_jsonl(local.samples("dpo"))}) > 1

    served_win = _win_rate(served, "dpo", "vs-start")
    assert served_win == _win_rate(local, "dpo", "vs-start")
    assert _win_rate(served, "dpo", "vs-served") == served_win  # the baseline answers as start
    baseline = read_jsonl(served.root / "baselines" / "vs-served" / "samples.jsonl")
    assert sorted(r["response"] for r in baseline) == sorted(
        r["response"] for r in read_jsonl(local.samples(START))
    )

    stats = _stats(served, "dpo")
    assert stats["kl"] is None and stats["kl_estimate"] == KL_SERVED
    assert isinstance(_stats(local, "dpo")["kl"], float)
    assert _stats(served, START)["kl"] == 0.0  # the start row is its own reference
    report = (served.root / "report.md").read_text()
    assert "dpo answered from a served model (`generation`)" in report


def _by_id(path) -> list[dict]:
    """A samples file's rows by prompt id (served rows are written as their answers arrive)."""
    return sorted(read_jsonl(path), key=lambda row: row["id"])


def _win_rate(layout: StudyLayout, label: str, evaluation: str) -> float:
    return json.loads((layout.judged(label, evaluation) / "results.json").read_text())["win_rate"]


def _stats(layout: StudyLayout, label: str) -> dict:
    return json.loads(layout.stats(label).read_text())


SERVER = {"backend": "openai", "base_url": "http://127.0.0.1:9/v1", "model": "m"}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda c: c["methods"][0].update(generation={"backend": "openai", "model": "m"}),
            "methods.0.generation: base_url: the openai backend needs base_url and model",
        ),
        (
            lambda c: c.update(generation={"base_url": "http://x/v1"}),
            "generation: base_url: a setting of backend 'openai' (the backend is local)",
        ),
        (
            lambda c: c.update(generation={"extra_body": {"repeat_penalty": 1.0}}),
            "generation: extra_body: a setting of backend 'openai' (the backend is local)",
        ),
        (
            lambda c: c["evaluation"]["evaluations"][0].update(baseline="served"),
            "baseline: 'served' and generation (backend openai) name the baseline's server",
        ),
        (
            lambda c: c["evaluation"]["evaluations"][0].update(generation=SERVER),
            "baseline: 'served' and generation (backend openai) name the baseline's server",
        ),
        (
            lambda c: c.update(seeds=[0, 1]) or c["methods"][0].update(generation=SERVER),
            "methods.0.generation: one served model answers for one run",
        ),
        (
            lambda c: c.update(generation={**SERVER, "extra_body": {"temperature": 1}}),
            "generation: extra_body.temperature: set by the study's evaluation settings",
        ),
        (
            lambda c: c.update(generation={**SERVER, "concurrency": 0}),
            "generation.concurrency: Input should be greater than 0",
        ),
    ],
)
def test_generation_settings_are_checked_naming_the_field(
    tmp_path, tiny_model_dir, change, message
):
    config = study(tmp_path, tiny_model_dir, "http://127.0.0.1:9/v1")
    change(config)
    with pytest.raises(ConfigError, match="study config: .*" + re.escape(message)):
        study_from_dict(config)
