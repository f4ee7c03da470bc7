"""A content-addressed tensor cache on disk: entries keyed by a hash of what they were computed from.

A folder holds shards (`<hash>.pt`, each a dict key -> tensor), written atomically
(`preftune.io.atomic_write`), so runs of different methods that share sequences share their
entries and a killed run never leaves a half-written shard behind. A shard that cannot be read
(truncated, garbage, or holding anything but tensors) is skipped with a warning and its
entries are computed again.
"""

from __future__ import annotations

import hashlib
import pickle
import warnings
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from preftune.io import atomic_write


class UnreadableTensorFile(ValueError):
    """A `.pt` file that is damaged or holds more than tensors and plain values."""


def load_tensor_file(path: Path) -> Any:
    """`torch.load(path, weights_only=True)`: tensors, numbers, strings, lists, tuples, dicts.

    Anything else (a pickled object, whose loading could run code) is refused, as is a damaged
    file, with an `UnreadableTensorFile` saying which and naming `path`.
    """
    if not zipfile.is_zipfile(path):  # torch.save writes a zip archive
        raise UnreadableTensorFile(f"{path} is damaged or truncated (not a torch.save archive)")
    try:
        return torch.load(path, weights_only=True, map_location="cpu")
    except pickle.UnpicklingError:
        raise UnreadableTensorFile(
            f"{path} holds objects other than tensors and plain values; refused (loading it "
            "could run code)"
        ) from None
    except (RuntimeError, EOFError, ValueError, OSError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise UnreadableTensorFile(f"{path} is damaged or truncated ({reason})") from None


def content_key(*parts: Iterable[int] | str | bytes) -> str:
    """A stable hash of token-id sequences and/or strings."""
    digest = hashlib.blake2b(digest_size=16)
    for part in parts:
        if isinstance(part, str):
            part = part.encode()
        elif not isinstance(part, bytes):
            part = torch.tensor(list(part), dtype=torch.int64).numpy().tobytes()
        digest.update(len(part).to_bytes(8, "little"))
        digest.update(part)
    return digest.hexdigest()


def _read_shard(shard: Path) -> dict[str, torch.Tensor]:
    entries = load_tensor_file(shard)
    if not isinstance(entries, dict) or not all(
        isinstance(key, str) and isinstance(value, torch.Tensor) for key, value in entries.items()
    ):
        raise UnreadableTensorFile(f"{shard} is not a cache shard (a dict of tensors)")
    return entries


class TensorCache:
    """All shards of one folder, loaded at once; `add` writes new entries as a new shard.
    Without a folder (None) the entries stay in memory."""

    def __init__(self, folder: Path | None):
        self.folder = folder
        self.entries: dict[str, torch.Tensor] = {}
        for shard in sorted(folder.glob("*.pt")) if folder and folder.exists() else []:
            try:
                self.entries.update(_read_shard(shard))
            except UnreadableTensorFile as error:
                warnings.warn(
                    f"cache shard skipped, its entries are computed again: {error}", stacklevel=2
                )

    def __contains__(self, key: str) -> bool:
        return key in self.entries

    def __getitem__(self, key: str) -> torch.Tensor:
        return self.entries[key]

    def missing(self, keys: Iterable[str]) -> list[str]:
        return [key for key in dict.fromkeys(keys) if key not in self.entries]

    def add(self, new: dict[str, torch.Tensor], *, persist: bool = True) -> None:
        """Add entries; with `persist`, also write them to the folder as a new shard (on
        several processes only one writes, the others keep them in memory)."""
        self.entries.update(new)
        if not new or not persist or self.folder is None:
            return
        name = content_key(*sorted(new)) + ".pt"
        atomic_write(self.folder / name, lambda stream: torch.save(new, stream))
