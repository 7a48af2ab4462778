"""A metric plugin's declared columns reach the trials table, `optbench results` and the leaderboard without
the engine knowing the metric: the metric below exists only in this test file."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest
from optbench.plugins import torch_optim
from optbench.tasks import quadratic

import optbench.registry
from optbench import ColumnSpec, MetricSpec, MetricWhen, hookimpl
from optbench.registry import load_registry
from optbench.schema import TrialRow, columns_from_metadata

TASK = "quadratic-well-conditioned"


def _weight_norm(ctx) -> dict[str, float]:
    return {"weight_norm": float(sum(float((p.detach() ** 2).sum()) for p in ctx.params) ** 0.5),
            "weight_norm_undeclared": 1.0}


class WeightNormPlugin:
    @hookimpl
    def optbench_register_metrics(self):
        return [MetricSpec("weight-norm", _weight_norm, MetricWhen.FINAL, "L2 norm of all parameters",
                           columns=(ColumnSpec("weight_norm", better="", short="‖w‖",
                                               description="L2 norm of the parameters"),))]


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    from click.testing import CliRunner

    from optbench.cli import main

    registry = load_registry([("torch", torch_optim), ("quadratic", quadratic), ("wn", WeightNormPlugin())],
                             entry_points=False)
    mp = pytest.MonkeyPatch()
    mp.setattr(optbench.registry, "_CACHED", registry)
    root = tmp_path_factory.mktemp("wn") / "results"
    out = CliRunner().invoke(main, ["run", "-o", "sgd", "-o", "adamw", "-t", TASK, "--results", str(root)],
                             catch_exceptions=False)
    mp.undo()
    assert out.exit_code == 0, out.output
    return root


def test_declared_column_is_a_parquet_column_with_its_declaration(results):
    [path, *_] = sorted((results / "trials").glob("*.parquet"))
    table = pq.read_table(path)
    assert table.column("weight_norm")[0].as_py() > 0
    assert "weight_norm_undeclared" not in table.column_names  # undeclared keys stay in the metrics JSON only
    assert json.loads(table.column("metrics")[0].as_py())["weight_norm_undeclared"] == 1.0
    [declared] = columns_from_metadata(table.schema.metadata)
    assert declared.name == "weight_norm" and declared.short == "‖w‖"


def test_results_shows_the_column_from_the_parquet_alone(results, cli):
    """No plugin installed while reading: the declaration in the files is enough."""
    table = cli("results", "--results", str(results))
    assert table.exit_code == 0, table.output
    assert "‖w‖" in table.output and "L2 norm of the parameters" in " ".join(table.output.split())
    records = json.loads(cli("results", "--results", str(results), "--json").stdout)
    assert all(r["weight_norm_mean"] > 0 for r in records)


def test_leaderboard_shows_the_column(results, tmp_path, cli):
    site = tmp_path / "site"
    out = cli("leaderboard", "build", "--results", str(results), "--out", str(site))
    assert out.exit_code == 0, out.output
    html = (site / "index.html").read_text() + "".join(p.read_text() for p in site.rglob("*.html"))
    assert "‖w‖" in html and "L2 norm of the parameters" in html
    assert f"geometry-{TASK}-weight_norm" in (site / "geometry.html").read_text()


def test_a_misspelt_row_key_fails_at_once():
    row = TrialRow((ColumnSpec("weight_norm"),), trial_id="x")
    row["weight_norm"] = 1.0
    with pytest.raises(KeyError, match="final_tset_loss"):
        row["final_tset_loss"] = 0.5
    with pytest.raises(KeyError):
        row.update(wieght_norm=1.0)


def test_speed_reference_is_a_setting(results, cli, monkeypatch):
    """Ratios divide by $OPTBENCH_SPEED_REF's step time; the engine names no optimizer."""
    def ratios() -> dict[str, float]:
        records = json.loads(cli("results", "--results", str(results), "--json").stdout)
        return {r["optimizer"]: r["step_time_ratio"] for r in records}

    assert ratios()["adamw"] == pytest.approx(1.0)
    monkeypatch.setenv("OPTBENCH_SPEED_REF", "sgd")
    by_sgd = ratios()
    assert by_sgd["sgd"] == pytest.approx(1.0) and by_sgd["adamw"] != pytest.approx(1.0)
    assert "÷ sgd's in the same run" in " ".join(cli("results", "--results", str(results)).output.split())


def test_plugin_facts_travel_with_the_results(results, tmp_path, cli, monkeypatch):
    """The leaderboard's optimizer pages come from what the plugin recorded, not from what is installed."""
    from optbench.store import Store

    facts = Store(results).read().plugins
    assert facts["optimizer"]["adamw"]["distribution"] == "local"  # registered in-process by the fixture
    assert facts["optimizer"]["adamw"]["defaults"]["lr"] > 0 and facts["task"][TASK]["summary"]
    monkeypatch.setattr(optbench.registry, "_CACHED", load_registry([], entry_points=False))  # nothing installed
    site = tmp_path / "site"
    assert cli("leaderboard", "build", "--results", str(results), "--out", str(site)).exit_code == 0
    page = next(p for p in site.rglob("*.html") if "adamw" in p.name).read_text()
    assert "written with the results" in page and facts["optimizer"]["adamw"]["summary"] in page
