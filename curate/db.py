"""The DuckDB catalog: every table's schema and every column's meaning, in one place.

One process writes (each stage, inside a transaction); `curate query` and the app open it
read-only. Column comments say units and direction ("higher = easier").
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import duckdb

from curate import __version__
from curate.errors import CurateError
from curate.workspace import Workspace

# table -> [(column, SQL type, meaning)]. The primary key is listed in PRIMARY_KEYS.
SCHEMA: dict[str, list[tuple[str, str, str]]] = {
    "datasets": [
        ("dataset", "VARCHAR", "catalog name of the dataset"),
        ("format", "VARCHAR", "ingest format: digits, mnist, cifar10, imagefolder, imagenet, ..."),
        ("source", "VARCHAR", "where the raw data came from (path, or 'sklearn' / 'synthetic')"),
        ("num_classes", "INTEGER", "number of classes K"),
        ("class_names", "VARCHAR[]", "class names, position = label"),
        ("splits", "VARCHAR[]", "split names, e.g. [train, test]"),
        ("counts", "BIGINT[]", "instances per split, in the order of `splits`"),
        ("storage", "VARCHAR", "how images are stored in the .beton: raw-uint8, float32 or jpeg"),
        ("image_shape", "INTEGER[]", "H, W, C of raw/float storage; NULL for jpeg (sizes vary)"),
        (
            "checksum",
            "VARCHAR",
            "BLAKE2b over the input bytes (and file names); detects changed input",
        ),
        ("random_labels_seed", "INTEGER", "seed of the label permutation, NULL for true labels"),
        ("recipe", "JSON", "the [dataset] section of the recipe that built it"),
        ("version", "VARCHAR", "curate version that built it"),
        ("git_rev", "VARCHAR", "git revision of curate that built it (NULL outside a checkout)"),
        ("created_at", "TIMESTAMP", "when ingest finished (UTC)"),
        (
            "labels_file",
            "VARCHAR",
            "the `--labels` file whose labels replaced the source's; NULL for the source's labels",
        ),
        (
            "multilabel",
            "BOOLEAN",
            "labels are class sets stored as bitmasks (bit k = class k; Pascal VOC): a prediction is "
            "correct only on an exact match of the thresholded set (sigmoid > 0.5); NULL = false",
        ),
    ],
    "instances": [
        ("dataset", "VARCHAR", "catalog name of the dataset"),
        ("split", "VARCHAR", "train, test, val, ..."),
        (
            "idx",
            "INTEGER",
            "the instance's id in its split (standard order where the source has one); key of every table",
        ),
        (
            "label",
            "INTEGER",
            "class used for training (permuted under random labels, from the file under --labels); "
            "multilabel datasets: the class set as a bitmask, bit k = class k (sum of 2^k)",
        ),
        (
            "true_label",
            "INTEGER",
            "the source's own class (equal to label unless random labels or --labels)",
        ),
        (
            "class_name",
            "VARCHAR",
            "name of `label`; multilabel: its classes' names joined by '+' in class order, '' for "
            "the empty set (a VOC test image whose objects are all difficult)",
        ),
        ("source", "VARCHAR", "file path of the image, or '<file>#<row>' for array sources"),
        ("source_index", "BIGINT", "row in the source array or file, NULL for image files"),
        ("height", "INTEGER", "height of the original image, pixels"),
        ("width", "INTEGER", "width of the original image, pixels"),
        ("channels", "INTEGER", "colour channels of the original image (1 grey, 3 RGB)"),
    ],
    "skipped": [
        ("dataset", "VARCHAR", "catalog name of the dataset"),
        ("split", "VARCHAR", "split the file belonged to"),
        ("source", "VARCHAR", "the file that could not be read"),
        ("reason", "VARCHAR", "why it was skipped"),
    ],
    "image_attributes": [
        ("dataset", "VARCHAR", "catalog name of the dataset"),
        ("split", "VARCHAR", "split"),
        ("idx", "INTEGER", "instance id in its split"),
        (
            "attribute",
            "VARCHAR",
            "what the source says of the image beyond its label, e.g. object_count, "
            "bbox_area_ratio (Pascal VOC), illumination, pose, scale (KTH-TIPS2-b)",
        ),
        ("value", "DOUBLE", "numeric value; NULL for a categorical attribute"),
        ("category", "VARCHAR", "categorical value; NULL for a numeric attribute"),
    ],
    "runs": [
        ("run", "VARCHAR", "run name (folder under <workspace>/runs/)"),
        ("dataset", "VARCHAR", "the dataset it trained on"),
        ("arch", "VARCHAR", "architecture of every member"),
        ("members", "INTEGER", "ensemble size M"),
        ("epochs", "INTEGER", "epochs E (the log also holds epoch 0, before training)"),
        ("seed", "BIGINT", "recipe seed every member's seeds derive from"),
        ("strategy", "VARCHAR", "fused (members in one model) or separate (one model each)"),
        ("device", "VARCHAR", "cpu or cuda"),
        ("world_size", "INTEGER", "processes that trained it (torchrun ranks)"),
        ("recipe", "JSON", "dataset, loader and train settings of the run"),
        ("path", "VARCHAR", "the run folder: prediction log, checkpoints, progress"),
        ("train_seconds", "DOUBLE", "wall time summed over members' epochs, seconds"),
        ("mean_final_acc", "JSON", "mean over members of the accuracy at epoch E, per split"),
        ("version", "VARCHAR", "curate version"),
        ("git_rev", "VARCHAR", "git revision of curate"),
        ("torch_version", "VARCHAR", "PyTorch version"),
        ("finished_at", "TIMESTAMP", "when the last member finished (UTC)"),
        (
            "precision",
            "VARCHAR",
            "arithmetic of training: fp32, or bf16 autocast (train.precision; auto = bf16 on CUDA "
            "and on CPUs with native bf16 units)",
        ),
        (
            "subset",
            "VARCHAR",
            "checksum (blake2b) of the train-split subset it trained on (`curate prune`, "
            "train.subset); NULL = the whole split",
        ),
        (
            "subset_info",
            "JSON",
            "where the subset came from: the sidecar `curate prune` wrote (run pruned, strategy, "
            "score, keep, n, pool, seed), plus its path; NULL = the whole split",
        ),
    ],
    "members": [
        ("run", "VARCHAR", "run name"),
        ("member", "INTEGER", "member m = 0..M-1"),
        ("init_seed", "BIGINT", "seed of the member's initial weights"),
        (
            "order_seed",
            "BIGINT",
            "seed of its data order (epoch e: default_rng(order_seed + e - 1))",
        ),
        ("aug_seed", "BIGINT", "seed of its augmentation draws"),
        ("epochs_done", "INTEGER", "last complete epoch"),
        ("final_acc", "JSON", "accuracy at the last epoch, per split (higher = better)"),
        (
            "train_seconds",
            "DOUBLE",
            "wall time of its training epochs (shared when fused), seconds",
        ),
    ],
    "instance_scores": [
        ("run", "VARCHAR", "the run whose log was scored"),
        ("dataset", "VARCHAR", "dataset of the run"),
        ("split", "VARCHAR", "split the instance belongs to"),
        ("idx", "INTEGER", "instance id in its split"),
        (
            "label",
            "INTEGER",
            "class the members were trained and scored against (multilabel: class-set bitmask)",
        ),
        ("members", "INTEGER", "ensemble size M"),
        (
            "accessibility",
            "DOUBLE",
            "mean TP-agreement over epochs 1..E, 0..1; higher = easier (Hacohen)",
        ),
        (
            "tpa_final",
            "DOUBLE",
            "TP-agreement at the last epoch E: fraction of members correct; higher = easier",
        ),
        ("strict_final", "BOOLEAN", "every member correct at epoch E (Pliushch strict agreement)"),
        (
            "agreement_final",
            "DOUBLE",
            "label-agnostic Agreement at E: largest fraction of members predicting one class "
            "(multilabel: one class set)",
        ),
        (
            "learned_epoch",
            "DOUBLE",
            "median over members of the epoch after which a member stays correct; NULL if the median member is wrong at E; lower = easier",
        ),
        (
            "first_learned",
            "DOUBLE",
            "median over members of the first epoch a member is correct; NULL if infinite; lower = easier",
        ),
        (
            "forgetting_events",
            "DOUBLE",
            "correct-to-wrong transitions between epochs 1..E summed over members; NULL when never learned; higher = harder",
        ),
        ("never_learned", "BOOLEAN", "no member correct at any epoch 1..E"),
        (
            "confidence",
            "DOUBLE",
            "mean softmax probability of the true class over members and epochs 1..E (multilabel: "
            "of exactly the true set under independent sigmoids); higher = easier",
        ),
        (
            "variability",
            "DOUBLE",
            "mean over members of the std over epochs of that probability; higher = more ambiguous",
        ),
        ("final_correct", "INTEGER", "members correct at epoch E; higher = easier"),
        (
            "ddd",
            "VARCHAR",
            "trivial (>= M - tol correct at E), impossible (<= tol), else in-between (Meding)",
        ),
        ("tol", "INTEGER", "the split tolerance used for ddd (0 = strict, 1 = all except one)"),
        (
            "correct_by_epoch",
            "USMALLINT[]",
            "members correct at epochs 0..E (list position e + 1); tpa = value / members",
        ),
        (
            "agree_by_epoch",
            "USMALLINT[]",
            "size of the largest agreeing group of members at epochs 0..E",
        ),
        (
            "epochs",
            "INTEGER",
            "the epochs 1..E these scores use; fewer than the run trained when scored from a prefix "
            "of the log (`curate score --epochs`)",
        ),
        (
            "aum",
            "DOUBLE",
            "area under the margin (Pleiss et al.): mean over members and epochs 1..E of the given "
            "class's logit minus the largest other logit (multilabel: min over classes k of "
            "(2 y_k - 1) z_k, > 0 exactly on an exact match); lower = more likely mislabelled",
        ),
        (
            "late_aum",
            "DOUBLE",
            "the same mean over the late epochs floor(E/2)+1..E only; lower = more likely mislabelled",
        ),
        (
            "suggested_label",
            "INTEGER",
            "the class the members settle on: the most frequent prediction over members and the "
            "late epochs floor(E/2)+1..E (ties: the given label if among them, else the smallest)",
        ),
        (
            "consensus",
            "DOUBLE",
            "fraction of those late predictions naming suggested_label, 0..1; higher = settled",
        ),
        (
            "issue_score",
            "DOUBLE",
            "how likely the given label is wrong, in logits: -late_aum, how far the largest other "
            "logit lies above the given class's late in training; higher = more likely mislabelled",
        ),
        (
            "flagged",
            "BOOLEAN",
            "likely mislabelled: issue_score > 0 (late_aum < 0) and suggested_label != label",
        ),
        (
            "el2n",
            "DOUBLE",
            "EL2N (Paul et al. 2021): mean over members of the L2 norm of softmax minus one-hot at "
            "epoch el2n_epoch (multilabel: sigmoids minus K-hot); higher = harder; NULL for logs "
            "written before the log recorded it",
        ),
        ("el2n_epoch", "INTEGER", "the early epoch el2n is taken at (`curate score --el2n-epoch`)"),
    ],
    "epoch_metrics": [
        ("run", "VARCHAR", "run"),
        ("dataset", "VARCHAR", "dataset"),
        ("split", "VARCHAR", "split"),
        ("epoch", "INTEGER", "epoch e (0 = before training)"),
        ("acc_mean", "DOUBLE", "mean member accuracy; higher = better"),
        ("acc_std", "DOUBLE", "population std of member accuracies"),
        (
            "strict_agreement",
            "DOUBLE",
            "#all-correct / #at-least-one-correct (Pliushch eq. 2); higher = more agreement",
        ),
        ("lower_bound", "DOUBLE", "1 - min(sum of member error rates, 1) (Pliushch eq. 3)"),
        (
            "random_agreement",
            "DOUBLE",
            "product of member accuracies: all-correct fraction if errors were independent",
        ),
        (
            "random_agreement_normalized",
            "DOUBLE",
            "random_agreement on strict_agreement's union-normalised scale",
        ),
        (
            "bimodality",
            "DOUBLE",
            "kurtosis - skewness^2 - 1 of TP-agreement over instances; lower = more bimodal",
        ),
        (
            "bimodality_null",
            "DOUBLE",
            "the same for independent members (Poisson-binomial, analytic)",
        ),
        ("frac_trivial", "DOUBLE", "fraction with >= M - tol members correct"),
        ("frac_in_between", "DOUBLE", "fraction neither trivial nor impossible"),
        ("frac_impossible", "DOUBLE", "fraction with <= tol members correct"),
        (
            "correct_count_hist",
            "BIGINT[]",
            "instances with exactly j = 0..M members correct (list position j + 1)",
        ),
        (
            "correct_count_null",
            "DOUBLE[]",
            "the same expected under Binomial(M, acc_mean) (Meding Fig. 3)",
        ),
        (
            "flip_rate",
            "DOUBLE",
            "fraction of (member, instance) whose correctness changed since e - 1; NULL at 0",
        ),
        (
            "label_change_rate",
            "DOUBLE",
            "fraction of (member, instance) whose prediction changed since e - 1",
        ),
        ("acc_by_member", "DOUBLE[]", "accuracy of each member (list position m + 1)"),
        ("tol", "INTEGER", "split tolerance of the frac_ columns"),
    ],
    "error_consistency": [
        ("run", "VARCHAR", "run"),
        ("split", "VARCHAR", "split"),
        ("epoch", "INTEGER", "epoch"),
        (
            "subset",
            "VARCHAR",
            "'all' instances or 'in-between' ones only (by the split at epoch E)",
        ),
        ("member_i", "INTEGER", "first member of the pair"),
        ("member_j", "INTEGER", "second member (> member_i)"),
        ("n", "BIGINT", "instances in the subset"),
        ("c_obs", "DOUBLE", "fraction where both are right or both wrong"),
        ("c_exp", "DOUBLE", "that fraction expected from their accuracies alone"),
        (
            "kappa",
            "DOUBLE",
            "(c_obs - c_exp) / (1 - c_exp), 1 when c_obs = 1; higher = errors on the same instances",
        ),
    ],
    "ensemble_comparison": [
        ("run_a", "VARCHAR", "first ensemble's run"),
        ("members_a", "INTEGER[]", "its members"),
        ("run_b", "VARCHAR", "second ensemble's run"),
        ("members_b", "INTEGER[]", "its members"),
        ("split", "VARCHAR", "split"),
        (
            "kind",
            "VARCHAR",
            "'accessibility' (correlation row), 'matched-epoch' (Hacohen Fig. 8a row) or "
            "'binned' (Fig. 11 row)",
        ),
        ("n", "BIGINT", "instances compared"),
        ("pearson_r", "DOUBLE", "Pearson r of the two accessibilities"),
        ("pearson_p", "DOUBLE", "its two-tailed p-value"),
        ("spearman_rho", "DOUBLE", "Spearman rho of the two accessibilities"),
        ("spearman_p", "DOUBLE", "its two-tailed p-value"),
        ("epoch_a", "INTEGER", "matched-epoch rows: epoch of a"),
        ("epoch_b", "INTEGER", "epoch of b whose majority-vote accuracy is within 1 % of a's"),
        ("acc_a", "DOUBLE", "majority-vote accuracy of a at epoch_a"),
        ("acc_b", "DOUBLE", "majority-vote accuracy of b at epoch_b"),
        ("both_correct", "BIGINT", "instances both majority votes get right"),
        ("only_a", "BIGINT", "instances only a gets right"),
        ("only_b", "BIGINT", "instances only b gets right"),
        (
            "bin_lo",
            "DOUBLE",
            "binned rows (Hacohen Fig. 11): lower edge of a bin of a's accessibility (n = its "
            "instances)",
        ),
        ("bin_hi", "DOUBLE", "its upper edge (the last bin includes 1)"),
        ("mean_b", "DOUBLE", "mean accessibility under b of the bin's instances"),
        ("se_b", "DOUBLE", "its standard error, std / sqrt(n)"),
    ],
    "image_stats": [
        ("dataset", "VARCHAR", "dataset"),
        ("split", "VARCHAR", "split"),
        ("idx", "INTEGER", "instance id"),
        (
            "segment_count",
            "BIGINT",
            "regions of Felzenszwalb segmentation (scale 500, sigma 0.5, min size 20); higher = more cluttered",
        ),
        (
            "mean_local_entropy",
            "DOUBLE",
            "mean Shannon entropy (bits) of the grey values in every 10x10 window; NULL below 10x10; higher = more texture",
        ),
        (
            "dct_pct",
            "DOUBLE",
            "percent of orthonormal DCT-II coefficients needed for 99.98 % of the norm; higher = more high-frequency content",
        ),
        (
            "edge_strength_sobel",
            "DOUBLE",
            "sum of Sobel gradient magnitudes of grey / 255; higher = more or stronger edges",
        ),
        ("mean_grey", "DOUBLE", "mean grey level, 0..255"),
        ("rms_contrast", "DOUBLE", "standard deviation of grey / 255"),
        ("colourfulness", "DOUBLE", "Hasler and Suesstrunk colourfulness; 0 for grey images"),
        (
            "jpeg_bytes",
            "BIGINT",
            "bytes of the image as JPEG at quality 90: compression-based complexity",
        ),
        ("jpeg_bits_per_pixel", "DOUBLE", "jpeg_bytes * 8 / (height * width)"),
        ("stats_note", "VARCHAR", "why a statistic is missing, when one is"),
        (
            "edge_strength_pmi",
            "DOUBLE",
            "sum of the crisp-boundary map of Isola et al. 2014, speedy settings (image halved, "
            "colour + local-variance features, rho 1.25, DNCuts with up to 100 eigenvectors, max "
            "over 8 orientations; map at half resolution); PMI evaluated exactly instead of the "
            "speedy random-forest approximation, kernel pairs sampled with seed 0; images over "
            "256 px on a side shrunk to 256 first; 0 for a constant image or one whose halved size is "
            "under 8 x 8 px (or under 4 px on a side); higher = more or stronger object boundaries",
        ),
    ],
    "label_noise_eval": [
        ("run", "VARCHAR", "run"),
        ("split", "VARCHAR", "a split where some given labels differ from the true ones"),
        ("n", "BIGINT", "instances"),
        ("n_wrong", "BIGINT", "instances whose label differs from true_label"),
        ("noise_rate", "DOUBLE", "n_wrong / n"),
        (
            "auroc",
            "DOUBLE",
            "AUROC of issue_score for label != true_label; 0.5 = chance, higher = better",
        ),
        ("auroc_aum", "DOUBLE", "the same for -aum alone"),
        ("auroc_accessibility", "DOUBLE", "the same for 1 - accessibility alone"),
        ("n_flagged", "BIGINT", "instances flagged"),
        ("precision", "DOUBLE", "fraction of flagged labels that are wrong; higher = better"),
        ("recall", "DOUBLE", "fraction of wrong labels flagged; higher = better"),
        ("f1", "DOUBLE", "harmonic mean of precision and recall"),
        (
            "recovery",
            "DOUBLE",
            "among flagged wrong labels, the fraction whose suggested_label is the true label",
        ),
    ],
    "reference_agreement": [
        ("run", "VARCHAR", "run"),
        ("split", "VARCHAR", "split"),
        ("score", "VARCHAR", "the run's per-instance score (a column of instance_scores)"),
        ("reference", "VARCHAR", "the reference file"),
        ("reference_column", "VARCHAR", "the column or array of the file used"),
        ("n", "BIGINT", "instances in both (matched by idx)"),
        ("spearman", "DOUBLE", "Spearman rho between score and reference"),
        ("spearman_p", "DOUBLE", "its two-sided p-value"),
        ("pearson", "DOUBLE", "Pearson r between score and reference"),
        ("pearson_p", "DOUBLE", "its two-sided p-value"),
        (
            "auroc",
            "DOUBLE",
            "when the reference is boolean: AUROC of the score for reference = true (NULL otherwise)",
        ),
        ("created_at", "TIMESTAMP", "when `curate evaluate` ran (UTC)"),
    ],
    "score_reliability": [
        ("run", "VARCHAR", "run"),
        ("split", "VARCHAR", "split"),
        (
            "curve",
            "VARCHAR",
            "'members': split-half r of accessibility at ensemble size x; 'epochs': scores from "
            "epochs 1..x against those from every epoch",
        ),
        ("x", "INTEGER", "members m (curve 'members') or last epoch e of the prefix ('epochs')"),
        ("fraction", "DOUBLE", "x as a fraction of the run's members or scored epochs"),
        (
            "pearson",
            "DOUBLE",
            "members: mean over draws of the Pearson r between two disjoint halves (floor(m/2), "
            "ceil(m/2) members) of m members; higher = more reproducible; NULL where extrapolated",
        ),
        ("pearson_std", "DOUBLE", "members: its standard deviation over draws"),
        (
            "spearman",
            "DOUBLE",
            "members: mean split-half Spearman rho; epochs: Spearman rho of accessibility from "
            "epochs 1..x with accessibility from every epoch (1 = same ranking)",
        ),
        (
            "predicted",
            "DOUBLE",
            "members: Spearman-Brown prediction of the split-half r at size x from the r measured "
            "at the run's full size",
        ),
        ("extrapolated", "BOOLEAN", "members: x exceeds the run's members (prediction only)"),
        (
            "ddd_same",
            "DOUBLE",
            "epochs: fraction of instances whose trivial / in-between / impossible split at "
            "epoch x is the split at the last epoch",
        ),
        ("draws", "INTEGER", "members: seeded draws of m members averaged"),
    ],
    "correlations": [
        ("run", "VARCHAR", "run"),
        ("dataset", "VARCHAR", "dataset"),
        ("split", "VARCHAR", "split"),
        (
            "statistic",
            "VARCHAR",
            "image statistic (a column of image_stats) or numeric image attribute "
            "(image_attributes.attribute, e.g. scale, object_count)",
        ),
        (
            "kind",
            "VARCHAR",
            "'strict_agreement~mean_over_agreed' (Pearson over epochs, Pliushch) or 'accessibility~statistic (spearman)' (over instances)",
        ),
        ("r", "DOUBLE", "Pearson r, or Spearman rho"),
        ("p", "DOUBLE", "two-tailed p-value"),
        ("n", "BIGINT", "epochs or instances used"),
        ("epochs", "INTEGER[]", "the epochs used: e > 5 with strict agreement >= 0.20"),
        ("not_significant", "BOOLEAN", "p >= 0.001 (or too few points)"),
    ],
    "agreement_stat_curves": [
        ("run", "VARCHAR", "run"),
        ("split", "VARCHAR", "split"),
        ("statistic", "VARCHAR", "image statistic or numeric image attribute"),
        ("epoch", "INTEGER", "epoch"),
        ("strict_agreement", "DOUBLE", "strict agreement at the epoch"),
        (
            "mean_over_agreed",
            "DOUBLE",
            "mean of the statistic over the instances every member gets right (mu_f)",
        ),
    ],
    "category_agreement": [
        ("run", "VARCHAR", "run"),
        ("split", "VARCHAR", "split"),
        (
            "attribute",
            "VARCHAR",
            "class_name, or a categorical image attribute (image_attributes), e.g. "
            "illumination, pose",
        ),
        ("category", "VARCHAR", "its value"),
        ("epoch", "INTEGER", "epoch"),
        ("n", "BIGINT", "instances in the category"),
        (
            "frac_strict",
            "DOUBLE",
            "fraction of them every member gets right at the epoch; higher = learned earlier",
        ),
    ],
}

# instance_scores has no declared key (run, split, idx): an index over a million rows costs more than
# it checks, and score writes each run's rows whole, in one transaction
PRIMARY_KEYS: dict[str, tuple[str, ...]] = {
    "datasets": ("dataset",),
    "instances": ("dataset", "split", "idx"),
    "runs": ("run",),
    "members": ("run", "member"),
    "epoch_metrics": ("run", "split", "epoch"),
    "image_stats": ("dataset", "split", "idx"),
    "image_attributes": ("dataset", "split", "idx", "attribute"),
}

VIEWS = {
    "difficulty": "instances joined with instance_scores (one row per run and instance) and, when computed, image_stats",
    "trivial": "rows of difficulty with ddd = 'trivial'",
    "in_between": "rows of difficulty with ddd = 'in-between'",
    "impossible": "rows of difficulty with ddd = 'impossible'",
    "label_issues": "one row per run and instance: given and suggested class, consensus, "
    "issue_score (higher = more likely mislabelled), flagged, with aum, late_aum, accessibility, forgetting "
    "and the image's source (columns documented in instance_scores)",
    "predictions": "every run's prediction log (Parquet shards): run, pass, split, member, epoch, idx, pred, p_true, margin "
    "(pred: the predicted class, or for multilabel runs the predicted class set as a bitmask)",
}


def git_revision() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
        )
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def version_info() -> dict[str, str | None]:
    return {"version": __version__, "git_rev": git_revision()}


def create_statements() -> list[str]:
    stmts = []
    for table, cols in SCHEMA.items():
        body = [f"{c} {t}" for c, t, _ in cols]
        if table in PRIMARY_KEYS:
            body.append(f"PRIMARY KEY ({', '.join(PRIMARY_KEYS[table])})")
        stmts.append(f"CREATE TABLE IF NOT EXISTS {table} ({', '.join(body)})")
        # a catalog made by an older version gains the columns added since, at the end
        stmts += [f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {c} {t}" for c, t, _ in cols]
        for c, _, meaning in cols:
            stmts.append(
                f"COMMENT ON COLUMN {table}.{c} IS '{meaning.replace(chr(39), chr(39) * 2)}'"
            )
    return stmts


def _tables(con) -> set[str]:
    return {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}


def has_columns(con: duckdb.DuckDBPyConnection, table: str, *cols: str) -> bool:
    """Whether the table or view `table` exists with these columns (catalogs of older versions,
    opened read-only, may lack them: only a writing stage adds them)."""
    found = con.execute(
        "SELECT count(*) FROM duckdb_columns() WHERE table_name = ? AND column_name IN "
        f"({', '.join('?' for _ in cols)})",
        [table, *cols],
    ).fetchone()[0]
    return found == len(cols)


def refresh_views(con: duckdb.DuckDBPyConnection, ws: Workspace) -> None:
    """(Re)create the views; `difficulty` joins image_stats only once that table exists."""
    stats = "image_stats" in _tables(
        con
    )  # created with the schema; kept for catalogs of older versions
    con.execute(
        "CREATE OR REPLACE VIEW difficulty AS SELECT i.dataset, i.split, i.idx, i.label, i.true_label, i.class_name, "
        "i.source, i.height, i.width, i.channels, s.* EXCLUDE (dataset, split, idx, label)"
        + (", st.* EXCLUDE (dataset, split, idx)" if stats else "")
        + " FROM instance_scores s JOIN instances i USING (dataset, split, idx)"
        + (" LEFT JOIN image_stats st USING (dataset, split, idx)" if stats else "")
    )
    for view, value in (
        ("trivial", "trivial"),
        ("in_between", "in-between"),
        ("impossible", "impossible"),
    ):
        con.execute(
            f"CREATE OR REPLACE VIEW {view} AS SELECT * FROM difficulty WHERE ddd = '{value}'"
        )
    con.execute(
        "CREATE OR REPLACE VIEW label_issues AS SELECT s.run, s.dataset, s.split, s.idx, s.label, "
        "i.class_name, s.suggested_label, "
        # a multilabel suggestion is a bitmask: the names of its set bits, '+'-joined
        "CASE WHEN d.multilabel THEN array_to_string(list_filter(d.class_names, "
        "(x, k) -> (s.suggested_label >> (k - 1)) & 1 = 1), '+') "
        "ELSE d.class_names[s.suggested_label + 1] END AS suggested_class, "
        "s.consensus, s.issue_score, s.flagged, s.aum, s.late_aum, s.accessibility, s.forgetting_events, "
        "i.true_label, i.source FROM instance_scores s JOIN instances i USING (dataset, split, idx) "
        "JOIN datasets d USING (dataset)"
    )
    shards = _has_log(ws)
    if shards:
        con.execute(f"CREATE OR REPLACE VIEW predictions AS {_predictions_sql(ws)}")
    for view, meaning in VIEWS.items():
        if view != "predictions" or shards:
            con.execute(f"COMMENT ON VIEW {view} IS '{meaning.replace(chr(39), chr(39) * 2)}'")


def _has_log(ws: Workspace) -> bool:
    return next((ws.root / "runs").glob("*/predictions/*/*/*/*/part.parquet"), None) is not None


def _predictions_sql(ws: Workspace) -> str:
    """The SELECT behind the `predictions` view: every Parquet shard of the workspace's runs."""
    pattern = str(ws.root / "runs") + "/*/predictions/*/*/*/*/part.parquet"
    return (
        "SELECT regexp_extract(filename, '/runs/([^/]+)/predictions/', 1) AS run, pass, split, "
        "CAST(member AS INTEGER) AS member, CAST(epoch AS INTEGER) AS epoch, idx, pred, p_true, "
        f"margin FROM read_parquet('{pattern.replace(chr(39), chr(39) * 2)}', "
        # union_by_name: multilabel logs store pred as int32, the others as int16
        "hive_partitioning = true, filename = true, union_by_name = true)"
    )


