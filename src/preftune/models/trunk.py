"""The frozen trunk's cache: with only the top k of N layers training (`trainable_layers`), the
bottom N - k never change, so the hidden state they give a token depends on its prefix alone.

`TrunkStates` keeps those layer-(N - k) states on disk, content-addressed like the reference
log-probs (`cache_dir()/trunk/<model fingerprint>/depth-<N - k>`): one entry per prompt and
one per (prompt, response), so the methods of a study, whose sequences are the same, share
them. A training step then runs only the top k layers (`TrunkStates.top_hidden`) on the
cached states laid out like the step's input, with the decoder's own rotary embedding and
mask. States come from the reference precompute pass (`capturing`, a forward hook, no extra
cost) or from a trunk-only pass (`fill`: the bottom layers, no grad) for what is still missing.

Running a sub-range of a Hugging Face decoder depends on the model family (Gemma scales its
input embeddings, for one), so only `SUPPORTED_MODEL_TYPES` are cached, and `self_check`
compares a micro-batch's log-probs both ways before training uses it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import torch

from preftune.data.batch import PreferenceBatch, TokenizedGroup, collate
from preftune.models.disk_cache import TensorCache, content_key
from preftune.models.engine import merge_by_prompt, sequence_logps
from preftune.models.layouts import Layout, build_layout

SUPPORTED_MODEL_TYPES = ("llama", "mistral", "qwen2", "qwen3")
DEFAULT_CAP_BYTES = 1 << 30  # trunk_cache: auto caches at most 1 GiB (in memory while training)
SELF_CHECK_GROUPS = 2
# Self-check tolerance on a response's summed log-prob: |a - b| <= rtol |a| + atol (tokens)
SELF_CHECK_TOLERANCE = {torch.float32: (1e-4, 1e-4), torch.float64: (1e-8, 1e-8)}
HALF_TOLERANCE = (2e-2, 2e-2)


def decoder_layers(model: torch.nn.Module) -> torch.nn.ModuleList:
    """The decoder's stack of transformer layers (`get_decoder().layers`)."""
    layers = getattr(model.get_decoder(), "layers", None)
    if not isinstance(layers, torch.nn.ModuleList):
        raise TypeError(f"{type(model).__name__}: its decoder has no `layers` ModuleList")
    return layers


def frozen_depth(model: torch.nn.Module) -> int:
    """How many bottom layers (with the input embeddings) have no trainable parameter."""
    if any(p.requires_grad for p in model.get_input_embeddings().parameters()):
        return 0
    depth = 0
    for layer in decoder_layers(model):
        if any(p.requires_grad for p in layer.parameters()):
            break
        depth += 1
    return depth


def unsupported_reason(model: torch.nn.Module) -> str | None:
    """Why this model's trunk cannot be cached, or None: its family is not one whose decoder
    was checked layer range by layer range, or it applies dropout (the cached states are the
    eval-mode ones)."""
    config = model.config
    if config.model_type not in SUPPORTED_MODEL_TYPES:
        return (
            f"model type '{config.model_type}' is not one of {SUPPORTED_MODEL_TYPES}, whose "
            "decoders run a range of layers safely"
        )
    dropout = {
        name: value
        for name, value in config.to_dict().items()
        if "dropout" in name and isinstance(value, float) and value > 0
    }
    if dropout:
        return f"the model applies dropout ({dropout}); the cached states are dropout-free"
    if frozen_depth(model) == 0:
        return "no bottom layer is frozen"
    return None


def shared_depth(model: torch.nn.Module, other: torch.nn.Module) -> int:
    """How many bottom layers (with the input embeddings and the rotary embedding) `other`
    has bit for bit like `model`, with the same attention implementation: a model trained with
    `trainable_layers` shares its frozen trunk with the model it started from, so their
    layer-k states of a batch are the same. 0 for a family outside `SUPPORTED_MODEL_TYPES`.

    >>> from preftune.testing import build_tiny_model
    >>> start, trained = build_tiny_model(300), build_tiny_model(300)
    >>> _ = trained.model.layers[1].mlp.up_proj.weight.data.add_(1.0)
    >>> shared_depth(start, trained), shared_depth(start, build_tiny_model(300, seed=1))
    (1, 0)
    """
    if model.config.model_type not in SUPPORTED_MODEL_TYPES or type(model) is not type(other):
        return 0
    attention = [getattr(m.config, "_attn_implementation", None) for m in (model, other)]
    if attention[0] != attention[1]:
        return 0
    rotary = [getattr(m.get_decoder(), "rotary_emb", None) for m in (model, other)]
    scaling = [getattr(r, "attention_scaling", None) for r in rotary]
    pieces = [(model.get_input_embeddings(), other.get_input_embeddings())]
    if None not in rotary:
        pieces.append(tuple(rotary))
    if scaling[0] != scaling[1] or not all(_same_tensors(a, b) for a, b in pieces):
        return 0
    depth = 0
    for layer, twin in zip(decoder_layers(model), decoder_layers(other), strict=True):
        if not _same_tensors(layer, twin):
            break
        depth += 1
    return depth


