#!/usr/bin/env python3
"""Reference vectors for src/evaluation.rs, computed by scikit-learn.

Regenerate (deterministic; the output only changes when this script or scikit-learn does):

    PY=$(hack/python-venv.sh)/bin/python
    "$PY" hack/sklearn_vectors.py            # writes tests/data/sklearn_vectors.json
    cargo test --test evaluation_sklearn

Each case holds an evaluation in the wire shape of `EvaluationResponse` (camelCase; the server
precision/recall/confusionMatrix set to scikit-learn's own values, so the Rust server comparison
must report them as consistent) and the metrics scikit-learn computes for it:

* accuracy_score;
* per label: precision_recall_fscore_support(labels=<all ids>, zero_division=0) with support;
* macro / weighted: precision_recall_fscore_support(average=..., zero_division=0) without
  `labels=` (averaged over the labels occurring in actuals or predictions);
* confusion_matrix(labels=<all ids>);
* for every threshold t of the default sweep (0.30..=0.90 step 0.05): examples with
  score < t are mapped to a label outside `labels` (an abstention), then
  precision_recall_fscore_support(average="micro", labels=<all ids>, zero_division=0), plus the
  coverage (fraction with score >= t). Without scores every example counts as confidence 1.0.

`recommendation` is not a scikit-learn quantity: it applies the documented rule (highest F1;
ties: higher coverage, then lower threshold) to the scikit-learn threshold metrics above.
"""

import json
import math
import os
import sys
import warnings

import numpy as np
import sklearn
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    precision_recall_fscore_support,
)

SEED = 20240611
SWEEP = {"start": 0.30, "end": 0.90, "step": 0.05}
ABSTAIN = "__abstain__"  # never a label id below (asserted in case())
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data", "sklearn_vectors.json")


def sweep_points(start, end, step):
    """Same construction as ThresholdSweep::points (values rounded to 1e-6)."""
    steps = math.floor((end - start) / step + 1e-9)
    return [math.floor((start + i * step) * 1e6 + 0.5) / 1e6 for i in range(steps + 1)]


THRESHOLDS = sweep_points(**SWEEP)


def expected(ids, actuals, predictions, scores):
    y_true = np.array(actuals, dtype=object)
    y_pred = np.array(predictions, dtype=object)
    total = len(actuals)

    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=ids, zero_division=0)
    per_label = [
        {"label": ids[k], "precision": float(p[k]), "recall": float(r[k]), "f1": float(f[k]), "support": int(s[k])}
        for k in range(len(ids))
    ]
    averages = {}
    for average in ("macro", "weighted"):
        ap, ar, af, _ = precision_recall_fscore_support(y_true, y_pred, average=average, zero_division=0)
        averages[average] = {"precision": float(ap), "recall": float(ar), "f1": float(af)}

    with warnings.catch_warnings():
        # sklearn warns about a single class even when `labels=` is given (the single_label case).
        warnings.filterwarnings("ignore", message="A single label was found")
        cm = confusion_matrix(y_true, y_pred, labels=ids)

    conf = np.array(scores if scores else [1.0] * total, dtype=float)
    thresholds = []
    for t in THRESHOLDS:
        answered = conf >= t
        y_abstaining = np.where(answered, y_pred, ABSTAIN)
        tp, tr, tf, _ = precision_recall_fscore_support(
            y_true, y_abstaining, labels=ids, average="micro", zero_division=0
        )
        thresholds.append(
            {
                "threshold": t,
                "precision": float(tp),
                "recall": float(tr),
                "f1": float(tf),
                "coverage": float(answered.sum()) / total,
            }
        )

    best = None
    for m in thresholds:  # ascending thresholds: strict improvement keeps the lower one on ties
        if best is None or (m["f1"], m["coverage"]) > (best["f1"], best["coverage"]):
            best = m
    recommendation = {
        "threshold": best["threshold"],
        "f1": best["f1"],
        "precision": best["precision"],
        "coverage": best["coverage"],
        "objective": "maxF1",
    }

    return {
        "total": total,
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro": averages["macro"],
        "weighted": averages["weighted"],
        "perLabel": per_label,
        "confusionMatrix": {"labels": list(ids), "matrix": cm.astype(int).tolist()},
        "thresholds": thresholds,
        "recommendation": recommendation,
    }


def case(name, ids, actuals, predictions, scores):
    assert len(actuals) == len(predictions) and (not scores or len(scores) == len(actuals))
    assert set(actuals) | set(predictions) <= set(ids) and ABSTAIN not in ids
    exp = expected(ids, actuals, predictions, scores)
    return {
        "name": name,
        "input": {
            "labels": [{"id": i, "name": i.replace("_", " ").title()} for i in ids],
            "actuals": list(actuals),
            "predictions": list(predictions),
            "scores": [float(x) for x in scores],
            "precision": exp["macro"]["precision"],
            "recall": exp["macro"]["recall"],
            "confusionMatrix": exp["confusionMatrix"]["matrix"],
            "trainingDurationSeconds": 42.0,
        },
        "expected": exp,
    }


