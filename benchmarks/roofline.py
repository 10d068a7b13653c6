"""A roofline for one training step: each op's FLOPs and bytes against the machine's limits.

    python benchmarks/roofline.py                          # small and base, 1 thread
    python benchmarks/roofline.py --configs small --plot docs/img/roofline_small.png
    python benchmarks/roofline.py --columns both --as-given-env OPENBLAS_CORETYPE=Haswell

The models are those of benchmarks/vs_torch.py (pre-LN, ReLU, dropout 0.1, label
smoothing 0.1, float32, AdamW). Three measurements, all in this process:

1. The machine. Product peak: the best float32 GFLOP/s of a 2048^3 product
   (vs_torch.blas_peak). Memory bandwidth: a STREAM-like copy (b = a) and triad
   (a = b + s*c), one jitted pass each, float32, at three array sizes (one that
   fits L2, one of L3 size, one of DRAM size); bytes counted as STREAM does
   (copy 2, triad 3 arrays), best of --repeats.
2. The step, timed op by op. The step is npformer.training.loop.train_step on a timed
   tape (npformer/tools/timed_tape.py, the profiler's tape, used as it is) whose ops
   are sorted into the kinds of `npformer profile` (npformer.tools.profile.op_kind);
   kernels.matmul and kernels.bmm are wrapped by timers that note each product's
   shapes, strides and the op kind it ran in. AdamW is timed from outside, as the
   profiler does; "other" is the rest of the step's wall time.
3. Every distinct product again, alone: best of --repeats with operands laid
   out as in the step (the same strides), and with contiguous operands. That is
   the peak of that shape on this kernel.

Times are this thread's CPU time by default (--clock cpu): with one BLAS thread
and nothing else running in the process it is the op's own time, which other
processes on a shared machine disturb far less than wall time (they still share
the caches and memory bus). The profiler's tape and optimizer timer are pointed
at the same clock for the run (their module's `time`, restored after).

Per kind: product FLOPs (2 per multiply-add), bytes (each product's operands and
result once, plus the op's inputs and output once in the forward and its
inputs, output and input gradients once in the backward, from the tape's
shapes: a lower bound for that op), time in products and outside them. Then the
budget of a step at 80 % of the product peak, and what stands in its way, in ms.

BLAS columns (benchmarks/blas_env.py): by default auto, OpenBLAS's own kernel
(what the issue's targets are stated for); --columns both adds the environment as
given. Shapes: B batch, T length, C d_model, N = B*T rows.
"""
import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import NamedTuple

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import blas_env  # noqa: E402  (the BLAS kernel; the two columns)
import vs_torch  # noqa: E402  (the same models, batches and hyper-parameters)

TARGET_SHARE = 0.8  # issue #23: a step at >= 80 % of the measured product peak
CLOCK = [time.thread_time]  # --clock: this thread's CPU time (default) or wall time
BANDWIDTH_SIZES = {"L2 (256 KiB arrays)": 2 ** 16, "L3 (4 MiB arrays)": 2 ** 20,
                   "DRAM (64 MiB arrays)": 2 ** 24}  # float32 elements per array


