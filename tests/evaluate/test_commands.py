import json

from preftune.cli import main


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_generate_then_judge_with_gold(tmp_path, tiny_model_dir, capsys):
    prompts = _write_jsonl(
        tmp_path / "prompts.jsonl",
        [{"id": "x", "prompt": "write a review"}, {"prompt": "summarize the post"}],
    )
    samples = tmp_path / "samples.jsonl"
    code = main(
        [
            "generate",
            "--model",
            str(tiny_model_dir),
            "--prompts",
            str(prompts),
            "--out",
            str(samples),
            "--max-new-tokens",
            "3",
        ]
    )
    assert code == 0
    rows = [json.loads(line) for line in samples.read_text().splitlines()]
    assert sorted(r["id"] for r in rows) == ["1", "x"]

    baseline = _write_jsonl(
        tmp_path / "baseline.jsonl",
        [
            {"id": "x", "prompt": "p", "response": "awful, terrible, hateful"},
            {"id": "1", "prompt": "p", "response": "awful, terrible, hateful"},
        ],
    )
    out = tmp_path / "judged"
    code = main(
        [
            "judge",
            "--samples",
            str(samples),
            "--baseline",
            str(baseline),
            "--judge",
            "gold",
            "--gold",
            "vader-sentiment",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    results = json.loads((out / "results.json").read_text())
    assert results["n"] == 2 and results["losses"] == 0  # random tokens are not that negative
    assert len((out / "judgments.jsonl").read_text().splitlines()) == 2


def test_judge_against_the_data_sets_preferred_response(tmp_path):
    data = _write_jsonl(
        tmp_path / "pairs.jsonl",
        [
            {"prompt": "q1", "chosen": "a lovely, wonderful day", "rejected": "bad"},
            {"prompt": "q2", "chosen": "a lovely, wonderful day", "rejected": "bad"},
        ],
    )
    from preftune.data import read_records

    ids = [g.id for g in read_records(str(data)).groups]
    samples = _write_jsonl(
        tmp_path / "samples.jsonl",
        [
            {"id": ids[0], "prompt": "q1", "response": "a sad and awful day"},
            {"id": ids[1], "prompt": "q2", "response": "a lovely, wonderful day"},
        ],
    )
    code = main(
        [
            "judge",
            "--samples",
            str(samples),
            "--baseline-data",
            str(data),
            "--judge",
            "gold",
            "--gold",
            "vader-sentiment",
            "--out",
            str(tmp_path / "out"),
        ]
    )
    assert code == 0
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert (results["wins"], results["losses"], results["ties"]) == (0, 1, 1)
    assert results["win_rate"] == 0.25


def test_user_errors_exit_2_without_traceback(tmp_path, capsys):
    code = main(["judge", "--samples", "x.jsonl", "--judge", "gold", "--out", str(tmp_path)])
    assert code == 2
    assert "--baseline" in capsys.readouterr().err


def test_mtbench_mode_answers_and_grades(tmp_path, tiny_model_dir, chat_server):
    server = chat_server(lambda messages, attempt: "Rating: [[6]]")
    out = tmp_path / "mtbench"
    code = main(
        [
            "judge",
            "--mtbench",
            "--model",
            str(tiny_model_dir),
            "--limit",
            "2",
            "--max-new-tokens",
            "3",
            "--judge",
            "openai",
            "--judge-model",
            "m",
            "--base-url",
            server.base_url,
            "--out",
            str(out),
        ]
    )
    assert code == 0
    summary = json.loads((out / "mtbench.json").read_text())
    assert summary["n"] == 4 and summary["overall"] == 6 and summary["categories"] == {"writing": 6}
    assert summary["warnings"][0].startswith("only 4 answers graded")
    assert len(server.requests) == 4


def test_a_tiny_judged_set_warns_that_its_interval_means_little(tmp_path, capsys):
    """3 prompts that all win give the interval [1.0, 1.0]: shown with a warning on stderr
    and in results.json, not as a certainty."""
    rows = [{"id": str(i), "prompt": "review"} for i in range(3)]
    samples = _write_jsonl(tmp_path / "s.jsonl", [{**r, "response": "wonderful"} for r in rows])
    baseline = _write_jsonl(tmp_path / "b.jsonl", [{**r, "response": "awful"} for r in rows])
    command = ["judge", "--samples", str(samples), "--baseline", str(baseline), "--judge"]
    assert main([*command, "gold", "--gold", "vader-sentiment", "--out", str(tmp_path / "o")]) == 0
    results = json.loads((tmp_path / "o" / "results.json").read_text())
    assert (results["ci_low"], results["ci_high"], results["win_rate"]) == (1.0, 1.0, 1.0)
    warning = "only 3 prompts decided: the 95% interval [1.00, 1.00] rests on too little data"
    assert any(w.startswith(warning) for w in results["warnings"])
    assert f"preftune judge: warning: {warning}" in capsys.readouterr().err
