"""What the documentation site makes at build time, so that no page can drift from the code: a mkdocs
hook (`hooks:` in mkdocs.yml), run by every `mkdocs build` and `make docs`.

- `reference/cli.md`: every subcommand of `curate`, read from the argparse parsers
  (`curate.cli.build_parser`): usage, arguments, choices, defaults and help;
- `reference/tables.md`: every catalog table and column with its type and meaning, read from
  `curate.catalog.schema.SCHEMA` (and the views of `curate.catalog.views.VIEWS`);
- on `benchmarks.md`, each `<!-- generated: NAME -->` line is replaced by tables and figures (SVG,
  drawn with matplotlib) made from `benchmarks/results/*.json`;
- formulas written `\\( ... \\)` or `\\[ ... \\]` (pymdownx.arithmatex, generic mode) become MathML,
  so the site needs no script and no network to show them.

Nothing this module makes is written under docs/: the pages and figures exist only in the build.
"""

from __future__ import annotations

import argparse
import html
import io
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # this checkout's curate, whatever is installed
    sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "benchmarks" / "results"
FIGURES = "assets/benchmarks"  # where the figures go in the site
GENERATED_PAGES = ("reference/cli.md", "reference/tables.md")
MARKER = re.compile(r"^<!-- generated: ([a-z-]+) -->$", re.M)

# ----------------------------------------------------------------------------- markdown text


def md(text: object) -> str:
    """Plain text (a help string, a column's meaning) as inline markdown for a table cell: code spans
    kept as they are, everything else escaped so that it reads as written."""
    parts = str(text if text is not None else "").replace("\n", " ").split("`")
    out = []
    for i, part in enumerate(parts):
        if i % 2 == 1 and i < len(parts) - 1:  # inside a code span
            out.append(f"`{part}`")
            continue
        part = html.escape(part, quote=False)
        part = part.replace("\\", "\\\\").replace("|", "\\|").replace("*", "\\*")
        part = part.replace("_", "\\_").replace("[", "&#91;").replace("]", "&#93;")
        out.append(part if i % 2 == 0 else "`" + part)  # an unpaired backtick stays literal
    return "".join(out)


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    """A markdown table; cells are markdown already."""
    return [
        "| " + " | ".join(header) + " |",
        "| " + " | ".join("---" for _ in header) + " |",
        *["| " + " | ".join(r) + " |" for r in rows],
        "",
    ]


# ----------------------------------------------------------------------------- reference/cli.md


def _subparsers(parser: argparse.ArgumentParser) -> argparse._SubParsersAction:
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))


def _formatter(prog: str) -> argparse.HelpFormatter:
    return argparse.HelpFormatter(prog, width=96, max_help_position=32)


def _argument_rows(p: argparse.ArgumentParser) -> list[list[str]]:
    fmt = _formatter(p.prog)
    rows = []
    for action in p._actions:
        if isinstance(action, argparse._HelpAction) or action.help == argparse.SUPPRESS:
            continue
        name = fmt._format_action_invocation(action)
        if not action.option_strings:  # positional
            kind = {"?": "optional", "+": "one or more", "*": "any number"}.get(action.nargs, "")
        else:
            kind = "required" if action.required else ""
        if action.choices is not None and not isinstance(action, argparse._SubParsersAction):
            kind = ", ".join(
                filter(None, [kind, "one of " + ", ".join(f"`{c}`" for c in action.choices)])
            )
        if action.nargs == 0 or isinstance(action, argparse._StoreConstAction):
            kind = ", ".join(filter(None, [kind, "flag"]))
        if isinstance(action, argparse._AppendAction):
            kind = ", ".join(filter(None, [kind, "repeatable"]))
        default = action.default
        shown = (
            ""
            if default in (None, False, [], argparse.SUPPRESS) or action.nargs == 0
            else f"`{default}`"
        )
        helptext = fmt._expand_help(action) if action.help else ""
        rows.append([f"`{name}`", md(kind) if "`" not in kind else kind, shown, md(helptext)])
    return rows


def _except(sub: argparse._SubParsersAction, flag: str) -> str:
    """Which subcommands take `flag`, in words: ' (every subcommand but `a`)' or ' (`b`, `c`)'."""
    without = [n for n, p in sub.choices.items() if flag not in p._option_string_actions]
    having = [n for n in sub.choices if n not in without]
    if not without:
        return " (every subcommand)"
    if len(having) < len(without):
        return " (" + ", ".join(f"`{n}`" for n in having) + ")"
    return " (every subcommand but " + ", ".join(f"`{n}`" for n in without) + ")"