def _same_tensors(module: torch.nn.Module, other: torch.nn.Module) -> bool:
    """Every parameter and buffer equal, bit for bit (same dtype, device, shape and values)."""
    ours = {**dict(module.named_parameters()), **dict(module.named_buffers())}
    theirs = {**dict(other.named_parameters()), **dict(other.named_buffers())}
    return ours.keys() == theirs.keys() and all(
        (ours[k].dtype, ours[k].device) == (theirs[k].dtype, theirs[k].device)
        and torch.equal(ours[k], theirs[k])
        for k in ours
    )


def prompt_key(prompt_ids: Sequence[int]) -> str:
    return content_key("prompt", prompt_ids)


def response_key(prompt_ids: Sequence[int], response_ids: Sequence[int]) -> str:
    return content_key(prompt_ids, response_ids)


def group_keys(prompt_ids: Sequence[int], responses: Sequence[Sequence[int]]) -> list[str]:
    return [prompt_key(prompt_ids), *(response_key(prompt_ids, r) for r in responses)]


def _piece(batch: PreferenceBatch, g: int, r: int | None) -> tuple[str, list[int]]:
    """The cache key and tokens of a layout piece: group g's prompt (r None) or response r."""
    prompt = batch.prompt_ids[g]
    if r is None:
        return prompt_key(prompt), prompt
    response = batch.response_ids[g][r]
    return response_key(prompt, response), response


def estimated_bytes(model: torch.nn.Module, groups: list[TokenizedGroup]) -> int:
    """The states' size for `groups`: one vector per distinct prompt and response token."""
    tokens = {prompt_key(g.prompt_ids): len(g.prompt_ids) for g in groups}
    for group in groups:
        for response in group.response_ids:
            tokens[response_key(group.prompt_ids, response)] = len(response)
    width = model.config.get_text_config().hidden_size
    return sum(tokens.values()) * width * model.get_input_embeddings().weight.element_size()


def folder_bytes(folder: Path) -> int:
    """What a cache folder's shards take (`TensorCache` loads all of them)."""
    return sum(f.stat().st_size for f in folder.glob("*.pt")) if folder.exists() else 0


class _Passthrough(torch.nn.Module):
    """Stands in for a layer that is skipped: returns its input states."""

    def forward(self, hidden_states, *args, **kwargs):
        return hidden_states


@contextmanager
def _only_layers(model: torch.nn.Module, keep: range) -> Iterator[None]:
    """Run the decoder with the layers outside `keep` skipped. The layer list keeps its
    length, so per-layer settings (Qwen's sliding-window layer types) stay in place."""
    decoder = model.get_decoder()
    layers = decoder.layers
    decoder.layers = torch.nn.ModuleList(
        layer if i in keep else _Passthrough() for i, layer in enumerate(layers)
    )
    try:
        yield
    finally:
        decoder.layers = layers


@contextmanager
def _layer_output(layer: torch.nn.Module) -> Iterator[list[torch.Tensor]]:
    captured: list[torch.Tensor] = []

    def hook(_module, _inputs, output):
        captured.append(output[0] if isinstance(output, tuple) else output)

    handle = layer.register_forward_hook(hook)
    try:
        yield captured
    finally:
        handle.remove()


