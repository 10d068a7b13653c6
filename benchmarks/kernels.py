"""Benchmark the kernel package: jitted (numba backend) versus the NumPy twins.

    python benchmarks/kernels.py                  # 1 BLAS thread, all sections
    python benchmarks/kernels.py --blas-threads 2
    python benchmarks/kernels.py --sections kernels --configs tiny
    python benchmarks/kernels.py --clock cpu --stat min   # on a busy, shared machine

Sections (each prints a Markdown table):
  kernels   every kernel at transformer-typical shapes, float32, median of repeats
            (--stat min for best-of, when the machine is shared)
  routing   matmul/bmm: OpenBLAS with 1 and 2 threads versus the jitted reference
            loops (matmul_nb.matmul_loops), the table in docs/performance.md
  compile   cold JIT compile time of the whole kernel set (a subprocess with an
            empty NUMBA_CACHE_DIR: import + first call of every kernel at float32
            and float64) and warm load time (a second subprocess, same cache dir)

Shapes: B batch, T sequence length (S = T), C d_model, H heads, D = C/H head dim,
F d_ff, V vocab, N = B*T token positions, G = B*H attention matrices.
The jitted kernels are single-threaded by design; only BLAS uses threads.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # run as a script from a source checkout
    sys.path.insert(0, str(REPO_ROOT))

sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
import blas_env  # noqa: E402  (the BLAS kernel; the two columns)

from npformer.nn import kernels  # noqa: E402
from npformer.nn.kernels import matmul_nb  # noqa: E402

CONFIGS = {  # name: (B, T, C, H, F, V)
    "tiny": (64, 16, 64, 4, 256, 1000),
    "small": (64, 24, 128, 4, 512, 4000),
    "base": (32, 32, 256, 8, 1024, 8000),
}
LN_EPS = 1e-5
SMOOTHING = 0.1
PAD_ID = 0


STATS = {"median": np.median, "min": np.min}  # how the timed batches are summarised
# wall: elapsed time. cpu: CPU time of the calling thread, which a busy machine
# barely disturbs; it is only meaningful while all the work runs in this thread
# (jitted kernels, NumPy, and BLAS limited to 1 thread).
CLOCKS = {"wall": time.perf_counter, "cpu": time.thread_time}


class Timing(NamedTuple):
    repeats: int  # timed batches per measurement
    stat: str  # key of STATS
    clock: str  # key of CLOCKS


def time_call(fn, timing, min_seconds=0.02):
    """Seconds per call of fn(), summarised over `timing.repeats` timed batches of calls."""
    clock = CLOCKS[timing.clock]
    fn()  # warm up (and compile, for the jitted kernels)
    t0 = time.perf_counter()
    fn()
    once = max(time.perf_counter() - t0, 1e-7)
    number = max(1, int(min_seconds / once))  # calls per batch, so a batch takes >= min_seconds
    samples = []
    for _ in range(timing.repeats):
        t0 = clock()
        for _ in range(number):
            fn()
        samples.append((clock() - t0) / number)
    return float(STATS[timing.stat](samples))


def kernel_cases(B, T, C, H, F, V, rng):
    """(label, symbolic shape, argument tuple) per kernel call, one model config, float32."""
    f32 = np.float32
    N, S, D, G = B * T, T, C // H, B * H
    x = rng.standard_normal((N, C)).astype(f32)  # (N,C) activations
    W = rng.standard_normal((C, F)).astype(f32)  # (C,F) a weight
    dy_f = rng.standard_normal((N, F)).astype(f32)  # (N,F) upstream gradient
    W_out = rng.standard_normal((C, V)).astype(f32)  # (C,V) output projection
    q = rng.standard_normal((G, T, D)).astype(f32)  # (G,T,D)
    k = rng.standard_normal((G, S, D)).astype(f32)  # (G,S,D)
    p = rng.random((G, T, S)).astype(f32)  # (G,T,S) attention weights
    scores = rng.standard_normal((B, H, T, S)).astype(f32)  # (B,H,T,S)
    causal = np.triu(np.full((T, S), -np.inf, f32), k=1)[None]  # (1,T,S)
    padding = np.zeros((B, 1, S), f32)  # (B,1,S)
    padding[:, :, S - S // 4 :] = -np.inf  # last quarter of keys are padding
    probs = kernels.implementations("numpy")["softmax_forward"](scores, causal, 0.125)
    gamma = rng.standard_normal(C).astype(f32)
    beta = rng.standard_normal(C).astype(f32)
    mean = x.mean(axis=1)  # (N,)
    rstd = (1.0 / np.sqrt(x.var(axis=1) + LN_EPS)).astype(f32)  # (N,)
    dy_c = rng.standard_normal((N, C)).astype(f32)  # (N,C)
    logits = rng.standard_normal((N, V)).astype(f32)  # (N,V)
    targets = rng.integers(1, V, size=N)  # (N,)
    targets[rng.random(N) < 0.1] = PAD_ID  # ~10% padding positions
    h = rng.standard_normal((N, F)).astype(f32)  # (N,F) hidden activations
    ids = rng.integers(0, V, size=N)  # (N,)
    return [  # (label, symbolic shape, arguments)
        ("matmul x@W", "(N,C)@(C,F)", (x, W)),
        ("matmul x.T@dy", "(C,N)@(N,F) view", (x.T, dy_f)),
        ("matmul dy@W.T", "(N,F)@(F,C) view", (dy_f, W.T)),
        ("matmul logits", "(N,C)@(C,V)", (x, W_out)),
        ("bmm q@k^T", "G x (T,D)@(D,S) view", (q, k.transpose(0, 2, 1))),
        ("bmm p@v", "G x (T,S)@(S,D)", (p, k)),
        ("bmm p^T@dy", "G x (S,T)@(T,D) view", (p.transpose(0, 2, 1), q)),
        ("softmax_forward causal", "(B,H,T,S), mask (1,T,S)", (scores, causal, 0.125)),
        ("softmax_forward padding", "(B,H,T,S), mask (B,1,S)", (scores, padding, 0.125)),
        ("softmax_backward", "(B,H,T,S)", (scores, probs, 0.125)),
        ("layernorm_forward", "(N,C)", (x, gamma, beta, LN_EPS)),
        ("layernorm_backward", "(N,C)", (dy_c, x, mean, rstd, gamma)),
        ("cross_entropy_forward_backward", "(N,V)", (logits, targets, PAD_ID, SMOOTHING)),
        ("relu_forward", "(N,F)", (h,)),
        ("relu_backward", "(N,F)", (dy_f, h)),
        ("gelu_forward", "(N,F)", (h,)),
        ("gelu_backward", "(N,F)", (dy_f, h)),
        ("embedding_backward", "dW (V,C), N ids", (np.zeros((V, C), f32), ids, dy_c)),
    ]


def run_kernels(config_names, timing):
    """One row per kernel, one column per config: NumPy ms / numba ms (speed-up)."""
    impl_np = kernels.implementations("numpy")
    impl_nb = kernels.implementations("numba")
    rng = np.random.default_rng(0)
    rows = {}  # (kernel label, symbolic shape) -> one cell per config
    for config in config_names:
        B, T, C, H, F, V = CONFIGS[config]
        print(f"- {config}: B={B} T={T} C={C} H={H} F={F} V={V} (N={B * T}, G={B * H})")
        for label, shape, args in kernel_cases(B, T, C, H, F, V, rng):
            name = label.split()[0]
            t_np = time_call(lambda: impl_np[name](*args), timing)
            t_nb = time_call(lambda: impl_nb[name](*args), timing)
            cell = f"{t_np * 1e3:.3f} / {t_nb * 1e3:.3f} ({t_np / t_nb:.1f}x)"
            rows.setdefault((label, shape), []).append(cell)
    print("\nms per call, NumPy twin / numba backend (speed-up), float32\n")
    print("| kernel | shape | " + " | ".join(config_names) + " |")
    print("|---|---|" + "---:|" * len(config_names))
    for (label, shape), cells in rows.items():
        print(f"| {label} | {shape} | " + " | ".join(cells) + " |")


def routing_cases(rng):
    """(label, function name, a, b): model-sized products and a few tiny ones."""
    f32 = np.float32
    cases = []
    for M, K, N in [(1024, 128, 512), (1024, 128, 4000), (2048, 256, 1024)]:
        a = rng.standard_normal((M, K)).astype(f32)
        b = rng.standard_normal((K, N)).astype(f32)
        dy = rng.standard_normal((M, N)).astype(f32)
        cases.append((f"linear ({M},{K})@({K},{N})", "matmul", a, b))
        cases.append((f"grad x.T@dy ({K},{M})@({M},{N})", "matmul", a.T, dy))
    for G, M, K, N in [(256, 16, 32, 16), (256, 16, 16, 32), (256, 32, 32, 32), (512, 8, 16, 8)]:
        a = rng.standard_normal((G, M, K)).astype(f32)
        b = rng.standard_normal((G, K, N)).astype(f32)
        b_view = rng.standard_normal((G, N, K)).astype(f32).transpose(0, 2, 1)
        cases.append((f"attn G={G} ({M},{K})@({K},{N})", "bmm", a, b))
        cases.append((f"attn G={G} ({M},{K})@({K},{N}) b view", "bmm", a, b_view))
    for G, n in [(1, 4), (1, 8), (1, 12), (1, 16), (64, 4), (64, 6), (64, 8), (16, 16)]:
        a = rng.standard_normal((G, n, n)).astype(f32)
        b = rng.standard_normal((G, n, n)).astype(f32)
        if G == 1:
            cases.append((f"tiny ({n},{n})@({n},{n})", "matmul", a[0], b[0]))
        else:
            cases.append((f"tiny G={G} ({n},{n})@({n},{n})", "bmm", a, b))
    return cases


def run_routing(timing):
    """BLAS (1 and 2 threads) versus the jitted loops.

    Two BLAS threads are timed on the wall clock whatever --clock says: thread CPU
    time cannot see a second thread.
    """
    rng = np.random.default_rng(1)
    loops_timing = timing._replace(repeats=max(3, timing.repeats // 3))  # the loops are slow
    print(f"\n| product (float32) | BLAS 1 thr ({timing.clock}) | BLAS 2 thr (wall) "
          f"| jitted loops ({timing.clock}) |")
    print("|---|---:|---:|---:|")
    for label, name, a, b in routing_cases(rng):
        loops = matmul_nb.matmul_loops if name == "matmul" else matmul_nb.bmm_loops
        with threadpool_limits(limits=1, user_api="blas"):
            t_blas1 = time_call(lambda: np.matmul(a, b), timing)
        with threadpool_limits(limits=2, user_api="blas"):
            t_blas2 = time_call(lambda: np.matmul(a, b), timing._replace(clock="wall"))
        # the loops path includes the copy that makes transposed views contiguous
        t_loops = time_call(
            lambda: loops(np.ascontiguousarray(a), np.ascontiguousarray(b)), loops_timing
        )
        flops = 2 * a.shape[-2] * a.shape[-1] * b.shape[-1] * (a.shape[0] if a.ndim == 3 else 1)
        cells = [f"{fmt_time(t)} ({flops / t / 1e9:.1f} GF/s)" for t in (t_blas1, t_blas2, t_loops)]
        print(f"| {label} | {' | '.join(cells)} |")


def fmt_time(seconds):
    return f"{seconds * 1e6:.1f} us" if seconds < 1e-3 else f"{seconds * 1e3:.2f} ms"


# Run in a fresh interpreter: import the package, then call every kernel once at
# float32 and at float64 (tiny shapes: the time is compilation, or cache loading).
COMPILE_SNIPPET = r"""
import json, sys, time
wall0, cpu0 = time.perf_counter(), time.process_time()
import numpy as np
from npformer import kernels
from npformer.nn.kernels import matmul_nb
impl = kernels.implementations("numba")
result = {"import_s": time.perf_counter() - wall0}
rng = np.random.default_rng(0)
for name in sys.argv[1].split(","):
    dt = np.dtype(name)
    wall, cpu = time.perf_counter(), time.process_time()
    x4 = rng.standard_normal((2, 2, 3, 4)).astype(dt)  # (B,H,T,S)
    mask = np.zeros((1, 3, 4), dt)  # (1,T,S)
    x2 = rng.standard_normal((3, 4)).astype(dt)  # (N,C)
    g = np.ones(4, dt)
    a3 = rng.standard_normal((2, 3, 3)).astype(dt)
    impl["matmul"](x2.T, x2)
    impl["bmm"](a3, a3)
    matmul_nb.matmul_loops(np.ones((64, 64), dt), np.ones((64, 64), dt))
    y = impl["softmax_forward"](x4, mask, 0.5)
    impl["softmax_backward"](x4, y, 0.5)
    y2, mean, rstd = impl["layernorm_forward"](x2, g, g, 1e-5)
    impl["layernorm_backward"](x2, x2, mean, rstd, g)
    impl["cross_entropy_forward_backward"](x2, np.array([0, 1, 2]), 0, 0.1)
    impl["relu_forward"](x2)
    impl["relu_backward"](x2, x2)
    impl["gelu_forward"](x2)
    impl["gelu_backward"](x2, x2)
    impl["embedding_backward"](np.zeros((5, 4), dt), np.array([1, 2, 1]), x2)
    result[name + "_s"] = time.perf_counter() - wall
    result[name + "_cpu_s"] = time.process_time() - cpu
