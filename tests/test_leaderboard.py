"""The leaderboard renderer: pages exist, tables hold the numbers the Parquet rows imply (recomputed here by
hand, not through optbench.summary), the performance profile matches a pencil-and-paper example, hostile
strings stay text, and empty or failed results render with clear markers."""

from __future__ import annotations

import json
import math
import re
import statistics
import threading
import urllib.request
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest
from _leaderboard_data import (
    HOSTILE,
    HOSTILE_JS,
    HOSTILE_SCRIPT,
    OPTIMIZERS,
    SEEDS,
    TASK,
    add_edge_rows,
    evil_registry,
    row,
    shared_real_results,
    write_rows,
)

from optbench.leaderboard import build_site, profile
from optbench.leaderboard.html import safe_json, slug
from optbench.leaderboard.pages import optimizer_href, task_href
from optbench.leaderboard.serve import make_server
from optbench.store import Store


# --- a tiny HTML model -----------------------------------------------------------------------------
class Page(HTMLParser):
    """Tags with attributes, visible text, tables (id -> rows of cells: text without badges, badge texts, attrs,
    inner tags) and script bodies."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []
        self.tables: dict[str, list[dict]] = {}
        self.scripts: list[tuple[dict, str]] = []
        self._table: str | None = None
        self._tr: dict | None = None
        self._cell: dict | None = None
        self._script: dict | None = None
        self._badge = False
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append((tag, a))
        if tag == "script":
            self._script, self._buf = a, []
        elif tag == "table":
            self._table = a.get("id", f"table{len(self.tables)}")
            self.tables[self._table] = []
        elif tag == "tr" and self._table is not None:
            self._tr = {"class": a.get("class", ""), "cells": [], "head": False}
        elif tag in ("td", "th") and self._tr is not None:
            self._cell = {"text": "", "attrs": a, "inner": [], "badges": []}
            self._tr["head"] = tag == "th"
        elif self._cell is not None:
            self._cell["inner"].append((tag, a))
            if tag == "span" and "badge" in a.get("class", ""):
                self._badge = True
                self._cell["badges"].append("")

    def handle_endtag(self, tag):
        if tag == "script" and self._script is not None:
            self.scripts.append((self._script, "".join(self._buf)))
            self._script = None
        elif tag in ("td", "th") and self._cell is not None:
            self._tr["cells"].append(self._cell)
            self._cell = None
        elif tag == "tr" and self._tr is not None:
            if not self._tr["head"]:
                self.tables[self._table].append(self._tr)
            self._tr = None
        elif tag == "table":
            self._table = None
        elif tag == "span":
            self._badge = False

    def handle_data(self, data):
        if self._script is not None:
            self._buf.append(data)
            return
        self.text.append(data)
        if self._cell is not None and self._badge:
            self._cell["badges"][-1] += data
        elif self._cell is not None:
            self._cell["text"] += data

    @property
    def body_text(self) -> str:
        return " ".join(self.text)

    def islands(self) -> dict[str, object]:
        return {a["id"]: json.loads(body) for a, body in self.scripts if a.get("type") == "application/json"}


def read(site: Path, name: str) -> Page:
    return Page((site / name).read_text(encoding="utf-8"))


def cell_text(tr: dict, i: int) -> str:
    return " ".join(tr["cells"][i]["text"].split())


def badges(tr: dict, i: int) -> list[str]:
    return tr["cells"][i]["badges"]


def parse_mean_std(text: str) -> tuple[float, float]:
    m = re.match(r"^([-+0-9.e]+)(?: ± ([-+0-9.e]+))?", text)
    assert m, text
    return float(m.group(1)), float(m.group(2) or 0.0)


# --- fixtures --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def real_results(tmp_path_factory) -> Path:
    return shared_real_results(tmp_path_factory)


@pytest.fixture(scope="module")
def real_site(real_results, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("lb") / "site"
    build_site(real_results, out)
    return out


@pytest.fixture(scope="module")
def mixed_site(real_results, tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("lb")
    add_edge_rows(real_results, base / "results")
    build_site(base / "results", base / "site", evil_registry())
    return base / "site"


# --- pages and numbers -----------------------------------------------------------------------------
def test_every_page_exists_and_is_self_contained(real_site):
    pages = ["index.html", "curves.html", "geometry.html", task_href(TASK), *[optimizer_href(o) for o in OPTIMIZERS]]
    for name in pages:
        page = read(real_site, name)
        for tag, attrs in page.tags:  # nothing is fetched from elsewhere: every src/href is relative
            for key in set(attrs) & {"src", "href"}:
                value = attrs[key] or ""
                assert not re.match(r"^(https?:)?//", value), f"{name}: {tag} {key}={value}"
                if key == "src" or (tag == "link" and attrs.get("rel") == "stylesheet"):
                    assert (real_site / value).is_file(), f"{name} references missing {value}"
    assert (real_site / "assets" / "plotly.min.js").stat().st_size > 1_000_000
    assert len(list(real_site.rglob("plotly*.js"))) == 1  # the bundle is written once, shared by every page
    assert "Machine:" in read(real_site, "index.html").body_text


def test_task_table_matches_parquet_rows(real_site, real_results):
    trials = Store(real_results).read().trials
    page = read(real_site, task_href(TASK))
    table = {cell_text(tr, 1): tr for tr in page.tables["results-smoke"]}
    assert set(table) == set(OPTIMIZERS)
    declared = [c.header for c in Store(real_results).read().columns]  # the metric plugins' columns
    assert len(declared) >= 2
    headers = ["rank", "optimizer", "seeds ok", "test accuracy", "test loss", "time to target (s)", "steps to target",
               "step time ×adamw", *declared, "state MB"]
    col = {h: i for i, h in enumerate(headers)}
    adamw = trials[trials["optimizer"] == "adamw"].set_index("seed")
    for opt in OPTIMIZERS:
        rows = trials[trials["optimizer"] == opt].sort_values("seed")
        tr = table[opt]
        assert cell_text(tr, col["seeds ok"]) == f"{SEEDS}/{SEEDS}"
        assert "synthetic" in tr["class"] and badges(tr, 1) == ["synthetic"]
        for header, column, digits in (("test loss", "final_test_loss", 4), ("steps to target", "steps_to_target", 4),
                                       ("time to target (s)", "time_to_target_s", 3)):
            values = [float(v) for v in rows[column]]
            mean, std = parse_mean_std(cell_text(tr, col[header]))
            assert mean == pytest.approx(statistics.fmean(values), rel=0.51 * 10 ** (1 - digits)), (opt, header)
            assert std == pytest.approx(statistics.stdev(values), rel=0.06, abs=1e-300), (opt, header)
        if rows["opt_step_ratio"].notna().all():  # interleaved in each trial (optbench/speed.py): seed medians
            med, lo, hi = (statistics.median(rows[c]) for c in ("opt_step_ratio", "opt_step_ratio_lo",
                                                                 "opt_step_ratio_hi"))
            assert cell_text(tr, col["step time ×adamw"]) == f"{med:.2f}× ({lo:.2f}–{hi:.2f})"
            assert lo <= med <= hi
        else:  # rows written before the interleaved measurement: ratio of step times in the same run
            ratio = statistics.fmean(rows.set_index("seed")["step_time_ms"] / adamw["step_time_ms"])
            assert cell_text(tr, col["step time ×adamw"]) == f"{ratio:.2f}×"
        assert cell_text(tr, col["test accuracy"]) == "—"  # quadratics have no accuracy
        state = statistics.fmean(rows["optimizer_state_mb"])
        assert float(cell_text(tr, col["state MB"])) == pytest.approx(state, rel=2e-3)
        assert tr["cells"][col["test loss"]]["attrs"]["data-sort"] == repr(statistics.fmean(rows["final_test_loss"]))


def test_curves_are_mean_with_seed_band(real_site, real_results):
    res = Store(real_results).read(with_curves=True)
    page = read(real_site, task_href(TASK))
    key = f"curve-{slug(TASK + '/smoke')}-train-loss-steps"
    fig = page.islands()[key + "-data"]
    lines = [t for t in fig["data"] if t.get("name") == "sgd"]
    band = [t for t in fig["data"] if t.get("fill") == "tonexty"]
    assert len(lines) == 1 and len(band) == len(OPTIMIZERS)
    sgd_ids = set(res.trials.loc[res.trials["optimizer"] == "sgd", "trial_id"])
    c = res.curves[res.curves["trial_id"].isin(sgd_ids) & (res.curves["name"] == "loss")]
    xs = lines[0]["x"]
    assert len(xs) <= 120 and xs[0] == c["step"].min() and xs[-1] == c["step"].max()  # downsampled, ends kept
    for step in (xs[0], xs[len(xs) // 2], xs[-1]):
        expect = c[c["step"] == step]["value"]
        assert len(expect) == SEEDS
        assert lines[0]["y"][xs.index(step)] == pytest.approx(expect.mean(), rel=1e-5)
        lo_hi = [t["y"][t["x"].index(step)] for t in fig["data"] if t.get("legendgroup") == "sgd" and "name" not in t]
        assert lo_hi == pytest.approx([expect.min(), expect.max()], rel=1e-5)
    assert fig["layout"]["yaxis"]["type"] == "log"  # quadratic losses span many decades
    assert f"{key[:-5]}seconds-data" in page.islands()


# --- performance profile ---------------------------------------------------------------------------
HAND_TIMES = {"A": {"o1": 10.0, "o2": 20.0, "o3": math.inf}, "B": {"o1": 30.0, "o2": 12.0, "o3": 60.0}}


def test_performance_profile_hand_example():
    # ratios: A -> o1 1, o2 2, o3 inf;  B -> o1 2.5, o2 1, o3 5
    times = pd.DataFrame(HAND_TIMES).T
    ratios = profile.performance_ratios(times)
    assert ratios.loc["B", "o1"] == 2.5 and ratios.loc["A", "o3"] == math.inf and ratios.loc["B", "o3"] == 5.0
    assert dict(profile.rho(ratios, 1.0)) == {"o1": 0.5, "o2": 0.5, "o3": 0.0}
    assert dict(profile.rho(ratios, 2.0)) == {"o1": 0.5, "o2": 1.0, "o3": 0.0}
    assert dict(profile.rho(ratios, 2.5)) == {"o1": 1.0, "o2": 1.0, "o3": 0.0}
    # area: o1 = (3 + 1.5)/2 = 2.25, o2 = (2 + 3)/2 = 2.5, o3 = 0 (5 > 4)
    assert dict(profile.profile_area(ratios)) == pytest.approx({"o1": 2.25, "o2": 2.5, "o3": 0.0})
    assert dict(profile.profile_score(ratios)) == pytest.approx({"o1": 0.75, "o2": 2.5 / 3, "o3": 0.0})
    assert profile.profile_steps(ratios, "o1") == ([1.0, 2.5, 4.0], [0.5, 1.0, 1.0])
    # a problem nobody solved counts for nobody
    both = profile.performance_ratios(pd.DataFrame({"o1": [math.inf], "o2": [math.nan]}))
    assert (both == math.inf).all().all()


def test_overview_ranks_by_profile_score(tmp_path):
    rows = []
    for task, times in HAND_TIMES.items():
        for opt, t in times.items():
            reached = math.isfinite(t)
            rows.append(row(task=f"task-{task.lower()}", optimizer=opt, time_to_target_s=t if reached else None,
                            steps_to_target=int(t) if reached else None, final_test_loss=0.1, final_train_loss=0.05))
    write_rows(tmp_path / "results", rows)
    build_site(tmp_path / "results", tmp_path / "site")
    page = read(tmp_path / "site", "index.html")
    ranking = page.tables["ranking"]
    names = [cell_text(tr, 1) for tr in ranking]
    assert names == ["o2", "o1", "o3"]
    # one seed per cell: nothing to resample, so each score's interval is the score itself
    assert [cell_text(tr, 2) for tr in ranking] == ["0.833 [0.83, 0.83]", "0.750 [0.75, 0.75]", "0.000 [0.00, 0.00]"]
    assert [cell_text(tr, 3) for tr in ranking] == ["1", "2", "3"]  # rank range
    assert [cell_text(tr, 5) for tr in ranking] == ["1/2", "1/2", "0/2"]  # fastest on
    wins = {cell_text(tr, 0).split(" ")[0]: tr for tr in page.tables["wins"]}
    assert [cell_text(wins["task-b/smoke"], i) for i in range(3, 6)] == ["1.00", "2.50", "5.00"]
    assert cell_text(wins["task-a/smoke"], 5) == "✗"
    o1 = next(a for t, a in page.tags if t == "path" and a.get("data-name") == "o1")  # the overview's SVG profile
    assert (o1["data-tau"], o1["data-rho"]) == ("1 2.5 4", "0.5 1 1")


# --- hostile strings -------------------------------------------------------------------------------
def test_hostile_strings_stay_text(mixed_site):
    pages = sorted(mixed_site.glob("*.html"))
    assert (mixed_site / optimizer_href(HOSTILE)).exists() and optimizer_href(HOSTILE).startswith("optimizer-img-src")
    for path in pages:
        raw = path.read_text(encoding="utf-8")
        page = Page(raw)
        for tag, attrs in page.tags:
            assert tag not in ("img", "iframe", "object"), f"{path.name}: injected <{tag}>"
            if tag == "svg":  # the only SVG a page has is the profile we draw
                assert attrs.get("class") == "profile-svg", f"{path.name}: injected <svg>"
            assert not any(k.startswith("on") for k in attrs), f"{path.name}: event handler on <{tag}>"
            if tag == "a":
                assert not attrs.get("href", "").lower().startswith("javascript"), path.name
            if tag == "script":
                assert attrs.get("type") == "application/json" or attrs.get("src", "").startswith("assets/"), attrs
        for attrs, body in page.scripts:  # data islands parse as JSON and contain no markup characters
            assert "<" not in body and ">" not in body
            if attrs.get("type") == "application/json":
                json.loads(body)
        assert "window.__xss" not in "".join(b for a, b in page.scripts if a.get("type") != "application/json")
    evil = read(mixed_site, optimizer_href(HOSTILE))
    assert HOSTILE in evil.body_text and HOSTILE_SCRIPT in evil.body_text and HOSTILE_JS in evil.body_text
    plugin = read(mixed_site, optimizer_href("evil-opt"))
    assert HOSTILE_JS in plugin.body_text  # the registered plugin's hostile summary, shown as text
    assert "javascript:alert(1)//" + HOSTILE in plugin.body_text  # the paper, not turned into a link
    assert HOSTILE_SCRIPT.replace('"', '\\"') in plugin.body_text  # defaults JSON, escaped
    index = read(mixed_site, "index.html")
    assert HOSTILE in index.body_text
    diagnostics = [cell_text(tr, 1) for tr in index.tables["diagnostics-ranking"]]
    assert any(HOSTILE in name for name in diagnostics)  # its trials are synthetic: ranked apart, shown as text


def test_safe_json_cannot_close_a_script():
    text = safe_json({"a": "</script><script>alert(1)</script>", "b": math.nan, "c": "\u2028&"})
    assert "<" not in text and ">" not in text and "&" not in text and "\u2028" not in text
    assert json.loads(text) == {"a": "</script><script>alert(1)</script>", "b": None, "c": "\u2028&"}


# --- failures, synthetic markers, geometry, empty ---------------------------------------------------
def test_failed_and_diverged_trials_are_marked(mixed_site):
    page = read(mixed_site, task_href(TASK))
    table = {cell_text(tr, 1): tr for tr in page.tables["results-smoke"]}
    sgd = table["sgd"]
    assert cell_text(sgd, 2) == f"{SEEDS}/{SEEDS + 1}" and badges(sgd, 2) == ["1 diverged"]
    assert "has-failures" in sgd["class"]
    evil = table[HOSTILE]
    assert "all-failed" in evil["class"] and badges(evil, 2) == ["no ok seed", "1 failed"]
    assert cell_text(evil, 4) == "—"
    failed = page.tables["failed-trials"]
    statuses = sorted(badges(tr, 3)[0] for tr in failed)
    assert statuses == ["diverged", "failed"]
    errors = {badges(tr, 3)[0]: tr["cells"][5]["text"] for tr in failed}
    assert errors["failed"] == HOSTILE_SCRIPT and errors["diverged"] == "loss became inf at step 17"
    overview = read(mixed_site, "index.html")
    assert len(overview.tables["failed-trials"]) == 2


def test_synthetic_rows_are_marked_and_real_ones_are_not(mixed_site):
    for name in [task_href(TASK), task_href("tiny-real"), optimizer_href("adamw"), "index.html", "geometry.html"]:
        page = read(mixed_site, name)
        for table_id, rows in page.tables.items():
            if table_id == "failed-trials":
                continue
            for tr in rows:
                text = " ".join(c["text"] for c in tr["cells"])
                # the headline ranking is computed from real-data tasks only; diagnostics are ranked apart
                is_real = "tiny-real" in text or name == task_href("tiny-real") or table_id == "ranking"
                badge = any("synthetic" in c["badges"] for c in tr["cells"])
                assert badge == (not is_real) == ("synthetic" in tr["class"]), (name, table_id, text)


def test_geometry_points_are_trials(mixed_site):
    page = read(mixed_site, "geometry.html")
    islands = page.islands()
    panels = [v for k, v in islands.items() if k.startswith("geometry-") and k.endswith("-sharpness-data")]
    assert len(panels) == Store(mixed_site.parent / "results").read().trials["task"].nunique()  # one panel per task
    points = sorted((t["name"], x, y) for fig in panels for t in fig["data"]
                    for x, y in zip(t["x"], t["y"], strict=True))
    trials = Store(mixed_site.parent / "results").read().trials
    have = trials.dropna(subset=["sharpness", "final_test_loss", "final_train_loss"])
    expect = sorted((o, te - tr, sh) for o, te, tr, sh in
                    have[["optimizer", "final_test_loss", "final_train_loss", "sharpness"]].itertuples(index=False))
    assert ("evil-opt", 0.25, 9.5) in points  # the hand-made ones are among them
    assert [p[0] for p in points] == [e[0] for e in expect]
    assert [p[1:] for p in points] == [pytest.approx(e[1:], rel=1e-5, abs=1e-12) for e in expect]
    assert any(k.endswith("-entropy_gap-data") for k in islands)
    assert len(page.tables["geometry-points"]) == len(list((mixed_site.parent / "results" / "trials").glob("*")))


def test_empty_results_render_no_results_pages(tmp_path, cli):
    Store(tmp_path / "empty").prepare()
    out = cli("leaderboard", "build", "--results", str(tmp_path / "empty"), "--out", str(tmp_path / "site"))
    assert out.exit_code == 0, out.output
    for name in ("index.html", "curves.html", "geometry.html"):
        page = read(tmp_path / "site", name)
        assert any(a.get("id") == "no-results" for _, a in page.tags), name
        assert "No results" in page.body_text


def test_task_without_target_or_curves_renders(tmp_path):
    write_rows(tmp_path / "r", [row(optimizer="sgd", status="timeout", error="trial exceeded --trial-timeout 1 s")])
    build_site(tmp_path / "r", tmp_path / "site")
    page = read(tmp_path / "site", task_href("hand-task"))
    assert "no ok seed" in page.body_text and "1 timeout" in page.body_text
    assert "No training curves recorded" in page.body_text
    index = read(tmp_path / "site", "index.html")
    assert "No optimizer reached the target" in index.body_text


def test_cli_errors_and_overwrite_guard(tmp_path, cli, real_results, monkeypatch):
    out = cli("leaderboard", "build", "--results", str(tmp_path / "missing"), "--out", str(tmp_path / "s"))
    assert out.exit_code == 2 and "no results directory" in out.output
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("mine")
    out = cli("leaderboard", "build", "--results", str(real_results), "--out", str(foreign))
    assert out.exit_code == 2 and "refusing to overwrite" in out.output and (foreign / "keep.txt").exists()
    monkeypatch.chdir(tmp_path)
    out = cli("leaderboard", "publish")
    assert out.exit_code == 2 and "scripts/publish-leaderboard" in out.output


def test_publish_rebuilds_in_place(tmp_path, cli, real_results, monkeypatch):
    import shutil

    shutil.copytree(real_results, tmp_path / "leaderboard" / "results")
    monkeypatch.chdir(tmp_path)
    for _ in range(2):  # the second build replaces the first
        out = cli("leaderboard", "publish")
        assert out.exit_code == 0, out.output
    assert (tmp_path / "leaderboard" / "site" / "index.html").is_file()
    assert not [p for p in (tmp_path / "leaderboard").iterdir() if p.name.startswith(".")]


def test_serve_answers_on_localhost(real_site):
    server = make_server(real_site, 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        host, port = server.server_address[:2]
        assert host == "127.0.0.1"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/index.html", timeout=10) as resp:
            assert resp.status == 200 and b"Optimizer leaderboard" in resp.read()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/assets/site.js", timeout=10) as resp:
            assert resp.status == 200
    finally:
        server.shutdown()
        server.server_close()