def ensure_schema(con: duckdb.DuckDBPyConnection, ws: Workspace | None = None) -> None:
    for stmt in create_statements():
        con.execute(stmt)
    if ws is not None:
        refresh_views(con, ws)


# How long a stage waits for a catalog another process holds (the app between two queries, a
# `curate query`, another stage) before it gives up; seconds, `$CURATE_CATALOG_TIMEOUT` overrides.
BUSY_TIMEOUT = 120.0


def _busy_timeout() -> float:
    try:
        value = float(os.environ.get("CURATE_CATALOG_TIMEOUT", BUSY_TIMEOUT))
    except ValueError:
        return BUSY_TIMEOUT
    return value if 0 <= value < float("inf") else BUSY_TIMEOUT  # nan, negative: the default


def _connect_waiting(ws: Workspace, what: str, **kwargs) -> duckdb.DuckDBPyConnection:
    """duckdb.connect, waiting (bounded, with one message) while another process holds the file."""
    deadline, told = time.monotonic() + _busy_timeout(), False
    while True:
        try:
            return duckdb.connect(str(ws.catalog), **kwargs)
        except duckdb.IOException as e:
            msg = str(e)
            if "lock" not in msg.lower():
                raise CurateError(f"cannot open the catalog {ws.catalog} {what}: {msg}") from None
            holder = re.search(r"PID (\d+)", msg)
            who = f"process {holder.group(1)}" if holder else "another process"
            if time.monotonic() > deadline:
                raise CurateError(
                    f"the catalog {ws.catalog} is still held by {who} after "
                    f"{_busy_timeout():.0f} s; stop it (the app? another curate command?) and "
                    "rerun, or raise $CURATE_CATALOG_TIMEOUT"
                ) from None
            if not told:
                print(
                    f"the catalog {ws.catalog} is busy ({who}); waiting up to "
                    f"{_busy_timeout():.0f} s to open it {what}",
                    file=sys.stderr,
                )
                told = True
            time.sleep(0.1)


