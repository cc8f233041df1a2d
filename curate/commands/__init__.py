"""The subcommands of `curate`, each parser beside its handler, grouped by concern: `data` (ingest,
stats), `training` (train, score, run), `results` (query, curriculum, pairs, pairs-analyse,
label-issues, evaluate, report), `pruning` (prune), `explorer` (app) and `record` (import-log).
`curate.cli` assembles them; the shared options and the one recipe path (what each command reads
of a recipe, its `--set` and flags merged and checked once) are in `common`. No module here
imports `curate.cli`.
"""
