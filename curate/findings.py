"""What curate's pruning benchmarks measured, in one place: every figure that the report's captions,
`curate prune`'s regime note and the docs (benchmarks, the prune guide) quote from `benchmarks/results/prune*.json`.

`compute` reads the benchmark results and derives the figures; `load` reads them from
`curate/findings.json`, package data written by `python -m curate.findings` (a wheel does not carry
`benchmarks/`, so the installed package reads that file, never the results). A test checks that the
file equals what `compute` gives from the results, so it cannot drift from them; after a benchmark
changed, `python -m curate.findings` writes it again (`--check` only compares).

Accuracies are fractions in [0, 1] (higher = better); differences between two accuracies are in
points (percentage points, 100 x the difference), positive where the first is higher. A cell is
one retraining of a benchmark: a strategy keeping a fraction of the train split, at fixed epochs
(`cells`) or at equal optimiser steps (`cells_equal_steps`); it is compared with random at the
same fraction and steps (random's first draw, method `random`).

The regime thresholds are derived, not chosen: `held_out_low` is the held-out accuracy of the
scoring runs in whose settings every `hard` cell at 50 % kept lost to random, rounded up to the
tenth; `held_out_high` that of the runs in whose settings every one beat random, rounded down.
"""

from __future__ import annotations

import argparse
import json
import math
from decimal import ROUND_HALF_UP, Decimal
from functools import lru_cache
from importlib import resources
from pathlib import Path

RESULTS = Path(__file__).resolve().parent.parent / "benchmarks" / "results"  # a checkout's
PACKAGED = "findings.json"  # in the package curate
PATTERN = "prune*.json"
HALF = 0.5


def fmt(value: float, places: int = 1) -> str:
    """`value` with `places` decimals, halves rounded away from zero, as the docs write them.

    Parameters
    ----------
    value : float
        A figure of `load()`, e.g. points or an accuracy.
    places : int
        Decimals shown; 0 shows an integer.

    Returns
    -------
    str
        E.g. fmt(5.15) = '5.2', fmt(18.095, 0) = '18', fmt(0.75575, 2) = '0.76'.
    """
    exact = Decimal(repr(round(float(value), 6)))  # the float's noise beyond 6 decimals dropped
    return str(exact.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP))


def _points(a: float, b: float) -> float:
    """a - b in points, rounded to 4 decimals (well below what any figure shows)."""
    return round(100 * (a - b), 4)


def _acc(x: float) -> float:
    return round(float(x), 6)


def _cells(result: dict, key: str, steps: str) -> list[dict]:
    """The cells of one section of a result, each with its points over random (None when random
    was not run at its fraction and steps)."""
    cells = result.get(key) or {}
    random = {c["keep"]: c["test_acc_mean"] for c in cells.values() if c["method"] == "random"}
    return [
        {
            "method": c["method"],
            "strategy": c["strategy"],
            "keep": float(c["keep"]),
            "steps": steps,
            "acc": _acc(c["test_acc_mean"]),
            "vs_random": _points(c["test_acc_mean"], random[c["keep"]])
            if c["keep"] in random
            else None,
        }
        for c in cells.values()
    ]


def settings(results: Path = RESULTS) -> dict[str, dict]:
    """Every pruning benchmark of `results`, by file stem: its dataset, its scoring run's accuracy
    on held-out data (test, else val) and on its train split, full data's accuracy and its cells.
    """
    out = {}
    for path in sorted(Path(results).glob(PATTERN)):
        result = json.loads(path.read_text())
        scoring = result["scoring_run"]["mean_final_acc"]
        out[path.stem] = {
            "dataset": result["setting"]["dataset"],
            "held_out": _acc(scoring["test"] if "test" in scoring else scoring["val"]),
            "train_fit": _acc(scoring["train"]),
            "full": _acc(result["full"]["test_acc_mean"]),
            "cells": _cells(result, "cells", "fixed")
            + _cells(result, "cells_equal_steps", "equal"),
        }
    return out


