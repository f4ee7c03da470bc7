"""The registry matches the issue's names, and data a method cannot use raises a clear error."""

from __future__ import annotations

import pytest
import torch

from preftune.errors import ConfigError, MethodDataError
from preftune.losses import METHODS, compute
from preftune.losses.dispatch import _function
from preftune.losses.registry import check_hparams

# Registry names and hyperparameter names, exactly as the issue lists them.
ISSUE_HPARAMS = {
    "dpo": {"beta"},
    "ipo": {"beta", "length_normalize"},
    "slic": {"delta", "lam"},
    "kto": {"beta", "desirable_weight", "undesirable_weight"},
    "kto-tanh": {"beta", "desirable_weight", "undesirable_weight"},
    "orpo": {"lam"},
    "simpo": {"beta", "gamma"},
    "exo": {"beta", "epsilon"},
    "cdpo": {"beta", "epsilon"},
    "rdpo": {"beta", "epsilon"},
    "sppo-hard": {"beta"},
    "nca": {"beta"},
    "apo-zero": {"beta"},
    "apo-down": {"beta"},
    "hinge": {"beta"},
    "ln-dpo": {"beta"},
    "bco-pair": {"beta"},
    "discopop": {"beta", "tau"},
    "dpo-shift": {"beta", "lam"},
    "h-dpo": {"beta", "alpha"},
    "odpo": {"beta", "alpha"},
    "mmpo": {"beta", "gamma"},
    "todo": {"beta", "alpha"},
    "bco": {"beta"},
    "repo": {"gamma"},
    "mppo-point-ce": {"score_max"},
    "mppo-point-mse": {"score_max"},
}
ISSUE_NAMES = set(ISSUE_HPARAMS) | {
    "ppo-offline",
    "rpo",
    "rpo-unpaired",
    "rpo-diagonal",
    "mppo-pair-single",
    "mppo-pair-mns",
    "mppo-pair-mnm",
    "mppo-pair-mcs",
    "mppo-pair-mcm",
    "mppo-list-mle",
}


def test_every_method_of_the_issue_is_registered_with_its_hyperparameters():
    assert set(METHODS) >= ISSUE_NAMES
    for name, hparams in ISSUE_HPARAMS.items():
        assert set(METHODS[name].hparams) == hparams, name
    assert METHODS["mppo-point-ce"].hparams["score_max"].default == 10
    for name in ("rpo", "rpo-unpaired"):
        assert set(METHODS[name].hparams) == {"beta", "tau"}
        assert "prompt_embeddings" in METHODS[name].extra_inputs
    assert set(METHODS["rpo-diagonal"].hparams) == {"beta", "alpha"}


@pytest.mark.parametrize("name", sorted(METHODS))
def test_spec_is_complete_and_its_function_exists(name):
    spec = METHODS[name]
    assert spec.name == name and spec.paper and spec.description
    assert callable(_function(spec.function))
    assert set(spec.optional_inputs) <= set(spec.extra_inputs)
    if spec.view == "binary":
        assert "labels" in spec.needs


def test_reference_free_methods_need_no_reference(inputs_for):
    for name, spec in METHODS.items():
        if not spec.needs_reference:
            inputs = inputs_for(name)
            del inputs["ref_logps"]
            loss, _ = compute(name, **inputs)
            assert torch.isfinite(loss), name


def pair():
    return {
        "policy_logps": torch.tensor([[-1.0, -2.0]]),
        "ref_logps": torch.tensor([[-1.5, -1.5]]),
        "lengths": torch.tensor([[2, 3]]),
    }


@pytest.mark.parametrize("name", ["grpo", "rloo", "ppo"])
def test_compute_refuses_an_online_method_and_says_how_it_trains(name):
    assert METHODS[name].is_online
    with pytest.raises(ConfigError, match=f"'{name}'.*`preftune train` with an `online:` block"):
        compute(name, **pair())


def test_unknown_method_lists_the_valid_ones():
    with pytest.raises(ConfigError, match="unknown method 'dpoo'.*dpo"):
        compute("dpoo", **pair())


def test_unknown_hyperparameter_lists_the_valid_ones():
    with pytest.raises(
        MethodDataError, match="unknown keyword.*bta.*valid hyperparameters: beta"
    ) as error:
        compute("dpo", **pair(), bta=0.1)
    assert isinstance(error.value, ConfigError)
    with pytest.raises(MethodDataError, match="delta, lam"):
        compute("slic", **pair(), beta=0.1)


