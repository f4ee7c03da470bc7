"""`preftune push` against a loopback stand-in for the Hub API: what arrives, and that it loads."""

from __future__ import annotations

import shutil

import pytest
import torch
import yaml
from huggingface_hub import ModelCard
from safetensors.torch import load_file

from preftune.cli import main
from preftune.errors import ConfigError
from preftune.integrations.hub import HubError, push_run


def test_push_uploads_a_loadable_model_tokenizer_and_card(fake_hub, finished_runs, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    hub = fake_hub()
    run = finished_runs["full"]
    url = push_run(run, "alice/tiny-dpo", private=True, license="apache-2.0")
    repo = hub.repos["alice/tiny-dpo"]
    assert url.startswith(f"{hub.endpoint}/alice/tiny-dpo/commit/")
    assert repo["private"] is True
    assert {"model.safetensors", "config.json", "generation_config.json", "README.md"} <= set(
        repo["files"]
    )
    assert not any(name.endswith(".bin") for name in repo["files"])
    assert all(auth == f"Bearer {hub.token}" for _, _, auth in hub.requests)

    folder = hub.write_repo("alice/tiny-dpo", tmp_path / "download")
    pushed = AutoModelForCausalLM.from_pretrained(folder)
    trained = load_file(run / "final" / "model.safetensors")
    for name, tensor in pushed.state_dict().items():
        if name in trained:
            assert torch.equal(tensor, trained[name]), name
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert (
        tokenizer("hello")["input_ids"]
        == AutoTokenizer.from_pretrained(run / "final")("hello")["input_ids"]
    )
    card = ModelCard.load(folder / "README.md")
    assert card.data.license == "apache-2.0"
    assert card.data.tags == ["preftune", "dpo"]


def test_the_token_is_never_written_into_the_run(fake_hub, finished_runs):
    hub = fake_hub()
    run = finished_runs["full"]
    push_run(run, "alice/tokens")
    for path in run.rglob("*"):
        if path.is_file():
            assert hub.token.encode() not in path.read_bytes(), path


def test_a_lora_run_pushes_its_adapter_or_the_merged_weights(fake_hub, finished_runs, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    hub = fake_hub()
    run = finished_runs["lora"]
    push_run(run, "alice/adapter")
    push_run(run, "alice/merged", merge=True)
    adapter, merged = hub.repos["alice/adapter"]["files"], hub.repos["alice/merged"]["files"]
    assert {"adapter_config.json", "adapter_model.safetensors", "tokenizer.json"} <= set(adapter)
    assert "model.safetensors" not in adapter and "config.json" not in adapter
    assert "model.safetensors" in merged and "adapter_config.json" not in merged
    assert yaml.safe_load(adapter["README.md"].decode().split("---")[1])["library_name"] == "peft"
    assert "aligned with **dpo**" in adapter["README.md"].decode()  # ours, not peft's template

    config = yaml.safe_load((run / "config.yaml").read_text())
    base = AutoModelForCausalLM.from_pretrained(config["model"])
    loaded = PeftModel.from_pretrained(base, hub.write_repo("alice/adapter", tmp_path / "a"))
    assert any("lora_" in name for name, _ in loaded.named_parameters())


def test_merge_on_a_full_run_and_an_unfinished_run_are_refused(fake_hub, finished_runs, tmp_path):
    fake_hub()
    with pytest.raises(ConfigError, match="--merge: .* not a LoRA run"):
        push_run(finished_runs["full"], "alice/x", merge=True)
    unfinished = tmp_path / "unfinished"
    shutil.copytree(finished_runs["full"], unfinished)
    (unfinished / "summary.json").unlink()
    with pytest.raises(Exception, match="not a finished training run"):
        push_run(unfinished, "alice/x")


def test_a_refusing_hub_is_one_line_without_the_token(fake_hub, finished_runs):
    hub = fake_hub(refuse_with=401)
    with pytest.raises(HubError, match="401") as error:
        push_run(finished_runs["full"], "alice/x")
    assert hub.token not in str(error.value) and "\n" not in str(error.value)


def test_an_unreachable_hub_is_one_line(finished_runs, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_TOKEN", "hf_cli_token_0123456789")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # the discard port: refused
    with pytest.raises(HubError, match=r"cannot reach the Hub at http://127.0.0.1:9"):
        push_run(finished_runs["full"], "alice/x")


def test_offline_mode_is_named(finished_runs, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setenv("HF_TOKEN", "hf_cli_token_0123456789")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(HubError, match="HF_HUB_OFFLINE is set"):
        push_run(finished_runs["full"], "alice/x")


def test_cli_push_needs_a_token_and_a_repo_id(finished_runs, monkeypatch, capsys):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    assert main(["push", str(finished_runs["full"]), "--repo-id", "alice/x"]) == 2
    assert "HF_TOKEN" in capsys.readouterr().err
    monkeypatch.setenv("HF_TOKEN", "hf_cli_token_0123456789")
    assert main(["push", str(finished_runs["full"]), "--repo-id", "not a repo"]) == 2
    assert "--repo-id: 'not a repo' is not a Hub repository id" in capsys.readouterr().err


def test_cli_push_prints_the_commit(fake_hub, finished_runs, capsys):
    hub = fake_hub()
    assert main(["push", str(finished_runs["full"]), "--repo-id", "alice/cli"]) == 0
    assert f"{hub.endpoint}/alice/cli/commit/" in capsys.readouterr().out
    assert hub.repos["alice/cli"]["private"] is False


def test_push_to_hub_in_a_train_config_pushes_when_the_run_finishes(
    fake_hub, tmp_path, run_values, capsys
):
    hub = fake_hub()
    target = {"repo_id": "alice/from-config", "private": True}
    config = tmp_path / "train.yaml"
    config.write_text(yaml.safe_dump(run_values(max_steps=1, push_to_hub=target)))
    assert main(["train", "--config", str(config)]) == 0
    assert "pushed to alice/from-config" in capsys.readouterr().out
    assert "model.safetensors" in hub.repos["alice/from-config"]["files"]
    assert hub.repos["alice/from-config"]["private"] is True


def test_a_bad_push_to_hub_repo_id_names_the_key(make_config):
    with pytest.raises(ConfigError, match=r"push_to_hub\.repo_id: .*not a Hub repository id"):
        make_config(push_to_hub={"repo_id": "no-slash"})
