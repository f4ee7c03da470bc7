"""docs/methods.md is generated from the registry and the loss docstrings, and kept current."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from preftune.cli import main
from preftune.losses import METHODS
from preftune.losses.docs import render

ROOT = Path(__file__).resolve().parents[2]


def test_docs_methods_md_is_up_to_date():
    current = (ROOT / "docs" / "methods.md").read_text(encoding="utf-8")
    assert current == render(), "docs/methods.md is stale: run python -m preftune.losses.docs"


def test_every_method_has_its_section_with_formula_paper_and_ranges():
    text = render()
    for name, spec in METHODS.items():
        section = text.split(f"### `{name}`\n", 1)[1].split("\n### ", 1)[0]
        assert spec.paper in section and "```text" in section, name
        for hparam, declaration in spec.hparams.items():
            assert f"| `{hparam}` |" in section and declaration.allowed() in section, (name, hparam)
    assert "length_normalize: true` gives TRL's form" in text


def test_markdown_flag_prints_the_same_reference(capsys):
    assert main(["methods", "--markdown"]) == 0
    assert capsys.readouterr().out == render()


def test_check_mode_reports_a_stale_file(tmp_path):
    stale = tmp_path / "methods.md"
    stale.write_text("old\n", encoding="utf-8")
    command = [sys.executable, "-m", "preftune.losses.docs", "--check", "--path", str(stale)]
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 1 and "out of date" in result.stdout


def _project_texts():
    folders = [ROOT / "src", ROOT / "docs", ROOT / "examples"]
    files = [
        p for folder in folders for p in folder.rglob("*") if p.suffix in {".py", ".md", ".yaml"}
    ]
    return {p: p.read_text(encoding="utf-8") for p in [*files, ROOT / "README.md"]}


def test_the_project_cites_no_document_outside_it():
    """Issue 21: code and docs pointed at notes the repository does not contain."""
    for path, text in _project_texts().items():
        if path.name == "README.md":
            continue  # its study section is curated separately
        for outside in ("METHODS.md", "PILOT.md", "DESIGN.md", "see docs: "):
            assert outside not in text, f"{path} cites {outside}"


def test_mppo_is_cited_with_one_year_everywhere():
    """Issue 22: MPPO (arXiv 2412.15244) was 2024 in the registry and 2025 in the README."""
    assert "Xie et al. 2025" in METHODS["mppo-pair-mnm"].paper
    for path, text in _project_texts().items():
        assert "Xie et al. 2024" not in text, path
