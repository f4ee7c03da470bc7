"""`preftune rm --config FILE [--resume] [key=value ...]`: train a reward model;
`preftune rm --eval --model DIR --data FILE [--out FILE]`: its ranking accuracy on pair data.

Training and its config: docs/reward-models.md. The accuracy is the share of the data's
score-ordered pairs (every pair of a ranked list; ties left out) whose preferred response the
reward model scores strictly higher.
"""

from __future__ import annotations

import argparse
import json

from preftune.commands.train import add_run_arguments
from preftune.errors import ConfigError, MethodDataError
from preftune.io import atomic_write_json, read_text


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="YAML reward-model config (docs/reward-models.md)")
    add_run_arguments(parser)
    evaluation = parser.add_argument_group("evaluate an existing reward model (--eval)")
    evaluation.add_argument(
        "--eval", action="store_true", help="score --model on --data instead of training"
    )
    evaluation.add_argument("--model", help="a reward model folder, or a `preftune rm` run folder")
    evaluation.add_argument("--data", help="pair or ranked-list data in any format preftune reads")
    evaluation.add_argument("--format", help="the data's format (default: detected)")
    evaluation.add_argument("--out", help="also write the result to this JSON file")
    evaluation.add_argument("--batch-size", type=int, default=16, help="sequences per forward")
    evaluation.add_argument("--max-length", type=int, default=512, help="prompt + response tokens")
    evaluation.add_argument("--max-prompt-length", type=int, default=256)


def run(args: argparse.Namespace) -> int:
    if args.eval:
        return _evaluate(args)
    if args.model or args.data or args.out:
        raise ConfigError("--model, --data and --out go with --eval; training reads --config")
    from preftune.config import load_reward_model_config
    from preftune.train.reward_model import train_reward_model

    config = load_reward_model_config(
        args.config, args.overrides, resume=True if args.resume else None
    )
    run_dir = train_reward_model(config)
    summary = json.loads(read_text(run_dir / "summary.json"))
    print(f"run finished: {run_dir} (reward model: {run_dir / 'final'})")
    print(_accuracy_line(summary["heldout"]))
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    if not (args.model and args.data):
        raise ConfigError("--eval needs --model (a reward model or rm run folder) and --data")
    if args.config or args.overrides or args.resume:
        raise ConfigError("--eval scores an existing model: drop --config, --resume and overrides")
    if not 1 <= args.max_prompt_length < args.max_length or args.batch_size < 1:
        raise ConfigError("--max-prompt-length must be >= 1 and < --max-length, --batch-size >= 1")
    from preftune.data import read_records, tokenize
    from preftune.generate.sampling import resolve_model_path
    from preftune.judges.reward_model import RewardModelJudge
    from preftune.models.loading import check_model_source
    from preftune.train.reward_model import heldout_view, pair_accuracy

    path = resolve_model_path(args.model)
    check_model_source(path)
    pairs = heldout_view(read_records(args.data, args.format).groups, seed=0)
    if not pairs:
        raise MethodDataError(f"--data: {args.data} has no ordered pair (every pair is a tie)")
    judge = RewardModelJudge(path)
    tokenized, _ = tokenize(
        pairs,
        judge.tokenizer,
        max_prompt_length=args.max_prompt_length,
        max_length=args.max_length,
    )
    result = pair_accuracy(judge.model, tokenized, judge.model.config.pad_token_id, args.batch_size)
    result.update(model=path, data=args.data, source=f"every ordered pair of {args.data}")
    print(_accuracy_line(result))
    if args.out:
        atomic_write_json(args.out, result)
    return 0


def _accuracy_line(result: dict) -> str:
    """'ranking accuracy: 0.750 (3 of 4 pairs; SOURCE)'."""
    if result["accuracy"] is None:
        return f"ranking accuracy: none ({result['source']}: no ordered pairs)"
    right = round(result["accuracy"] * result["pairs"])
    return (
        f"ranking accuracy: {result['accuracy']:.3f} ({right} of {result['pairs']} pairs "
        f"ordered as the data orders them; {result['source']})"
    )