def _rollback_quietly(con: duckdb.DuckDBPyConnection) -> None:
    try:
        con.execute("ROLLBACK")
    except duckdb.Error:
        pass  # a failed COMMIT has already ended the transaction; keep the first error


@contextmanager
def write(ws: Workspace):
    """Open the catalog for writing, inside one transaction: all of the block's changes or none.

    Waits (up to `$CURATE_CATALOG_TIMEOUT` seconds) while a reader or another stage holds the file.
    """
    ws.root.mkdir(parents=True, exist_ok=True)
    con = _connect_waiting(ws, "for writing")
    try:
        ensure_schema(con, ws)
        con.execute("BEGIN TRANSACTION")
        try:
            yield con
            con.execute("COMMIT")
        except BaseException:
            _rollback_quietly(con)
            raise
    finally:
        con.close()


def check_writable(ws: Workspace) -> None:
    """Open and close the catalog for writing: a stage that will record its result checks first.

    A workspace without a catalog has nothing to check (the stage's own inputs are missing).
    """
    if ws.catalog.exists():
        with write(ws):
            pass


class Reader:
    """A read-only catalog connection that can do nothing else.

    The connection itself is sandboxed by DuckDB (`read_only`, no external access except the
    workspace's `runs/` folder, where the prediction log lives, no extensions, configuration
    locked); on top, every call runs exactly one SELECT statement, as DuckDB's parser classifies
    it, so neither COPY nor ATTACH, SET, PRAGMA, INSTALL or LOAD gets through. Close it (or use it
    as a context manager) as soon as the query is done: while it is open, no stage can write.
    """

    def __init__(self, con: duckdb.DuckDBPyConnection):
        self._con = con

    def execute(self, sql: str, params: list | tuple | dict | None = None):
        """Run one SELECT; returns the DuckDB connection, ready for .df(), .fetchall(), ..."""
        check_select(self._con, sql)
        return self._con.execute(sql, params) if params else self._con.execute(sql)

    def close(self) -> None:
        self._con.close()

    def __enter__(self) -> Reader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


