"""The tuning protocol: selection reads validation only (the tiny task's validation and test verdicts disagree,
so a tuner that peeks at test picks the other end of the lr range), a study killed with SIGKILL at a known
point resumes to exactly its budget, failing configurations are failed study trials, and bad input is one
sentence with exit 2 and nothing written."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from _tiny_task import tiny_registry
from click.testing import CliRunner

from optbench import OptimizerSpec, hookimpl
from optbench.cli import main
from optbench.cli.context import CliContext
from optbench.executor import write_result
from optbench.runner import RunSettings, run_trial
from optbench.store import Store
from optbench.summary import summarize
from optbench.trial import Trial
from optbench.tuning import FINAL_SEED_BASE, JOURNAL, Objective, StudyPlan, Tuner

TESTS = Path(__file__).parent
VAL = Objective("final_val_loss", "minimize")


class TuneOptimizers:
    """`plain-sgd` with an lr-only space; `brittle-sgd` raises for lr above 0.1; `bad-space` cannot be sampled."""

    def __init__(self, space=None) -> None:
        self.space = space or {"lr": ("log-uniform", 1e-3, 0.3)}

    @hookimpl
    def optbench_register_optimizers(self):
        def plain(params, lr):
            return torch.optim.SGD(params, lr=lr)

        def brittle(params, lr):
            if lr > 0.1:
                raise RuntimeError("deliberate failure above lr 0.1")
            return torch.optim.SGD(params, lr=lr)

        return [OptimizerSpec("plain-sgd", plain, defaults={"lr": 0.01}, search_space=self.space),
                OptimizerSpec("brittle-sgd", brittle, defaults={"lr": 0.01}, search_space={"lr": ("log-uniform",
                                                                                                 1e-3, 0.3)}),
                OptimizerSpec("bad-space", plain, defaults={"lr": 0.01}, search_space={"lr": ("log-uniform", 0, 1)})]


def make_tuner(root: Path, registry) -> Tuner:
    store = Store(root)
    store.prepare()

    def execute(trials):  # in-process: the executors are tested elsewhere; this keeps the study fast
        for t in trials:
            write_result(store, registry, run_trial(t, registry, RunSettings(metrics=[], run_id="t")))

    return Tuner(store, registry, execute, root)


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    """One random-sampler study of plain-sgd on the tiny task (6 configurations, 2 fresh seeds), shared."""
    root = tmp_path_factory.mktemp("tuned")
    registry = tiny_registry(("opts", TuneOptimizers()))
    plan = StudyPlan("tiny-regression", "smoke", "plain-sgd", budget=6, sampler="random")
    return root, plan, make_tuner(root, registry).run(plan, VAL, seeds=2), registry


def test_selection_reads_validation_never_test(tuned):
    root, plan, res, _ = tuned
    trials = Store(root).read().trials
    search = trials[trials["study_role"] == "search"].set_index("config_id")
    assert len(search) == 6 and (search["status"] == "ok").all()
    lrs = {cid: json.loads(h)["lr"] for cid, h in search["hparams"].items()}
    by_val = min(search.index, key=lambda c: search.loc[c, "final_val_loss"])
    by_test = min(search.index, key=lambda c: search.loc[c, "final_test_loss"])
    # the task makes the two disagree: validation favours the largest lr, test the smallest
    assert by_val != by_test and lrs[by_val] == max(lrs.values()) and lrs[by_test] == min(lrs.values())
    assert res.selected["trial_id"] == search.loc[by_val, "trial_id"]
    # rows record the study, every configuration's rank (by validation) and the choice
    ranks = search.sort_values("final_val_loss")["config_rank"].tolist()
    assert ranks == [1, 2, 3, 4, 5, 6]
    assert search["selected"].tolist().count(True) == 1 and bool(search.loc[by_val, "selected"])
    assert set(search["study_budget"]) == {6} and set(search["study"]) == {plan.name}
    assert json.loads(search["search_space"].iloc[0]) == {"lr": ["log-uniform", 0.001, 0.3]}
    # the reported numbers are the selected configuration on fresh seeds, never the search seed
    final = trials[trials["study_role"] == "final"]
    assert sorted(final["seed"]) == [FINAL_SEED_BASE, FINAL_SEED_BASE + 1]
    assert set(final["config_id"]) == {by_val} and final["selected"].all()
    cells = summarize(trials)
    assert len(cells) == 1 and int(cells.iloc[0]["seeds"]) == 2 and bool(cells.iloc[0]["tuned"])


def test_leaderboard_shows_the_tuned_choice_and_the_untuned_defaults_apart(tuned, tmp_path):
    import shutil

    from optbench.leaderboard.model import TUNED, load_board
    from optbench.leaderboard.site import render

    src, plan, res, registry = tuned
    bare = load_board(src, registry)  # only the study: its choice must not pose as an untuned configuration
    assert bare.view == TUNED and bare.untuned is not None and bare.untuned.summary.empty
    root = tmp_path / "copy"
    shutil.copytree(src, root)  # the shared study stays as it was for the other tests
    make_tuner(root, registry).execute([Trial("tiny-regression", "smoke", "plain-sgd", {"lr": 0.01}, 0),  # defaults
                                        Trial("tiny-regression", "smoke", "bad-space", {"lr": 0.01}, 0)])  # not tuned
    board = load_board(root, registry)
    assert board.view == TUNED and list(board.summary["config"]) == [res.selected["config"]]
    assert int(board.summary.iloc[0]["seeds"]) == 2  # the fresh seeds only, never the search seed
    assert board.untuned is not None and sorted(board.untuned.summary["config"]) == ["bad-space", "plain-sgd"]
    pages = render(board)
    assert "Tuned:" in pages["index.html"] and "untuned.html" in pages["index.html"]
    # each overview counts what it ranks: the tuned board its one tuned optimizer, the untuned board both
    assert "<strong>1</strong> tuned optimizer(s)" in pages["index.html"]
    assert "<strong>2</strong> optimizers" in pages["untuned.html"]
    assert "Untuned:" in pages["untuned.html"] and "not the tuned leaderboard" in pages["untuned.html"]
    opt_page = pages["optimizer-plain-sgd.html"]
    assert plan.name in opt_page and "log-uniform" in opt_page and ">6<" in opt_page  # budget, search space
    task_page = pages["task-tiny-regression.html"]
    assert "lr-sensitivity" in task_page and res.selected["config"] in task_page


def test_failing_configurations_are_failed_trials_and_the_study_goes_on(tmp_path):
    registry = tiny_registry(("opts", TuneOptimizers()))
    plan = StudyPlan("tiny-regression", "smoke", "brittle-sgd", budget=8, sampler="random")
    res = make_tuner(tmp_path, registry).run(plan, VAL, seeds=1)
    values = [s["value"] for s in res.search]
    assert len(values) == 8 and res.failed >= 1 and res.failed < 8  # log-uniform on [1e-3, 0.3]: some above 0.1
    assert res.selected is not None and res.selected["hparams"]["lr"] <= 0.1
    rows = Store(tmp_path).read().trials
    assert set(rows.loc[rows["study_role"] == "search", "status"]) == {"ok", "failed"}
    assert rows.loc[rows["status"] == "failed", "config_rank"].isna().all()


KILLER = textwrap.dedent("""
    import os, signal, sys
    from pathlib import Path
    sys.path.insert(0, {tests!r})
    from _tiny_task import tiny_registry
    from test_tune import TuneOptimizers, make_tuner, VAL
    from optbench.tuning import StudyPlan
    root = Path(sys.argv[1])
    registry = tiny_registry(("opts", TuneOptimizers()))
    tuner = make_tuner(root, registry)
    calls = []
    run = tuner.execute
    def execute(trials):
        calls.append(len(trials))
        if len(calls) == 3:  # the known point: the third configuration was asked, nothing of it written
            Path(sys.argv[2]).write_text(repr([t.hparams for t in trials]))
            os.kill(os.getpid(), signal.SIGKILL)
        run(trials)
    tuner.execute = execute
    tuner.run(StudyPlan("tiny-regression", "smoke", "plain-sgd", budget=5, sampler="tpe"), VAL, seeds=1)
