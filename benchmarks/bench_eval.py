"""The evaluation pass against the training epoch it follows: 8 fused LeNet-5 members on CIFAR-10.

After every epoch the eval pass runs every member on all 60,000 train and test images and writes
the prediction log. Its arithmetic is a forward pass over 1.2x the images an epoch trains on, so
about 0.4 of the epoch's (a forward is about a third of forward + backward). The baseline is the
shared-input pass as it was: the batch copied once per member into a grouped convolution. Ours runs
the first layer once, dense, over the members' stacked filters, under inference mode. Both run in
this script on the same batches; the log they produce is compared value for value.

    python benchmarks/bench_eval.py [--threads 2] [--train-steps 40]

Needs ../shared/data/cifar10-jpeg.tar.gz (ingested into benchmarks/.work/eval once). Figures go to
benchmarks/results/eval.json.
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--train-steps", type=int, default=40, help="training steps timed")
    ap.add_argument("--work", default=str(ROOT / "benchmarks" / ".work" / "eval"))
    args = ap.parse_args()
    if not CIFAR.exists():
        sys.exit(f"{CIFAR} is absent (shared data)")

    import itertools

    import numpy as np
    import torch
    import torch.nn.functional as F

    import curate.train.learners  # noqa: F401  (registers the learners)
    from curate.cli import main as curate
    from curate.config import load_recipe
    from curate.data.loader import dataset_info
    from curate.train.feed import make_feed
    from curate.train.learner import TrainSetup, learner_class
    from curate.train.logits import Collector
    from curate.train.seeds import member_seeds
    from curate.workspace import Workspace

    ws = Workspace(args.work)
    if not ws.beton("cifar10", "train").exists():
        assert (
            curate(
                ["ingest", "imagefolder", "--source", str(CIFAR), "--name", "cifar10"]
                + ["--workspace", args.work]
            )
            == 0
        )
    torch.set_num_threads(args.threads)
    load_before = __import__("os").getloadavg()[0]  # > 0.5: something else is running
    m = 8
    recipe = load_recipe(
        "digits",
        {
            "dataset": {"format": "imagefolder", "name": "cifar10"},
            "train": {"arch": "lenet5", "members": m, "strategy": "fused"},
            "loader": {"batch_size": 128, "eval_batch_size": 1024},
        },
    )
    info = dataset_info("cifar10", ws)
    dev = torch.device("cpu")
    seeds = {k: member_seeds(0, k) for k in range(m)}
    feed = make_feed(info, ws, recipe, dev, seeds)
    unit = learner_class("fused")(TrainSetup(recipe, info, feed, seeds, dev)).build(list(range(m)))
    model = unit.model

    # training: seconds per image of one member-batch step, extrapolated to the 50,000-image epoch
    model.train()
    steps = list(itertools.islice(feed.train_batches(unit.members, 1), args.train_steps + 2))
    for i, (x, y, _) in enumerate(steps):
        if i == 2:
            t0 = time.perf_counter()
        logits = model(x)
        loss = sum(F.cross_entropy(logits[:, j], y[j]) for j in range(m))
        unit.opt.zero_grad(set_to_none=True)
        loss.backward()
        unit.opt.step()
    per_image_train = (time.perf_counter() - t0) / (args.train_steps * recipe.loader.batch_size)
    epoch_s = per_image_train * info.splits["train"]

    # the eval pass, both ways, over every image of both splits, with the log's statistics
    model.eval()

    def baseline(x):
        with torch.no_grad():
            return model(x.unsqueeze(0).expand(m, *x.shape)).float()

    def ours(x):
        with torch.inference_mode():
            return model.forward_shared(x).float()

    out = {}
    for name, fn in (("baseline", baseline), ("ours", ours)):
        fn(next(iter(feed.eval_batches("test")))[0])  # warm-up
        t0 = time.perf_counter()
        preds = {}
        for split in ("train", "test"):
            col = Collector()
            for x, y, i in feed.eval_batches(split):
                col.add(fn(x), y, i)
            preds[split] = col.result()
        out[name] = (time.perf_counter() - t0, preds)
        print(f"{name}: eval pass over 60,000 images {out[name][0]:.1f} s", flush=True)
    same = all(
        np.array_equal(out["baseline"][1][s].pred, out["ours"][1][s].pred)
        and np.allclose(out["baseline"][1][s].margin, out["ours"][1][s].margin, atol=1e-4)
        for s in ("train", "test")
    )
    res = {
        "load_average_before": load_before,
        "load_average_after": __import__("os").getloadavg()[0],
        "machine_threads": args.threads,
        "train_epoch_s_extrapolated": epoch_s,
        "train_us_per_image_8_members": per_image_train * 1e6,
        "eval_s_baseline": out["baseline"][0],
        "eval_s_ours": out["ours"][0],
        "eval_over_epoch_baseline": out["baseline"][0] / epoch_s,
        "eval_over_epoch_ours": out["ours"][0] / epoch_s,
        "speedup": out["baseline"][0] / out["ours"][0],
        "same_predictions": bool(same),
    }
    print(
        f"training epoch (50,000 images, 8 members) {epoch_s:.1f} s; eval pass: baseline "
        f"{res['eval_s_baseline']:.1f} s = {res['eval_over_epoch_baseline']:.2f} of the epoch, ours "
        f"{res['eval_s_ours']:.1f} s = {res['eval_over_epoch_ours']:.2f}; {res['speedup']:.2f}x; "
        f"same predictions: {same}"
    )
    dest = ROOT / "benchmarks" / "results" / "eval.json"
    dest.write_text(json.dumps(res, indent=1) + "\n")
    print(f"wrote {dest}")


if __name__ == "__main__":
    main()