def cli_page() -> str:
    """reference/cli.md: the parsers of `curate`, as `curate --help` and `curate CMD --help` say."""
    from curate.cli import build_parser

    parser = build_parser()
    sub = _subparsers(parser)
    helps = {a.dest: a.help for a in sub._choices_actions}
    out = [
        "# Command line",
        "",
        "Generated from the command's own parsers when this site was built: every subcommand, "
        "its arguments, their defaults and choices, as `curate CMD --help` prints them. The "
        "[guide](../quickstart.md) shows them at work.",
        "",
        f"`--workspace DIR` (default `$CURATE_WORKSPACE`, else `./workspace`) names the "
        f"workspace{_except(sub, '--workspace')}; `--set SECTION.KEY=VALUE` overrides a recipe "
        f"key{_except(sub, '--set')}. An error you can fix ends with one `error:` line and exit "
        "code 2, with nothing half-written. `curate --version` prints the version.",
        "",
    ]
    out += table(
        ["command", "what it does"],
        [[f"[`curate {name}`](#{name})", md(helps.get(name, ""))] for name in sub.choices],
    )
    for name, p in sub.choices.items():
        out += [f"## curate {name} {{#{name}}}", "", md(helps.get(name, "")).rstrip(".") + ".", ""]
        fmt = _formatter(p.prog)
        fmt.add_usage(p.usage, p._actions, p._mutually_exclusive_groups)
        out += ["```text", fmt.format_help().strip(), "```", ""]
        if p.description and p.description != helps.get(name):
            out += ["```text", p.description.strip(), "```", ""]
        out += table(["argument", "kind", "default", "meaning"], _argument_rows(p))
    return "\n".join(out)


def subcommands() -> list[str]:
    """The names of every `curate` subcommand, in `curate --help` order."""
    from curate.cli import build_parser

    return list(_subparsers(build_parser()).choices)


# ----------------------------------------------------------------------------- reference/tables.md


def tables_page() -> str:
    """reference/tables.md: every table and column the catalog declares, with its meaning."""
    from curate.catalog import schema
    from curate.catalog.views import VIEWS

    out = [
        "# Catalog tables",
        "",
        "Generated from `curate/catalog/schema.py` when this site was built: every table of the "
        "DuckDB catalog (`<workspace>/catalog.duckdb`), every column with its type and meaning "
        "(units and direction, e.g. *higher = easier*). `curate query --tables` prints the same "
        "from a catalog, and the columns carry it as their SQL comments. The scores are defined "
        "in [Concepts](../concepts.md).",
        "",
        f"Schema version {schema.SCHEMA_VERSION}. A catalog made by an older curate is brought "
        "to this version once, by the first stage that writes to it (it records its version in "
        f"`{schema.META_TABLE}`).",
        "",
    ]
    rows = []
    for name, cols in schema.SCHEMA.items():
        key = schema.PRIMARY_KEYS.get(name)
        rows.append(
            [
                f"[`{name}`](#{name})",
                ", ".join(f"`{k}`" for k in key) if key else "",
                str(len(cols)),
            ]
        )
    for name in VIEWS:
        rows.append([f"[`{name}`](#{name}) (view)", "", ""])
    out += table(["table", "primary key", "columns"], rows)
    out += ["## Tables", ""]
    for name, cols in schema.SCHEMA.items():
        out += [f"### {name} {{#{name}}}", ""]
        key = schema.PRIMARY_KEYS.get(name)
        if key:
            out += [f"Primary key: {', '.join(f'`{k}`' for k in key)}.", ""]
        out += table(
            ["column", "type", "meaning"],
            [[f"`{c}`", f"`{t}`", md(meaning)] for c, t, meaning in cols],
        )
    out += [
        "## Views",
        "",
        "Recreated by every stage that writes to the catalog.",
        "",
    ]
    out += table(
        ["view", "what it holds"],
        [[f'<span id="{name}"></span>`{name}`', md(m)] for name, m in VIEWS.items()],
    )
    out += [
        f"## {schema.META_TABLE}",
        "",
        "Facts about the catalog itself: `key` is `schema_version` or `schema_digest` (a digest "
        "of the schema's statements), `value` its value as text.",
        "",
    ]
    return "\n".join(out)