""")


@pytest.mark.slow
def test_study_resumes_after_kill_9(tmp_path):
    import optuna
    from optuna.trial import TrialState

    root, killed = tmp_path / "res", tmp_path / "killed.txt"
    script = KILLER.format(tests=str(TESTS))
    proc = subprocess.run([sys.executable, "-c", script, str(root), str(killed)], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == -9, proc.stderr
    lost = eval(killed.read_text())  # noqa: S307 - our own repr
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(root / JOURNAL)))
    name = StudyPlan("tiny-regression", "smoke", "plain-sgd", budget=5, sampler="tpe").name
    before = optuna.load_study(study_name=name, storage=storage).get_trials()
    assert [t.state for t in before] == [TrialState.COMPLETE, TrialState.COMPLETE, TrialState.RUNNING]
    assert len(Store(root).read().trials) == 2  # the killed trial left no row

    registry = tiny_registry(("opts", TuneOptimizers()))
    plan = StudyPlan("tiny-regression", "smoke", "plain-sgd", budget=5, sampler="tpe")
    res = make_tuner(root, registry).run(plan, VAL, seeds=1)
    after = optuna.load_study(study_name=name, storage=storage).get_trials()
    assert len(after) == 5 and all(t.state == TrialState.COMPLETE for t in after)  # exactly the budget
    assert after[2].params["lr"] == pytest.approx(lost[0]["lr"])  # the killed configuration itself was re-run
    rows = Store(root).read().trials
    assert (rows["study_role"] == "search").sum() == 5 and (rows["study_role"] == "final").sum() == 1
    assert rows["trial_id"].is_unique and res.selected is not None


# --- bad input through the CLI: one sentence, exit 2, nothing written -----------------------------------
def tune_cli(registry, *args):
    ctx = CliContext()
    ctx._registry = registry
    return CliRunner().invoke(main, ["tune", *args], obj=ctx, catch_exceptions=False)


@pytest.mark.parametrize(("args", "words"), [
    (["-o", "plain-sgd", "--budget", "0"], "--budget must be at least 1"),
    (["-o", "bad-space", "--budget", "2"], "log-scaled, so its low bound must be above 0"),
    (["-o", "nothing*", "--budget", "2"], "no optimizer matches"),
    (["-o", "plain-sgd", "--budget", "2", "--seeds", "0"], "--seeds must be at least 1"),
])
def test_bad_input_is_one_sentence_and_writes_nothing(tmp_path, args, words):
    registry = tiny_registry(("opts", TuneOptimizers()))
    out = tune_cli(registry, "-t", "tiny-regression", *args, "--results", str(tmp_path / "res"))
    assert out.exit_code == 2 and words in out.output, out.output
    assert "Traceback" not in out.output and not (tmp_path / "res").exists()


def test_a_task_without_validation_cannot_be_tuned(tmp_path):
    registry = tiny_registry(("opts", TuneOptimizers()))
    out = tune_cli(registry, "-o", "plain-sgd", "-t", "tiny-no-val", "--budget", "2", "--results",
                   str(tmp_path / "res"))
    assert out.exit_code == 2 and "reports no validation metric" in out.output
    assert not (tmp_path / "res").exists()


def test_resuming_with_a_changed_search_space_is_refused(tmp_path):
    root = tmp_path / "res"
    make_tuner(root, tiny_registry(("opts", TuneOptimizers()))).run(
        StudyPlan("tiny-regression", "smoke", "plain-sgd", budget=2), VAL, seeds=1)
    journal = (root / JOURNAL).read_bytes()
    files = sorted(p.name for p in (root / "trials").iterdir())
    changed = tiny_registry(("opts", TuneOptimizers({"lr": ("log-uniform", 1e-4, 1.0)})))
    out = tune_cli(changed, "-o", "plain-sgd", "-t", "tiny-regression", "--budget", "4", "--results", str(root))
    assert out.exit_code == 2 and "now declares" in out.output, out.output
    assert (root / JOURNAL).read_bytes() == journal and sorted(p.name for p in (root / "trials").iterdir()) == files


def test_dry_run_lists_studies_and_counts(tmp_path):
    registry = tiny_registry(("opts", TuneOptimizers()))
    out = tune_cli(registry, "-o", "plain-sgd", "-o", "brittle-sgd", "-t", "tiny-regression", "--budget", "4",
                   "--seeds", "2", "--dry-run", "--results", str(tmp_path / "res"))
    assert out.exit_code == 0 and "2 studies, 12 trials" in out.output and not (tmp_path / "res").exists()


def test_every_first_party_optimizer_declares_a_sampleable_space():
    """At least a log-uniform learning rate, every key a hyperparameter of the optimizer (the pytorch-optimizer
    bridge is third-party code: it gets lr only, where it has one)."""
    import importlib

    from optbench.registry import load_registry
    from optbench.tuning import parse_space

    modules = ["torch_optim", "torch_builtin", "lion", "arturo", "sophia", "microadam", "fadam", "diffgrad",
               "sharpness_aware", "entropy_sgd", "zo_sgd", "adafisher"]
    registry = load_registry([(m, importlib.import_module(f"optbench.plugins.{m}")) for m in modules],
                             entry_points=False)
    names = sorted(registry.entries["optimizer"])
    assert len(names) >= 20
    for name in names:
        spec = registry.optimizer(name).spec
        dists = parse_space(name, spec.search_space, spec.defaults)
        assert spec.search_space["lr"][0] == "log-uniform" and dists["lr"].log, name
        assert len(dists) >= 2, f"{name}: only a learning rate"
