"""How much of a training step (or a greedy decode) is matrix products: the BLAS floor.

Wraps npformer.nn.kernels.matmul and bmm with timers and runs the vs_torch.py models:

    python benchmarks/gemm_floor.py                    # train: tiny, small, base
    python benchmarks/gemm_floor.py --what decode --configs tiny

Prints per step (median of --steps, 1 BLAS thread, wall time or --clock cpu): the whole step, the
time inside matmul and bmm, the rest, and the ceiling this puts on the speed-up over
a reference time: if everything but the products took no time at all, a step would
still take matmul + bmm. With --torch-ms (PyTorch's ms per step from vs_torch.py, one
per config) it prints that ceiling as a ratio.

Two columns (benchmarks/blas_env.py), each in a process of its own: the
environment as given and with OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE unset; each row
names its kernel, and each column's peak (2048^3 float32) is printed.

    python benchmarks/gemm_floor.py --as-given-env OPENBLAS_CORETYPE=Haswell
"""
import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import blas_env  # noqa: E402  (the BLAS kernel; the two columns)
import vs_torch  # noqa: E402  (the same models, batches and step as the comparison)

from npformer.nn import kernels  # noqa: E402
from npformer.nn.threads import set_blas_threads  # noqa: E402


CLOCK = [time.perf_counter]  # --clock wall (default) or cpu: time.thread_time


def timed_products():
    """Replace kernels.matmul and kernels.bmm by timed wrappers; returns the seconds dict."""
    spent = {"matmul": 0.0, "bmm": 0.0}
    for name in spent:
        original = getattr(kernels, name)

        def wrapper(*args, _original=original, _name=name, **kwargs):
            t0 = CLOCK[0]()
            out = _original(*args, **kwargs)
            spent[_name] += CLOCK[0]() - t0
            return out
        setattr(kernels, name, wrapper)
    return spent


def peak_gflops(repeats=5, n=vs_torch.PEAK_N):
    """Best float32 GFLOP/s of an (n,n) @ (n,n) product on CLOCK (vs_torch.blas_peak's product)."""
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((n, n), dtype=np.float32) for _ in range(2))
    a @ b
    best = float("inf")
    for _ in range(repeats):
        t0 = CLOCK[0]()
        a @ b
        best = min(best, CLOCK[0]() - t0)
    return 2.0 * n ** 3 / best / 1e9


def measure(what, names, steps, threads):
    """{name: (step ms, matmul ms, bmm ms)} medians of `steps` timed steps (after 3 untimed)."""
    set_blas_threads(threads)
    spent = timed_products()
    result = {}
    for name in names:
        step = vs_torch.local_call("npformer", what, name)
        for _ in range(3):
            step()
        total, mm, bm = [], [], []
        for _ in range(steps):
            spent["matmul"] = spent["bmm"] = 0.0
            t0 = CLOCK[0]()
            step()
            total.append(CLOCK[0]() - t0)
            mm.append(spent["matmul"])
            bm.append(spent["bmm"])
        result[name] = [1e3 * statistics.median(x) for x in (total, mm, bm)]
        result[name].append(os.getloadavg()[0])
    return result


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--what", default="train", choices=("train", "lm", "decode"))
    ap.add_argument("--configs", default="tiny,small,base")
    ap.add_argument("--steps", type=int, default=15)
    ap.add_argument("--threads", type=int, default=1, help="BLAS threads (default 1)")
    ap.add_argument("--clock", default="wall", choices=("wall", "cpu"),
                    help="wall: time.perf_counter (default); cpu: this thread's CPU time, "
                         "steadier on a shared machine (1 BLAS thread only)")
    ap.add_argument("--torch-ms", default="", help="PyTorch ms per step, comma-separated, per config")
    blas_env.add_arguments(ap)
    args = ap.parse_args()
    names = args.configs.split(",")
    if args.clock == "cpu" and args.threads != 1:
        ap.error("--clock cpu times this thread only: use it with --threads 1")
    CLOCK[0] = time.thread_time if args.clock == "cpu" else time.perf_counter
    if args.column is not None:  # one column, in a process of its own
        result = measure(args.what, names, args.steps, args.threads)
        print(blas_env.result_line({
            "kernel": blas_env.kernel_text(threads=args.threads),
            "variables": blas_env.variables_text(), "rows": result,
            "peak": peak_gflops()}))
        return
    torch_ms = [float(t) for t in args.torch_ms.split(",")] if args.torch_ms else [None] * len(names)
    results, note = blas_env.run_columns(args, __file__,
                                         blas_env.strip_column_args(sys.argv[1:]), capture=True)
    if note:
        print(note + "\n")
    print(f"{args.what}, median of {args.steps} steps, {args.clock} time, {args.threads} BLAS "
          "thread(s); "
          f"load: 1-minute load average after the row (load at start {os.getloadavg()[0]:.2f}); "
          f"CPU {blas_env.cpu_text()}\n")
    for col, stdout in results:
        payload = blas_env.parse_result(stdout)
        print(f"- {col.label}: {payload['kernel']}, peak {payload['peak']:.0f} GFLOP/s "
              f"({vs_torch.PEAK_N}^3 float32)")
    print("\n| model | kernel | step ms | matmul ms | bmm ms | rest ms | products share "
          "| ceiling vs PyTorch | load |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, ref in zip(names, torch_ms):
        for col, stdout in results:
            payload = blas_env.parse_result(stdout)
            t, m, b, load = payload["rows"][name]
            ceiling = f"{ref / (m + b):.2f}x" if ref else "-"
            kernel = payload["kernel"].split(" kernel")[0]
            print(f"| {name} | {kernel} | {t:.1f} | {m:.1f} | {b:.1f} | {t - m - b:.1f} "
                  f"| {100 * (m + b) / t:.0f}% | {ceiling} | {load:.2f} |", flush=True)


if __name__ == "__main__":
    main()