# --------------------------------------------------------------------- machine
def stream_bandwidth(repeats):
    """{size label: (copy GB/s, triad GB/s)}: one-pass jitted loops, best of `repeats`."""
    from numba import njit

    @njit(cache=False)
    def copy(a, b):  # b = a: reads one array, writes one
        for i in range(a.size):
            b[i] = a[i]

    @njit(cache=False)
    def triad(a, b, c, s):  # a = b + s*c: reads two arrays, writes one
        for i in range(a.size):
            a[i] = b[i] + s * c[i]

    result = {}
    for label, n in BANDWIDTH_SIZES.items():
        a, b, c = (np.ones(n, np.float32) for _ in range(3))
        inner = max(1, 2 ** 24 // n)  # enough passes that one timing is >= ~10 ms
        best = {"copy": np.inf, "triad": np.inf}
        for _ in range(repeats + 1):  # the first call compiles
            t0 = CLOCK[0]()
            for _ in range(inner):
                copy(a, b)
            best["copy"] = min(best["copy"], (CLOCK[0]() - t0) / inner)
            t0 = CLOCK[0]()
            for _ in range(inner):
                triad(a, b, c, np.float32(0.5))
            best["triad"] = min(best["triad"], (CLOCK[0]() - t0) / inner)
        result[label] = (2 * 4 * n / best["copy"] / 1e9, 3 * 4 * n / best["triad"] / 1e9)
    return result


# ------------------------------------------------------------------------ step
class Product(NamedTuple):
    kind: str  # the profiler's kind of the op the product ran in
    phase: str  # "forward" or "backward"
    a: tuple  # (shape, strides) of the left operand
    b: tuple  # (shape, strides) of the right operand
    out: tuple  # (shape, strides) of `out=` when given, else None
    seconds: float

    @property
    def flops(self):
        *batch, m, k = self.a[0]
        n = self.b[0][-1]
        return 2 * int(np.prod(batch or [1])) * m * k * n

    @property
    def bytes(self):
        """Operands read once and the result written once (float32)."""
        *batch, m, k = self.a[0]
        n = self.b[0][-1]
        return 4 * int(np.prod(batch or [1])) * (m * k + k * n + m * n)

    @property
    def signature(self):
        return self.kind, self.phase, self.a, self.b, self.out


def timed_step(name, steps):
    """Run `steps` timed training steps (after 2 untimed); per-kind times and the products.

    Returns (step seconds list, {kind: [fwd s, bwd s, bytes]} per step, products of
    the timed steps, optimizer seconds per step, n_params).
    """
    from npformer.nn import kernels
    from npformer.tools import profile as profile_module
    from npformer.tools import timed_tape as timed_tape_module
    from npformer.training.batching import Batch
    from npformer.models import build_model
    from npformer.training.optim import AdamW
    from npformer.tools.profile import TimedOptimizer, op_kind
    from npformer.tools.timed_tape import TimedTape
    from npformer.training.loop import train_step

    where = {"kind": "other", "phase": "forward"}
    products = []

    class KindTape(TimedTape):
        """The profiler's timed tape, noting which kind of op is running (for the products)."""

        def call(self, name, forward, backward, *args, **kwargs):
            where.update(kind=op_kind(SimpleNamespace(name=name, backward=backward)),
                         phase="forward")
            out = super().call(name, forward, backward, *args, **kwargs)
            where.update(kind="other")
            return out

        def run_backward(self, record, d_out):
            where.update(kind=op_kind(record), phase="backward")
            d_inputs = super().run_backward(record, d_out)
            where.update(kind="other")
            return d_inputs

    def wrap(fn):
        def wrapper(a, b, out=None):
            t0 = CLOCK[0]()
            result = fn(a, b) if out is None else fn(a, b, out=out)
            products.append(Product(where["kind"], where["phase"], (a.shape, a.strides),
                                    (b.shape, b.strides),
                                    None if out is None else (out.shape, out.strides),
                                    CLOCK[0]() - t0))
            return result
        return wrapper

    originals = kernels.matmul, kernels.bmm
    kernels.matmul, kernels.bmm = wrap(originals[0]), wrap(originals[1])
    # the profiler's tape and optimizer timer read time.perf_counter: give them our clock
    clocks = timed_tape_module.time, profile_module.time
    timed_tape_module.time = profile_module.time = SimpleNamespace(perf_counter=CLOCK[0])
    try:
        model = build_model(vs_torch.model_config(name))
        opt = TimedOptimizer(AdamW(model.params, lr=vs_torch.LR, betas=vs_torch.BETAS,
                                   eps=vs_torch.EPS, weight_decay=vs_torch.WEIGHT_DECAY))
        rng = np.random.default_rng(0)
        batches = vs_torch.make_batches(name, 4)
        walls, per_kind, optimizer_s = [], {}, []
        for step in range(steps + 2):
            src, tgt_in, tgt_out = batches[step % len(batches)]
            tape = KindTape()
            if step == 2:
                products.clear()  # keep the timed steps' products only
            t0 = CLOCK[0]()
            train_step(model, opt, Batch(src, tgt_in, tgt_out, tgt_out.size), vs_torch.LR, rng,
                       vs_torch.LABEL_SMOOTHING, tape=tape)
            wall = CLOCK[0]() - t0
            if step < 2:
                continue
            walls.append(wall)
            optimizer_s.append(opt.last_seconds)
            for rec, ins, out, fwd, bwd in zip(tape.records, tape.input_shapes, tape.output_shapes,
                                               tape.forward_seconds, tape.backward_seconds):
                n_in = sum(int(np.prod(s)) for s in ins)
                n_out = int(np.prod(out)) if out else 1
                # forward: read inputs, write output; backward: read output grad and
                # inputs, write input gradients (float32)
                moved = 4 * (n_in + n_out) + 4 * (n_out + 2 * n_in)
                row = per_kind.setdefault(op_kind(rec), [0.0, 0.0, 0])
                row[0] += fwd / steps
                row[1] += bwd / steps
                row[2] += moved // steps
    finally:
        kernels.matmul, kernels.bmm = originals
        timed_tape_module.time, profile_module.time = clocks
    return walls, per_kind, products, statistics.mean(optimizer_s), model.n_params


def product_peak(repeats, n=vs_torch.PEAK_N):
    """Best float32 FLOP/s of an (n,n) @ (n,n) product, on CLOCK."""
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((n, n), dtype=np.float32) for _ in range(2))
    a @ b
    best = np.inf
    for _ in range(repeats):
        t0 = CLOCK[0]()
        a @ b
        best = min(best, CLOCK[0]() - t0)
    return 2.0 * n ** 3 / best


