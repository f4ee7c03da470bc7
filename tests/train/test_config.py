import pytest
import yaml

from preftune.cli import main
from preftune.config import build_train_config, load_train_config, parse_overrides
from preftune.errors import ConfigError
from preftune.losses import METHODS


def _values(data, **extra):
    return {"model": "smollm2-135m-instruct", "method": "dpo", "data": {"path": str(data)}, **extra}


def test_defaults_are_the_seed_study(paired_file):
    config = build_train_config(_values(paired_file))
    assert (config.optimizer, config.lr, config.batch_size, config.epochs) == (
        "rmsprop",
        5e-7,
        64,
        1,
    )
    assert (config.max_prompt_length, config.max_length) == (256, 512)
    assert config.hparams == METHODS["dpo"].defaults
    assert config.reference == "precompute"


def test_a_bare_no_is_no_mixed_precision(paired_file):
    config = load_train_config(
        None,
        [
            f"data.path={paired_file}",
            "model=smollm2-135m-instruct",
            "method=dpo",
            "mixed_precision=no",
        ],
    )
    assert config.mixed_precision == "no"


def test_overrides_are_dotted_and_typed_as_yaml():
    parsed = parse_overrides(
        ["lr=1e-4", "hparams.beta=0.2", "data.limit=5", "lora=null", "run_name=x"]
    )
    assert parsed == {
        "lr": 1e-4,
        "hparams": {"beta": 0.2},
        "data": {"limit": 5},
        "lora": None,
        "run_name": "x",
    }


def test_yaml_file_then_overrides_then_fixed_values(tmp_path, paired_file):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(_values(paired_file, lr=1e-5, hparams={"beta": 0.3})))
    config = load_train_config(path, ["lr=2e-5", "data.seed=7"], method="ipo")
    assert (config.lr, config.data.seed, config.method) == (2e-5, 7, "ipo")
    assert config.hparams["beta"] == 0.3 and "length_normalize" in config.hparams


@pytest.mark.parametrize(
    ("extra", "names"),
    [
        ({"bach_size": 8}, ["bach_size", "unknown key", "batch_size"]),
        ({"data": {"limt": 3}}, ["data.limt", "unknown key", "limit"]),
        ({"lr": "fast"}, ["lr", "number"]),
        ({"optimizer": "lion"}, ["optimizer", "rmsprop"]),
        ({"method": "dpoo"}, ["method 'dpoo'", "kto-tanh"]),
        ({"hparams": {"betta": 1}}, ["hparams", "betta", "beta"]),
        ({"hparams": {"beta": "big"}}, ["hparams.beta", "number"]),
        ({"micro_batch_size": 128}, ["micro_batch_size", "batch_size"]),
    ],
)
def test_errors_name_the_key_and_what_is_allowed(paired_file, extra, names):
    values = _values(paired_file)
    for key, value in extra.items():
        values[key] = {**values[key], **value} if key == "data" else value
    with pytest.raises(ConfigError) as error:
        build_train_config(values)
    for name in names:
        assert name in str(error.value)


def test_missing_files_are_reported_before_anything_loads(tmp_path, paired_file):
    with pytest.raises(ConfigError, match="data.path: './nope.jsonl' does not exist"):
        build_train_config(_values("./nope.jsonl"))
    with pytest.raises(ConfigError, match="model: '/no/such/model' does not exist"):
        build_train_config(_values(paired_file, model="/no/such/model"))
    with pytest.raises(ConfigError, match="--config: .*missing.yaml: no such YAML config file"):
        load_train_config(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="prompt_embedder: './no-embedder' does not exist"):
        build_train_config(_values(paired_file, method="rpo", prompt_embedder="./no-embedder"))


def test_hub_ids_pass_through_unchecked(paired_file):
    config = build_train_config(_values(paired_file, model="HuggingFaceTB/SmolLM2-135M-Instruct"))
    assert config.model == "HuggingFaceTB/SmolLM2-135M-Instruct"


def test_a_previous_run_folder_means_its_final_model(tmp_path, paired_file):
    (tmp_path / "sft-run" / "final").mkdir(parents=True)
    (tmp_path / "sft-run" / "final" / "config.json").write_text("{}")
    config = build_train_config(_values(paired_file, model=str(tmp_path / "sft-run")))
    assert config.model == str(tmp_path / "sft-run" / "final")


def test_reference_free_methods_have_no_reference(paired_file):
    assert build_train_config(_values(paired_file, method="simpo")).reference is None
    assert build_train_config(_values(paired_file, method="sft")).reference is None


