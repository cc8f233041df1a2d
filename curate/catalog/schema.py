"""The catalog's schema: every table, every column's meaning, and its versioned migration.

`SCHEMA` is the one place a table or a column is declared; column comments say units and direction
("higher = easier"). A catalog records in its `catalog_meta` table the `schema_version` (and a digest
of the statements) it was brought to; a writer whose catalog already holds the current version and
digest runs none of the CREATE/ALTER/COMMENT statements, so they run once per version instead of on
every write.

How to change the schema
------------------------
- A new column or table: append it to its table's list in `SCHEMA` (new columns at the end of an
  existing table: older catalogs gain them there with ALTER TABLE ... ADD COLUMN), then bump
  `SCHEMA_VERSION`. `create_statements()` is idempotent (IF NOT EXISTS everywhere), so a catalog
  of any older version is brought up to date by running it once.
- Anything else (a backfill, a rename, a changed type): append a block
  `MIGRATIONS[<new version>] = [<SQL statements>]` and bump `SCHEMA_VERSION` to that number. The
  blocks above a catalog's stored version run, in order, after `create_statements()`, inside the
  same open.
- Forgetting the bump is harmless: the stored digest of `create_statements()` differs, and the
  statements run again (once). Writes never rely on column order: see `insert_frame`.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

import duckdb

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

# table -> [(column, SQL type, meaning)]. The primary key is listed in PRIMARY_KEYS.
SCHEMA: dict[str, list[tuple[str, str, str]]] = {
    "datasets": [
        ("dataset", "VARCHAR", "catalog name of the dataset"),
        (
            "format",
            "VARCHAR",
            "ingest format: digits, mnist, cifar10, imagefolder, imagenet, ...; labels for a "
            "dataset registered from its labels alone (`curate ingest labels`)",
        ),
        ("source", "VARCHAR", "where the raw data came from (path, or 'sklearn' / 'synthetic')"),
        ("num_classes", "INTEGER", "number of classes K"),
        ("class_names", "VARCHAR[]", "class names, position = label"),
        ("splits", "VARCHAR[]", "split names, e.g. [train, test]"),
        ("counts", "BIGINT[]", "instances per split, in the order of `splits`"),
        (
            "storage",
            "VARCHAR",
            "how images are stored in the .beton: raw-uint8, float32 or jpeg; none when no "
            "pixels are stored (registered from labels alone)",
        ),
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
        (
            "strategy",
            "VARCHAR",
            "the learner: fused (members in one model), separate (one model each), adaboost, "
            "gboost; recorder for a run recorded in the user's own loop or imported logits",
        ),
        ("device", "VARCHAR", "cpu or cuda"),
        (
            "world_size",
            "INTEGER",
            "processes of the job that trained and recorded it: torchrun's ranks (torch.distributed's "
            "world size, else $WORLD_SIZE), 1 for one process, whether `curate train` or "
            "curate.Recorder recorded it; NULL for an imported log (trained elsewhere)",
        ),
        ("recipe", "JSON", "dataset, loader and train settings of the run"),
        (
            "path",
            "VARCHAR",
            "the run folder: manifest (run.json), prediction log, progress records, checkpoints",
        ),
        (
            "train_seconds",
            "DOUBLE",
            "sum of members.train_seconds: the wall time of every process that trained the run "
            "(its epochs' training and evaluation passes), summed over processes (ranks), each "
            "second counted once whether members trained fused or one by one; seconds; NULL for "
            "an imported log",
        ),
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
            "the member's share of the wall time of its epochs (training and evaluation pass), "
            "seconds: an epoch of members trained together (fused) is divided equally among them, "
            "so the members add up to runs.train_seconds; recorded runs (curate.Recorder): the "
            "time from the previous epoch the recorder completed to this one; NULL for an "
            "imported log",
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
            "likely mislabelled: among the instances whose suggested_label != label, in each "
            "class the label_noise_estimate.est_wrong with the highest issue_score (confident "
            "learning on the late epochs, docs/concepts.md); multilabel or logs without p_true: "
            "issue_score > 0 and suggested_label != label",
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
    "label_noise_estimate": [
        ("run", "VARCHAR", "run"),
        ("split", "VARCHAR", "split"),
        ("label", "INTEGER", "the given class"),
        ("n", "BIGINT", "instances labelled so"),
        (
            "est_wrong",
            "DOUBLE",
            "estimated wrong labels among them: confident learning on the members' late-epoch "
            "probabilities, the calibrated joint's off-diagonal share of the class times n",
        ),
        ("noise_rate", "DOUBLE", "est_wrong / n: the estimated fraction of the class mislabelled"),
        (
            "n_flagged",
            "BIGINT",
            "instances of the class flagged (about est_wrong, at most the "
            "candidates: suggested_label != label)",
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
    "label_noise_estimate": ("run", "split", "label"),
}

# Bump on every change to SCHEMA or MIGRATIONS (see the module docstring). Catalogs made before the
# version row existed have none: they count as version 0 and migrate on their first write.
SCHEMA_VERSION = 5  # 5: label_noise_estimate; flagged follows it

# version -> statements run (once, in version order) when a catalog of an older version is opened
# for writing, after create_statements(). Append new blocks at the end.
MIGRATIONS: dict[int, list[str]] = {
    # 2: pruning. The train subset a run trained on (runs.subset, runs.subset_info) and EL2N
    # (instance_scores.el2n, el2n_epoch); create_statements() adds them too, these say so
    2: [
        "ALTER TABLE runs ADD COLUMN IF NOT EXISTS subset VARCHAR",
        "ALTER TABLE runs ADD COLUMN IF NOT EXISTS subset_info JSON",
        "ALTER TABLE instance_scores ADD COLUMN IF NOT EXISTS el2n DOUBLE",
        "ALTER TABLE instance_scores ADD COLUMN IF NOT EXISTS el2n_epoch INTEGER",
    ],
}

META_TABLE = "catalog_meta"


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


def schema_digest() -> str:
    """BLAKE2b of every schema statement and migration: changes whenever SCHEMA does."""
    h = hashlib.blake2b(digest_size=16)
    for stmt in create_statements():
        h.update(stmt.encode() + b"\0")
    for version in sorted(MIGRATIONS):
        for stmt in MIGRATIONS[version]:
            h.update(f"{version}:{stmt}".encode() + b"\0")
    return h.hexdigest()


def stored_version(con: duckdb.DuckDBPyConnection) -> tuple[int, str | None]:
    """(schema_version, digest) recorded in the catalog; (0, None) for a catalog without them."""
    if META_TABLE not in _tables(con):
        return 0, None
    rows = dict(con.execute(f"SELECT key, value FROM {META_TABLE}").fetchall())
    try:
        version = int(rows.get("schema_version", 0))
    except ValueError:
        version = 0
    return version, rows.get("schema_digest")


def migrate(con: duckdb.DuckDBPyConnection) -> bool:
    """Bring the catalog's tables to `SCHEMA_VERSION`, unless it is there already.

    Parameters
    ----------
    con : duckdb.DuckDBPyConnection
        A writable connection.

    Returns
    -------
    bool
        True when statements ran, False when the catalog was up to date.
    """
    version, digest = stored_version(con)
    if version >= SCHEMA_VERSION and digest == schema_digest():
        return False
    for stmt in create_statements():
        con.execute(stmt)
    for v in sorted(MIGRATIONS):
        if v > version:
            for stmt in MIGRATIONS[v]:
                con.execute(stmt)
    con.execute(f"CREATE TABLE IF NOT EXISTS {META_TABLE} (key VARCHAR PRIMARY KEY, value VARCHAR)")
    con.execute(f"COMMENT ON TABLE {META_TABLE} IS 'facts about the catalog itself'")
    con.execute(
        f"COMMENT ON COLUMN {META_TABLE}.key IS 'schema_version (of curate.catalog.schema) or "
        "schema_digest (of its statements)'"
    )
    con.execute(f"COMMENT ON COLUMN {META_TABLE}.value IS 'its value, as text'")
    con.execute(
        f"INSERT OR REPLACE INTO {META_TABLE} VALUES ('schema_version', ?), ('schema_digest', ?)",
        [str(max(version, SCHEMA_VERSION)), schema_digest()],
    )
    return True


def insert_frame(
    con: duckdb.DuckDBPyConnection,
    table: str,
    df: pd.DataFrame | pa.Table,
    *,
    now: tuple[str, ...] = (),
) -> int:
    """Append the rows of `df` to the catalog table `table`, matching columns by name.

    The frame's columns are checked against `SCHEMA` (a column it does not declare is a programming
    error) and put in the schema's order, then inserted with `INSERT INTO ... BY NAME`, so neither
    the frame's column order nor the table's (a migrated table has its late columns at its end)
    matters. Columns the frame lacks are NULL. The one way the package writes rows.

    Parameters
    ----------
    con : duckdb.DuckDBPyConnection
        A writable connection (inside the stage's transaction).
    table : str
        A table of `SCHEMA`.
    df : pandas.DataFrame or pyarrow.Table
        The rows; column names as in `SCHEMA`.
    now : tuple of str
        TIMESTAMP columns set to the transaction's `now()` (local time), not taken from `df`.

    Returns
    -------
    int
        The number of rows inserted.
    """
    if table not in SCHEMA:
        raise ValueError(f"{table} is not a catalog table")
    order = [c for c, _, _ in SCHEMA[table]]
    arrow = hasattr(df, "column_names")  # a pyarrow.Table (the score tables are built as Arrow)
    names = list(df.column_names) if arrow else [str(c) for c in df.columns]
    unknown = [c for c in [*names, *now] if c not in order]
    clash = [c for c in now if c in names]
    if unknown or clash:
        raise ValueError(
            f"insert into {table}: columns {unknown} are not in its schema"
            if unknown
            else f"insert into {table}: {clash} are set to now() and must not be in the frame"
        )
    ordered = [c for c in order if c in names]
    frame = df.select(ordered) if arrow else df[ordered]
    stamps = "".join(f", now()::TIMESTAMP AS {c}" for c in now)  # names checked above
    con.register("_insert_frame", frame)
    try:
        con.execute(f"INSERT INTO {table} BY NAME SELECT *{stamps} FROM _insert_frame")
    finally:
        con.unregister("_insert_frame")
    return len(frame)


def column_doc(table: str, column: str) -> str | None:
    for c, _, meaning in SCHEMA.get(table, []):
        if c == column:
            return meaning
    return None
