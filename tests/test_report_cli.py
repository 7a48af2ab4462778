"""`optbench report`: lists studies, answers one from a results directory, and says one sentence on bad input."""

from __future__ import annotations

import json

from _study_data import write_ab_results, write_studies
from click.testing import CliRunner

from optbench.cli import main


def test_report_lists_and_answers(tmp_path):
    studies = write_studies(tmp_path / "studies")
    write_ab_results(tmp_path / "r")
    runner = CliRunner()
    listed = runner.invoke(main, ["report", "--studies", str(studies)], terminal_width=80)
    assert listed.exit_code == 0 and "Is a better than b?" in listed.output
    out = runner.invoke(main, ["report", "ab", "--studies", str(studies), "--results", str(tmp_path / "r")],
                        terminal_width=80)
    assert out.exit_code == 0, out.output
    assert "a better" in out.output and "Answer: Yes, on 1 of 1 task(s)" in out.output
    data = json.loads(runner.invoke(main, ["report", "ab", "--json", "--studies", str(studies), "--results",
                                           str(tmp_path / "r")]).output)
    assert data[0]["rows"][0]["n_pairs"] == 4 and abs(data[0]["rows"][0]["difference"]["estimate"] - 0.1) < 1e-9


def test_report_unknown_study_is_one_sentence(tmp_path):
    (tmp_path / "s").mkdir()
    out = CliRunner().invoke(main, ["report", "nope", "--studies", str(tmp_path / "s")])
    assert out.exit_code == 2 and "no study 'nope'" in out.output and "Traceback" not in out.output