# ----------------------------------------------------------------------------- benchmarks


def _load_results() -> dict[str, dict]:
    return {p.name: json.loads(p.read_text()) for p in sorted(RESULTS.glob("*.json"))}


def num(v: object) -> str:
    """A value of a results file, for a table cell."""
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return f"{v:.4g}"
    return md(v)


def _flatten(obj: object, prefix: str = "") -> list[tuple[str, object]]:
    """Scalar leaves of nested dicts as (dotted key, value); lists of scalars as one value."""
    if isinstance(obj, dict):
        out = []
        for k, v in obj.items():
            out += _flatten(v, f"{prefix}.{k}" if prefix else str(k))
        return out
    if isinstance(obj, list) and not any(isinstance(x, (dict, list)) for x in obj):
        shown = ", ".join(num(x) for x in obj[:12]) + (
            f", … ({len(obj)} in all)" if len(obj) > 12 else ""
        )
        return [(prefix, _Raw(shown or "(none)"))]
    if isinstance(obj, list):
        return [(prefix, obj)]  # a list of records: its own table
    return [(prefix, obj)]


class _Raw(str):
    """A cell already in markdown."""


def _cell(v: object) -> str:
    return v if isinstance(v, _Raw) else num(v)


def generic_tables(obj: dict) -> list[str]:
    """Any results file as tables: its scalar values, then one table per list of records."""
    flat = _flatten(obj)
    scalars = [(k, v) for k, v in flat if not isinstance(v, list)]
    lists = [(k, v) for k, v in flat if isinstance(v, list)]
    out = []
    if scalars:
        out += table(["key", "value"], [[f"`{k}`", _cell(v)] for k, v in scalars])
    for key, records in lists:
        recs = [dict(_flatten(r)) if isinstance(r, dict) else {"value": r} for r in records]
        cols = list(dict.fromkeys(c for r in recs for c in r))
        out += [f"`{key}`:", ""]
        if len(recs) <= len(cols):  # few records, many fields: one column per record
            names = [
                next((num(r[c]) for c in ("set", "recipe", "run", "name") if c in r), str(i))
                for i, r in enumerate(recs)
            ]
            out += table(
                ["field", *names], [[f"`{c}`", *[_cell(r.get(c)) for r in recs]] for c in cols]
            )
        else:
            out += table([f"`{c}`" for c in cols], [[_cell(r.get(c)) for c in cols] for r in recs])
    return out


def _method(cell: dict) -> str:
    """A pruning cell's method in words: `hard` by el2n@1, random (draw 2), `ccs`, --beta 0.3."""
    base, _, variant = str(cell.get("method", "")).partition("-")
    strategy = cell.get("strategy", "")
    extra = {"b30": ", `--beta 0.3`", "d1": " (another draw)", "d2": " (a third draw)"}.get(
        variant, f" ({variant})" if variant else ""
    )
    if strategy == "random":
        return "random" + extra.replace("another draw", "draw 2").replace("a third draw", "draw 3")
    return f"`{strategy}` by {base}{extra}"


def _pct(keep: float) -> str:
    return f"{round(100 * keep)} %"


