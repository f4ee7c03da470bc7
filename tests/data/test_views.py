"""Views: pairs, binary singles, ranked lists, the chosen response; ties; what a method needs."""

from __future__ import annotations

from pathlib import Path

import pytest

from preftune.data import drop_ties, make_view, read_records, validate_for
from preftune.data.records import PromptGroup, Response
from preftune.errors import ConfigError, MethodDataError

FIXTURES = Path(__file__).parents[1] / "fixtures" / "data"


def groups_of(name):
    return read_records(FIXTURES / name).groups


def scored_group(scores, id="g", **kwargs):
    responses = [Response(f"r{i}", score=s) for i, s in enumerate(scores)]
    return PromptGroup("prompt", responses, id=id, source=f"x.jsonl line {id}", **kwargs)


def texts(group):
    return [r.text for r in group.responses]


def test_paired_data_is_its_own_pair_view():
    groups = groups_of("paired.jsonl")
    view = make_view(groups, "pair")
    assert [texts(g) for g in view] == [texts(g) for g in groups]
    assert [g.id for g in view] == ["0", "1", "2"]
    assert [g.margin for g in view] == [None, None, 2.5]


def test_top_vs_random_pairs_the_best_with_one_seeded_other():
    group = scored_group([0.2, 0.9, 0.5, 0.1])
    picked = {texts(make_view([group], "pair", seed=s)[0])[1] for s in range(30)}
    assert picked == {"r0", "r2", "r3"}  # never the best against itself, each other reachable
    once = make_view([group], "pair", seed=7)
    assert texts(once[0])[0] == "r1" and once == make_view([group], "pair", seed=7)


@pytest.mark.parametrize(
    ("pairs", "expected"),
    [
        ("top-vs-each", [["r1", "r2"], ["r1", "r0"], ["r1", "r3"]]),
        ("top-vs-worst", [["r1", "r3"]]),
        (
            "all",
            [["r1", "r2"], ["r1", "r0"], ["r1", "r3"], ["r2", "r0"], ["r2", "r3"], ["r0", "r3"]],
        ),
    ],
)
def test_pairings_of_a_scored_list(pairs, expected):
    view = make_view([scored_group([0.2, 0.9, 0.5, 0.1])], "pair", pairs=pairs)
    assert [texts(g) for g in view] == expected
    assert all(g.responses[0].score > g.responses[1].score for g in view)
    assert len({g.id for g in view}) == len(view)


def test_equal_scores_make_flagged_ties_that_are_kept():
    view = make_view([scored_group([0.9, 0.4, -0.2, 0.9])], "pair", pairs="all")
    assert len(view) == 6
    tied = [texts(g) for g in view if g.tie]
    assert tied == [["r0", "r3"]]
    kept, dropped = drop_ties(view)
    assert dropped == 1 and len(kept) == 5 and not any(g.tie for g in kept)


def test_tie_flags_from_the_data_reach_the_pair_view():
    view = make_view(groups_of("ties.jsonl"), "pair")
    assert [g.tie for g in view] == [True, True, False]
    assert drop_ties(view)[1] == 2


def test_curriculum_orders_pairs_from_largest_score_gap_to_smallest():
    groups = [
        scored_group([5, 4], id="a"),
        scored_group([9, 1], id="b"),
        scored_group([6, 3], id="c"),
    ]
    assert [g.id for g in make_view(groups, "pair", curriculum=True)] == ["b", "c", "a"]
    assert [g.id for g in make_view(groups, "pair")] == ["a", "b", "c"]
    with pytest.raises(ConfigError, match="curriculum"):
        make_view(groups, "list", curriculum=True)


def test_binary_view_of_pairs_is_chosen_desirable_rejected_undesirable():
    view = make_view(groups_of("paired.jsonl"), "binary")
    assert len(view) == 6
    assert [g.responses[0].label for g in view] == [True, False] * 3
    assert [g.id for g in view[:2]] == ["0/0", "0/1"]
    assert all(len(g.responses) == 1 for g in view)


def test_binary_view_of_scored_lists_marks_the_top_desirable_unless_labelled():
    happy, sea = groups_of("scored.jsonl")
    view = make_view([happy, sea], "binary", pairs="top-vs-each")
    assert [g.responses[0].label for g in view] == [True, False, False, True, True, False]
    # the two top responses tie with each other; the rest carry no tie
    assert [g.tie for g in view] == [True, False, False, True, False, False]


