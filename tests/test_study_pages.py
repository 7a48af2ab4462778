"""Study pages on the built leaderboard: the index lists each study with its answer; each page shows evidence."""

from __future__ import annotations

from _study_data import write_ab_results, write_studies

from optbench.leaderboard.site import build_site
from optbench.studies import load_studies


def test_study_pages_state_question_evidence_and_answer(tmp_path):
    results = write_ab_results(tmp_path / "r")
    studies = load_studies(write_studies(tmp_path / "studies"))
    _, written = build_site(results, tmp_path / "site", None, studies)
    names = {p.name for p in written}
    assert {"studies.html", "study-ab.html", "study-geo.html"} <= names
    index = (tmp_path / "site" / "studies.html").read_text()
    assert "Is a better than b?" in index and "Yes, on 1 of 1 task(s)" in index
    assert "plotly.min.js" not in index  # the index plots nothing, so it loads no plotting library
    pair = (tmp_path / "site" / "study-ab.html").read_text()
    assert 'id="study-pairs"' in pair and "a better" in pair and 'id="study-curve-t"' in pair
    geo = (tmp_path / "site" / "study-geo.html").read_text()
    assert 'id="study-correlations"' in geo and 'id="study-geo-t-sharpness"' in geo


def test_a_board_without_studies_says_so(tmp_path):
    results = write_ab_results(tmp_path / "r")
    build_site(results, tmp_path / "site")
    assert "No studies were declared" in (tmp_path / "site" / "studies.html").read_text()