def _select(s: dict, strategy: str, keep: float | None = None, method: str | None = None):
    """The cells of setting `s` compared with random, of one strategy (and fraction, method)."""
    return [
        c
        for c in s["cells"]
        if c["strategy"] == strategy
        and c["vs_random"] is not None
        and (keep is None or math.isclose(c["keep"], keep))
        and (method is None or c["method"] == method)
    ]


def _cell(s: dict, method: str, strategy: str, keep: float, steps: str = "fixed") -> dict:
    """The one cell of setting `s` with that method, strategy, fraction and steps."""
    (cell,) = [
        c
        for c in s["cells"]
        if (c["method"], c["strategy"], c["steps"]) == (method, strategy, steps)
        and math.isclose(c["keep"], keep)
    ]
    return cell


def thresholds(runs: dict[str, dict]) -> tuple[float, float]:
    """(held_out_low, held_out_high) from the settings where `hard` at 50 % kept lost to random
    in every cell, and those where it beat random in every one (see the module's docstring)."""
    lost, beat = [], []
    for s in runs.values():
        margins = [c["vs_random"] for c in _select(s, "hard", HALF)]
        if margins and max(margins) < 0:
            lost.append(s["held_out"])
        elif margins and min(margins) > 0:
            beat.append(s["held_out"])
    low, high = math.ceil(10 * max(lost)) / 10, math.floor(10 * min(beat)) / 10
    if low > high:
        raise ValueError(
            f"the pruning benchmarks no longer separate by held-out accuracy: hard lost to random "
            f"at 50 % kept up to {max(lost)}, beat it from {min(beat)}"
        )
    return low, high


def _low(runs: dict[str, dict], low: float) -> dict:
    """Settings whose scoring run stayed under `low` on held-out data."""
    under = {k: s for k, s in runs.items() if s["held_out"] < low}
    hard_half = [c["vs_random"] for s in under.values() for c in _select(s, "hard", HALF)]
    others = [
        c["vs_random"]
        for s in under.values()
        for keep in (0.3, 0.7)
        for c in _select(s, "hard", keep)
    ]
    return {
        "settings": sorted(under),
        "held_out": [
            min(s["held_out"] for s in under.values()),
            max(s["held_out"] for s in under.values()),
        ],
        "train_fit": [
            min(s["train_fit"] for s in under.values()),
            max(s["train_fit"] for s in under.values()),
        ],
        # random minus hard at 50 % kept, in points, over every hard cell (fixed and equal steps)
        "hard_half_lost_by": [-max(hard_half), -min(hard_half)],
        "hard_30_70": {
            "cells": len(others),
            "not_below_random": sum(m >= 0 for m in others),
            "best_vs_random": max(others),
        },
    }


def _high(runs: dict[str, dict], high: float) -> dict:
    """Settings whose scoring run reached `high` or more on held-out data."""
    over = {k: s for k, s in runs.items() if s["held_out"] >= high}
    easy = [c["vs_random"] for s in over.values() for c in _select(s, "easy")]
    hard_half = [c["vs_random"] for s in over.values() for c in _select(s, "hard", HALF)]
    return {
        "settings": sorted(over),
        "held_out": sorted({s["held_out"] for s in over.values()}),
        "easy": {"cells": len(easy), "not_below_random": sum(m >= 0 for m in easy)},
        "hard_half_beat_by": [min(hard_half), max(hard_half)],
    }


