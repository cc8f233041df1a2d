"""The Recorder's cost inside a user's evaluation pass, on CIFAR-10-size splits.

A user's eval pass after an epoch: a small real conv net (curate's `fastconv`, 0.3 M parameters)
over 50,000 train and 10,000 test 32x32 RGB images in batches of 500, normalised per batch as a
loader would. The same pass runs twice per member in this one process, alternating: once bare,
once calling `rec.log(split, member, epoch, idx, logits)` on every batch (which computes the
prediction, p_true and margin, checks the batch and writes each part's Parquet shard when its
split is complete). The ratio is the time spent inside `rec.log` (timed around each call, so it
counts the shard writes too) over the rest of the same pass (the net's forward and the batches,
under the same machine load); its ratio to the bare pass and the wall-clock difference of the two
passes are printed beside it (noisier: other work on the machine moves them).

    python benchmarks/bench_record.py [--threads 2] [--members 2] [--images synthetic|cifar]
    python benchmarks/bench_record.py --case sharded [--repeats 3]

--case sharded times sharded recording: each rank's wall time of an eval pass (a small MLP's
forward on one thread, `rec.log`, then `rec.end_pass`: its file, the barrier, rank 0's merge into
the part) over its DistributedSampler share of the 60,000 instances, with 2 gloo ranks
(torch.multiprocessing) against 1 process recording the same splits whole; the slowest rank over
the one process is the ratio (target <= 0.6), the seconds inside the recorder beside it. It is
added to record.json beside the other figures.

--images cifar uses ../shared/data/cifar10-jpeg.tar.gz (decoded once into benchmarks/.work);
synthetic (default) draws uniform random pixels: the net's arithmetic does not depend on them.
Figures go to benchmarks/results/record.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
CIFAR = ROOT.parent / "shared" / "data" / "cifar10-jpeg.tar.gz"
SIZES = {"train": 50_000, "test": 10_000}


def cifar_images(work: Path):
    """(images (N, 32, 32, 3) uint8, labels) per split, from the shared JPEG folder."""
    import tarfile

    import numpy as np
    from PIL import Image

    cache = work / "cifar10.npz"
    if cache.exists():
        z = np.load(cache)
        return {s: (z[f"{s}_x"], z[f"{s}_y"]) for s in SIZES}
    out = {}
    with tarfile.open(CIFAR) as tar:
        members = [m for m in tar.getmembers() if m.name.endswith(".jpg")]
        names = sorted({m.name.split("/")[-2] for m in members})
        for split in SIZES:
            rows = sorted(
                (int(Path(m.name).stem), names.index(m.name.split("/")[-2]), m)
                for m in members
                if m.name.split("/")[-3] == split
            )
            x = np.stack(
                [np.asarray(Image.open(tar.extractfile(m)).convert("RGB")) for _, _, m in rows]
            )
            out[split] = (x, np.array([c for _, c, _ in rows]))
    np.savez(
        cache,
        **{f"{s}_x": v[0] for s, v in out.items()},
        **{f"{s}_y": v[1] for s, v in out.items()},
    )
    return out


def _record_share(rank: int, world: int, ws: str, run: str, repeats: int, out) -> None:
    """Record `repeats` epochs of member 0 as rank `rank` of `world`; put (rank, seconds)."""
    import numpy as np
    import torch

    from curate.record.recorder import Recorder

    torch.set_num_threads(1)
    if world > 1:
        import torch.distributed as dist

        dist.init_process_group("gloo", rank=rank, world_size=world)
    rec = Recorder(ws, run=run, dataset="cifar-size", members=2, epochs=repeats, distributed=True)
    torch.manual_seed(0)  # the same weights on every rank: padded repeats agree
    model = torch.nn.Sequential(
        torch.nn.Flatten(),
        torch.nn.Linear(3 * 32 * 32, 256),
        torch.nn.ReLU(),
        torch.nn.Linear(256, 10),
    ).eval()
    batches = {}
    for split, n in SIZES.items():
        share = np.asarray(list(torch.utils.data.DistributedSampler(range(n), world, rank, False)))
        px = np.random.default_rng(1).integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)[share]
        chunks = np.array_split(np.arange(len(share)), max(1, len(share) // 500))
        batches[split] = [(torch.from_numpy(share[c]), torch.from_numpy(px[c])) for c in chunks]
    seconds = inside = 0.0
    for e in range(repeats):
        if world > 1:
            dist.barrier()  # the ranks start each pass together
        t0 = time.perf_counter()
        with torch.inference_mode():
            for split, bs in batches.items():
                for idx, x in bs:
                    z = model((x.float() - 128) / 64)
                    t1 = time.perf_counter()
                    rec.log(split, 0, e, idx, z)
                    inside += time.perf_counter() - t1
        t1 = time.perf_counter()
        rec.end_pass(0, e)
        inside += time.perf_counter() - t1
        seconds += time.perf_counter() - t0
    assert all(rec.done(s, 0, e) for s in SIZES for e in range(repeats))
    rec.close()
    if world > 1:
        dist.destroy_process_group()
    out.put((rank, seconds, inside))


def sharded_case(args, ws: Path) -> dict:
    """Each rank's recording wall time with 2 ranks, over 1 process recording the same splits."""
    import os

    import torch.multiprocessing as mp

    ctx = mp.get_context("spawn")
    q = ctx.SimpleQueue()
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", "29533")
    _record_share(0, 1, str(ws), "sharded-1", args.repeats, q)
    _, one, one_inside = q.get()
    procs = [ctx.Process(target=_record_share, args=(r, 2, str(ws), "sharded-2", args.repeats, q))
             for r in range(2)]  # fmt: skip
    for p in procs:
        p.start()
    got = sorted(q.get() for _ in procs)
    per_rank = {r: t for r, t, _ in got}
    inside = [i for _, _, i in got]
    for p in procs:
        p.join()
    ratio = max(per_rank.values()) / one
    print(
        f"sharded eval pass: 1 process {one:.2f} s ({one_inside:.2f} s recording), 2 ranks "
        f"{per_rank[0]:.2f} / {per_rank[1]:.2f} s ({inside[0]:.2f} / {inside[1]:.2f} s recording; "
        f"rank 0 merges); slowest rank / 1 process = {ratio:.2f} (target <= 0.6)"
    )
    return {
        "what": "sharded recording: each rank's wall time of the eval pass (an MLP 3072-256-10 "
        "forward, one thread, + rec.log + rec.end_pass) over its DistributedSampler share of "
        f"50,000 + 10,000 instances (batches of 500, {args.repeats} passes), 2 gloo ranks "
        "against 1 process recording the splits whole; *_recording_seconds: inside rec.log and "
        "rec.end_pass (its file, the barrier, rank 0's merge)",
        "one_process_seconds": one,
        "rank_seconds": [per_rank[0], per_rank[1]],
        "one_process_recording_seconds": one_inside,
        "rank_recording_seconds": inside,
        "slowest_rank_over_one_process": ratio,
        "target": 0.6,
        "within_target": ratio <= 0.6,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--case", choices=["pass", "sharded"], default="pass")
    ap.add_argument("--repeats", type=int, default=3, help="--case sharded: passes timed")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--members", type=int, default=1, help="members timed (each: both passes)")
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--images", choices=["synthetic", "cifar"], default="synthetic")
    ap.add_argument("--work", default=str(ROOT / "benchmarks" / ".work" / "record"))
    args = ap.parse_args()

    import numpy as np
    import pandas as pd
    import torch

    from curate.data.labels_only import ingest_labels
    from curate.record.recorder import Recorder
    from curate.train.models import build_model

    torch.set_num_threads(args.threads)
    work = Path(args.work)
    if work.exists():
        shutil.rmtree(work / "ws", ignore_errors=True)
    work.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    if args.images == "cifar":
        if not CIFAR.exists():
            sys.exit(f"{CIFAR} is absent (shared data); use --images synthetic")
        data = cifar_images(work)
    else:
        data = {
            s: (rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8), rng.integers(0, 10, n))
            for s, n in SIZES.items()
        }
    rows = [(s, i, int(y)) for s, (_, ys) in data.items() for i, y in enumerate(ys)]
    pd.DataFrame(rows, columns=["split", "idx", "label"]).to_csv(work / "labels.csv", index=False)
    ws = work / "ws"
    ingest_labels(ws, "cifar-size", str(work / "labels.csv"))
    dest = ROOT / "benchmarks" / "results" / "record.json"
    if args.case == "sharded":
        res = json.loads(dest.read_text()) if dest.exists() else {}
        res["sharded"] = sharded_case(args, ws)
        dest.write_text(json.dumps(res, indent=1) + "\n")
        print(f"figures in {dest}")
        return
    tensors = {
        s: torch.from_numpy(x).permute(0, 3, 1, 2).contiguous() for s, (x, _) in data.items()
    }
    mean = torch.tensor([125.3, 123.0, 113.9]).view(1, 3, 1, 1)
    std = torch.tensor([63.0, 62.1, 66.7]).view(1, 3, 1, 1)
    # a run has at least 2 members; the ones not timed stay unrecorded
    rec = Recorder(ws, run="bench", dataset="cifar-size", members=max(2, args.members), epochs=1)

    def eval_pass(model, member: int | None) -> tuple[float, float]:
        """(wall seconds of the pass, seconds inside rec.log)."""
        inside = 0.0
        t0 = time.perf_counter()
        with torch.inference_mode():
            for split, x in tensors.items():
                for s in range(0, len(x), args.batch):
                    xb = (x[s : s + args.batch].float() - mean) / std
                    logits = model(xb.contiguous(memory_format=torch.channels_last))
                    if member is not None:
                        idx = torch.arange(s, s + len(xb))
                        t1 = time.perf_counter()
                        rec.log(split, member, 0, idx, logits)
                        inside += time.perf_counter() - t1
        return time.perf_counter() - t0, inside

    bare, recorded, inside = [], [], []
    for m in range(args.members):
        torch.manual_seed(m)
        model = build_model("fastconv", (3, 32, 32), 10).eval()
        model = model.to(memory_format=torch.channels_last)
        with torch.inference_mode():  # warm-up: first-call allocations
            model(torch.zeros(args.batch, 3, 32, 32).contiguous(memory_format=torch.channels_last))
        b, _ = eval_pass(model, None)
        r, i = eval_pass(model, m)
        bare.append(b)
        recorded.append(r)
        inside.append(i)
        print(f"member {m}: bare pass {b:.2f} s, with the recorder {r:.2f} s ({i:.3f} s in log)")
    assert all(rec.done(s, m, 0) for s in SIZES for m in range(args.members))
    rec.close()
    # the recorder's time over the rest of the same pass (same machine load), and over the bare one
    ratio = sum(inside) / (sum(recorded) - sum(inside))
    vs_bare = sum(inside) / sum(bare)
    wall = sum(recorded) / sum(bare) - 1
    res = {
        "what": "Recorder cost inside a user's eval pass: fastconv on 50,000 + 10,000 32x32 images",
        "images": args.images,
        "threads": args.threads,
        "batch": args.batch,
        "members": args.members,
        "bare_pass_seconds": bare,
        "recorded_pass_seconds": recorded,
        "seconds_inside_log": inside,
        "log_over_rest_of_pass": ratio,
        "log_over_bare_pass": vs_bare,
        "wall_clock_overhead": wall,
        "budget": 0.05,
        "within_budget": ratio <= 0.05,
    }
    print(
        f"recorder cost: {ratio:.2%} of the eval pass (time inside rec.log / the rest of the "
        f"same pass; budget 5 %); {vs_bare:.2%} of the bare pass; wall-clock difference "
        f"{wall:+.2%} (moved by other load on the machine)"
    )
    if dest.exists() and "sharded" in (old := json.loads(dest.read_text())):
        res["sharded"] = old["sharded"]  # the other case's figures stay
    dest.write_text(json.dumps(res, indent=1) + "\n")
    print(f"figures in {dest}")


if __name__ == "__main__":
    main()