result["total_s"] = time.perf_counter() - wall0
result["total_cpu_s"] = time.process_time() - cpu0
print(json.dumps(result))
"""


def compile_run(cache_dir, dtypes):
    env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env.pop("NUMBA_DISABLE_JIT", None)
    out = subprocess.run(
        [sys.executable, "-c", COMPILE_SNIPPET, ",".join(dtypes)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_compile():
    print("\n| run | import s | float32 first calls s | float64 first calls s "
          "| total wall s | total CPU s |")
    print("|---|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as both, tempfile.TemporaryDirectory() as f32_only:
        runs = [
            ("cold (empty cache), f32 + f64", both, ("float32", "float64")),
            ("warm (same cache), f32 + f64", both, ("float32", "float64")),
            ("cold (empty cache), f32 only", f32_only, ("float32",)),
        ]
        for label, cache_dir, dtypes in runs:
            r = compile_run(cache_dir, dtypes)
            f64 = f"{r['float64_s']:.2f}" if "float64_s" in r else "-"
            print(
                f"| {label} | {r['import_s']:.2f} | {r['float32_s']:.2f} | {f64} "
                f"| {r['total_s']:.2f} | {r['total_cpu_s']:.2f} |"
            )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blas-threads", type=int, default=1, choices=(1, 2),
                        help="OpenBLAS threads for the kernels section (default 1)")
    parser.add_argument("--configs", default="tiny,small,base",
                        help="comma-separated subset of " + ",".join(CONFIGS))
    parser.add_argument("--sections", default="kernels,routing,compile",
                        help="comma-separated subset of kernels,routing,compile")
    parser.add_argument("--repeats", type=int, default=7, help="timed batches per measurement")
    parser.add_argument("--stat", default="median", choices=tuple(STATS),
                        help="summary of the timed batches; 'min' resists a busy machine")
    parser.add_argument("--clock", default="wall", choices=tuple(CLOCKS),
                        help="'cpu' (thread CPU time) resists a busy machine; needs 1 BLAS thread")
    blas_env.add_arguments(parser)
    args = parser.parse_args(argv)
    if blas_env.dispatch(args, __file__, argv):
        return
    config_names = [c.strip() for c in args.configs.split(",") if c.strip()]
    for c in config_names:
        if c not in CONFIGS:
            parser.error(f"unknown config {c!r}; choose from {', '.join(CONFIGS)}")
    sections = {s.strip() for s in args.sections.split(",") if s.strip()}
    unknown = sections - {"kernels", "routing", "compile"}
    if unknown:
        parser.error(f"unknown sections {sorted(unknown)}")
    if args.clock == "cpu" and args.blas_threads != 1:
        parser.error("--clock cpu times only the calling thread: use it with --blas-threads 1")
    timing = Timing(args.repeats, args.stat, args.clock)

    blas = [i for i in threadpool_info() if i["user_api"] == "blas"]
    print(f"# npformer kernels benchmark\n\nnumpy {np.__version__}, cores: {os.cpu_count()}, "
          f"{blas_env.variables_text()}, "
          f"load average {os.getloadavg()[0]:.1f} (timings are only clean near 0)")
    for info in blas:
        print(f"BLAS: {info['internal_api']} {info['version']} ({info.get('architecture')}), "
              f"default threads {info['num_threads']}")
    if "kernels" in sections:
        with threadpool_limits(limits=args.blas_threads, user_api="blas"):
            used = [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]
            print(f"\n## Kernels: {args.stat} of {args.repeats}, {args.clock} clock, "
                  f"BLAS threads in use: {used}")
            run_kernels(config_names, timing)
    if "routing" in sections:
        print(f"\n## matmul routing ({args.stat} of {args.repeats}; "
              "loops include the contiguous copy of views)")
        run_routing(timing)
    if "compile" in sections:
        print("\n## JIT compile (subprocesses)")
        run_compile()


if __name__ == "__main__":
    main()