class TrunkStates:
    """Layer-`depth` hidden states of prompts and responses, cached in `folder` (None: in memory
    only).

    >>> import tempfile
    >>> from preftune.testing import build_tiny_model
    >>> model = build_tiny_model(300).requires_grad_(False)
    >>> _ = model.model.layers[1].requires_grad_(True)
    >>> trunk = TrunkStates(Path(tempfile.mkdtemp()), depth=frozen_depth(model))
    >>> batch = collate([TokenizedGroup("a", [5, 6], [[7, 8], [9]], [None] * 2, [None] * 2)])
    >>> cached = sequence_logps(model, batch, trunk=trunk).logps
    >>> torch.allclose(cached, sequence_logps(model, batch).logps, atol=1e-5)
    True
    """

    def __init__(self, folder: Path | None, depth: int):
        self.cache = TensorCache(folder)
        self.depth = depth
        self.new: dict[str, torch.Tensor] = {}

    def _keep(self, batch: PreferenceBatch, layout: Layout, states: torch.Tensor) -> None:
        """Store the states of every piece of `batch` not cached yet (in memory until `save`)."""
        for row, column, g, r in layout.pieces:
            key, tokens = _piece(batch, g, r)
            if key not in self.cache:
                state = states[row, column : column + len(tokens)].detach().to("cpu").clone()
                self.cache.add({key: state}, persist=False)
                self.new[key] = state

    @contextmanager
    def capturing(self, model: torch.nn.Module, batch: PreferenceBatch, layout: str):
        """Keep the states of `batch` from a full forward pass run inside (`layout` the one it
        runs, resolved), e.g. the reference precompute pass."""
        with _layer_output(decoder_layers(model)[self.depth - 1]) as captured:
            yield
        device = captured[0].device
        self._keep(batch, build_layout(batch, layout, device=device), captured[0])

    def _trunk_pass(self, model: torch.nn.Module, batch: PreferenceBatch, pad_token_id: int):
        """The bottom `depth` layers only, without gradient, on `batch` (shared layout)."""
        device = next(model.parameters()).device
        layout = build_layout(batch, "shared", pad_token_id=pad_token_id, device=device)
        layers = decoder_layers(model)
        with (
            torch.no_grad(),
            _only_layers(model, range(self.depth)),
            _layer_output(layers[self.depth - 1]) as captured,
        ):
            model.get_decoder()(
                input_ids=layout.input_ids,
                attention_mask=layout.attention_mask,
                position_ids=layout.position_ids,
                use_cache=False,
            )
        self._keep(batch, layout, captured[0])

    def fill(
        self,
        model: torch.nn.Module,
        groups: list[TokenizedGroup],
        *,
        groups_per_forward: int,
        pad_token_id: int,
    ) -> None:
        """Compute the states of every response not cached yet (each prompt once, with all
        its missing responses), then `save`."""
        todo = merge_by_prompt(groups, keep=lambda p, r: response_key(p, r) not in self.cache)
        for start in range(0, len(todo), groups_per_forward):
            self._trunk_pass(model, collate(todo[start : start + groups_per_forward]), pad_token_id)
        self.save()

    def save(self) -> None:
        """Write the entries computed since the last save as one shard (atomically)."""
        if self.new:
            self.cache.add(self.new)
            self.new = {}

    def top_hidden(
        self, model: torch.nn.Module, batch: PreferenceBatch, layout: Layout, pad_token_id: int
    ) -> torch.Tensor:
        """The decoder's output [B, T, H] for `layout` of `batch`, from the cached states
        through the top layers and the final norm (what `get_decoder()(...)` returns)."""
        pairs = zip(batch.prompt_ids, batch.response_ids, strict=True)
        keys = [key for prompt, responses in pairs for key in group_keys(prompt, responses)]
        if self.cache.missing(keys):  # not prepared before training: computed now, kept in memory
            self._trunk_pass(model, batch, pad_token_id)
        embeddings = model.get_input_embeddings().weight
        rows, width = layout.input_ids.shape
        states = embeddings.new_zeros(rows, width, embeddings.shape[1])
        for row, column, g, r in layout.pieces:
            state = self.cache[_piece(batch, g, r)[0]]
            states[row, column : column + len(state)] = state
        layers = range(self.depth, len(decoder_layers(model)))
        with _only_layers(model, layers):
            return model.get_decoder()(
                inputs_embeds=states,
                attention_mask=layout.attention_mask,
                position_ids=layout.position_ids,
                use_cache=False,
            ).last_hidden_state


def self_check(
    model: torch.nn.Module,
    trunk: TrunkStates,
    groups: list[TokenizedGroup],
    pad_token_id: int,
    *,
    full_pass=None,
) -> str | None:
    """Compare the first groups' log-probs with and without the cache (no gradient); return
    how they differ beyond `SELF_CHECK_TOLERANCE`, or None when they agree. `full_pass`
    (batch -> SequenceLogps): `model`'s own log-probs from every layer, already computed (the
    precomputed reference of a policy not yet trained), instead of running them again."""
    batch = collate(groups[:SELF_CHECK_GROUPS])
    was_training = model.training
    model.eval()
    with torch.no_grad():
        if full_pass is None:
            plain = sequence_logps(model, batch, pad_token_id=pad_token_id)
        else:
            plain = full_pass(batch)
        cached = sequence_logps(model, batch, pad_token_id=pad_token_id, trunk=trunk).logps
    model.train(was_training)
    rtol, atol = SELF_CHECK_TOLERANCE.get(model.dtype, HALF_TOLERANCE)
    bound = rtol * plain.logps.abs() + atol * plain.lengths
    gap = (cached - plain.logps).abs()
    if bool((gap <= bound).all()):
        return None
    return f"log-probs differ by up to {gap.max().item():.3g} (bound {bound.max().item():.3g})"
