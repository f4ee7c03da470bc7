"""QLoRA / 8-bit settings: checked at load, refused in one line where bitsandbytes cannot run
(this CPU machine) before any data or model loads. The GPU path itself runs in bench/."""

from __future__ import annotations

import importlib.util

import pytest
import torch
import yaml

from preftune.cli import main
from preftune.config import QuantizationConfig, build_train_config
from preftune.errors import ConfigError
from preftune.models import loading


def _values(data, **extra):
    return {"model": "smollm2-135m-instruct", "method": "dpo", "data": {"path": str(data)}, **extra}


def test_quantization_without_lora_is_refused_naming_both_keys(paired_file):
    with pytest.raises(ConfigError, match=r"quantization: .* add a lora section"):
        build_train_config(_values(paired_file, quantization={"bits": 4}))
    config = build_train_config(_values(paired_file, quantization={"bits": 8}, lora={}))
    assert config.quantization.bits == 8 and config.lora.r == 16


@pytest.mark.parametrize(
    ("setting", "key"),
    [({"bits": 3}, "quantization.bits"), ({"quant_type": "int4"}, "quantization.quant_type"),
     ({"compute_dtype": "fp8"}, "quantization.compute_dtype"), ({"group": 64}, "quantization.group")],
)  # fmt: skip
def test_bad_quantization_values_name_the_key(paired_file, setting, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        build_train_config(_values(paired_file, quantization=setting, lora={}))


def test_the_bitsandbytes_arguments_follow_the_qlora_paper():
    """NF4 with double quantization and bf16 compute: QLoRA's recipe (Dettmers et al. 2023)."""
    assert loading.bnb_options(QuantizationConfig()) == {
        "load_in_4bit": True,
        "bnb_4bit_quant_type": "nf4",
        "bnb_4bit_use_double_quant": True,
        "bnb_4bit_compute_dtype": torch.bfloat16,
    }
    fp4 = QuantizationConfig(quant_type="fp4", double_quant=False, compute_dtype="fp16")
    assert loading.bnb_options(fp4)["bnb_4bit_compute_dtype"] is torch.float16
    assert loading.bnb_options(QuantizationConfig(bits=8)) == {"load_in_8bit": True}


def test_a_quantized_reference_gets_its_own_cache_key():
    """Reference log-probs of a 4-bit base differ from the full-precision ones; a plain run's
    key is unchanged, so existing caches stay valid."""
    labels = {
        loading.weights_label("fp32"),
        loading.weights_label("fp32", QuantizationConfig(bits=8)),
        loading.weights_label("fp32", QuantizationConfig(bits=4)),
        loading.weights_label("fp32", QuantizationConfig(bits=4, quant_type="fp4")),
    }
    assert len(labels) == 4 and loading.weights_label("fp32") == "fp32"


def test_train_refuses_quantization_without_a_gpu_before_loading_anything(
    tmp_path, paired_file, monkeypatch, capsys
):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(_values(paired_file, output_dir=str(tmp_path / "runs"))))
    assert main(["train", "--config", str(path), "quantization.bits=4", "lora.r=8"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.splitlines() == [
        "preftune train: error: quantization: 4-bit weights through bitsandbytes need a CUDA "
        "GPU and this machine has none; remove the quantization section to train the LoRA "
        "adapters on the full-precision model"
    ]
    assert not (tmp_path / "runs").exists()  # the run never started: no folder, no lock


def test_a_gpu_without_bitsandbytes_is_told_which_extra_to_install(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "bitsandbytes" else real_find_spec(name, *a),
    )
    with pytest.raises(ConfigError, match=r"pip install 'preftune\[qlora\]'"):
        loading.load_model("smollm2-135m-instruct", quantization=QuantizationConfig())