_READ_ONLY_KINDS = ("SELECT",)


def check_select(con: duckdb.DuckDBPyConnection, sql: str) -> None:
    """Raise a CurateError unless `sql` is exactly one SELECT statement (DuckDB's own parse)."""
    try:
        statements = con.extract_statements(sql)
    except duckdb.Error as e:
        raise CurateError(
            f"SQL error: {str(e).splitlines()[0]}. Check the statement; "
            "`curate query --tables` lists tables and columns"
        ) from None
    if len(statements) != 1:
        raise CurateError(f"one statement per query, got {len(statements)}; run them one at a time")
    kind = statements[0].type.name
    if kind not in _READ_ONLY_KINDS:
        raise CurateError(
            f"not allowed: a {kind} statement. Queries here are read-only: one SELECT (or WITH "
            "... SELECT, DESCRIBE, SUMMARIZE) over the catalog; no COPY, ATTACH, SET, PRAGMA, "
            "INSTALL, LOAD or writes. Tables are written by the curate stages"
        )


def read(ws: Workspace) -> Reader:
    """Open the catalog read-only and sandboxed (see `Reader`); a clear error when there is none."""
    if not ws.catalog.exists():
        raise CurateError(
            f"no catalog at {ws.catalog}; run `curate ingest digits --workspace {ws.root}` "
            "(or `make scores`) first, or pass the right --workspace"
        )
    con = _connect_waiting(ws, "for reading", read_only=True)
    try:
        _sandbox(con, ws)
        _local_predictions(con, ws)
    except BaseException:
        con.close()
        raise
    return Reader(con)


