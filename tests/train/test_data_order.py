"""The data order: seeded, a permutation per epoch, kept as given for curricula."""

import json

from preftune.train import train
from preftune.train.dataset import StepOrder


def test_each_epoch_is_a_seeded_permutation():
    order = StepOrder(num_groups=10, batch_size=4, seed=3)
    assert order.steps_per_epoch == 3
    epoch0 = [i for step in range(3) for i in order.indices(step)]
    epoch1 = [i for step in range(3, 6) for i in order.indices(step)]
    assert sorted(epoch0) == sorted(epoch1) == list(range(10))
    assert epoch0 != epoch1
    assert [len(order.indices(step)) for step in range(3)] == [4, 4, 2]
    assert StepOrder(10, 4, seed=3).indices(4) == order.indices(4)
    assert StepOrder(10, 4, seed=4).indices(0) != order.indices(0)


def test_curriculum_keeps_the_view_order():
    order = StepOrder(num_groups=5, batch_size=2, seed=0, shuffle=False)
    assert [order.indices(step) for step in range(4)] == [[0, 1], [2, 3], [4], [0, 1]]


def test_curriculum_and_wpo_runs(make_config, scored_file):
    config = make_config("dpo", scored_file, max_steps=2, hparams={"weighting": "wpo"})
    data = config.data.model_copy(update={"curriculum": True, "pairs": "top-vs-each"})
    config = config.model_copy(update={"data": data})
    lines = (train(config) / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 2 and "rewards/accuracies" in json.loads(lines[-1])
