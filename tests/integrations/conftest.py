"""Finished tiny runs to card and push, a config builder, and a loopback stand-in for the Hub.

`fake_hub` answers the requests huggingface_hub makes for `create_repo` and `create_commit`
(repository creation, README metadata validation, pre-upload, the NDJSON commit) with every
file marked a "regular" upload, so file contents arrive inline in the commit; it keeps what
arrived in `hub.repos[repo_id]` ({"private": bool, "files": {path: bytes}}) and every
request's path and Authorization header in `hub.requests`. A path it does not know is a 404
that names it, so a new request of a later huggingface_hub shows in the test's failure.
"""

from __future__ import annotations

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import yaml

from preftune.testing import write_preference_files


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PREFTUNE_CACHE", str(tmp_path / "cache"))


@pytest.fixture()
def paired_file(tmp_path):
    return write_preference_files(tmp_path, 4)["paired"]


def tiny_run(model_dir, data, output_dir, **overrides) -> dict:
    """The values of a fast DPO run of the tiny model (3 steps of 2 groups); overrides win."""
    return {
        "model": str(model_dir),
        "method": "dpo",
        "data": {"path": str(data)},
        "batch_size": 2,
        "max_steps": 3,
        "lr": 1e-3,
        "max_length": 64,
        "max_prompt_length": 32,
        "output_dir": str(output_dir),
        **overrides,
    }


@pytest.fixture()
def run_values(tmp_path, tiny_model_dir, paired_file):
    """`tiny_run` on this test's data, into tmp_path/runs: keyword arguments override."""
    return lambda **overrides: tiny_run(tiny_model_dir, paired_file, tmp_path / "runs", **overrides)


@pytest.fixture()
def make_config(run_values):
    """The TrainConfig of `run_values(**overrides)`."""
    from preftune.config import build_train_config

    return lambda **overrides: build_train_config(run_values(**overrides))


@pytest.fixture(scope="module")
def finished_runs(tmp_path_factory, tiny_model_dir):
    """{"full": a finished DPO run, "lora": a finished LoRA DPO run} (trained once a module)."""
    from preftune.config import build_train_config
    from preftune.train import train

    root = tmp_path_factory.mktemp("finished")
    data = write_preference_files(root, 4)["paired"]
    lora = {"r": 2, "target_modules": ["q_proj"]}
    runs = {}
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PREFTUNE_CACHE", str(root / "cache"))
        for name, extra in (("full", {}), ("lora", {"lora": lora})):
            values = tiny_run(
                tiny_model_dir, data, root / "runs", run_name=name, max_steps=2, **extra
            )
            runs[name] = train(build_train_config({**values, "hparams": {"beta": 0.2}}))
    return runs


