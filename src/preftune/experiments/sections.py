"""The report's sections as blocks, rendered to markdown and HTML by `report`.

A block is ("h", text) heading, ("p", text) paragraph, ("list", items), ("table", header,
rows), ("image", path, caption) or ("code", title, text) for a folded-away file. Order: which
method is best (ranking, head-to-head, one sentence), the claims, Table 3, example answers,
failures, Table 2, settings and cost, plots, every run's resolved config.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from preftune.experiments import benchmark_kinds, budget, plots
from preftune.experiments.config import BENCHMARK_KINDS
from preftune.experiments.dynamics import SERIES
from preftune.experiments.layout import START, StudyLayout
from preftune.experiments.results import (
    FEW_PROMPTS,
    KL_GREEDY,
    KL_SAMPLED,
    KL_SERVED,
    beats,
    head_to_head,
    kl_kind,
)

KL_NOTES = {
    KL_SAMPLED: "KL: mean of log π(y) − log π_start(y) over answers sampled from each model at "
    "temperature 1, a Monte-Carlo estimate of KL(π ‖ π_start), with a 95% bootstrap interval "
    "over prompts.",
    KL_GREEDY: "KL: mean of log π(y) − log π_start(y) over each model's greedy "
    "answers; a log-ratio, not a true KL (it can be negative); leave evaluation.kl_samples "
    "unset for a sampled estimate.",
}
KL_AXES = {
    KL_SAMPLED: "KL from the starting model (nats, sampled answers, 95% CI)",
    KL_GREEDY: "log-ratio to the starting model on greedy answers (nats)",
}


def percent(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{100 * value:.{digits}f}"


def number(value: float | None, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def interval(value, low, high, show=number, digits: int = 3) -> str:
    """ "v [low, high]", or "v" alone when the interval is unknown."""
    if value is None:
        return "—"
    if low is None or high is None:
        return show(value, digits)
    return f"{show(value, digits)} [{show(low, digits)}, {show(high, digits)}]"


def joined(names: list[str]) -> str:
    """'a', 'a and b', 'a, b and c'."""
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _name(results: dict, label: str) -> str:
    return plots.display_name(results, label)


# -- which method is best ---------------------------------------------------------------------


def _versus_start(table: dict, label: str) -> dict | None:
    if label in (START, "sft"):
        return None
    return head_to_head(table, label, START) or head_to_head(table, label, "sft")


def ranking_table(results: dict, name: str) -> tuple[list[str], list[list[str]]]:
    table = results["head_to_head"][name]
    header = ["tier", "method", "score [95% CI]", f"win % vs {results['start']} [95% CI]", "n"]
    rows = []
    for entry in results["ranking"][name]:
        versus = _versus_start(table, entry["label"]) or {}
        rows.append(
            [
                str(entry.get("tier", "—")),
                _name(results, entry["label"]),
                interval(entry.get("score"), entry.get("ci_low"), entry.get("ci_high")),
                interval(
                    versus.get("win_rate"), versus.get("ci_low"), versus.get("ci_high"), percent, 1
                ),
                str(entry.get("n", "—")),
            ]
        )
    return header, rows


def best_sentence(results: dict, name: str) -> str | None:
    """One sentence answering "which method is best on this evaluation?", from the ranking."""
    ranking, table = results["ranking"].get(name) or [], results["head_to_head"].get(name, {})
    if not ranking:
        return None
    top = [entry for entry in ranking if entry.get("tier") == ranking[0].get("tier")]
    if len(top) > 1:
        names = joined([_name(results, entry["label"]) for entry in top])
        return f"On {name}, {names} are tied in tier {top[0].get('tier')}: the data cannot separate them."
    best = top[0]
    score = interval(best.get("score"), best.get("ci_low"), best.get("ci_high"))
    lead = f"On {name}, {_name(results, best['label'])} ranks first (score {score})"
    others = [entry["label"] for entry in ranking[1:]]
    unbeaten = [y for y in others if not beats(head_to_head(table, best["label"], y))]
    if not others:
        return lead + "."
    if not unbeaten:
        return lead + "; it beats every other method significantly."
    names = joined([_name(results, label) for label in unbeaten])
    return lead + f"; its head-to-head against {names} is not significant."


def small_sample_warning(results: dict, name: str) -> str | None:
    """A warning when the fewest prompts a row was judged on is under FEW_PROMPTS."""
    counts = [(row["evaluations"].get(name) or {}).get("n") for row in results["rows"]]
    count = min((n for n in counts if n is not None), default=None)
    if count is None or count >= FEW_PROMPTS:
        return None
    return (
        f"{name} judged a row on only {count:g} prompts (fewer than {FEW_PROMPTS}): intervals are wide "
        "and small differences cannot be told apart."
    )


def describe_evaluation(results: dict, evaluation: dict) -> str:
    """How an evaluation decides, naming the gold reward when it is the judge."""
    if evaluation["kind"] in BENCHMARK_KINDS:
        return benchmark_kinds.describe(evaluation)
    judge = evaluation["judge"]
    if judge == "gold" and results.get("gold"):
        judge = f"the gold reward ({results['gold']})"
    else:
        judge = f"the {judge} judge"
    if evaluation["kind"] == "mt-bench":
        return f"MT-Bench answers graded 1-10 by {judge}"
    baseline = evaluation["baseline"]
    return f"each answer against the one {baseline} gave to the same prompt, decided by {judge}"


def ranking_section(layout: StudyLayout, results: dict) -> list[tuple]:
    blocks = []
    for evaluation in results["evaluations"]:
        name = evaluation["name"]
        blocks.append(("h", f"Which method is best on {name}?"))
        blocks.append(("p", f"{name}: {describe_evaluation(results, evaluation)}."))
        blocks += _ranking_blocks(layout, results, name)
        if name in results["ranking"]:  # the ranking warns of small samples itself
            warnings = list(results["ranking_details"][name].get("warnings") or [])
        else:
            warnings = [w for w in [small_sample_warning(results, name)] if w]
        if warnings:
            blocks.append(("list", [f"Warning: {w}" for w in warnings]))
    return blocks


def _ranking_blocks(layout: StudyLayout, results: dict, name: str) -> list[tuple]:
    """The ranking table, the head-to-head heatmap and the sentence that reads them."""
    if name not in results["ranking"]:
        return [("p", f"No ranking for {name} yet (rank/{name}/ranking.json is missing).")]
    blocks = [("table", *ranking_table(results, name))]
    heatmap = results["ranking_details"][name].get("heatmap")
    if heatmap:
        caption = f"Head to head on {name}: row's win rate against column"
        blocks.append(("image", layout.root / heatmap, caption))
    sentence = best_sentence(results, name)
    if sentence:
        blocks.append(("p", sentence))
    return blocks


def claims_section(results: dict) -> list[tuple]:
    if not results["claims"]:
        return []
    items = []
    for claim in results["claims"]:
        if claim.get("error"):
            items.append(f"{claim['claim']}: {claim['error']}")
            continue
        for name, verdict in claim["evaluations"].items():
            items.append(f"{claim['claim']} on {name}: {claim_verdict(verdict)}")
        if not claim["evaluations"]:
            items.append(f"{claim['claim']}: no evaluation has a ranking to test it")
    return [("h", "Claims"), ("list", items)]


def claim_verdict(verdict: dict) -> str:
    if verdict["supported"] is None:
        return f"not tested ({verdict['reason']})"
    figures = (
        f"win rate {percent(verdict.get('win_rate'))}% "
        f"[{percent(verdict.get('ci_low'))}, {percent(verdict.get('ci_high'))}], "
        f"p = {number(verdict.get('p_value'), 4)}"
    )
    if verdict.get("p_holm") is not None:
        figures += f", Holm-adjusted p = {number(verdict['p_holm'], 4)}"
    said = "supported" if verdict["supported"] else "not supported by the data"
    return f"{said} ({figures})"


# -- Table 3 ---------------------------------------------------------------------------------


def _win_cell(figures: dict | None) -> str:
    if not figures or figures.get("win_rate") is None:
        return "—"
    return interval(figures["win_rate"], figures.get("ci_low"), figures.get("ci_high"), percent, 1)


def verdict(figures: dict | None, baseline: str) -> str | None:
    """What a win rate says, honestly: better, no clear difference, or worse than the baseline."""
    if not figures or figures.get("win_rate") is None or figures.get("ci_low") is None:
        return None
    if figures["ci_low"] > 0.5:
        return f"beats {baseline} (95% CI above 50%)"
    if figures["ci_high"] < 0.5:
        return f"loses to {baseline} (95% CI below 50%)"
    return f"does not beat {baseline} at this size (95% CI includes 50%)"


def _has_preference(results: dict) -> bool:
    return any(row.get("preference") for row in results["rows"])


def _preference_cell(row: dict) -> str:
    figures = row.get("preference")
    if not figures or figures.get("accuracy") is None:
        return "—"
    count = figures.get("n")
    return f"{percent(figures['accuracy'])} (n={'—' if count is None else round(count)})"


def table3(results: dict) -> tuple[list[str], list[list[str]]]:
    header = ["Method"]
    for evaluation in results["evaluations"]:
        if evaluation["kind"] == "mt-bench":
            header.append(f"{evaluation['name']} score")
        else:
            header.append(f"{evaluation['name']} win % vs {evaluation['baseline']} [95% CI]")
    gold = f"gold reward ({results['gold']})" if results.get("gold") else "gold reward"
    header += [gold, "KL [95% CI]"]
    header += ["held-out preference accuracy %"] if _has_preference(results) else []
    header += ["length", "repetition %", "ends at EOS %", "status"]
    return header, [_table3_row(results, row) for row in results["rows"]]


def _table3_row(results: dict, row: dict) -> list[str]:
    cells = [_name(results, row["label"])]
    for evaluation in results["evaluations"]:
        figures = row["evaluations"].get(evaluation["name"])
        if evaluation["kind"] == "mt-bench":
            cells.append(number((figures or {}).get("score"), 2))
        else:
            cells.append(_win_cell(figures))
    stats = row["stats"]
    cells += [
        number(stats["gold_reward"]),
        interval(stats["kl"], stats.get("kl_ci_low"), stats.get("kl_ci_high"), number, 2),
    ]
    cells += [_preference_cell(row)] if _has_preference(results) else []
    cells += [
        number(stats["length"], 1),
        percent(stats["repetition"], 0),
        percent(stats["eos_share"], 0),
        row["status"],
    ]
    return cells


def _table3_notes(results: dict) -> str:
    notes = [
        "Win rate: ties count half; 95% confidence interval by bootstrap over prompts.",
        KL_NOTES[kl_kind(results)],
        "Length in tokens; repetition: share of answers with a repeated word trigram "
        "(reward hacking shows here before it shows in the gold reward).",
    ]
    if results.get("gold"):
        notes.insert(1, f"Gold reward: {results['gold']}, the mean over the held-out answers.")
    served = [row["label"] for row in results["rows"] if row["stats"]["kl_estimate"] == KL_SERVED]
    if served:
        notes.append(
            f"KL —: {joined(served)} answered from a served model (`generation`), which returns "
            "no log-probs, so their KL was not estimated."
        )
    if _has_preference(results):
        notes.append(
            "Held-out preference accuracy: share of held-out pairs whose chosen response gets "
            "the higher implicit reward β·(log π − log π_start); — for methods without one."
        )
    if results["seeds"] > 1:
        notes.append(
            f"Each method's figures are means over {results['seeds']} seeds "
            f"({', '.join(map(str, results['seed_list']))}); per-seed files are under seed-<s>/ "
            "and the ranking above accounts for the seeds."
        )
    return " ".join(notes)


def results_section(results: dict) -> list[tuple]:
    blocks = [
        ("h", "Results (laid out as Table 3 of the HH/TL;DR comparison study)"),
        ("table", *table3(results)),
    ]
    blocks.append(("p", _table3_notes(results)))
    readings = []
    for evaluation in results["evaluations"]:
        for row in results["rows"]:
            said = verdict(row["evaluations"].get(evaluation["name"]), evaluation["baseline"])
            if said and row["label"] != evaluation["baseline"]:
                readings.append(f"{_name(results, row['label'])} on {evaluation['name']}: {said}.")
    if readings:
        blocks.append(("list", readings))
    return blocks


# -- sample budgets ---------------------------------------------------------------------------


def budget_table(results: dict) -> tuple[list[str], list[list[str]]]:
    """Each method's win rates next to what it learned from (`budget`): where its training
    samples came from, and the prompts, generated samples and tokens and reward calls."""
    win_rates = [e for e in results["evaluations"] if e["kind"] != "mt-bench"]
    header = ["Method"]
    header += [f"{e['name']} win % vs {e['baseline']} [95% CI]" for e in win_rates]
    header += ["trained on", "prompts", "samples generated", "tokens generated", "reward calls"]
    rows = []
    for row in results["rows"]:
        if row["label"] == START:
            continue
        spent = row.get("budget") or {}
        counted = spent and spent["source"] != budget.OFFLINE
        cells = [_name(results, row["label"])]
        cells += [_win_cell(row["evaluations"].get(e["name"])) for e in win_rates]
        cells.append(budget.source_text(spent))
        cells += [budget.count_text(spent.get(f) if counted else None) for f in budget.COUNTS]
        rows.append(cells)
    return header, rows


def budget_section(results: dict) -> list[tuple]:
    header, rows = budget_table(results)
    if not rows:
        return []
    notes = (
        "What each method learned from. Offline methods trained on the study's on-policy "
        "sampling step share its budget (sampled once from the starting model, every sample "
        "scored by the reward); an online method counts every sample it generated and scored "
        "during training; 'offline data' generated nothing and counts the examples the run "
        "trained on. — : not known (the run has not finished)."
    )
    if results["seeds"] > 1:
        notes += f" Online budgets are means over {results['seeds']} seeds."
    return [("h", "Sample budgets"), ("table", header, rows), ("p", notes)]


# -- the papers' views -----------------------------------------------------------------------

VIEW_TITLES = {
    "win_rates": "Win rates by evaluation set (as the HH/TL;DR comparison study's Table 3)",
    "mt_bench_arena_hard": "MT-Bench and Arena-Hard (as the MPPO paper reports them)",
}


def _view_cell(cell: dict, unit: str) -> str:
    if unit == "grade":
        return number(cell["value"], 2)
    return interval(cell["value"], cell["ci_low"], cell["ci_high"], percent, 1)


def view_table(results: dict, view: dict) -> tuple[list[str], list[list[str]]]:
    """One of `results.paper_views` as a table: a row per method, percentages with intervals."""
    header = ["Method", *view["columns"]]
    rows = [
        [_name(results, row["label"])]
        + [_view_cell(cell, unit) for cell, unit in zip(row["cells"], view["units"], strict=True)]
        for row in view["rows"]
    ]
    return header, rows


def _view_notes(results: dict, key: str) -> str:
    kinds = {evaluation["kind"] for evaluation in results["evaluations"]}
    notes = []
    if key == "win_rates":
        notes.append(
            "Each cell: the row's win rate in percent against that evaluation set's baseline, "
            "ties counting half, with a 95% interval"
        )
        if "alpaca-eval" in kinds:
            notes.append(
                "AlpacaEval: the alpaca-eval package's win rate ± 1.96 standard errors; LC is "
                "its length-controlled win rate (the AlpacaEval 2.0 leaderboard's headline)"
            )
    if "arena-hard" in kinds:
        notes.append(
            "Arena-Hard: the Bradley-Terry win rate against the baseline, 95% bootstrap "
            "interval over battles"
        )
    if "mt-bench-pairwise" in kinds and key == "win_rates":
        notes.append("MT-Bench pairwise: both turns in both orders, interval over questions")
    if "mt-bench" in kinds and key == "mt_bench_arena_hard":
        notes.append("MT-Bench: the mean 1-10 grade over both turns")
    if results["seeds"] > 1:
        notes.append(f"methods: means over {results['seeds']} seeds, without an interval")
    return "; ".join(notes) + "."


def _lc_gaps(results: dict) -> list[str]:
    """Why an AlpacaEval LC cell is empty, once per evaluation."""
    gaps = {}
    for evaluation in results["evaluations"]:
        if evaluation["kind"] != "alpaca-eval":
            continue
        for row in results["rows"]:
            reason = (row["evaluations"].get(evaluation["name"]) or {}).get("lc_unavailable")
            if reason:
                gaps.setdefault(evaluation["name"], f"{evaluation['name']} LC: — because {reason}.")
    return list(gaps.values())


def paper_views_section(results: dict) -> list[tuple]:
    """The rows in the published papers' shape (`results.paper_views`), when the study has
    their evaluations."""
    blocks = []
    for key, view in results.get("paper_views", {}).items():
        blocks += [("h", VIEW_TITLES[key]), ("table", *view_table(results, view))]
        blocks.append(("p", _view_notes(results, key)))
        gaps = _lc_gaps(results) if key == "win_rates" else []
        if gaps:
            blocks.append(("list", gaps))
    return blocks


# -- answers, failures, dynamics ------------------------------------------------------------


def examples_section(results: dict) -> list[tuple]:
    if not results["examples"]:
        return []
    blocks = [
        ("h", "Example answers side by side"),
        (
            "p",
            "Prompts where the rows disagree most, then prompts drawn at random: every row's "
            "greedy answer next to the start's (a method's first seed).",
        ),
    ]
    gold = results.get("gold")
    for example in results["examples"]:
        blocks.append(("p", f"Prompt {example['id']} ({example['why']}): {example['prompt']}"))
        header = ["row", *([f"gold reward ({gold})"] if gold else []), "answer"]
        rows = [
            [_name(results, a["label"]), *([number(a["gold"], 2)] if gold else []), a["response"]]
            for a in example["answers"]
        ]
        blocks.append(("table", header, rows))
    return blocks


def failures_section(results: dict) -> list[tuple]:
    failures = [row for row in results["rows"] if row["failure"]]
    if not failures:
        return []
    return [
        ("h", "Failures"),
        (
            "list",
            [
                f"{r['label']} failed at {r['failure']['step']}: {r['failure']['error']}"
                for r in failures
            ],
        ),
    ]


def _dynamics_cell(series: dict | None) -> str:
    if not series:
        return "—"
    return (
        f"{series['trend']}, {series['stability']} "
        f"({number(series['start'], 3)} → {number(series['end'], 3)})"
    )


def table2(results: dict) -> tuple[list[str], list[list[str]]]:
    rows_with_runs = [row for row in results["rows"] if row.get("dynamics", {}).get("steps")]
    names = [
        name for name in SERIES if any(name in row["dynamics"]["series"] for row in rows_with_runs)
    ]
    header = ["Method", "steps", *names, "flags"]
    rows = []
    for row in rows_with_runs:
        dynamics = row["dynamics"]
        cells = [_name(results, row["label"]), str(dynamics["steps"])]
        cells += [_dynamics_cell(dynamics["series"].get(name)) for name in names]
        cells.append("; ".join(dynamics["flags"]) or "none")
        rows.append(cells)
    return header, rows


def dynamics_section(results: dict) -> list[tuple]:
    header, rows = table2(results)
    if not rows:
        return []
    return [
        ("h", "Training dynamics (metrics.jsonl, as Table 2 of the HH/TL;DR comparison study)"),
        ("table", header, rows),
        (
            "p",
            "Each cell: trend over training (Theil-Sen slope over steps; rising or falling only "
            "when its 95% interval excludes zero and the change is at least 5% of the series' "
            "scale), stability (mean step-to-step change over the range), and the first-third → "
            "last-third means. Flags are raised only when their trend holds under that test; "
            "spikes are steps more than 6 robust standard deviations off the fitted line."
            + (" With seeds, the first seed's run." if results["seeds"] > 1 else ""),
        ),
    ]


def _code(title: str, data: object) -> tuple:
    return ("code", title, yaml.safe_dump(data, sort_keys=False, allow_unicode=True))


def configs_section(results: dict) -> list[tuple]:
    runs = results["settings"]["runs"]
    if not runs:
        return []
    return [("h", "Every run's resolved config")] + [
        _code(run["path"], run["config"]) for run in runs
    ]


def plots_section(layout: StudyLayout, results: dict, study: dict) -> list[tuple]:
    figures = [
        (
            plots.training_curves(layout, results, study),
            "Training curves (each panel on its own scale)",
        ),
        (
            plots.reward_vs_kl(layout, results, KL_AXES[kl_kind(results)], results.get("gold")),
            "Gold reward against KL from the start",
        ),
        *[(path, f"Win rate, {name}") for path, name in plots.win_rate_bars(layout, results)],
    ]
    drawn: list[tuple[Path, str]] = [
        (path, caption) for path, caption in figures if path is not None
    ]
    if not drawn:
        return []
    return [("h", "Plots")] + [("image", path, caption) for path, caption in drawn]
