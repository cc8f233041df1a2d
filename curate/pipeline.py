"""Every stage of a recipe in order, as `curate run` does it: ingest, image statistics (when the
recipe asks), train, score, correlations, and the short summary, each announced on stdout."""

from __future__ import annotations

from curate.config import Recipe
from curate.workspace import Workspace


def run_pipeline(recipe: Recipe, ws: Workspace, run: str | None = None) -> dict:
    """Ingest the recipe's dataset, train its ensemble, score the run and print the summary.

    Every stage resumes or skips what is already done: ingest keeps a current dataset, train
    resumes a run from its progress records, and scoring replaces the run's rows.

    Parameters
    ----------
    recipe : the loaded recipe (`curate.config.load_recipe`)
    ws : the workspace the catalog, datasets and runs live in
    run : the run name; default the recipe's name

    Returns
    -------
    dict
        the per-split summary of the scored run (`curate.scores.score.score_run`)
    """
    from curate.data.ingest import ingest
    from curate.scores.score import score_run
    from curate.scores.summary import print_summary
    from curate.stats.correlate import compute_correlations
    from curate.train.run import train

    run = run or recipe.name
    print(f"== ingest {recipe.dataset.format} into {ws.root}")
    res = ingest(recipe.dataset, ws, force=False)
    print(f"{res.dataset}: {res.status} ({', '.join(f'{k} {v}' for k, v in res.counts.items())})")
    if recipe.score.stats:
        from curate.stats.compute import compute_stats

        print(f"== image statistics of {res.dataset}")
        compute_stats(res.dataset, ws, pmi=recipe.score.pmi)
    print(
        f"== train {recipe.name}: {recipe.train.members} x {recipe.train.arch}, {recipe.train.epochs} epochs"
    )
    train(recipe, ws, run=run)
    print(f"== score {run}")
    summary = score_run(ws, run, tol=recipe.score.tol, compare=list(recipe.score.compare_runs))
    compute_correlations(ws, res.dataset)  # when image statistics exist
    print_summary(ws, run, summary)
    return summary