def test_binary_view_of_scored_lists_keeps_the_responses_the_pairing_uses():
    group = scored_group([0.2, 0.9, 0.5, 0.1])
    worst = make_view([group], "binary", pairs="top-vs-worst")
    assert [(g.responses[0].score, g.responses[0].label) for g in worst] == [
        (0.9, True),
        (0.1, False),
    ]
    # one seeded-random other, the same one the pair view picks
    (pair,) = make_view([group], "pair", seed=3)
    singles = make_view([group], "binary", seed=3)
    assert [g.responses[0].score for g in singles] == sorted(
        [r.score for r in pair.responses], key=[0.2, 0.9, 0.5, 0.1].index
    )


def test_binary_view_keeps_labels_from_the_data():
    view = make_view(groups_of("binary.jsonl"), "binary")
    assert [g.responses[0].label for g in view] == [True, False, True]


def test_list_view_is_best_first_and_flags_a_list_without_order():
    view = make_view([scored_group([0.2, 0.9, 0.5]), scored_group([1, 1], id="h")], "list")
    assert texts(view[0]) == ["r1", "r2", "r0"]
    assert [g.tie for g in view] == [False, True]


def test_chosen_view_keeps_the_best_response_only():
    assert [texts(g) for g in make_view(groups_of("ultrafeedback.jsonl"), "chosen")] == [
        ["Plants turn light, water and CO2 into sugar and oxygen."],
        ["Blue."],
    ]
    assert texts(make_view(groups_of("hh.jsonl"), "chosen")[0]) == [
        "They can hurt people, so I avoid them."
    ]
    # binary feedback: the desirable completions; the undesirable one has nothing to imitate
    assert [g.id for g in make_view(groups_of("binary.jsonl"), "chosen")] == ["0", "2"]


def test_a_view_the_data_cannot_give_names_what_is_missing():
    with pytest.raises(MethodDataError) as caught:
        make_view(groups_of("binary.jsonl"), "pair", method="dpo")
    message = str(caught.value)
    assert "method 'dpo' (view 'pair') needs pairs" in message
    assert "3 of 3 groups lack it (first: binary.jsonl line 1)" in message
    assert "binary.jsonl has 3 groups in format 'binary'" in message
    with pytest.raises(MethodDataError, match="view 'list' needs 2\\+ scored responses"):
        make_view(groups_of("binary.jsonl"), "list")


def test_unknown_view_or_pairing_is_a_config_error():
    with pytest.raises(ConfigError, match="view 'pairs'"):
        make_view(groups_of("paired.jsonl"), "pairs")
    with pytest.raises(ConfigError, match="pairs 'best'"):
        make_view(groups_of("paired.jsonl"), "pair", pairs="best")


def test_validate_for_scores_refuses_pairs_without_scores():
    validate_for(groups_of("paired_conversational.jsonl"), ("scores",), "mppo-point-ce")
    with pytest.raises(MethodDataError) as caught:
        validate_for(groups_of("hh.jsonl"), ("scores",), "mppo-point-ce")
    message = str(caught.value)
    assert message.startswith("method 'mppo-point-ce' needs scores from the data")
    assert "hh.jsonl has 2 pairs (chosen/rejected) in format 'hh'" in message


def test_validate_for_labels_accepts_labels_or_pairs():
    validate_for(groups_of("binary.jsonl"), ("labels",), "kto")
    validate_for(groups_of("hh.jsonl"), ("labels",), "kto")
    single = [scored_group([0.5], id="1")]
    with pytest.raises(MethodDataError, match="method 'kto' needs labels or pairs"):
        validate_for(single, ("labels",), "kto")


def test_validate_for_ties_and_margins():
    validate_for(groups_of("ties.jsonl"), ("ties",), "todo")
    with pytest.raises(MethodDataError, match="method 'todo' needs ties.*0 ties"):
        validate_for(groups_of("paired.jsonl"), ("ties",), "todo")
    with pytest.raises(MethodDataError, match="needs a 'margin' column; 2 of 3 groups lack it"):
        validate_for(groups_of("paired.jsonl"), ("margins",), "odpo")
    with pytest.raises(ValueError, match="unknown data need 'vibes'"):
        validate_for(groups_of("paired.jsonl"), ("vibes",), "dpo")