def prune_tables(name: str, d: dict) -> list[str]:
    """A pruning results file: the setting, then test accuracy per method and fraction kept, at fixed
    epochs (points against random at the same fraction) and at equal steps (points against full)."""
    s = d.get("setting", {})
    full = d.get("full", {})
    score = d.get("scoring_run", {})
    out = [
        f"Setting: {md(s.get('dataset', '?'))}, {s.get('train_n', '?')} train and "
        f"{s.get('test_n', '?')} test images, recipe `{s.get('recipe', '?')}`, "
        f"{s.get('epochs', '?')} epochs of retraining (scores from {s.get('score_members', '?')} "
        f"members x {s.get('score_epochs', s.get('epochs', '?'))} epochs), "
        f"{s.get('retrain_members', '?')} members per cell, {s.get('precision', '?')}, "
        f"{s.get('threads', '?')} thread(s). Scoring run: test accuracy "
        f"{num((score.get('mean_final_acc') or {}).get('test'))}, "
        f"{num(score.get('cpu_seconds'))} CPU-s. Full data: "
        f"{num(full.get('test_acc_mean'))} ± {num(full.get('test_acc_std'))}.",
        "",
    ]
    cells = list((d.get("cells") or {}).values())
    fractions = sorted({c["keep"] for c in cells})
    random_at = {
        c["keep"]: c["test_acc_mean"]
        for c in cells
        if c.get("strategy") == "random" and c.get("method") == "random"
    }
    methods = list(dict.fromkeys(_method(c) for c in cells))
    rows = []
    for m in methods:
        row = [m]
        for f in fractions:
            c = next((c for c in cells if _method(c) == m and c["keep"] == f), None)
            if c is None:
                row.append("")
                continue
            text = f"{c['test_acc_mean']:.4f} ± {c['test_acc_std']:.4f}"
            if f in random_at and c.get("method") != "random":
                text += f" ({100 * (c['test_acc_mean'] - random_at[f]):+.2f})"
            if c.get("wrong_labels_kept") is not None:
                text += f"; wrong kept {100 * c['wrong_labels_kept']:.1f} %"
            row.append(text)
        rows.append(row)
    if rows:
        out += [
            "Test accuracy at fixed epochs, mean ± population std over the members (points "
            "against random at the same fraction):",
            "",
        ]
        out += table(["method", *[f"{_pct(f)} kept" for f in fractions]], rows)
    eq = list((d.get("cells_equal_steps") or {}).values())
    if eq:
        fractions = sorted({c["keep"] for c in eq})
        rows = []
        for m in dict.fromkeys(_method(c) for c in eq):
            row = [m]
            for f in fractions:
                c = next((c for c in eq if _method(c) == m and c["keep"] == f), None)
                if c is None:
                    row.append("")
                    continue
                text = f"{c['test_acc_mean']:.4f} ± {c['test_acc_std']:.4f}"
                if full.get("test_acc_mean") is not None:
                    text += f" ({100 * (c['test_acc_mean'] - full['test_acc_mean']):+.2f} vs full)"
                row.append(text)
            rows.append(row)
        epochs = {c["keep"]: c.get("epochs") for c in eq}
        out += ["At equal steps (round(E / F) epochs; points against full data):", ""]
        out += table(["method", *[f"{_pct(f)} kept ({epochs[f]} epochs)" for f in fractions]], rows)
    missing = d.get("missing_cells") or []
    if missing:
        out += ["Not run: " + ", ".join(f"`{m}`" for m in missing) + ".", ""]
    return out


# ----------------------------------------------------------------------------- figures


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update(
        {
            "svg.hashsalt": "curate-docs",  # the same SVG from the same numbers
            "svg.fonttype": "none",
            "font.size": 9,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "axes.grid": True,
            "grid.alpha": 0.3,
        }
    )
    return plt


def _svg(fig) -> bytes:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    _pyplot().close(fig)
    return buf.getvalue().encode()


def _get(d: dict, *path: str):
    for p in path:
        if not isinstance(d, dict) or p not in d:
            return None
        d = d[p]
    return d


def fig_speedups(results: dict[str, dict]):
    """How many times faster than the baseline each measured step is, against its target."""
    wanted = [
        ("training loader", "loader.json", ("speedup",), 10),
        ("8 LeNet-5, 2 epochs", "train.json", ("speedup",), 3),
        ("scores, 1 % of 1.28 M", "scores.json", ("subset_1pct", "speedup"), None),
        ("local entropy", "stats.json", ("sample", "entropy_speedup"), 50),
        ("image statistics pass", "stats.json", ("sample", "all_speedup"), 10),
        ("PMI boundaries", "stats_pmi.json", ("direct_port", "speedup"), None),
        ("eval pass / epoch", "eval.json", ("speedup",), None),
        ("catalog open", "catalog_open.json", ("ratio_old_over_new",), None),
        ("bf16 step, small-stvgg", "bf16_step.json", ("models", "small-stvgg", "speedup"), None),
        ("bf16 step, LeNet-5", "bf16_step.json", ("models", "lenet5", "speedup"), None),
    ]
    bars = [
        (label, float(v), target, f)
        for label, f, path, target in wanted
        if isinstance(v := _get(results.get(f, {}), *path), (int, float))
    ]
    if not bars:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(bars) + 0.8))
    y = range(len(bars))
    ax.barh(list(y), [b[1] for b in bars], color="#3f51b5")
    for i, b in enumerate(bars):
        ax.text(b[1] * 1.08, i, f"{b[1]:.1f}x", va="center", fontsize=8)
        if b[2]:
            ax.plot([b[2], b[2]], [i - 0.4, i + 0.4], color="#e65100", lw=2)
    ax.set_yticks(list(y), [f"{b[0]} ({b[3]})" for b in bars])
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("times faster than the baseline (log scale); orange: the target")
    return fig


