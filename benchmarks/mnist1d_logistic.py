"""The MNIST-1D logistic-regression baseline, the third published reference point (Greydanus 2020: logistic
regression 32%, MLP 68%, CNN 94% test accuracy) beside the MLP and CNN numbers that the target calibration
measures. A linear model has no learning-rate story to tell, so this fits it exactly: scikit-learn's
multinomial logistic regression (lbfgs, to convergence) on optbench's own generator's training set, with the
L2 strength chosen on the validation set and the test set read once.

    OMP_NUM_THREADS=1 python -m benchmarks.mnist1d_logistic
"""

from __future__ import annotations

import argparse
import json
import sys

from optbench.tasks.mnist1d_data import mnist1d
from sklearn.linear_model import LogisticRegression

PUBLISHED_TEST_ACCURACY = 0.32  # Greydanus 2020, logistic regression on the published split


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cs", default="0.001,0.01,0.1,1,10", help="inverse L2 strengths tried (selected on val)")
    args = ap.parse_args(argv)
    d = mnist1d()
    val = {}
    models = {}
    for c in (float(v) for v in args.cs.split(",")):
        model = LogisticRegression(C=c, max_iter=5000).fit(d.train_x, d.train_y)
        val[c] = float(model.score(d.val_x, d.val_y))
        models[c] = model
    best = max(val, key=lambda c: val[c])
    test = float(models[best].score(d.test_x, d.test_y))
    json.dump({"val_accuracy_by_C": val, "chosen_C": best, "test_accuracy": round(test, 4),
               "published_test_accuracy": PUBLISHED_TEST_ACCURACY}, sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
