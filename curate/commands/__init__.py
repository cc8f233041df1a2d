"""The subcommands of `curate`, each parser beside its handler, grouped by concern: `data` (ingest,
stats), `training` (train, score, run), `results` (query, curriculum, pairs, pairs-analyse,
label-issues, evaluate, report) and `explorer` (app). `curate.cli` assembles them; the shared
options are in `common`. No module here imports `curate.cli`.
"""