def fig_reliability(results: dict[str, dict]):
    """Split-half r of accessibility by ensemble size, and prefix scores by epochs (CIFAR-10)."""
    runs = {n: d for n, d in results.items() if n.startswith("reliability-")}
    if not runs:
        return None
    plt = _pyplot()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(8, 3))
    for n, d in runs.items():
        split = _get(d, "splits", "train") or _get(d, "splits", "test") or {}
        label = f"{d.get('run', n)}"
        mc = split.get("member_curve") or []
        meas = [(r["x"], r["pearson"]) for r in mc if r.get("pearson") is not None]
        pred = [(r["x"], r["predicted"]) for r in mc if r.get("predicted") is not None]
        (line,) = (
            a1.plot(*zip(*meas, strict=True), marker="o", ms=3, label=label) if meas else (None,)
        )
        if pred and line is not None:
            a1.plot(*zip(*pred, strict=True), ls="--", color=line.get_color(), lw=1)
        ec = split.get("epoch_curve") or []
        if ec:
            e = max(r["x"] for r in ec)
            a2.plot(
                [r["x"] / e for r in ec], [r["spearman"] for r in ec], marker="o", ms=3, label=label
            )
    a1.axhline(0.95, color="grey", lw=0.8, ls=":")
    a1.set_xlabel("members")
    a1.set_ylabel("split-half Pearson r (dashed: Spearman-Brown)")
    a2.axhline(0.9, color="grey", lw=0.8, ls=":")
    a2.set_xlabel("fraction of the epochs scored")
    a2.set_ylabel("Spearman rho with the full run")
    a1.legend(fontsize=7)
    return fig


def fig_label_noise(results: dict[str, dict]):
    """Wrong-label detection on CIFAR-10N: curate against cleanlab at the same training compute."""
    d = results.get("label_noise.json")
    if not d or not d.get("results"):
        return None
    plt = _pyplot()
    metrics = ["auroc", "precision", "recall", "f1", "recovery"]
    sets = d["results"]
    fig, axes = plt.subplots(1, len(sets), figsize=(4 * len(sets), 2.8), squeeze=False)
    for ax, r in zip(axes[0], sets, strict=True):
        for j, (who, color) in enumerate((("curate", "#3f51b5"), ("cleanlab", "#9e9e9e"))):
            vals = [r.get(who, {}).get(m) or 0 for m in metrics]
            ax.bar([i + 0.38 * j for i in range(len(metrics))], vals, 0.38, label=who, color=color)
        ax.set_xticks([i + 0.19 for i in range(len(metrics))], metrics)
        noise = r.get("curate", {}).get("noise_rate")
        ax.set_title(
            f"{r.get('set')}_label ({100 * noise:.0f} % wrong)" if noise else str(r.get("set"))
        )
        ax.set_ylim(0, 1)
    axes[0][0].legend(fontsize=7)
    return fig


def fig_app(results: dict[str, dict]):
    """Seconds per explorer view on 1.28 M instances, against the 1 s target."""
    d = results.get("app.json")
    if not d:
        return None
    views = {k: v for k, v in d.items() if isinstance(v, float)}
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 0.3 * len(views) + 0.8))
    ax.barh(list(views), list(views.values()), color="#3f51b5")
    ax.axvline(1.0, color="#e65100", lw=1.5)
    ax.invert_yaxis()
    ax.set_xlabel(f"seconds on {d.get('instances', '?'):,} instances (orange: the 1 s target)")
    return fig