def alone(product, repeats, contiguous):
    """Best seconds of the product alone: operands laid out as in the step, or contiguous."""
    from npformer.nn import kernels

    rng = np.random.default_rng(0)

    def operand(spec):
        shape, strides = spec
        if contiguous:
            return rng.standard_normal(shape, dtype=np.float32)
        extent = 1 + sum((n - 1) * s // 4 for n, s in zip(shape, strides))  # elements spanned
        base = rng.standard_normal(extent, dtype=np.float32)
        return np.lib.stride_tricks.as_strided(base, shape, strides)

    a, b = operand(product.a), operand(product.b)
    out = None if product.out is None else operand(product.out)
    batched = len(product.a[0]) > 2
    fn = (lambda: kernels.bmm(a, b, out=out)) if batched else (lambda: kernels.matmul(a, b))
    fn()
    inner = max(1, int(2e7 // max(product.flops, 1)))  # ~>= 0.1 ms per timing
    best = np.inf
    for _ in range(repeats):
        t0 = CLOCK[0]()
        for _ in range(inner):
            fn()
        best = min(best, (CLOCK[0]() - t0) / inner)
    return best


# ---------------------------------------------------------------------- report
def roofline(name, steps, repeats, peak, bandwidth):
    """Measure one model; print its tables; return the numbers for the plot."""
    walls, per_kind, products, optimizer_s, n_params = timed_step(name, steps)
    step_s = statistics.mean(walls)  # a mean, as the per-op times are, so the parts add up
    load = os.getloadavg()[0]
    by_sig = {}
    for p in products:
        by_sig.setdefault(p.signature, []).append(p)
    shapes = []
    for group in by_sig.values():
        p = group[0]
        per_step = len(group) / steps
        in_step = sum(q.seconds for q in group) / steps  # seconds per step, all calls
        same = alone(p, repeats, contiguous=False) * per_step
        contig = alone(p, repeats, contiguous=True) * per_step
        shapes.append(SimpleNamespace(
            kind=p.kind, phase=p.phase, a=p.a[0], b=p.b[0], calls=per_step,
            flops=p.flops * per_step, bytes=p.bytes * per_step, in_step=in_step,
            same_layout=same, contiguous=contig,
            layout=" @ ".join(layouts(p))))
    flops = sum(s.flops for s in shapes)
    t_products = sum(s.in_step for s in shapes)
    t_same = sum(s.same_layout for s in shapes)
    t_contig = sum(s.contiguous for s in shapes)
    kinds = {}
    for kind, (fwd, bwd, moved) in per_kind.items():
        prod = [s for s in shapes if s.kind == kind]
        kinds[kind] = SimpleNamespace(
            time=fwd + bwd, products=sum(s.in_step for s in prod),
            flops=sum(s.flops for s in prod), bytes=moved + sum(s.bytes for s in prod),
            rest_bytes=moved)
    taped = sum(k.time for k in kinds.values())
    other = step_s - taped - optimizer_s
    bw_cache = 1e9 * max(v[1] for v in bandwidth.values())  # bytes/s, the fastest level's triad
    bw_dram = 1e9 * bandwidth["DRAM (64 MiB arrays)"][1]
    opt_bytes = 4 * 7 * n_params  # AdamW: read p, g, m, v; write p, m, v

    print(f"\n## {name}: {vs_torch.CONFIGS[name]}\n")
    print(f"step {1e3 * step_s:.1f} ms (mean of {steps}, median "
          f"{1e3 * statistics.median(walls):.1f}; load {load:.2f}); product FLOPs "
          f"{flops / 1e9:.2f} GFLOP (vs_torch.train_flops: "
          f"{vs_torch.train_flops(name) / 1e9:.2f}, masked entries included); "
          f"{flops / step_s / 1e9:.1f} GFLOP/s = {100 * flops / step_s / peak:.0f}% of the "
          f"{peak / 1e9:.0f} GFLOP/s peak\n")
    print("| kind | ms/step | in products ms | outside products ms | GFLOP | MB moved (lower "
          "bound) | FLOP/byte | GFLOP/s in its products | outside products at the "
          "cache roof ms |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    rows = sorted(kinds.items(), key=lambda kv: -kv[1].time)
    for kind, k in rows:
        rest = k.time - k.products
        rate = f"{k.flops / k.products / 1e9:.0f}" if k.products else "-"
        ai = f"{k.flops / k.bytes:.1f}" if k.flops else "-"
        print(f"| {kind} | {1e3 * k.time:.2f} | {1e3 * k.products:.2f} | {1e3 * rest:.2f} "
              f"| {k.flops / 1e9:.3f} | {k.bytes / 1e6:.1f} | {ai} | {rate} "
              f"| {1e3 * k.rest_bytes / bw_cache:.2f} |")
    print(f"| optimizer (AdamW) | {1e3 * optimizer_s:.2f} | 0 | {1e3 * optimizer_s:.2f} | 0 "
          f"| {opt_bytes / 1e6:.1f} | - | - | {1e3 * opt_bytes / bw_cache:.2f} "
          f"(DRAM: {1e3 * opt_bytes / bw_dram:.2f}) |")
    print(f"| other (Python, tape, zeroing) | {1e3 * other:.2f} | 0 | {1e3 * other:.2f} | 0 | - "
          "| - | - | 0 |")

    print(f"\nProducts, per distinct shape and layout (ms per step; alone = best of {repeats} "
          "in isolation; layout: C contiguous, T a transposed matrix, view a strided view):\n")
    print("| kind | phase | product | layout | calls/step | GFLOP | FLOP/byte | in step ms "
          "| alone, same layout ms | alone, contiguous ms | GFLOP/s in step "
          "| GFLOP/s alone, contiguous |")
    print("|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for s in sorted(shapes, key=lambda s: -s.in_step):
        print(f"| {s.kind} | {s.phase} | {fmt_shape(s.a)} @ {fmt_shape(s.b)} | {s.layout} "
              f"| {s.calls:g} | {s.flops / 1e9:.3f} "
              f"| {s.flops / s.bytes:.1f} | {1e3 * s.in_step:.2f} | {1e3 * s.same_layout:.2f} "
              f"| {1e3 * s.contiguous:.2f} | {s.flops / s.in_step / 1e9:.0f} "
              f"| {s.flops / s.contiguous / 1e9:.0f} |")

    budget = flops / (TARGET_SHARE * peak)
    rest_taped = sum(k.time - k.products for k in kinds.values())
    rest_roof = sum(k.rest_bytes for k in kinds.values()) / bw_cache
    print(f"\n**What stands in the way of {100 * TARGET_SHARE:.0f}% of the product peak** "
          f"(budget: {flops / 1e9:.2f} GFLOP at {TARGET_SHARE * peak / 1e9:.0f} GFLOP/s = "
          f"{1e3 * budget:.1f} ms per step; measured {1e3 * step_s:.1f} ms):\n")
    print("| | ms per step | share of the budget |")
    print("|---|---:|---:|")
    for label, value in (
            ("products at the machine peak (2048^3), the floor", flops / peak),
            ("products alone, contiguous, at their own shapes' best", t_contig),
            ("products alone, laid out as in the step", t_same),
            ("products inside the step", t_products),
            ("outside the products, taped ops (layer norm, softmax, dropout, bias, ReLU, "
             "residual, loss, copies)", rest_taped),
            ("  of which the memory-traffic floor at the cache triad bandwidth", rest_roof),
            ("optimizer (AdamW)", optimizer_s),
            ("other (Python between ops, tape, zeroing)", other),
            ("whole step", step_s)):
        print(f"| {label} | {1e3 * value:.1f} | {100 * value / budget:.0f}% |")
    return SimpleNamespace(name=name, shapes=shapes, kinds=kinds, step=step_s, flops=flops,
                           peak=peak, budget=budget, t_products=t_products, t_same=t_same,
                           t_contig=t_contig, rest=rest_taped, optimizer=optimizer_s,
                           other=other, load=load)


def layouts(p):
    """Each operand's layout: C (contiguous), T (a transposed contiguous matrix) or view."""
    result = []
    for shape, strides in (p.a, p.b):
        c_strides, f_strides, size_c, size_f = [], [], 4, 4
        for n in reversed(shape):
            c_strides.insert(0, size_c)
            size_c *= n
        for n in shape[-2:]:
            f_strides.append(size_f)
            size_f *= n
        if tuple(c_strides) == tuple(strides):
            result.append("C")
        elif len(shape) == 2 and tuple(f_strides) == tuple(strides):
            result.append("T")
        else:
            result.append("view")
    return result


def fmt_shape(shape):
    return "(" + ",".join(map(str, shape)) + ")"


def plot(results, peak, bandwidth, path, kernel, clock):
    """Roofline (left) and time per step against the budget (right), one PNG."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, 5), layout="constrained")
    ax, bx = fig.subplots(1, 2, width_ratios=[1.1, 1])
    ai = np.logspace(-1, 3, 200)
    ax.plot(ai, np.full_like(ai, peak / 1e9), "k-", lw=1, label=f"product peak {peak / 1e9:.0f}")
    ax.plot(ai, np.full_like(ai, TARGET_SHARE * peak / 1e9), "k--", lw=1,
            label=f"{100 * TARGET_SHARE:.0f}% of peak")
    for (label, (_, triad)), style in zip(bandwidth.items(), (":", "-.", "--")):
        ax.plot(ai, np.minimum(ai * triad, peak / 1e9), "tab:gray", ls=style, lw=1,
                label=f"{label.split(' ')[0]} triad {triad:.0f} GB/s")
    markers = {"feed-forward": "o", "self-attention": "s", "cross-attention": "D",
               "output projection + loss": "^"}
    for r, colour in zip(results, ("tab:blue", "tab:orange", "tab:green")):
        for s in r.shapes:
            ax.scatter(s.flops / s.bytes, s.flops / s.in_step / 1e9, color=colour, alpha=0.7,
                       marker=markers.get(s.kind, "x"), s=20 + 60 * s.flops / r.flops)
        ax.scatter([], [], color=colour, label=f"{r.name}: products in the step")
    for kind, m in markers.items():
        ax.scatter([], [], color="k", marker=m, label=kind)
    ax.set(xscale="log", yscale="log", xlabel="FLOP per byte moved (operands + result once)",
           ylabel="GFLOP/s")
    ax.set_title(f"products of one step ({kernel}, 1 thread, {clock} time)", fontsize=10)
    ax.set_ylim(1, 2 * peak / 1e9)
    ax.legend(fontsize=7, loc="lower right")
    names = [r.name for r in results]
    parts = [("products (in step)", "t_products", "tab:blue"),
             ("outside products (taped ops)", "rest", "tab:orange"),
             ("optimizer", "optimizer", "tab:green"), ("other", "other", "tab:gray")]
    left = np.zeros(len(results))
    for label, attr, colour in parts:
        values = np.array([1e3 * getattr(r, attr) for r in results])
        bx.barh(names, values, left=left, color=colour, label=label)
        left += values
    for i, r in enumerate(results):
        bx.plot([1e3 * r.budget] * 2, [i - 0.4, i + 0.4], "k--")
        bx.plot([1e3 * r.flops / r.peak] * 2, [i - 0.4, i + 0.4], "k-")
        bx.annotate(f" {1e3 * r.step:.0f} ms", (1e3 * r.step, i), va="center", fontsize=8)
    bx.plot([], [], "k--", label=f"budget at {100 * TARGET_SHARE:.0f}% of peak")
    bx.plot([], [], "k-", label="products at peak")
    bx.set(xlabel="ms per training step")
    bx.set_title(f"where a step's time goes (load average up to {max(r.load for r in results):.1f})",
                 fontsize=10)
    bx.set_xlim(0, 1.15 * max(1e3 * r.step for r in results))
    bx.legend(fontsize=7, loc="lower right")
    fig.savefig(path, dpi=100)
    print(f"\nwrote {path}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configs", default="small,base", help="comma-separated, of tiny,small,base")
    ap.add_argument("--steps", type=int, default=5, help="timed training steps (default 5)")
    ap.add_argument("--repeats", type=int, default=7, help="best of, for peaks (default 7)")
    ap.add_argument("--plot", type=Path, help="save the roofline to this PNG")
    ap.add_argument("--clock", default="cpu", choices=("cpu", "wall"),
                    help="cpu: this thread's CPU time (default; steadier on a shared machine, "
                         "1 BLAS thread only); wall: time.perf_counter")
    blas_env.add_arguments(ap, default=blas_env.AUTO)
    args = ap.parse_args()
    if blas_env.dispatch(args, __file__):
        return
    from npformer.nn.threads import set_blas_threads

    set_blas_threads(1)
    CLOCK[0] = time.thread_time if args.clock == "cpu" else time.perf_counter
    kernel = blas_env.kernel_text(threads=1)
    print(f"# Roofline of one training step\n\n{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
          f", {blas_env.kernel_report(threads=1)}, {args.clock} clock, "
          f"load {os.getloadavg()[0]:.2f} at start")
    peak = product_peak(args.repeats)
    bandwidth = stream_bandwidth(args.repeats)
    print(f"\nproduct peak (2048^3 float32, best of {args.repeats}): {peak / 1e9:.1f} GFLOP/s; "
          "memory bandwidth, float32, one jitted pass, best of "
          f"{args.repeats} (load {os.getloadavg()[0]:.2f}):\n")
    print("| arrays | copy GB/s | triad GB/s |\n|---|---:|---:|")
    for label, (cp, tr) in bandwidth.items():
        print(f"| {label} | {cp:.1f} | {tr:.1f} |")
    results = [roofline(name, args.steps, args.repeats, peak, bandwidth)
               for name in args.configs.split(",")]
    if args.plot:
        plot(results, peak, bandwidth, args.plot, kernel.split(" kernel")[0], args.clock)


if __name__ == "__main__":
    main()
