"""What bf16 autocast buys on this CPU: one training step (forward, backward, SGD update) of a
LeNet-5 and of a small-stvgg, fp32 against bf16 autocast, in one process, alternating, on the same
random batch of 256 CIFAR-sized images, one thread. The CPU's bf16 flags are recorded beside the
ratio: `train.precision = auto` picks bf16 only where `amx_bf16` or `avx512_bf16` is present, since
elsewhere bf16 is emulated and slower.

    python benchmarks/bench_bf16_step.py [--repeats 7] [--threads 1]

Figures go to benchmarks/results/bf16_step.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7, help="timed steps per precision and round")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()

    import torch
    import torch.nn.functional as F

    from curate.train.models import lenet5, small_stvgg
    from curate.train.precision import BF16_CPU_FLAGS, cpu_flags

    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    x = torch.randn(256, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (256,))
    load = os.getloadavg()[0]
    out = {
        "what": "seconds per training step (batch 256, 32 x 32 x 3), fp32 vs bf16 autocast",
        "cpu_bf16_flags": sorted(cpu_flags() & set(BF16_CPU_FLAGS)),
        "threads": args.threads,
        "load_average_before": load,
        "torch": torch.__version__,
        "models": {},
    }
    for name, build in (("lenet5", lenet5), ("small-stvgg", small_stvgg)):
        model = build((3, 32, 32), 10).to(memory_format=torch.channels_last)
        opt = torch.optim.SGD(model.parameters(), lr=0.01)

        def step(bf16: bool) -> float:
            t0 = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                loss = F.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            return time.perf_counter() - t0

        times: dict[str, list[float]] = {"fp32": [], "bf16": []}
        step(False), step(True)  # warm-up: kernels chosen, buffers allocated
        for _ in range(2):  # two rounds, alternating, so drift hits both alike
            for label, bf16 in (("fp32", False), ("bf16", True)):
                times[label] += [step(bf16) for _ in range(args.repeats)]
        med = {k: statistics.median(v) for k, v in times.items()}
        out["models"][name] = {
            "fp32_s": med["fp32"],
            "bf16_s": med["bf16"],
            "speedup": med["fp32"] / med["bf16"],
        }
        print(
            f"{name:12s} fp32 {med['fp32'] * 1e3:7.1f} ms  bf16 {med['bf16'] * 1e3:7.1f} ms  "
            f"fp32/bf16 = {med['fp32'] / med['bf16']:.2f}x"
        )
    print(f"bf16 flags: {out['cpu_bf16_flags'] or 'none'}; load average before {load:.2f}")
    path = ROOT / "benchmarks" / "results" / "bf16_step.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