def fig_recipes(results: dict[str, dict]):
    """CIFAR-10 recipes: split-half r of accessibility against CPU minutes."""
    d = results.get("recipes.json")
    if not d or not d.get("recipes"):
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 3))
    for r in d["recipes"]:
        if r.get("cpu_minutes") is None or r.get("split_half_r_train") is None:
            continue
        ax.scatter(r["cpu_minutes"], r["split_half_r_train"], color="#3f51b5")
        ax.annotate(
            f"{r.get('recipe')} ({r.get('members')} x {r.get('epochs')})",
            (r["cpu_minutes"], r["split_half_r_train"]),
            textcoords="offset points",
            xytext=(4, 4),
            fontsize=7,
        )
    ax.axhline(0.95, color="#e65100", lw=1)
    ax.set_xlabel("CPU minutes of `curate run`")
    ax.set_ylabel("split-half r of accessibility (train)")
    return fig


def _prune_groups(results: dict[str, dict]) -> list[tuple[list[str], dict]]:
    """Pruning files of one setting (all but the fractions kept, the same full-data run) together."""
    groups: dict[str, tuple[list[str], dict]] = {}
    for name, d in results.items():
        if not (name.startswith("prune") and isinstance(d.get("cells"), dict)):
            continue
        setting = {k: v for k, v in (d.get("setting") or {}).items() if k != "fractions"}
        key = json.dumps([setting, _get(d, "full", "test_acc_mean")], sort_keys=True)
        names, merged = groups.setdefault(key, ([], {"cells": {}, "cells_equal_steps": {}}))
        names.append(name)
        merged.setdefault("setting", d.get("setting") or {})
        merged.setdefault("full", d.get("full") or {})
        for part in ("cells", "cells_equal_steps"):
            for k, c in (d.get(part) or {}).items():
                merged[part].setdefault(k, c)
    return list(groups.values())


def fig_prune(d: dict):
    """Test accuracy against the fraction kept, one line per method (fixed epochs; equal steps)."""
    parts = [(p, list((d.get(p) or {}).values())) for p in ("cells", "cells_equal_steps")]
    parts = [(p, cells) for p, cells in parts if cells]
    if not parts:
        return None
    full = _get(d, "full", "test_acc_mean")
    if all(len({c["keep"] for c in cells}) == 1 for _, cells in parts):
        return _fig_prune_one_fraction(parts, full)
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(parts), figsize=(4.2 * len(parts) + 1.6, 3.2), squeeze=False)
    for ax, (part, cells) in zip(axes[0], parts, strict=True):
        for m in dict.fromkeys(_method(c) for c in cells):
            pts = sorted(
                (c["keep"], c["test_acc_mean"], c["test_acc_std"]) for c in cells if _method(c) == m
            )
            label = m.replace("`", "")
            style = {"color": "black", "lw": 2} if label == "random" else {}
            ax.errorbar(
                [100 * p[0] for p in pts],
                [p[1] for p in pts],
                yerr=[p[2] for p in pts],
                marker="o",
                ms=3,
                capsize=2,
                label=label,
                **style,
            )
        if full is not None:
            ax.axhline(full, color="grey", ls="--", lw=1, label="full data")
        ax.set_xlabel("% of the train split kept")
        ax.set_ylabel("test accuracy")
        ax.set_title("fixed epochs" if part == "cells" else "equal steps")
    handles, labels = axes[0][-1].get_legend_handles_labels()
    if len(parts) > 1:
        h0, l0 = axes[0][0].get_legend_handles_labels()
        seen = dict(zip(l0, h0, strict=True))
        seen.update(dict(zip(labels, handles, strict=True)))
        labels, handles = list(seen), list(seen.values())
    fig.legend(
        handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=7, frameon=False
    )
    return fig


def _fig_prune_one_fraction(parts: list[tuple[str, list[dict]]], full: float | None):
    """One fraction kept: test accuracy per method as bars (fixed epochs; equal steps)."""
    plt = _pyplot()
    rows = max(len(cells) for _, cells in parts)
    fig, axes = plt.subplots(
        1, len(parts), figsize=(4.6 * len(parts), 0.32 * rows + 1.2), squeeze=False
    )
    for ax, (part, cells) in zip(axes[0], parts, strict=True):
        cells = sorted(cells, key=lambda c: -c["test_acc_mean"])
        labels = [_method(c).replace("`", "") for c in cells]
        means = [c["test_acc_mean"] for c in cells]
        ax.barh(
            labels,
            means,
            xerr=[c["test_acc_std"] for c in cells],
            capsize=2,
            color=["black" if lb.startswith("random") else "#3f51b5" for lb in labels],
        )
        lo = min(means + ([full] if full is not None else []))
        hi = max(means + ([full] if full is not None else []))
        ax.set_xlim(lo - 0.1 * (hi - lo) - 0.005, hi + 0.1 * (hi - lo) + 0.005)
        if full is not None:
            ax.axvline(full, color="grey", ls="--", lw=1)
        ax.invert_yaxis()
        ax.set_xlabel("test accuracy (dashed: full data)")
        keep = round(100 * cells[0]["keep"])
        ax.set_title(f"{keep} % kept, " + ("fixed epochs" if part == "cells" else "equal steps"))
    fig.tight_layout()
    return fig


