"""PPO's value head in a run's final/: `value_head.safetensors` beside the model.

The head (`preftune.models.value_head.ValueHead`, a linear map of the policy's last hidden
state) is trained with the policy; final/ keeps it so PPO can go on from the final model with
its critic, or the critic can be inspected (docs/online.md).
"""

from __future__ import annotations

from pathlib import Path

from preftune.errors import ConfigError
from preftune.io import atomic_write_bytes
from preftune.models.value_head import ValueHead

VALUE_HEAD_FILE = "value_head.safetensors"


def value_head_writer(head: ValueHead):
    """A writer of `head` into a folder (final/'s staging folder), as safetensors."""
    from safetensors.torch import save

    def write(folder: Path) -> None:
        state = {
            name: value.detach().cpu().contiguous() for name, value in head.state_dict().items()
        }
        atomic_write_bytes(Path(folder) / VALUE_HEAD_FILE, save(state))

    return write


def load_value_head(folder: str | Path) -> ValueHead:
    """The value head a PPO run saved in `folder` (its final/), on the CPU in float32.

    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> value_head_writer(ValueHead(8))(folder)
    >>> load_value_head(folder).linear.weight.shape
    torch.Size([1, 8])
    """
    from safetensors.torch import load_file

    path = Path(folder) / VALUE_HEAD_FILE
    if not path.is_file():
        raise ConfigError(f"{path}: no value head here (a PPO run's final/ holds one)")
    state = load_file(path)
    head = ValueHead(state["linear.weight"].shape[1])
    head.load_state_dict({name: value.float() for name, value in state.items()})
    return head