class FakeHub:
    def __init__(self, refuse_with: int | None = None):
        self.repos: dict[str, dict] = {}
        self.requests: list[tuple[str, str, str | None]] = []
        self.refuse_with = refuse_with
        self.token = "hf_test_token_0123456789"  # what the fake_hub fixture sets as HF_TOKEN
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                hub.requests.append(("POST", self.path, self.headers.get("Authorization")))
                if hub.refuse_with:
                    return self._json(hub.refuse_with, {"error": "Invalid credentials in header"})
                parts = self.path.split("?")[0].strip("/").split("/")
                if parts[:3] == ["api", "repos", "create"]:
                    return self._create(json.loads(body))
                if parts == ["api", "validate-yaml"]:
                    return self._json(200, {"errors": [], "warnings": []})
                if len(parts) == 6 and parts[:2] == ["api", "models"]:
                    repo_id, action = f"{parts[2]}/{parts[3]}", parts[4]
                    if repo_id not in hub.repos:
                        return self._json(404, {"error": f"Repository {repo_id} not found"})
                    if action == "preupload":
                        files = json.loads(body)["files"]
                        answer = [
                            {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False}
                            for f in files
                        ]
                        return self._json(200, {"files": answer})
                    if action == "commit":
                        return self._commit(repo_id, body)
                self._json(404, {"error": f"fake hub: no route for POST {self.path}"})

            def do_GET(self):
                hub.requests.append(("GET", self.path, self.headers.get("Authorization")))
                self._json(404, {"error": f"fake hub: no route for GET {self.path}"})

            def _create(self, payload):
                repo_id = f"{payload['organization']}/{payload['name']}"
                private = payload.get("visibility", "public") == "private"
                if repo_id in hub.repos:
                    return self._json(409, {"error": "You already created this model repo"})
                hub.repos[repo_id] = {"private": private, "files": {}}
                self._json(200, {"url": f"{hub.endpoint}/{repo_id}"})

            def _commit(self, repo_id, body):
                for line in body.decode().splitlines():
                    item = json.loads(line)
                    if item["key"] == "file":
                        value = item["value"]
                        assert value["encoding"] == "base64"
                        hub.repos[repo_id]["files"][value["path"]] = base64.b64decode(
                            value["content"]
                        )
                oid = "0" * 40
                self._json(
                    200,
                    {
                        "commitUrl": f"{hub.endpoint}/{repo_id}/commit/{oid}",
                        "commitOid": oid,
                        "pullRequestUrl": None,
                    },
                )

            def _json(self, code, payload):
                data = json.dumps(payload).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def write_repo(self, repo_id: str, folder):
        """The files that arrived in `repo_id`, written to `folder` (to load them back)."""
        folder.mkdir(parents=True, exist_ok=True)
        for path, data in self.repos[repo_id]["files"].items():
            (folder / path).parent.mkdir(parents=True, exist_ok=True)
            (folder / path).write_bytes(data)
        return folder

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture()
def fake_hub(monkeypatch):
    """A FakeHub with HF_ENDPOINT pointing at it and HF_TOKEN set; `fake_hub(401)` refuses."""
    hubs = []

    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)  # a loopback Hub

    def start(refuse_with: int | None = None) -> FakeHub:
        hubs.append(FakeHub(refuse_with))
        monkeypatch.setenv("HF_ENDPOINT", hubs[-1].endpoint)
        monkeypatch.setenv("HF_TOKEN", hubs[-1].token)
        return hubs[-1]

    yield start
    for hub in hubs:
        hub.close()


@pytest.fixture()
def make_study(tmp_path, tiny_model_dir, paired_file):
    """A study folder holding `run` as its row 'dpo', with judged figures and a ranking written
    here (no evaluation runs) and its report built; returns (layout, StudyConfig)."""
    import shutil

    from preftune.experiments.config import study_from_dict
    from preftune.experiments.layout import StudyLayout
    from preftune.experiments.report import build_report
    from preftune.io import atomic_write_json

    def build(run, **settings):
        config = study_from_dict(
            {
                "name": "synthetic",
                "model": str(tiny_model_dir),
                "data": {
                    "train": {"path": str(paired_file)},
                    "heldout": {"path": str(paired_file)},
                },
                "methods": [{"method": "dpo"}],
                "evaluation": {"evaluations": [{"name": "judge", "judge": {"type": "openai"}}]},
                **settings,
            }
        )
        layout = StudyLayout(tmp_path / "study")
        layout.root.mkdir()
        layout.config.write_text(yaml.safe_dump(config.model_dump(mode="json")))
        shutil.copytree(run, layout.run("dpo"))
        for label, reward in (("start", 0.25), ("dpo", 0.5)):
            atomic_write_json(
                layout.stats(label),
                {"gold_reward": reward, "kl": 1.5, "length": 30.0, "repetition": 0.2, "n": 4},
            )
        atomic_write_json(
            layout.judged("dpo", "judge") / "results.json",
            {"win_rate": 0.75, "ci_low": 0.6, "ci_high": 0.88, "wins": 15, "losses": 5, "n": 20},
        )
        entries = [("dpo", 0.75, 0.6, 0.9, 1), ("start", 0.25, 0.1, 0.4, 2)]
        atomic_write_json(
            layout.ranking("judge") / "ranking.json",
            {
                "ranking": [
                    {"label": label, "score": s, "ci_low": lo, "ci_high": hi, "tier": t, "n": 20}
                    for label, s, lo, hi, t in entries
                ],
                "head_to_head": {},
            },
        )
        build_report(layout.root)
        return layout, config

    return build
