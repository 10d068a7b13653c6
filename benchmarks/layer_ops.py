"""Forward + backward CPU time of the layers that round two of the kernels changed.

Run it in two checkouts to compare (it uses only the layers' public API):

    python benchmarks/layer_ops.py                       # this checkout
    PYTHONPATH=/path/to/old python /path/to/old/benchmarks/layer_ops.py

Shapes are those of the three vs_torch.py models (N = B*T rows, float32, 1 BLAS
thread, by default in both BLAS columns of benchmarks/blas_env.py: the environment
as given and OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE unset). The output projection + loss
is the fused blocked op where the checkout has it (layers.output_loss_forward),
else the tied projection then the loss.
CPU time (time.process_time), median of --repeats, so other processes on the
machine disturb it less than wall time.
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

from npformer.nn import kernels  # noqa: E402
from npformer.nn import layers as L  # noqa: E402
from npformer.nn.threads import set_blas_threads  # noqa: E402

# name: (N rows, C d_model, H heads, T length, F d_ff, V vocab), as in vs_torch.py
SHAPES = {"tiny": (1024, 64, 4, 16, 256, 1000), "small": (1536, 128, 4, 24, 512, 4000),
          "base": (1024, 256, 8, 32, 1024, 8000)}


def cpu_ms(fn, repeats):
    """Median CPU milliseconds of fn() after one untimed call."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.process_time()
        fn()
        times.append(time.process_time() - t0)
    return 1e3 * statistics.median(times)


def output_and_loss(x, E, b, targets):
    """Forward + backward of the output projection and the loss (fused if available)."""
    if hasattr(L, "output_loss_forward"):
        loss, cache = L.output_loss_forward(x, E, b, targets, 0, 0.1)
        return L.output_loss_backward(np.asarray(1.0), cache)
    logits, out_cache = L.tied_linear_forward(x, E, b)
    loss, loss_cache = L.cross_entropy_forward(logits, targets, 0, 0.1)
    return L.tied_linear_backward(L.cross_entropy_backward(1.0, loss_cache)[0], out_cache)


def ops(name, rng):
    """{op: () -> None} for one model size."""
    N, C, H, T, F, V = SHAPES[name]
    B = N // T
    f32 = np.float32
    x = rng.standard_normal((B, T, C)).astype(f32)
    dy = rng.standard_normal((B, T, C)).astype(f32)
    W1, b1 = (0.1 * rng.standard_normal((C, F))).astype(f32), np.zeros(F, f32)
    W2, b2 = (0.1 * rng.standard_normal((F, C))).astype(f32), np.zeros(C, f32)
    Wqkv, bqkv = (0.1 * rng.standard_normal((C, 3 * C))).astype(f32), np.zeros(3 * C, f32)
    Wo, bo = (0.1 * rng.standard_normal((C, C))).astype(f32), np.zeros(C, f32)
    causal = np.where(np.tril(np.ones((T, T), bool)), 0.0, -np.inf).astype(f32)[None]  # (1,T,T)
    E, bV = (0.1 * rng.standard_normal((V, C))).astype(f32), np.zeros(V, f32)
    targets = rng.integers(1, V, size=(B, T))
    scores = rng.standard_normal((B, H, T, T)).astype(f32)
    drop_rng = np.random.default_rng(0)

    def dropout():
        y, cache = L.dropout_forward(x, 0.1, drop_rng)
        L.dropout_backward(dy, cache)

    def ffn():
        y, cache = L.ffn_forward(x, W1, b1, W2, b2, "relu")
        L.ffn_backward(dy, cache)

    def attention():
        y, cache = L.self_attention_forward(x, Wqkv, bqkv, Wo, bo, causal, H)
        L.self_attention_backward(dy, cache)

    return {
        "dropout fwd+bwd (N,C)": dropout,
        "feed-forward fwd+bwd (ReLU)": ffn,
        "causal self-attention fwd+bwd": attention,
        "softmax kernel (B,H,T,T)": lambda: kernels.softmax_forward(scores, causal, 0.25),
        "output projection + loss fwd+bwd": lambda: output_and_loss(x, E, bV, targets),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configs", default="tiny,small,base")
    ap.add_argument("--repeats", type=int, default=15)
    blas_env.add_arguments(ap)
    args = ap.parse_args()
    if blas_env.dispatch(args, __file__):
        return
    set_blas_threads(1)
    names = args.configs.split(",")
    rng = np.random.default_rng(0)
    table = {name: {op: cpu_ms(fn, args.repeats) for op, fn in ops(name, rng).items()}
             for name in names}
    print(f"CPU ms, median of {args.repeats}, backend {kernels.backend}, "
          f"{blas_env.kernel_report(threads=1)}, load {os.getloadavg()[0]:.2f}")
    print("| op | " + " | ".join(names) + " |")
    print("|---|" + "---:|" * len(names))
    for op in table[names[0]]:
        print(f"| {op} | " + " | ".join(f"{table[n][op]:.2f}" for n in names) + " |")


if __name__ == "__main__":
    main()
