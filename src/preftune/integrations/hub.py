"""Push a finished run to the Hugging Face Hub: weights (safetensors), tokenizer, generation
config and a model card, in one commit through `huggingface_hub`.

The token comes from the environment (`HF_TOKEN`), is registered with
`preftune.io.register_secret` so no error or log shows it, and is never written to disk.
`HF_ENDPOINT` points at another Hub (a mirror, or a local stand-in in the tests). A LoRA run
pushes its adapter (final-adapter/) unless `merge` asks for the merged weights (final/).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import tempfile
from pathlib import Path

from preftune.errors import ConfigError, DataError, PreftuneError
from preftune.integrations.card import model_card, pushes_adapter
from preftune.io import redact, register_secret

WEIGHT_FILES = ("*.safetensors", "model.safetensors.index.json", "config.json")


class HubError(PreftuneError):
    """The Hub refused a request (authentication, permissions, a bad repository id...)."""


def hub_token() -> str:
    token = os.environ.get("HF_TOKEN")
    if not token:
        raise ConfigError(
            "HF_TOKEN: set it to a Hugging Face token with write access "
            "(https://huggingface.co/settings/tokens) to push"
        )
    register_secret(token)
    return token


def files_to_push(run_dir: Path, *, merge: bool = False) -> dict[str, Path]:
    """{path in the repository: local file} of a finished run: final/ (full or merged
    weights), or for a LoRA run without `merge` the adapter plus final/'s tokenizer and
    generation config."""
    final, adapter = run_dir / "final", run_dir / "final-adapter"
    if not (final / "config.json").is_file():
        raise DataError("no final/ model; is the run finished?", source=str(run_dir))
    if merge and not adapter.is_dir():
        raise ConfigError(f"--merge: {run_dir} is not a LoRA run; its final/ is full weights")
    files = {path.name: path for path in sorted(final.iterdir()) if _pushable(path)}
    weights = final
    if pushes_adapter(run_dir, merge):
        weights = adapter
        files = {name: path for name, path in files.items() if not _is_weights(path)}
        files.update({path.name: path for path in sorted(adapter.iterdir()) if _pushable(path)})
    if not any(path.suffix == ".safetensors" for path in files.values()):
        raise DataError(f"{weights.name}/ holds no .safetensors weights", source=str(run_dir))
    return files


def _pushable(path: Path) -> bool:
    """A file of the model to push: not hidden, not pickled weights, not peft's own README."""
    return (
        path.is_file()
        and not path.name.startswith(".")
        and path.suffix != ".bin"
        and path.name != "README.md"  # the run's card takes its place
    )


def _is_weights(path: Path) -> bool:
    return any(path.match(pattern) for pattern in WEIGHT_FILES)


def push_run(
    run_dir: str | Path,
    repo_id: str,
    *,
    private: bool = False,
    merge: bool = False,
    license: str = "other",
) -> str:
    """Create `repo_id` (if needed) and commit the run's model and card; returns the commit URL."""
    from huggingface_hub import CommitOperationAdd, HfApi
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    run_dir = Path(run_dir)
    card = model_card(run_dir, repo_id=repo_id, license=license, merge=merge)  # a finished run
    files = files_to_push(run_dir, merge=merge)
    adapter = pushes_adapter(run_dir, merge)
    endpoint = os.environ.get("HF_ENDPOINT") or None
    api = HfApi(endpoint=endpoint, token=hub_token())
    with tempfile.TemporaryDirectory() as scratch:
        if "generation_config.json" not in files:
            files["generation_config.json"] = _generation_config(run_dir, Path(scratch))
        operations = [
            CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(path))
            for name, path in sorted(files.items())
        ]
        operations.append(CommitOperationAdd("README.md", card.encode("utf-8")))
        try:
            api.create_repo(repo_id, private=private, exist_ok=True)
            commit = api.create_commit(
                repo_id,
                operations,
                commit_message=f"preftune: {run_dir.name} ({'adapter' if adapter else 'model'})",
            )
        except HfHubHTTPError as error:
            status = error.response.status_code if error.response is not None else "?"
            first_line = str(error).splitlines()[0]
            raise HubError(
                redact(f"the Hub answered {status} for {repo_id}: {first_line}")
            ) from None
        except OfflineModeIsEnabled:
            raise HubError("HF_HUB_OFFLINE is set: unset it to push") from None
        except _transport_errors() as error:
            where = endpoint or "https://huggingface.co"
            raise HubError(redact(f"cannot reach the Hub at {where}: {error}")) from None
    return commit.commit_url


def _transport_errors() -> tuple[type[Exception], ...]:
    """Connection errors of the HTTP client huggingface_hub uses (httpx2; httpx before 2.0)."""
    found = []
    for module in ("httpx2", "httpx"):
        if importlib.util.find_spec(module) is not None:
            found.append(importlib.import_module(module).TransportError)
    return tuple(found)


def _generation_config(run_dir: Path, scratch: Path) -> Path:
    """final/'s generation config, made from its model config when the run saved none."""
    from transformers import AutoConfig, GenerationConfig

    config = AutoConfig.from_pretrained(run_dir / "final")
    GenerationConfig.from_model_config(config).save_pretrained(scratch)
    return scratch / "generation_config.json"