def _local_predictions(con: duckdb.DuckDBPyConnection, ws: Workspace) -> None:
    """A workspace that was moved or copied still names the old log in its `predictions` view:
    shadow it, for this reader only, with a view over this workspace's own log."""
    row = con.execute(
        "SELECT sql FROM duckdb_views() WHERE view_name = 'predictions' AND NOT temporary"
    ).fetchone()
    here = (str(ws.root / "runs") + "/*/predictions/").replace("'", "''")
    if row is not None and here not in row[0] and _has_log(ws):
        con.execute(f"CREATE OR REPLACE TEMP VIEW predictions AS {_predictions_sql(ws)}")


def _sandbox(con: duckdb.DuckDBPyConnection, ws: Workspace) -> None:
    """No file access but the prediction log under runs/ (and the catalog itself), then lock it."""
    try:
        con.execute("SET autoinstall_known_extensions = false")
        con.execute("SET autoload_known_extensions = false")
        con.execute("SET allowed_directories = ?", [[str(ws.root / "runs") + "/"]])
        con.execute("SET enable_external_access = false")
        con.execute("SET lock_configuration = true")
    except duckdb.InvalidInputException:
        # a second reader in this process shares the first one's database instance, already locked
        ext, locked = con.execute(
            "SELECT current_setting('enable_external_access'), current_setting('lock_configuration')"
        ).fetchone()
        if ext or not locked:
            raise CurateError(
                f"the catalog {ws.catalog} is open for writing in this process; close it first"
            ) from None


def column_doc(table: str, column: str) -> str | None:
    for c, _, meaning in SCHEMA.get(table, []):
        if c == column:
            return meaning
    return None


def split_labels(ws: Workspace, dataset: str, split: str, column: str = "label"):
    """(idx, label) int64 arrays of a split, in idx order (the row order of its .beton);
    column="true_label" gives the source's own labels instead."""
    import numpy as np

    if column not in ("label", "true_label"):
        raise ValueError(column)
    con = read(ws)
    try:
        df = con.execute(
            f"SELECT idx, {column} AS label FROM instances WHERE dataset = ? AND split = ? "
            "ORDER BY idx",  # column is one of two constants
            [dataset, split],
        ).df()
    finally:
        con.close()
    return df["idx"].to_numpy(np.int64), df["label"].to_numpy(np.int64)