def test_wpo_weighting_is_accepted_for_pairwise_methods_only(paired_file):
    config = build_train_config(_values(paired_file, hparams={"weighting": "wpo"}))
    assert config.hparams["weighting"] == "wpo"
    with pytest.raises(ConfigError, match="weighting"):
        build_train_config(_values(paired_file, method="kto", hparams={"weighting": "wpo"}))


def test_curriculum_needs_a_pair_view(paired_file):
    with pytest.raises(ConfigError, match="data.curriculum"):
        values = _values(paired_file, method="kto")
        values["data"]["curriculum"] = True
        build_train_config(values)


def test_cli_config_error_exits_2_naming_the_key(tmp_path, paired_file, capsys):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(_values(paired_file)))
    assert main(["train", "--config", str(path), "bach_size=3"]) == 2
    err = capsys.readouterr().err
    assert "bach_size" in err and "Traceback" not in err
    assert main(["train", "--config", str(path), "--method", "nope"]) == 2
    assert "method 'nope'" in capsys.readouterr().err


# ---------------------------------------------------------------- hardening (issues 14, 17)
def _cli_error(capsys, *argv) -> str:
    """Run the CLI, which must exit 2 with one line and no traceback; return that line."""
    assert main(list(argv)) == 2
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


def test_a_method_switched_on_the_command_line_names_the_hyperparameter_it_inherited(
    tmp_path, paired_file, capsys
):
    """Issue 17: README's `--method` example failed on a dpo config's beta for MPPO."""
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump(_values(paired_file, hparams={"beta": 0.2})))
    err = _cli_error(capsys, "train", "--config", str(path), "--method", "mppo-pair-mnm")
    assert "hparams.beta: method 'mppo-pair-mnm' has no hyperparameter 'beta'" in err
    assert f"it comes from {path}, written for method 'dpo'" in err
    assert "hparams.beta=null" in err
    config = load_train_config(path, ["hparams.beta=null"], method="mppo-pair-mnm")
    assert config.method == "mppo-pair-mnm" and config.hparams == {}


def test_null_removes_a_hyperparameter_setting(tmp_path, paired_file):
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump(_values(paired_file, hparams={"beta": 0.3})))
    assert load_train_config(path).hparams == {"beta": 0.3}
    assert load_train_config(path, ["hparams.beta=null"]).hparams == {"beta": 0.1}


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            "hparams.beta=0",
            "hparams.beta: method 'dpo': hyperparameter beta must be a finite number > 0, got 0",
        ),
        ("hparams.beta=-0.5", "beta must be a finite number > 0, got -0.5"),
        ("hparams.beta=.nan", "beta must be a finite number > 0, got nan"),
        (
            "hparams.weighting=wpx",
            "hparams.weighting: method 'dpo': hyperparameter weighting must be one of 'wpo'",
        ),
        ("lr=3.4e38", "lr: Input should be less than or equal to 100"),
        ("lr=.inf", "lr: Input should be a finite number"),
        ("lr=inf", "lr: Input should be a finite number"),
        ("warmup_ratio=.nan", "warmup_ratio: Input should be a finite number"),
        ("lr=[1", "override 'lr=[1': the value is not valid YAML (line 1, column 3"),
        ("a..b=1", "override 'a..b=1': expected key=value"),
        ("=1", "override '=1': expected key=value"),
        ("lr", "override 'lr': expected key=value"),
    ],
)
def test_bad_values_exit_2_with_one_line_naming_the_key(
    tmp_path, paired_file, capsys, override, message
):
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump(_values(paired_file)))
    assert message in _cli_error(capsys, "train", "--config", str(path), override)


def test_unusable_config_files_exit_2_naming_the_file(tmp_path, capsys):
    latin1 = tmp_path / "latin1.yaml"
    latin1.write_bytes("model: caf\u00e9\n".encode("latin-1"))
    empty = tmp_path / "empty.yaml"
    empty.write_text("# only a comment\n")
    broken = tmp_path / "broken.yaml"
    broken.write_text("model: [a\n")
    cases = {
        latin1: f"--config: {latin1}: not UTF-8 text",
        tmp_path: f"--config: {tmp_path}: is a folder, expected a YAML config file",
        empty: f"--config: '{empty}' is empty",
        broken: f"--config: '{broken}' is not valid YAML (line 2",
    }
    for path, message in cases.items():
        assert message in _cli_error(capsys, "train", "--config", str(path))
