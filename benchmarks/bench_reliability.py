"""How many members, how many epochs: the reliability curves of a CIFAR-10 run with the CPU recipe.

Trains `pipelines/cifar10-lenet-cpu.toml` on ../shared/data/cifar10-jpeg.tar.gz (or reuses a trained run
with --workspace/--run), scores it and reports from `score_reliability`:
  - the epoch curve, and the fraction of the epochs (of the compute) after which accessibility from
    the prefix agrees at Spearman rho >= 0.9 with the full run (goal: 20 % or less);
  - the member curve, and the ensemble size predicted (Spearman-Brown) to reach split-half r >= 0.95;
  - with --check-members N: a second run of N members (a different seed), whose measured split-half
    r is set beside the prediction for N.

    python benchmarks/bench_reliability.py [--workspace DIR --run RUN] [--check-members N]

Figures go to benchmarks/results/reliability-<run>.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
CIFAR = ROOT.parent / "shared" / "data" / "cifar10-jpeg.tar.gz"


def curves(ws: Path, run: str) -> dict:
    import duckdb

    con = duckdb.connect(str(ws / "catalog.duckdb"), read_only=True)
    try:
        rows = con.execute(
            "SELECT split, curve, x, fraction, pearson, spearman, predicted, extrapolated, "
            "ddd_same FROM score_reliability WHERE run = ? ORDER BY split, curve, x",
            [run],
        ).df()
    finally:
        con.close()
    out = {}
    for split, df in rows.groupby("split"):
        ep, mem = df[df["curve"] == "epochs"], df[df["curve"] == "members"]
        from curate.scores.reliability import first_epoch_reaching, size_for, spearman_brown

        first = first_epoch_reaching(
            [{"e": int(r.x), "spearman": float(r.spearman)} for r in ep.itertuples()], 0.9
        )
        measured = mem[~mem["extrapolated"].astype(bool)]
        full = measured.iloc[-1]
        # the prediction checked inside the run: Spearman-Brown from half the members to all of
        # them, against the split-half r measured with all of them
        half = measured[measured["x"] == max(2, int(full["x"]) // 2)].iloc[0]
        sb_check = {
            "from_members": int(half["x"]),
            "r_from": float(half["pearson"]),
            "to_members": int(full["x"]),
            "predicted": spearman_brown(float(half["pearson"]), full["x"] / half["x"]),
            "measured": float(full["pearson"]),
        }
        out[split] = {
            "epochs": int(ep["x"].max()),
            "epoch_for_rho_09": first,
            "fraction_of_epochs_for_rho_09": first / int(ep["x"].max()) if first else None,
            "members": int(full["x"]),
            "split_half_r": float(full["pearson"]),
            "members_for_r_095_predicted": size_for(float(full["pearson"]), int(full["x"])),
            "spearman_brown_check": sb_check,
            "epoch_curve": ep[["x", "spearman", "ddd_same"]].to_dict("records"),
            "member_curve": mem[["x", "pearson", "spearman", "predicted", "extrapolated"]].to_dict(
                "records"
            ),
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workspace", default=str(ROOT / "benchmarks" / ".work" / "reliability"))
    ap.add_argument(
        "--run", default="cifar10-lenet-cpu", help="an existing run to score, else trained"
    )
    ap.add_argument("--check-members", type=int, help="train this many members to check")
    args = ap.parse_args()
    from curate.cli import main as curate

    ws = Path(args.workspace)
    w = ["--workspace", str(ws)]
    if not (ws / "runs" / args.run / "run.json").exists():
        if not CIFAR.exists():
            sys.exit(f"{CIFAR} is absent (shared data)")
        t0 = time.perf_counter()
        rc = curate(["run", "cifar10-lenet-cpu", "--run-name", args.run, *w])
        assert rc == 0
        print(f"trained and scored {args.run} in {time.perf_counter() - t0:.0f} s")
    else:
        assert curate(["score", args.run, *w]) == 0
    res = {"run": args.run, "splits": curves(ws, args.run)}
    for split, c in res["splits"].items():
        k = c["spearman_brown_check"]
        print(
            f"{split}: split-half r {c['split_half_r']:.3f} at {c['members']} members; "
            f"{c['members_for_r_095_predicted']} members predicted for r = 0.95; rho >= 0.9 from "
            f"epoch {c['epoch_for_rho_09']} of {c['epochs']} "
            f"({(c['fraction_of_epochs_for_rho_09'] or 1):.0%} of the epochs); Spearman-Brown "
            f"from {k['from_members']} members (r {k['r_from']:.3f}) predicts {k['predicted']:.3f} "
            f"at {k['to_members']}, measured {k['measured']:.3f}"
        )
    if args.check_members:
        n = args.check_members
        check = f"{args.run}-m{n}"
        rc = curate(
            [
                "train",
                "cifar10-lenet-cpu",
                "--run-name",
                check,
                "--members",
                str(n),
                "--seed",
                "1",
                *w,
            ]
        )
        assert rc == 0
        assert curate(["score", check, *w]) == 0
        got = curves(ws, check)
        res["check"] = {}
        for split, c in res["splits"].items():
            pred = next((r["predicted"] for r in c["member_curve"] if r["x"] == n), None)
            res["check"][split] = {
                "members": n,
                "predicted": pred,
                "measured": got[split]["split_half_r"],
            }
            print(
                f"{split}: {n} members: predicted split-half r {pred:.3f}, measured "
                f"{got[split]['split_half_r']:.3f}"
            )
    dest = ROOT / "benchmarks" / "results" / f"reliability-{args.run}.json"
    dest.write_text(json.dumps(res, indent=1, default=float) + "\n")
    print(f"wrote {dest}")


if __name__ == "__main__":
    main()
