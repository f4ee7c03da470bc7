"""A content-addressed tensor cache on disk: entries keyed by a hash of what they were computed from.

A folder holds shards (`<hash>.pt`, each a dict key -> tensor), written atomically
(`preftune.io.atomic_write`), so runs of different methods that share sequences share their
entries and a killed run never leaves a half-written shard behind.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

import torch

from preftune.io import atomic_write


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


class TensorCache:
    """All shards of one folder, loaded at once; `add` writes new entries as a new shard."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.entries: dict[str, torch.Tensor] = {}
        for shard in sorted(folder.glob("*.pt")) if folder.exists() else []:
            self.entries.update(torch.load(shard, weights_only=True))

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
        if not new or not persist:
            return
        name = content_key(*sorted(new)) + ".pt"
        atomic_write(self.folder / name, lambda stream: torch.save(new, stream))