class Benchmarks:
    """The generated parts of benchmarks.md: markdown per marker, and the SVG figures they show."""

    def __init__(self) -> None:
        self.results = _load_results()
        self.figures: dict[str, bytes] = {}
        self.sections: dict[str, list[str]] = {"figures": [], "prune": [], "results": []}
        self._overview()
        self._prune()
        self._results()

    def _figure(self, name: str, fig, caption: str) -> list[str]:
        if fig is None:
            return []
        self.figures[f"{FIGURES}/{name}.svg"] = _svg(fig)
        return [f"![{caption}]({FIGURES}/{name}.svg)", "", f"*{caption}*", ""]

    def _overview(self) -> None:
        r, out = self.results, self.sections["figures"]
        out += self._figure(
            "speedups",
            fig_speedups(r),
            "Speed-ups over each benchmark's baseline (the file each bar comes from in parentheses)",
        )
        out += self._figure(
            "reliability",
            fig_reliability(r),
            "How many members, how many epochs: split-half r of accessibility by ensemble size "
            "(measured, and Spearman-Brown's prediction dashed) and prefix scores by epochs, "
            "CIFAR-10 (`reliability-*.json`)",
        )
        out += self._figure(
            "label-noise",
            fig_label_noise(r),
            "Wrong labels found on CIFAR-10N: curate against cleanlab at the same training "
            "compute (`label_noise.json`)",
        )
        out += self._figure(
            "recipes",
            fig_recipes(r),
            "CIFAR-10 recipes: reproducibility of accessibility against CPU time (`recipes.json`)",
        )
        out += self._figure("app", fig_app(r), "Explorer views on 1.28 M instances (`app.json`)")

    def _prune(self) -> None:
        out = self.sections["prune"]
        for i, (names, merged) in enumerate(_prune_groups(self.results)):
            files = " and ".join(f"`{n}`" for n in names)
            s = merged.get("setting", {})
            title = (
                f"{s.get('dataset', '?')}, {s.get('train_n', '?')} train images, "
                f"{s.get('epochs', '?')} epochs"
            )
            out += self._figure(
                f"prune-{i}",
                fig_prune(merged),
                f"Pruning, {title}: test accuracy against the fraction kept ({files})",
            )
        for name, d in self.results.items():
            if name.startswith("prune") and isinstance(d.get("cells"), dict):
                out += [f"#### {name}", ""] + prune_tables(name, d)

    def _results(self) -> None:
        out = self.sections["results"]
        for name, d in self.results.items():
            if name.startswith("prune") and isinstance(d.get("cells"), dict):
                continue  # in the pruning section
            out += [f"### {name}", ""]
            what = d.get("what") if isinstance(d, dict) else None
            if what:
                out += [md(what), ""]
            body = generic_tables({k: v for k, v in d.items() if k != "what"})
            out += [f'??? info "Every value of `{name}`"', ""]  # collapsed: some files are long
            out += [("    " + line) if line else "" for line in body]
            out += [""]

    def fill(self, markdown: str) -> str:
        def one(m: re.Match) -> str:
            if m.group(1) not in self.sections:
                raise ValueError(f"benchmarks.md: no generated section {m.group(1)!r}")
            return "\n".join(self.sections[m.group(1)])

        return MARKER.sub(one, markdown)


# ----------------------------------------------------------------------------- formulas

_INLINE = re.compile(r'<span class="arithmatex">\\\((.*?)\\\)</span>', re.S)
_BLOCK = re.compile(r'<div class="arithmatex">\\\[(.*?)\\\]</div>', re.S)


