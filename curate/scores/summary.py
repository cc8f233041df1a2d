"""The short summary `make scores` and `curate score` print."""

from __future__ import annotations

import shlex

import numpy as np

from curate.workspace import Workspace


def print_summary(ws: Workspace, run: str, summary: dict) -> None:
    for split, s in summary.items():
        accs = np.array(s["acc_by_member"])
        bim, null = np.array(s["bimodality"], float), np.array(s["bimodality_null"], float)
        e_star = int(np.nanargmin(bim[1:])) + 1 if np.isfinite(bim[1:]).any() else len(bim) - 1
        print(f"\n{run} / {split}: {s['instances']} instances, {s['members']} members")
        print(
            f"  accuracy per member at the last epoch: {' '.join(f'{a:.3f}' for a in accs)}"
            f"  (mean {accs.mean():.3f})"
        )
        print(
            f"  strict agreement {s['strict_agreement']:.3f}  vs  random (independent errors) "
            f"{s['random_agreement_normalized']:.3f}  vs  lower bound {s['lower_bound']:.3f}"
        )
        print(
            f"  bimodality {bim[-1]:.3f} vs null {null[-1]:.3f} at the last epoch; most bimodal at epoch {e_star}: "
            f"{bim[e_star]:.3f} vs null {null[e_star]:.3f}  (lower = more bimodal)"
        )
        print(
            f"  trivial {s['frac_trivial']:.1%}  in-between {s['frac_in_between']:.1%}  "
            f"impossible {s['frac_impossible']:.1%}"
        )
        if s.get("reliability"):
            print("  " + reliability_line(s["reliability"]))
            print("  " + WHICH_SCORE)
        if "flagged" in s:
            print("  " + label_issue_line(s["flagged"], s["instances"], s.get("label_noise")))
            if s.get("noise_by_class"):
                print("  " + noise_estimate_line(s["noise_by_class"]))
    print(f"\ncatalog: {ws.catalog}")
    literal = "'" + run.replace("'", "''") + "'"  # SQL string literal
    sql = f"SELECT ddd, count(*) FROM difficulty WHERE run = {literal} GROUP BY ddd"
    # a shell word as printed: double quotes read best, unless the name holds what they expand
    shell = f'"{sql}"' if not set(sql) & set('"$`\\!') else shlex.quote(sql)
    print(f"  try: curate query {shell} --workspace {shlex.quote(str(ws.root))}")


def reliability_line(r: dict) -> str:
    """One sentence: how reproducible accessibility is, and how many members and epochs it needs."""
    if r.get("split_half_r") is None:
        return "reliability: accessibility is constant in one half of the members; no split-half r"
    need = r["members_for_095"]
    if r["split_half_r"] >= 0.95:
        members = "that is past r = 0.95 already"
    elif need is not None:
        members = f"{need} members would reach r = 0.95 (predicted)"
    else:
        members = "no ensemble size reaches r = 0.95 (the halves do not agree)"
    k = r["epochs_for_rho_09"]
    epochs = (
        f"scores from the first {k} of {r['epochs']} epochs already agree at rho >= 0.9 with the "
        "full run"
        if k is not None
        else f"no prefix of the {r['epochs']} epochs agrees at rho >= 0.9 before the last"
    )
    return (
        f"accessibility is reproducible at r = {r['split_half_r']:.3f} between two halves of the "
        f"members; {members}; {epochs}"
    )


# which column answers which question (docs/concepts.md, "Which score for which question")
WHICH_SCORE = (
    "which score: held-out difficulty -> confidence (closest to CIFAR-10's C-scores); the order "
    "members learn in -> accessibility; wrong labels -> issue_score, flagged"
)


def noise_estimate_line(rows: list[dict], shown: int = 10) -> str:
    """The estimated share of wrong labels per class, beside the count flagged (the classes with
    the highest estimated rate first when there are more than `shown`)."""
    total = sum(r["est_wrong"] for r in rows)
    n = sum(r["n"] for r in rows)
    top = sorted(rows, key=lambda r: -r["noise_rate"])[:shown]
    top = top if len(rows) > shown else sorted(rows, key=lambda r: r["label"])
    parts = [f"{r['label']}: {r['noise_rate']:.1%} ({r['n_flagged']} flagged)" for r in top]
    more = (
        f"; {len(rows) - shown} more classes in label_noise_estimate" if len(rows) > shown else ""
    )
    return (
        f"estimated wrong labels: {total:.0f} of {n} ({total / max(n, 1):.1%}); per class, "
        f"estimated rate (flagged): {', '.join(parts)}{more}"
    )


def label_issue_line(flagged: int, n: int, noise: dict | None) -> str:
    """Flagged labels; and, when the true labels are known, how well the wrong ones were found."""
    line = f"label issues: {flagged} of {n} labels flagged ({flagged / max(n, 1):.1%}; view label_issues)"
    if noise:
        line += (
            f"; against the true labels ({noise['noise_rate']:.1%} wrong): AUROC "
            f"{noise['auroc']:.3f}, precision {noise['precision']:.3f}, recall "
            f"{noise['recall']:.3f}, F1 {noise['f1']:.3f}"
        )
    return line