def noisy(rng, ids, n, accuracy, weights=None, score_gap=0.25, decimals=4, never=(), center=0.55, sd=0.2):
    """A classifier that is right with probability `accuracy`; correct predictions get higher
    scores on average. Labels in `never` are never predicted."""
    k = len(ids)
    actual_idx = rng.choice(k, size=n, p=weights)
    predictable = [i for i in range(k) if ids[i] not in never]
    actuals, predictions, scores = [], [], []
    for a in actual_idx:
        if rng.random() < accuracy and ids[a] not in never:
            p = a
        else:
            p = int(rng.choice([i for i in predictable if i != a] or predictable))
        base = center if p == a else center - score_gap
        s = float(np.clip(rng.normal(base, sd), 0.0, 1.0))
        actuals.append(ids[a])
        predictions.append(ids[p])
        scores.append(round(s, decimals))
    return actuals, predictions, scores


def build():
    rng = np.random.default_rng(SEED)
    cases = []

    ids = ["billing", "cancel", "support"]
    a = [ids[i] for i in rng.choice(3, size=30)]
    cases.append(case("perfect_3_labels", ids, a, a, [round(float(x), 4) for x in rng.uniform(0.2, 1.0, 30)]))

    ids = ["a", "b", "c", "d"]
    a = [ids[i] for i in rng.choice(4, size=40)]
    p = [ids[(ids.index(x) + 1 + int(rng.integers(0, 3))) % 4] for x in a]
    cases.append(case("all_wrong_4_labels", ids, a, p, [round(float(x), 4) for x in rng.uniform(0.0, 1.0, 40)]))

    ids = ["greet", "order", "refund", "track", "other"]
    a, p, s = noisy(rng, ids, 120, 0.75, never=("refund",))
    cases.append(case("label_never_predicted", ids, a, p, s))

    ids = ["yes", "no", "maybe", "unused_label", "agent"]
    weights = [0.4, 0.3, 0.2, 0.0, 0.1]
    a, p, s = noisy(rng, ids, 150, 0.7, weights=weights, never=("unused_label",))
    assert "unused_label" not in a and "unused_label" not in p
    cases.append(case("zero_support_never_predicted", ids, a, p, s))

    ids = ["x", "y", "z", "ghost"]
    a, p, s = noisy(rng, ids, 60, 0.8, weights=[0.5, 0.3, 0.2, 0.0])
    p[0], p[7], p[13] = "ghost", "ghost", "ghost"  # zero support, predicted: precision 0
    cases.append(case("zero_support_but_predicted", ids, a, p, s))

    ids = ["only"]
    cases.append(case("single_label", ids, ["only"] * 7, ["only"] * 7, [0.1, 0.3, 0.35, 0.5, 0.5, 0.9, 1.0]))

    ids = ["left", "right"]
    cases.append(case("single_example", ids, ["right"], ["left"], [0.62]))

    ids = ["pos", "neg"]
    a, p, s = noisy(rng, ids, 100, 0.85, weights=[0.35, 0.65])
    cases.append(case("binary_random", ids, a, p, s))

    ids = ["p", "q", "r"]
    grid = [0.0, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 1.0]
    a, p, _ = noisy(rng, ids, 90, 0.6)
    s = [grid[int(i)] for i in rng.integers(0, len(grid), 90)]
    s[:6] = [0.5, 0.5, 0.5, 0.3, 0.9, 0.35]
    cases.append(case("scores_on_thresholds", ids, a, p, s))

    ids = ["one", "two", "three", "four", "five", "six"]
    a, p, _ = noisy(rng, ids, 80, 0.65)
    cases.append(case("no_scores", ids, a, p, []))

    ids = ["low_a", "low_b", "low_c"]
    a, p, _ = noisy(rng, ids, 25, 0.7)
    s = [round(float(x), 4) for x in rng.uniform(0.0, 0.29, 25)]
    cases.append(case("all_below_lowest_threshold", ids, a, p, s))

    ids = [f"intent_{k:02d}" for k in range(12)]
    w = rng.dirichlet(np.ones(12) * 2.0)
    a, p, s = noisy(rng, ids, 500, 0.72, weights=w)
    cases.append(case("random_12_labels_500", ids, a, p, s))

    ids = [f"topic-{k}" for k in range(8)]
    w = np.array([0.5, 0.2, 0.1, 0.08, 0.05, 0.04, 0.02, 0.01])
    a, p, s = noisy(rng, ids, 200, 0.6, weights=w / w.sum(), score_gap=0.1, decimals=2)
    cases.append(case("imbalanced_8_labels_coarse_scores", ids, a, p, s))

    # Wrong answers are much less confident: the best-F1 threshold is well above the lowest one.
    ids = ["alpha", "beta", "gamma", "delta"]
    a, p, s = noisy(rng, ids, 160, 0.5, score_gap=0.4, center=0.8, sd=0.1)
    cases.append(case("confident_when_correct", ids, a, p, s))

    return {
        "generator": "hack/sklearn_vectors.py",
        "sklearnVersion": sklearn.__version__,
        "numpyVersion": np.__version__,
        "seed": SEED,
        "sweep": SWEEP,
        "cases": cases,
    }


def main():
    data = build()
    out = os.path.normpath(sys.argv[1] if len(sys.argv) > 1 else OUT)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=1, ensure_ascii=False)
        fh.write("\n")
    print(f"wrote {len(data['cases'])} cases to {out} ({os.path.getsize(out)} bytes)", file=sys.stderr)


if __name__ == "__main__":
    main()