def mathml(page_html: str, where: str = "") -> str:
    """Formulas of arithmatex's generic output as MathML (shown by every current browser)."""
    from latex2mathml.converter import convert

    def conv(display: str):
        def one(m: re.Match) -> str:
            tex = html.unescape(m.group(1)).strip()
            try:
                return convert(tex, display=display)
            except Exception as e:  # a formula that does not parse fails the build, by page
                raise ValueError(f"{where}: formula {tex!r} does not convert: {e}") from e

        return one

    return _INLINE.sub(conv("inline"), _BLOCK.sub(conv("block"), page_html))


# ----------------------------------------------------------------------------- docstrings

_DASHES = re.compile(r"-{3,}")
_ITEM = re.compile(r"^(\*{0,2}[A-Za-z_]\w*(?:, \*{0,2}[A-Za-z_]\w*)*) : (.+)$")
_ITEM_SECTIONS = {"parameters", "other parameters", "attributes", "returns", "yields", "raises"}
_NAMED_SECTIONS = {"parameters", "other parameters", "attributes"}


def numpy_docstring(doc: str) -> str:
    """A docstring in curate's way of writing numpy sections, in numpy's own way, for griffe.

    curate writes a parameter as ``name : what it is`` on one line (the type is in the signature),
    and may go on with a paragraph of prose after a section. numpy style reads the text after the
    colon as a type and every later line of a section as an item. So: ``name : text`` becomes
    ``name`` with ``text`` as its description, unless the text looks like a type (a few words, no
    final full stop, a description indented below it); and prose after a blank line that ends a
    section goes under a Notes heading.
    """
    lines = doc.split("\n")
    out: list[str] = []
    section = None
    i = 0
    while i < len(lines):
        line = lines[i]
        nxt = lines[i + 1] if i + 1 < len(lines) else ""
        if line.strip() and not line.startswith(" ") and _DASHES.fullmatch(nxt.strip()):
            section = line.strip().lower()
            out += [line, nxt]
            i += 2
            continue
        if section in _ITEM_SECTIONS and not line.strip():
            j = i + 1
            while j < len(lines) and not lines[j].strip():
                j += 1
            heading = j + 1 < len(lines) and _DASHES.fullmatch(lines[j + 1].strip())
            if j < len(lines) and not lines[j].startswith(" ") and not heading:
                out += ["", "Notes", "-----"]  # prose after the section
                section = "notes"
                i = j
                continue
        if section in _NAMED_SECTIONS and not line.startswith(" "):
            m = _ITEM.match(line)
            if m:
                name, rest = m.groups()
                typelike = (
                    nxt.startswith("    ")
                    and not rest.rstrip().endswith(".")
                    and len(rest.split()) <= 5
                )
                if not typelike:
                    out += [name, "    " + rest]
                    i += 1
                    continue
        out.append(line)
        i += 1
    return "\n".join(out)


try:
    import griffe

    class CurateDocstrings(griffe.Extension):
        """A griffe extension (mkdocs.yml: mkdocstrings, python, extensions): `numpy_docstring`
        on every docstring the API pages show."""

        def on_instance(self, *, node, obj, agent, **kwargs) -> None:
            if obj.docstring is not None:
                obj.docstring.value = numpy_docstring(obj.docstring.value)

except ImportError:  # the hook runs without griffe too
    pass


# ----------------------------------------------------------------------------- mkdocs events

_state: dict[str, object] = {}


def on_files(files, config):
    """Add the generated pages and figures to the build (they are never written under docs/)."""
    from mkdocs.structure.files import File

    bench = Benchmarks()
    _state["benchmarks"] = bench
    pages = {"reference/cli.md": cli_page(), "reference/tables.md": tables_page()}
    for uri, text in pages.items():
        if files.get_file_from_path(uri) is not None:
            raise ValueError(f"docs/{uri} is generated at build time: remove the committed copy")
        files.append(File.generated(config, uri, content=text))
    for uri, svg in bench.figures.items():
        files.append(File.generated(config, uri, content=svg))
    return files


def on_page_markdown(markdown, page, config, files):
    if MARKER.search(markdown):
        bench = _state.get("benchmarks") or Benchmarks()
        markdown = bench.fill(markdown)
    return markdown


def on_page_content(html_text, page, config, files):
    if "arithmatex" in html_text:
        return mathml(html_text, page.file.src_uri)
    return html_text