def _quoted(runs: dict[str, dict]) -> dict:
    """The single figures the docs quote in their pruning summary and recommendation."""
    cifar = {k: s for k, s in runs.items() if s["dataset"].startswith("CIFAR-10")}
    best_below = []  # full data minus the best cell at 50 % kept, fixed epochs
    for s in cifar.values():
        half = [c["acc"] for c in s["cells"] if c["steps"] == "fixed" and c["keep"] == HALF]
        best_below += [s["full"] - max(half)] if half else []
    ccs = [c for s in runs.values() for c in _select(s, "ccs", method="accessibility")]
    best_ccs = max(ccs, key=lambda c: c["vs_random"])
    mnist, c50k, c10k = runs["prune_mnist"], runs["prune_c50k_e10_eqsteps"], runs["prune"]
    c5k, e10 = runs["prune_c5k_e20"], runs["prune_e10_30_90"]
    ccs50k = _cell(c50k, "accessibility", "ccs", HALF, "equal")
    return {
        "mnist_hard_half": {
            "acc": _cell(mnist, "accessibility", "hard", HALF)["acc"],
            "full": mnist["full"],
        },
        # CIFAR-10 at fixed epochs, 50 % kept: full data minus the best cell, in points
        "cifar_half_best_below_full": [
            round(100 * min(best_below), 4),
            round(100 * max(best_below), 4),
        ],
        "cifar50k_equal_steps_ccs_half": {
            "acc": ccs50k["acc"],
            "full": c50k["full"],
            "vs_random": ccs50k["vs_random"],
        },
        "cifar10k_equal_steps_random_half_vs_full": _points(
            _cell(c10k, "random", "random", HALF, "equal")["acc"], c10k["full"]
        ),
        "cifar5k": {
            "train_fit": c5k["train_fit"],
            "hard_half_vs_random": _cell(c5k, "accessibility", "hard", HALF)["vs_random"],
            "easy_30_vs_random": _cell(c5k, "accessibility", "easy", 0.3)["vs_random"],
            "easy_90_vs_random": _cell(c5k, "accessibility", "easy", 0.9)["vs_random"],
        },
        "cifar10k_e10_ccs_30_vs_random": _cell(e10, "accessibility", "ccs", 0.3)["vs_random"],
        # ccs by accessibility (default beta) against random, every setting and steps
        "ccs_vs_random": {
            "cells": len(ccs),
            "worst": min(c["vs_random"] for c in ccs),
            "best": best_ccs["vs_random"],
            "best_keep": best_ccs["keep"],
        },
    }


def compute(results: Path = RESULTS) -> dict:
    """The findings of the pruning benchmarks in `results` (what `load` returns once written).

    Parameters
    ----------
    results : Path
        A folder of `bench_prune.py` results (default: the checkout's benchmarks/results).

    Returns
    -------
    dict
        held_out_low and held_out_high (the regime thresholds), low and high (what the settings
        on either side measured), quoted (single figures the docs quote) and sources.
    """
    runs = settings(results)
    low, high = thresholds(runs)
    return {
        "about": "written by `python -m curate.findings` from benchmarks/results; do not edit",
        "sources": [f"{k}.json" for k in sorted(runs)],
        "held_out_low": low,
        "held_out_high": high,
        "low": _low(runs, low),
        "high": _high(runs, high),
        "quoted": _quoted(runs),
    }


@lru_cache(maxsize=1)
def load() -> dict:
    """The findings as shipped with the package (`curate/findings.json`); see `compute`."""
    return json.loads(resources.files("curate").joinpath(PACKAGED).read_text(encoding="utf-8"))


def main(argv: list[str] | None = None) -> int:
    """`python -m curate.findings [--check] [--results DIR]`: write curate/findings.json from the
    benchmark results, or (--check) say whether it is up to date (exit code 1 when not)."""
    parser = argparse.ArgumentParser(prog="python -m curate.findings", description=main.__doc__)
    parser.add_argument("--check", action="store_true", help="compare only, write nothing")
    parser.add_argument("--results", type=Path, default=RESULTS, help="the results folder")
    args = parser.parse_args(argv)
    text = json.dumps(compute(args.results), indent=1) + "\n"
    target = Path(__file__).with_name(PACKAGED)
    if args.check:
        same = target.is_file() and target.read_text(encoding="utf-8") == text
        print(f"{target}: {'up to date' if same else 'out of date; run python -m curate.findings'}")
        return 0 if same else 1
    target.write_text(text, encoding="utf-8")
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