def test_hyperparameters_must_be_numbers():
    with pytest.raises(MethodDataError, match="beta must be a finite number > 0, got '0.1'"):
        compute("dpo", **pair(), beta="0.1")
    with pytest.raises(MethodDataError, match="length_normalize must be true or false"):
        compute("ipo", **pair(), length_normalize=1.0)


def test_weighting_is_only_for_pairwise_methods():
    with pytest.raises(MethodDataError, match="weighting must be one of 'wpo', got 'wpoo'"):
        compute("dpo", **pair(), weighting="wpoo")
    singles = {"policy_logps": torch.tensor([[-1.0]]), "ref_logps": torch.tensor([[-1.0]])}
    with pytest.raises(MethodDataError, match="weighting"):
        compute("bco", **singles, labels=torch.tensor([[True]]), weighting="wpo")


def test_pairwise_method_on_single_responses_says_it_needs_two():
    with pytest.raises(MethodDataError, match="pairwise.*exactly 2 responses.*R = 1"):
        compute("dpo", policy_logps=torch.tensor([[-1.0]]), ref_logps=torch.tensor([[-1.0]]))


def test_missing_reference_says_so():
    with pytest.raises(MethodDataError, match="'dpo' needs ref_logps"):
        compute("dpo", policy_logps=torch.tensor([[-1.0, -2.0]]))


def test_odpo_needs_scores_or_margins():
    with pytest.raises(MethodDataError, match="'odpo' needs scores.*margins"):
        compute("odpo", **pair())
    loss, _ = compute("odpo", **pair(), margins=torch.tensor([0.5]))
    assert torch.isfinite(loss)
    with pytest.raises(MethodDataError, match="score_w > score_l"):
        compute("odpo", **pair(), scores=torch.tensor([[1.0, 1.0]]))


def test_kto_without_labels_or_kl_pairs_says_what_it_needs():
    singles = {"policy_logps": torch.tensor([[-1.0]]), "ref_logps": torch.tensor([[-1.2]])}
    with pytest.raises(MethodDataError, match="'kto' needs labels"):
        compute("kto", **singles)
    with pytest.raises(MethodDataError, match="at least 2 examples"):
        compute("kto", **singles, labels=torch.tensor([[True]]))
    with pytest.raises(MethodDataError, match="at least 2 examples"):
        compute(
            "kto-tanh",
            **singles,
            labels=torch.tensor([[True]]),
            kl_policy_logps=torch.tensor([]),
            kl_ref_logps=torch.tensor([]),
        )


def test_scores_needed_for_list_methods():
    lists = {
        "policy_logps": torch.tensor([[-1.0, -2.0, -3.0]]),
        "lengths": torch.tensor([[1, 2, 3]]),
    }
    with pytest.raises(MethodDataError, match="'mppo-list-mle' needs scores"):
        compute("mppo-list-mle", **lists)


def test_point_wise_targets_must_fit_score_max():
    lists = {"policy_logps": torch.tensor([[-1.0, -2.0]]), "lengths": torch.tensor([[1, 2]])}
    with pytest.raises(MethodDataError, match="score_max"):
        compute("mppo-point-ce", **lists, scores=torch.tensor([[12.0, 3.0]]))
    loss, _ = compute("mppo-point-ce", **lists, scores=torch.tensor([[12.0, 3.0]]), score_max=20)
    assert torch.isfinite(loss)


def test_length_normalised_methods_need_lengths():
    with pytest.raises(MethodDataError, match="'simpo' needs lengths"):
        compute("simpo", policy_logps=torch.tensor([[-1.0, -2.0]]))


def test_wrong_shapes_are_named():
    with pytest.raises(MethodDataError, match=r"ref_logps has shape \(1, 3\), expected \[1, 2\]"):
        compute("dpo", policy_logps=torch.tensor([[-1.0, -2.0]]), ref_logps=torch.zeros(1, 3))
    with pytest.raises(MethodDataError, match=r"policy_logps must be a float tensor \[G, R\]"):
        compute("dpo", policy_logps=torch.tensor([-1.0, -2.0]), ref_logps=torch.zeros(2))
    with pytest.raises(MethodDataError, match="prompt_embeddings has shape"):
        compute("rpo", **pair(), prompt_embeddings=torch.zeros(3, 4))
    with pytest.raises(MethodDataError, match="non-positive|lengths must be positive"):
        compute("simpo", policy_logps=torch.tensor([[-1.0, -2.0]]), lengths=torch.tensor([[0, 2]]))


