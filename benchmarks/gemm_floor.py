"""How much of a training step (or a greedy decode) is matrix products: the BLAS floor.

Wraps npformer.nn.kernels.matmul and bmm with timers and runs the vs_torch.py models:

    python benchmarks/gemm_floor.py                    # train: tiny, small, base
    python benchmarks/gemm_floor.py --what decode --configs tiny

Prints per step (median of --steps, 1 BLAS thread, wall time): the whole step, the
time inside matmul and bmm, the rest, and the ceiling this puts on the speed-up over
a reference time: if everything but the products took no time at all, a step would
still take matmul + bmm. With --torch-ms (PyTorch's ms per step from vs_torch.py, one
per config) it prints that ceiling as a ratio.
"""
import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import vs_torch  # noqa: E402  (the same models, batches and step as the comparison)

from npformer.nn import kernels  # noqa: E402
from npformer.nn.threads import set_blas_threads  # noqa: E402


def timed_products():
    """Replace kernels.matmul and kernels.bmm by timed wrappers; returns the seconds dict."""
    spent = {"matmul": 0.0, "bmm": 0.0}
    for name in spent:
        original = getattr(kernels, name)

        def wrapper(*args, _original=original, _name=name, **kwargs):
            t0 = time.perf_counter()
            out = _original(*args, **kwargs)
            spent[_name] += time.perf_counter() - t0
            return out
        setattr(kernels, name, wrapper)
    return spent


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--what", default="train", choices=("train", "lm", "decode"))
    ap.add_argument("--configs", default="tiny,small,base")
    ap.add_argument("--steps", type=int, default=15)
    ap.add_argument("--torch-ms", default="", help="PyTorch ms per step, comma-separated, per config")
    args = ap.parse_args()
    set_blas_threads(1)
    spent = timed_products()
    names = args.configs.split(",")
    torch_ms = [float(t) for t in args.torch_ms.split(",")] if args.torch_ms else [None] * len(names)
    print("| model | step ms | matmul ms | bmm ms | rest ms | products share | ceiling vs PyTorch |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, ref in zip(names, torch_ms):
        step = vs_torch.local_call("npformer", args.what, name)
        for _ in range(3):
            step()
        total, mm, bm = [], [], []
        for _ in range(args.steps):
            spent["matmul"] = spent["bmm"] = 0.0
            t0 = time.perf_counter()
            step()
            total.append(time.perf_counter() - t0)
            mm.append(spent["matmul"])
            bm.append(spent["bmm"])
        t, m, b = (1e3 * statistics.median(x) for x in (total, mm, bm))
        ceiling = f"{ref / (m + b):.2f}x" if ref else "-"
        print(f"| {name} | {t:.1f} | {m:.1f} | {b:.1f} | {t - m - b:.1f} | {100 * (m + b) / t:.0f}% "
              f"| {ceiling} |", flush=True)


if __name__ == "__main__":
    main()
