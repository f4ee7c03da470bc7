"""Sample budgets: what each row of a study learned from, so that an online method is never
silently compared at many times the data of an offline one.

A method's budget is a dict with a "source" and the counts of that source:

- "online": an online run (grpo, rloo, online-dpo, or an offline method trained in
  `online.rounds`, which adds "rounds") counts what it generated and scored itself, in its
  summary.json's "budget": {"prompts", "samples", "tokens", "reward_calls"};
- "on-policy sampling": an offline method of a task study learns from the study's sampling
  step (data/samples.jsonl, scored into data/train.jsonl), shared by every such method:
  prompts sampled, samples and tokens generated, reward calls (one per kept sample);
- "offline data": a study on given data generated nothing; "examples" counts what the run
  trained on, in the unit of the method's view ("pairs", "lists", ...).

The starting model trains on nothing: its budget is None, as is a run not finished yet.
"""

from __future__ import annotations

from preftune.experiments.layout import StudyLayout, read_json
from preftune.io import read_jsonl

ONLINE, SAMPLED, OFFLINE = "online", "on-policy sampling", "offline data"
COUNTS = ("prompts", "samples", "tokens", "reward_calls")
VIEW_UNITS = {"pair": "pairs", "list": "lists", "binary": "labelled responses"}


def sampling_budget(layout: StudyLayout) -> dict | None:
    """The study's on-policy sampling step in numbers; None when the study sampled nothing.

    Prompts are the distinct prompts sampled, samples and tokens every generated row (dropped
    ones included: they were paid for), reward calls the scores written to data/train.jsonl.
    """
    samples_path = layout.train_data.with_name("samples.jsonl")
    if not samples_path.is_file():
        return None
    samples = read_jsonl(samples_path)
    scored = read_jsonl(layout.train_data) if layout.train_data.is_file() else []
    return {
        "source": SAMPLED,
        "prompts": len({str(row["id"]) for row in samples}),
        "samples": len(samples),
        "tokens": sum(int(row.get("num_tokens") or 0) for row in samples),
        "reward_calls": sum(len(row.get("scores") or []) for row in scored),
    }


def run_budget(
    layout: StudyLayout, label: str, seed: int | None, method: str, online: bool, sampled
) -> dict | None:
    """One run's budget (see the module's docstring); `sampled` is `sampling_budget`'s."""
    summary = read_json(layout.run(label, seed) / "summary.json")
    if online:
        budget = (summary or {}).get("budget")
        if budget is None:
            return None
        rounds = {"rounds": summary["rounds"]} if "rounds" in summary else {}
        return {"source": ONLINE, **budget, **rounds}
    if sampled is not None:
        return dict(sampled)
    if summary is None:
        return None
    from preftune.losses import METHODS

    view = METHODS[method].view if method in METHODS else None
    examples = (summary.get("data") or {}).get("view_groups", summary.get("train_groups"))
    return {"source": OFFLINE, "examples": examples, "unit": VIEW_UNITS.get(view, "examples")}


def source_text(budget: dict | None) -> str:
    """Where a budget comes from, in words, for the report.

    >>> source_text({"source": "offline data", "examples": 500, "unit": "pairs"})
    'offline data, 500 pairs'
    >>> source_text({"source": "online", "prompts": 8, "samples": 32})
    'online'
    >>> source_text({"source": "online", "prompts": 8, "samples": 32, "rounds": 2})
    'online, 2 rounds'
    """
    if not budget:
        return "—"
    if budget["source"] == OFFLINE:
        return f"{OFFLINE}, {count_text(budget.get('examples'))} {budget.get('unit', 'examples')}"
    if budget.get("rounds"):
        return f"{budget['source']}, {count_text(budget['rounds'])} rounds"
    return budget["source"]


def count_text(value) -> str:
    """A count with thousands separators; a mean over seeds keeps one decimal.

    >>> count_text(12345), count_text(2.5), count_text(None)
    ('12,345', '2.5', '—')
    """
    if value is None:
        return "—"
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.1f}"