def test_rpo_unpaired_needs_both_kinds_of_feedback():
    singles = {
        "policy_logps": torch.tensor([[-1.0], [-2.0]]),
        "ref_logps": torch.tensor([[-1.0], [-1.0]]),
        "labels": torch.tensor([[True], [True]]),
        "prompt_embeddings": torch.eye(2),
    }
    with pytest.raises(MethodDataError, match="one desirable and one undesirable"):
        compute("rpo-unpaired", **singles)


def test_out_of_range_hyperparameters_raise():
    with pytest.raises(MethodDataError, match=r"epsilon must be a number in \[0, 0.5\), got 0.5"):
        compute("rdpo", **pair(), epsilon=0.5)
    with pytest.raises(MethodDataError, match="'todo': hyperparameter alpha must be a finite"):
        compute("todo", **pair(), alpha=0.0)
    with pytest.raises(
        MethodDataError, match="'rpo': hyperparameter tau must be a finite number > 0"
    ):
        compute("rpo", **pair(), tau=0.0, prompt_embeddings=torch.eye(1, 2))


@pytest.mark.parametrize("beta", [0.0, -0.1, float("nan"), float("inf"), torch.tensor(-1.0)])
def test_beta_must_be_a_positive_finite_number(beta):
    """A beta <= 0 or NaN used to give a NaN loss or a silently inverted objective."""
    with pytest.raises(
        ConfigError, match="method 'dpo': hyperparameter beta must be a finite number > 0"
    ):
        compute("dpo", **pair(), beta=beta)


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_hyperparameter_refuses_non_finite_values(name):
    for hparam, declaration in METHODS[name].hparams.items():
        if isinstance(declaration.default, (int, float)) and not isinstance(
            declaration.default, bool
        ):
            with pytest.raises(ConfigError, match=f"'{name}': hyperparameter {hparam} must be"):
                check_hparams(METHODS[name], {hparam: float("inf")})
            assert check_hparams(METHODS[name], {})[hparam] == declaration.default


def test_declared_ranges_read_as_intervals():
    assert METHODS["rdpo"].hparams["epsilon"].allowed() == "a number in [0, 0.5)"
    assert METHODS["exo"].hparams["epsilon"].allowed() == "a number in (0, 1)"
    assert METHODS["dpo"].hparams["beta"].allowed() == "a finite number > 0"
    assert METHODS["slic"].hparams["delta"].allowed() == "a finite number >= 0"
    assert METHODS["ipo"].hparams["length_normalize"].allowed() == "true or false"


def test_per_group_extras_take_one_value_per_group():
    two = {
        "policy_logps": torch.tensor([[-1.0, -2.0], [-3.0, -2.5]]),
        "ref_logps": torch.tensor([[-1.5, -1.5], [-2.0, -2.0]]),
    }
    flat, _ = compute("odpo", **two, margins=torch.tensor([0.5, 1.0]))
    column, _ = compute("odpo", **two, margins=torch.tensor([[0.5], [1.0]]))
    assert flat.item() == column.item()
    with pytest.raises(MethodDataError, match=r"ties has shape \(3,\), expected \[2\]"):
        compute("todo", **two, ties=torch.tensor([True, False, False]))


@pytest.mark.parametrize(
    "name", ["mppo-pair-mns", "mppo-pair-mnm", "mppo-pair-mcs", "mppo-pair-mcm", "mppo-list-mle"]
)
def test_list_contrasts_need_two_responses_per_group(name):
    lists = {
        "policy_logps": torch.tensor([[-1.0, -2.0], [-1.5, 0.0]]),
        "lengths": torch.tensor([[1, 2], [3, 1]]),
        "scores": torch.tensor([[2.0, 1.0], [5.0, 0.0]]),
        "mask": torch.tensor([[True, True], [True, False]]),
    }
    with pytest.raises(MethodDataError, match="at least 2 responses"):
        compute(name, **lists)
