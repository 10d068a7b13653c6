"""npformer against the same model in PyTorch: training step, decoding, start-up, memory.

    python benchmarks/vs_torch.py                       # everything (about 10 minutes)
    python benchmarks/vs_torch.py --as-given-env OPENBLAS_CORETYPE=Haswell  # both kernels here
    python benchmarks/vs_torch.py --configs tiny,small --threads 1 --what train
    python benchmarks/vs_torch.py --what startup,memory --steps 5
    python benchmarks/vs_torch.py --what train --compile   # + torch.compile column

Both frameworks compute the same function: the PyTorch model is
npformer.devtools.torch_reference.TorchTransformer, given npformer's weights with
from_npformer. Configurations (pre-LN, ReLU, dropout 0.1, output tied to the
target embedding, label smoothing 0.1, float32, full-length sequences, no padding):

  tiny   C=64,  H=4, F=256,  2+2 layers, V=1000, B=64, S=T=16
  small  C=128, H=4, F=512,  3+3 layers, V=4000, B=64, S=T=24
  base   C=256, H=8, F=1024, 3+3 layers, V=8000, B=32, S=T=32

Sections (--what), each a Markdown table:
  train    one training step: forward, loss, backward, AdamW (same param groups and
           hyper-parameters on both sides; no clipping). After warm-up, steps are
           timed one at a time, alternating npformer / PyTorch (A/B/A/B), so load
           changes hit both alike; each side's worker process times its own call.
           Median and interquartile range of ms/step, target tokens/s, the
           throughput ratio npformer / PyTorch, and model FLOP utilisation (MFU)
           against a measured float32 BLAS peak (np.matmul 2048^3 at the same thread
           count). With --compile, a third column: PyTorch with torch.compile
           (Inductor) on the loss, forward and backward; its warm-up calls compile.
  decode   greedy decoding with a key/value cache (tiny, B=64, S=16, exactly 16
           steps: the EOS logit is biased to -1e9 in both copies of the model)
           against `torch_greedy_decode` below, the same algorithm in PyTorch.
  startup  cold start: a subprocess with an empty NUMBA_CACHE_DIR imports npformer,
           builds tiny and runs its first training step (the JIT compiles); warm
           start: the same again with the cache now filled. PyTorch for reference.
  memory   peak resident memory (ru_maxrss) of N training steps, each framework in a
           subprocess of its own, minus the peak right after the imports.

Threads: --threads 1,2 sets both npformer.nn.threads.set_blas_threads(n) and
torch.set_num_threads(n). With 2 threads, the two frameworks' pools (OpenBLAS and
PyTorch's OpenMP) in one process, or any other busy process on a 2-core machine,
make idle threads spin against working ones and times collapse (seconds per step).
So each framework runs in a worker process of its own (--in-process: both in this
one), and --pause SECONDS sleeps before each timed call so spinning threads go to
sleep. Check the load average printed with each result.

BLAS kernel, two columns (benchmarks/blas_env.py): npformer runs once with the
environment as given and once with OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset
(OpenBLAS's own kernel for this CPU), each in worker processes of its own, timed
interleaved with the same PyTorch worker; every row names the kernel its worker
loaded (threadpoolctl) and its MFU is against that kernel's own peak. When the
environment sets neither variable the two are one column, and the output says so
(--as-given-env OPENBLAS_CORETYPE=Haswell forces the AVX2 kernel for the first).
Start-up and memory run in the first column only.

Shapes: B batch, S source len, T target len, C d_model, H heads, D head dim,
F d_ff, V vocab, L layers per stack.
"""
import argparse
import itertools
import json
import math
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
for _path in (REPO_ROOT, REPO_ROOT / "benchmarks"):
    if str(_path) not in sys.path:  # run as a script from a source checkout
        sys.path.insert(0, str(_path))

import blas_env  # noqa: E402  (the BLAS kernel of each column; no npformer import)

# npformer and torch are imported inside the functions that use them: the
# start-up and memory subprocesses run this file and must import only one side.


class BenchConfig(NamedTuple):
    d_model: int  # C
    n_heads: int  # H
    d_ff: int  # F
    n_layers: int  # L, encoder layers = decoder layers
    vocab: int  # V, source and target vocabulary
    batch: int  # B
    length: int  # S = T, every sequence full length


CONFIGS = {
    "tiny": BenchConfig(64, 4, 256, 2, 1000, 64, 16),
    "small": BenchConfig(128, 4, 512, 3, 4000, 64, 24),
    "base": BenchConfig(256, 8, 1024, 3, 8000, 32, 32),
}
# optimisation hyper-parameters, identical on both sides (npformer's AdamW defaults)
LR = 1e-3
BETAS = (0.9, 0.98)
EPS = 1e-9
WEIGHT_DECAY = 0.01
LABEL_SMOOTHING = 0.1
DROPOUT = 0.1
PAD, BOS, EOS = 0, 1, 2
# targets from the performance issue: npformer / PyTorch throughput, seconds, memory ratio
# Targets of issue #23 ("performance, round three"), for the machine's own kernel: at 1
# thread tiny >= 3x PyTorch, small and base at >= 80 % of the product peak (MFU against
# the row's own kernel); at 2 threads small and base >= 2.5x PyTorch
TRAIN_TARGET_RATIO = {"tiny": 3.0}
TRAIN_TARGET_MFU = {"small": 0.8, "base": 0.8}
TRAIN_TARGET_2_THREADS = {"small": 2.5, "base": 2.5}
DECODE_TARGET = 2.0
COLD_TARGET_S, WARM_TARGET_S = 5.0, 1.0
MEMORY_TARGET = 1.5
DECODE_BATCH, DECODE_SRC_LEN, DECODE_STEPS = 64, 16, 16
PEAK_N = 2048  # size of the square product that measures the BLAS peak


# ------------------------------------------------------------------ building blocks
def model_config(name):
    """The npformer ModelConfig of a benchmark configuration."""
    from npformer.nn.config import ModelConfig

    bc = CONFIGS[name]
    return ModelConfig(src_vocab_size=bc.vocab, tgt_vocab_size=bc.vocab, d_model=bc.d_model,
                       n_heads=bc.n_heads, d_ff=bc.d_ff, n_encoder_layers=bc.n_layers,
                       n_decoder_layers=bc.n_layers, max_len=64, dropout=DROPOUT,
                       activation="relu", norm_position="pre", tie_output=True,
                       share_embeddings=False, dtype="float32", seed=0)


def make_batches(name, count, seed=0):
    """`count` random batches without padding (ids 3..V-1: no PAD, BOS or EOS).

    Shapes: -> count x (src (B,S), tgt_in (B,T), tgt_out (B,T)) int64
    """
    bc = CONFIGS[name]
    rng = np.random.default_rng(seed)
    shape = (bc.batch, bc.length)
    return [tuple(rng.integers(3, bc.vocab, size=shape) for _ in range(3)) for _ in range(count)]


def train_flops(name, lm=False):
    """FLOPs of one training step: 3x the forward's matrix products (2 per multiply-add).

    Backward costs two products per forward product (dx and dW); embeddings,
    softmax, norms and the optimizer are left out, as usual for MFU. lm: the
    decoder-only model (L self-attention blocks, no encoder, no cross-attention).
    """
    bc = CONFIGS[name]
    B, L, C, F = bc.batch, bc.length, bc.d_model, bc.d_ff
    N = B * L  # token positions per side (S = T = L)
    proj = 2 * N * C * C  # one (N,C) @ (C,C) projection
    scores = 2 * 2 * B * L * L * C  # Q K^T and P V over all heads (masked entries included)
    ffn = 2 * 2 * N * C * F  # (N,C) @ (C,F) and (N,F) @ (F,C)
    encoder = bc.n_layers * (4 * proj + scores + ffn)
    decoder = bc.n_layers * (8 * proj + 2 * scores + ffn)  # self- and cross-attention
    output = 2 * N * C * bc.vocab  # (N,C) @ (C,V)
    if lm:
        return 3 * (encoder + output)  # an LM block costs what an encoder block does
    return 3 * (encoder + decoder + output)


def target_cell(ratio, mfu, name, threads=1):
    """Whether the translator meets its issue-#23 target: a ratio or an MFU, or '-' if none."""
    if threads == 1 and name in TRAIN_TARGET_MFU:
        target = TRAIN_TARGET_MFU[name]
        return f"{'ok' if mfu >= target else 'MISS'} (MFU >= {100 * target:.0f}%)"
    target = (TRAIN_TARGET_RATIO if threads == 1 else TRAIN_TARGET_2_THREADS).get(name)
    if target is None:
        return "-"
    return f"{'ok' if ratio >= target else 'MISS'} (>= {target}x)"


class NpformerTrainer:
    """One npformer training step: npformer.training.loop.train_step, without clipping."""

    def __init__(self, model, seed=0):
        from npformer.training.optim import AdamW

        self.model = model
        self.opt = AdamW(model.params, lr=LR, betas=BETAS, eps=EPS, weight_decay=WEIGHT_DECAY)
        self.rng = np.random.default_rng(seed)  # dropout masks

    def step(self, batch):
        from npformer.training.batching import Batch
        from npformer.training.loop import train_step

        src, tgt_in, tgt_out = batch  # src is None for a language model
        return train_step(self.model, self.opt, Batch(src, tgt_in, tgt_out, tgt_out.size), LR,
                          self.rng, LABEL_SMOOTHING)


class TorchTrainer:
    """One PyTorch training step, as a PyTorch user writes it."""

    def __init__(self, tm, seed=0, compile=False):
        import torch

        from npformer.devtools.torch_reference import param_groups

        torch.manual_seed(seed)  # dropout masks
        self.tm = tm.train()
        # torch.compile (Inductor, C++ on the CPU) of the loss: forward and backward
        # graphs; the optimizer step stays eager. The first calls compile (warm-up).
        self.loss = torch.compile(self.tm.loss) if compile else self.tm.loss
        # default implementation (on CPU: the per-tensor loop, not foreach / fused)
        self.opt = torch.optim.AdamW(param_groups(tm, WEIGHT_DECAY), lr=LR, betas=BETAS,
                                     eps=EPS)

    def step(self, batch):
        src, tgt_in, tgt_out = batch  # int64 tensors, converted once outside the timing
        self.opt.zero_grad(set_to_none=True)
        inputs = (tgt_in, tgt_out) if src is None else (src, tgt_in, tgt_out)  # LM: no source
        loss = self.loss(*inputs, label_smoothing=LABEL_SMOOTHING)
        loss.backward()
        self.opt.step()
        return loss.item()


def torch_batches(batches):
    import torch

    return [tuple(None if a is None else torch.from_numpy(a) for a in batch) for batch in batches]


def set_threads(n, frameworks=("npformer", "torch")):
    """The same thread count for OpenBLAS (npformer) and PyTorch's intra-op pool."""
    if "npformer" in frameworks:
        from npformer.nn.threads import set_blas_threads

        set_blas_threads(n)
    if any(fw.startswith("torch") for fw in frameworks):
        import torch

        torch.set_num_threads(n)


def thread_report():
    """One line per thread pool in this process (threadpoolctl, if installed)."""
    import torch

    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return f"torch intra-op threads {torch.get_num_threads()} (threadpoolctl not installed)"
    pools = [f"{p['internal_api']} {p.get('version') or ''} ({Path(p['filepath']).name}): "
             f"{p['num_threads']}" for p in threadpool_info()]
    return "; ".join(pools) + f"; torch.get_num_threads() {torch.get_num_threads()}"


# ------------------------------------------------------------------------ timing
class Stats(NamedTuple):
    median: float
    q1: float
    q3: float
    low: float
    high: float

    @classmethod
    def of(cls, seconds):
        s = np.asarray(seconds)
        q1, median, q3 = np.percentile(s, [25, 50, 75])
        return cls(median, q1, q3, s.min(), s.max())

    def ms(self):
        """'median (q1-q3)' in milliseconds."""
        return f"{self.median * 1e3:.1f} ({self.q1 * 1e3:.1f}-{self.q3 * 1e3:.1f})"


def time_interleaved(calls, repeats, warmup, pause):
    """Time each call `repeats` times, one call at a time, alternating A/B/A/B.

    calls: {label: fn}, fn() -> (seconds, result), timed by whoever runs it (this
    process, or a worker subprocess). Every fn runs `warmup` untimed times first.
    Returns ({label: Stats of seconds per call}, {label: result of the last call}).
    """
    for fn in calls.values():
        for _ in range(warmup):
            fn()
    seconds = {label: [] for label in calls}
    last = {}
    for _ in range(repeats):
        for label, fn in calls.items():
            if pause:
                time.sleep(pause)
            elapsed, last[label] = fn()
            seconds[label].append(elapsed)
    return {label: Stats.of(s) for label, s in seconds.items()}, last


def timed(fn):
    """fn() -> result  becomes  () -> (seconds, result)."""
    def call():
        t0 = time.perf_counter()
        result = fn()
        return time.perf_counter() - t0, result
    return call


def decode_source():
    """The decoding benchmark's sources: random non-special ids. Shapes: -> (B,S) int64"""
    rng = np.random.default_rng(1)
    return rng.integers(3, CONFIGS["tiny"].vocab, size=(DECODE_BATCH, DECODE_SRC_LEN))


def local_call(framework, what, name):
    """() -> (seconds, result) for one training step or one greedy decode of `framework`.

    The result is the loss or the token lists. Both frameworks start from the same
    weights: npformer's seeded initialisation, copied into PyTorch.
    """
    from npformer.models import build_model

    cfg = model_config(name)
    if what == "lm":  # the decoder-only language model of the same size: L blocks, no encoder
        cfg = cfg.replace(kind="decoder-only", n_encoder_layers=0)
    model = build_model(cfg)
    if what in ("train", "lm"):
        batches = make_batches(name, 8)
        if what == "lm":
            batches = [(None, tgt_in, tgt_out) for _, tgt_in, tgt_out in batches]
        if framework == "npformer":
            trainer = NpformerTrainer(model)
        else:
            from npformer.devtools.torch_reference import from_npformer

            trainer = TorchTrainer(from_npformer(model), compile=framework == "torch-compile")
            batches = torch_batches(batches)
        count = itertools.count()
        return timed(lambda: trainer.step(batches[next(count) % len(batches)]))
    model.params["out.b"][EOS] = -1e9  # never EOS: every row decodes all the steps
    src = decode_source()
    if framework == "npformer":
        from npformer.models.decoding import greedy_decode

        return timed(lambda: greedy_decode(model, src, max_new_tokens=DECODE_STEPS))
    import torch

    from npformer.devtools.torch_reference import from_npformer

    tm, t_src = from_npformer(model).eval(), torch.from_numpy(src)
    return timed(lambda: torch_greedy_decode(tm, t_src, DECODE_STEPS))


class Worker:
    """A subprocess holding one framework's model; each call runs one step there.

    By default each framework runs in a process of its own, so its thread
    pools (OpenBLAS; PyTorch's OpenMP) never share a process with the other's.
    The timing is taken inside the worker.
    """

    def __init__(self, framework, what, name, threads, env=None):
        cmd = [sys.executable, str(Path(__file__).resolve()), "--child", "worker",
               "--framework", framework, "--what", what, "--configs", name,
               "--threads", str(threads)]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     env=child_env(env), text=True)
        ready = self.proc.stdout.readline()
        if not ready.startswith("ready "):
            raise RuntimeError(f"worker {framework} {what} {name} did not start")
        self.info = json.loads(ready[len("ready "):])  # {"kernel": line, "peak": GFLOP/s}

    def __call__(self):
        self.proc.stdin.write("call\n")
        self.proc.stdin.flush()
        answer = json.loads(self.proc.stdout.readline())
        return answer["seconds"], answer["result"]

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


def child_worker(framework, what, name, threads):
    """Serve `call` lines on stdin with one JSON line each: {"seconds", "result"}.

    The first line, 'ready {...}', names the BLAS kernel this process runs and its
    measured peak (float32 GFLOP/s of a PEAK_N^3 product at this thread count).
    """
    set_threads(threads, (framework,))
    fn = local_call(framework, what, name)
    if framework == "npformer":
        info = {"kernel": blas_env.kernel_text(threads=threads),
                "variables": blas_env.variables_text(), "peak": blas_peak(which="numpy")}
    else:
        import torch

        info = {"kernel": f"PyTorch {torch.__version__} ({torch.get_num_threads()} threads)",
                "variables": "", "peak": blas_peak(which="torch")}
    print("ready " + json.dumps(info), flush=True)
    for _ in sys.stdin:
        seconds, result = fn()
        print(json.dumps({"seconds": seconds, "result": result}), flush=True)


def make_calls(what, name, threads, isolate, frameworks=("npformer", "torch"), columns=None):
    """{label: fn}, {label: worker info} and a function that releases them.

    columns (blas_env.Column list): one npformer worker per column, labelled
    "npformer:<column>", each started with its column's environment (the BLAS
    kernel is chosen when the worker loads it); PyTorch runs once, as given.
    """
    if isolate:
        workers = {}
        for fw in frameworks:
            if fw == "npformer" and columns:
                for col in columns:
                    workers[f"npformer:{col.name}"] = Worker(fw, what, name, threads, col.env)
            else:
                workers[fw] = Worker(fw, what, name, threads)
        return (workers, {label: w.info for label, w in workers.items()},
                lambda: [w.close() for w in workers.values()])
    set_threads(threads)
    calls = {fw: local_call(fw, what, name) for fw in frameworks}
    info = {"npformer": {"kernel": blas_env.kernel_text(threads=threads),
                         "variables": blas_env.variables_text(),
                         "peak": blas_peak(which="numpy")}}
    return calls, info, lambda: None


def npformer_labels(stats):
    """The npformer entries of a timing dict, in column order."""
    return [label for label in stats if label.startswith("npformer")]


def blas_peak(n=PEAK_N, repeats=3, which="numpy"):
    """Best float32 GFLOP/s of an (n,n) @ (n,n) product in NumPy or PyTorch, current threads."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    if which == "torch":
        import torch

        ta, tb = torch.from_numpy(a), torch.from_numpy(b)
        fn = lambda: ta @ tb  # noqa: E731
    else:
        fn = lambda: a @ b  # noqa: E731
    fn()  # warm up
    best = min(_timed(fn) for _ in range(repeats))
    return 2.0 * n ** 3 / best / 1e9


def _timed(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


# ------------------------------------------------------------------------- train
def run_train(config_names, thread_counts, steps, warmup, pause, isolate, what="train",
              compiled=False, columns=None):
    print("\n## Training step (forward + backward + AdamW), float32"
          + (": decoder-only language model\n" if what == "lm" else "\n"))
    rows = []
    kernels_seen = {}
    for threads in thread_counts:
        for name in config_names:
            bc = CONFIGS[name]
            frameworks = ("npformer", "torch") + (("torch-compile",) if compiled else ())
            calls, info, release = make_calls(what, name, threads, isolate, frameworks, columns)
            stats, _ = time_interleaved(calls, steps, warmup, pause)
            release()
            load = os.getloadavg()[0]
            tokens = bc.batch * bc.length  # target tokens per step
            flops = train_flops(name, lm=what == "lm")
            s_t = stats["torch"]
            line = f"  {name}, {threads} thread(s): torch {s_t.ms()} ms"
            for label in npformer_labels(stats):
                s_np = stats[label]
                peak = info[label]["peak"]
                kernels_seen[(label, threads)] = (f"{info[label]['kernel']} "
                                                  f"({info[label]['variables']}): peak "
                                                  f"{peak:.0f} GFLOP/s")
                ratio = s_t.median / s_np.median  # throughput npformer / torch
                mfu_np = flops / s_np.median / (peak * 1e9)
                mfu_t = flops / s_t.median / (peak * 1e9)
                rows.append(
                    f"| {name} | {threads} | {info[label]['kernel'].split(' kernel')[0]} "
                    f"| {s_np.ms()} | {s_t.ms()} | {tokens / s_np.median:,.0f} "
                    f"| {tokens / s_t.median:,.0f} | **{ratio:.2f}x** "
                    f"| {target_cell(ratio, mfu_np, name, threads) if what == 'train' else '-'} "
                    f"| {100 * mfu_np:.0f}% | {100 * mfu_t:.0f}% | {load:.2f} |")
                line += f"; {label} {s_np.ms()} ms, ratio {ratio:.2f}"
                if compiled:
                    s_c = stats["torch-compile"]
                    rows[-1] += f" {s_c.ms()} | **{s_c.median / s_np.median:.2f}x** |"
            if compiled:
                line += f"; torch.compile {stats['torch-compile'].ms()} ms"
            print(f"{line}, load {load:.2f}", flush=True)
    where = "one worker process per framework and column" if isolate else "all in this process"
    print(f"\n{steps} timed steps per framework ({where}) after {warmup} warm-up steps, "
          "interleaved; ms/step as median (interquartile range); PyTorch is timed once per "
          "row pair. MFU = training FLOPs (3x forward matrix products) / time / the float32 "
          f"BLAS peak of the row's own kernel ({PEAK_N}^3 product at the same thread count; "
          "PyTorch's MFU against the same peak). Load: 1-minute load average after the row.")
    for (label, threads), text in kernels_seen.items():
        print(f"- {label}, {threads} thread(s): {text}")
    compile_head = " torch.compile ms/step | ratio vs compiled |" if compiled else ""
    print("\n| config | threads | npformer's BLAS kernel | npformer ms/step | PyTorch ms/step "
          "| npformer tok/s | PyTorch tok/s | ratio | target | npformer MFU | PyTorch MFU "
          "| load |" + compile_head)
    print("|---|---:|---|---:|---:|---:|---:|---:|---|---:|---:|---:|"
          + ("---:|---:|" if compiled else ""))
    print("\n".join(rows))


# ------------------------------------------------------------------------ decode
def torch_greedy_decode(tm, src, max_len, bos_id=BOS, eos_id=EOS):
    """Greedy decoding with a key/value cache in PyTorch, as npformer.models.decoding does it.

    Cross-attention K, V are projected once; self-attention K, V are written into
    preallocated (B,H,max_len,D) buffers, one slot per step; each step runs the
    decoder on the newest token only. PAD is never emitted; a row stops at EOS
    and is fed PAD afterwards. Pre-LN models only (the benchmark's).
    Shapes: src (B,S) int64 tensor -> B lists of ids
    """
    import torch
    import torch.nn.functional as F

    cfg = tm.cfg
    if cfg.norm_position != "pre":
        raise ValueError("torch_greedy_decode follows the pre-LN path only")
    pad, H, C = cfg.pad_id, cfg.n_heads, cfg.d_model
    D = C // H
    B = src.shape[0]
    with torch.inference_mode():
        memory = tm.encode(src)  # (B,S) -> (B,S,C)
        cross_allowed = (src != pad)[:, None, None, :]  # (B,1,1,S)
        cross_kv = []
        for layer in tm.decoder:
            k, v = layer.cross_attn.kv_proj(memory).chunk(2, dim=-1)  # (B,S,2C) -> 2 x (B,S,C)
            k = k.reshape(B, -1, H, D).transpose(1, 2)  # (B,S,C) -> (B,H,S,D)
            v = v.reshape(B, -1, H, D).transpose(1, 2)  # (B,S,C) -> (B,H,S,D)
            cross_kv.append((k, v))
        buffers = [(memory.new_zeros(B, H, max_len, D), memory.new_zeros(B, H, max_len, D))
                   for _ in tm.decoder]  # per layer: self K, V (B,H,L',D)
        key_ok = torch.zeros(B, max_len, dtype=torch.bool)  # (B,L') fed token is not PAD
        tokens = torch.full((B, max_len + 1), pad, dtype=torch.long)  # BOS, then outputs
        tokens[:, 0] = bos_id
        lengths = torch.full((B,), max_len, dtype=torch.long)
        finished = torch.zeros(B, dtype=torch.bool)
        scale = math.sqrt(C)
        for t in range(max_len):
            fed = tokens[:, t]  # (B,)
            y = (tm.tgt_embed(fed) * scale + tm.tgt_pos[t])[:, None]  # (B,) -> (B,1,C)
            key_ok[:, t] = fed != pad
            self_allowed = key_ok[:, None, None, : t + 1]  # (B,1,1,t+1)
            for layer, (k_cache, v_cache), (k_mem, v_mem) in zip(tm.decoder, buffers, cross_kv):
                a = layer.self_attn
                h = layer.sub1.norm(y)  # (B,1,C)
                q, k, v = a.qkv_proj(h).view(B, 3, H, D).unbind(1)  # (B,1,3C) -> 3 x (B,H,D)
                q = q[:, :, None]  # (B,H,D) -> (B,H,1,D)
                k_cache[:, :, t] = k
                v_cache[:, :, t] = v
                ctx = F.scaled_dot_product_attention(q, k_cache[:, :, : t + 1],
                                                     v_cache[:, :, : t + 1],
                                                     attn_mask=self_allowed)  # (B,H,1,D)
                y = y + a.out_proj(ctx.transpose(1, 2).reshape(B, 1, C))
                c = layer.cross_attn
                h = layer.sub2.norm(y)
                q = c.q_proj(h).view(B, 1, H, D).transpose(1, 2)  # (B,H,1,D)
                ctx = F.scaled_dot_product_attention(q, k_mem, v_mem, attn_mask=cross_allowed)
                y = y + c.out_proj(ctx.transpose(1, 2).reshape(B, 1, C))
                y = y + layer.ffn(layer.sub3.norm(y))
            logits = tm.project(tm.decoder_norm(y))[:, 0]  # (B,1,C) -> (B,V)
            logits[:, pad] = -math.inf  # PAD is never generated
            next_token = logits.argmax(dim=-1)  # (B,)
            ends = (next_token == eos_id) & ~finished
            lengths[ends] = t
            finished |= ends
            tokens[:, t + 1] = torch.where(finished, pad, next_token)
            if bool(finished.all()):
                break
    return [tokens[b, 1: 1 + int(lengths[b])].tolist() for b in range(B)]


def run_decode(thread_counts, repeats, warmup, pause, isolate, columns=None):
    print(f"\n## Greedy decoding with KV cache (tiny, B={DECODE_BATCH}, S={DECODE_SRC_LEN}, "
          f"exactly {DECODE_STEPS} steps)\n")
    rows = []
    for threads in thread_counts:
        calls, info, release = make_calls("decode", "tiny", threads, isolate, columns=columns)
        stats, out = time_interleaved(calls, repeats, warmup, pause)
        release()
        load = os.getloadavg()[0]
        b = np.array(out["torch"])
        tokens = DECODE_BATCH * DECODE_STEPS
        s_t = stats["torch"]
        for label in npformer_labels(stats):
            a = np.array(out[label])
            if a.shape != (DECODE_BATCH, DECODE_STEPS) or b.shape != a.shape:
                raise RuntimeError(f"expected {DECODE_STEPS} tokens per row: {a.shape}, {b.shape}")
            s_np = stats[label]
            ratio = s_t.median / s_np.median
            rows.append(f"| {threads} | {info[label]['kernel'].split(' kernel')[0]} "
                        f"| {s_np.ms()} | {s_t.ms()} | {tokens / s_np.median:,.0f} "
                        f"| {tokens / s_t.median:,.0f} | **{ratio:.2f}x** "
                        f"| {'ok' if ratio >= DECODE_TARGET else 'MISS'} (>= {DECODE_TARGET}) "
                        f"| {100 * (a == b).mean():.1f}% | {load:.2f} |")
    print("| threads | npformer's BLAS kernel | npformer ms | PyTorch ms | npformer tok/s "
          "| PyTorch tok/s | ratio | target | same tokens | load |")
    print("|---:|---|---:|---:|---:|---:|---:|---|---:|---:|")
    print("\n".join(rows))
    print(f"\n{repeats} timed decodes each (median (IQR)); 'same tokens': share of the "
          f"{DECODE_BATCH}x{DECODE_STEPS} greedy choices on which the two agree (float32 rounding "
          "can flip near-ties of an untrained model).")


# ----------------------------------------------------------------- subprocesses
def child_startup(framework, name, threads):
    """Import, build `name`, first training step; seconds for each, as JSON."""
    t0 = time.perf_counter()
    if framework == "npformer":
        from npformer.models.transformer import Transformer
        from npformer.nn.threads import set_blas_threads

        set_blas_threads(threads)
        t_import = time.perf_counter()
        trainer = NpformerTrainer(Transformer(model_config(name)))
        batch = make_batches(name, 1)[0]
    else:
        import torch

        from npformer.devtools.torch_reference import TorchTransformer

        torch.set_num_threads(threads)
        t_import = time.perf_counter()
        trainer = TorchTrainer(TorchTransformer(model_config(name)))
        batch = torch_batches(make_batches(name, 1))[0]
    t_build = time.perf_counter()
    trainer.step(batch)
    t_step = time.perf_counter()
    return {"import_s": t_import - t0, "build_s": t_build - t_import,
            "first_step_s": t_step - t_build}


def proc_status_mib(field):
    """A memory field of /proc/self/status (VmRSS: now, VmHWM: peak), in MiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024  # kB
    raise KeyError(field)


def reset_peak_rss():
    """Start the peak (VmHWM) afresh from the current RSS; False if the kernel refuses.

    Needed because the imports' own peak can be higher than training's: torch's
    import peak is above a tiny model's training peak, so ru_maxrss after the
    imports would hide the training entirely.
    """
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def child_memory(framework, name, threads, steps):
    """Memory (MiB) around `steps` training steps, measured inside one process.

    baseline: RSS right after the imports; peak: the peak RSS since then
    (VmHWM after resetting it, or ru_maxrss if the kernel refuses the reset);
    also ru_maxrss (the peak since the process started) and the peak after step 1.
    """
    if framework == "npformer":
        from npformer.models.transformer import Transformer
        from npformer.nn.threads import set_blas_threads

        set_blas_threads(threads)
    else:
        import torch

        from npformer.devtools.torch_reference import TorchTransformer

        torch.set_num_threads(threads)
    import_maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    baseline = proc_status_mib("VmRSS")
    reset = reset_peak_rss()
    if framework == "npformer":
        trainer = NpformerTrainer(Transformer(model_config(name)))
        batches = make_batches(name, 4)
        n_params = trainer.model.n_params
    else:
        trainer = TorchTrainer(TorchTransformer(model_config(name)))
        batches = torch_batches(make_batches(name, 4))
        n_params = sum(p.numel() for p in trainer.tm.parameters())

    def peak():
        if reset:
            return proc_status_mib("VmHWM")
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    trainer.step(batches[0])
    first = peak()
    for i in range(1, steps):
        trainer.step(batches[i % len(batches)])
    return {"baseline_mib": baseline, "first_mib": first, "peak_mib": peak(),
            "import_maxrss_mib": import_maxrss, "peak_reset": reset,
            "maxrss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "n_params": n_params}


def child_env(env=None):
    """A child's environment: `env` (default this one) with this checkout on PYTHONPATH."""
    env = dict(os.environ if env is None else env)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env.pop("NUMBA_DISABLE_JIT", None)
    return env


def run_child(kind, framework, name, threads, steps=1, cache_dir=None, env=None):
    """Run this file as a subprocess (`--child`); returns (its JSON result, wall seconds)."""
    env = child_env(env)
    if cache_dir is not None:
        env["NUMBA_CACHE_DIR"] = cache_dir
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", kind,
           "--framework", framework, "--configs", name, "--threads", str(threads),
           "--steps", str(steps)]
    t0 = time.perf_counter()
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if out.returncode != 0:
        raise RuntimeError(f"child {kind} {framework} {name} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1]), wall


def run_startup(threads, env=None):
    print("\n## Start-up: import + build tiny + first training step (subprocesses)\n")
    print("| framework | run | process wall s | import s | build s | first step s | target |")
    print("|---|---|---:|---:|---:|---:|---|")
    with tempfile.TemporaryDirectory(prefix="npformer-numba-") as cache_dir:
        runs = [("npformer", "cold (empty NUMBA_CACHE_DIR)", COLD_TARGET_S),
                ("npformer", "warm (same cache dir)", WARM_TARGET_S),
                ("torch", "first", None), ("torch", "second", None)]
        for framework, label, target in runs:
            r, wall = run_child("startup", framework, "tiny", threads, cache_dir=cache_dir,
                                env=env)
            verdict = "-" if target is None else (
                f"{'ok' if wall <= target else 'MISS'} (<= {target:g} s)")
            print(f"| {framework} | {label} | {wall:.2f} | {r['import_s']:.2f} "
                  f"| {r['build_s']:.2f} | {r['first_step_s']:.2f} | {verdict} |", flush=True)
    print("\nprocess wall: the whole subprocess, interpreter start-up included "
          "(what a user waits for); the other columns are measured inside it.")


def run_memory(config_names, threads, steps, env=None):
    print(f"\n## Peak memory of {steps} training steps (one subprocess per framework, "
          f"{threads} thread(s))\n")
    run_child("memory", "npformer", "tiny", threads, steps=1, env=env)  # fill the Numba cache
    print("| config | framework | RSS after imports MiB | peak MiB | peak - imports MiB "
          "| growth after step 1 MiB | params+grads+Adam MiB | ru_maxrss MiB "
          "| npformer / PyTorch | target |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for name in config_names:
        result = {fw: run_child("memory", fw, name, threads, steps=steps, env=env)[0]
                  for fw in ("npformer", "torch")}
        delta = {fw: r["peak_mib"] - r["baseline_mib"] for fw, r in result.items()}
        ratio = delta["npformer"] / max(delta["torch"], 1e-9)
        for fw, r in result.items():
            state = 4 * 4 * r["n_params"] / 2 ** 20  # float32 param, grad, m, v
            mark = (f"**{ratio:.2f}x** | {'ok' if ratio <= MEMORY_TARGET else 'MISS'} "
                    f"(<= {MEMORY_TARGET})") if fw == "npformer" else "| "
            print(f"| {name} | {fw} | {r['baseline_mib']:.0f} | {r['peak_mib']:.0f} "
                  f"| {delta[fw]:.0f} | {r['peak_mib'] - r['first_mib']:.0f} | {state:.0f} "
                  f"| {r['maxrss_mib']:.0f} | {mark} |", flush=True)
    if not all(r["peak_reset"] for r in result.values()):
        print("\n(the kernel refused to reset the peak: 'peak' is ru_maxrss, which includes "
              "the imports' own peak)")
    print("\npeak - imports: the peak RSS during model building and training (VmHWM, "
          "reset after the imports) minus the RSS right after the imports. ru_maxrss: "
          "the process's peak since it started, imports included.")


# ---------------------------------------------------------------------------- main
def parse_list(text, choices, what):
    items = [s.strip() for s in text.split(",") if s.strip()]
    bad = [s for s in items if s not in choices]
    if bad or not items:
        raise SystemExit(f"vs_torch.py: bad {what} {bad or text!r}; choose from "
                         f"{', '.join(map(str, choices))}")
    return items


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default="tiny,small,base",
                        help="comma-separated subset of " + ",".join(CONFIGS))
    parser.add_argument("--threads", default="1,2", help="thread counts to run, e.g. 1,2")
    parser.add_argument("--steps", type=int, default=20,
                        help="timed steps (and decodes) per framework; memory: steps run "
                             "(default 20)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed calls first (default 3)")
    parser.add_argument("--pause", type=float, default=0.0,
                        help="seconds to sleep before each timed call (default 0)")
    parser.add_argument("--what", default="train,decode,startup,memory",
                        help="sections: comma-separated subset of train,decode,startup,memory")
    parser.add_argument("--in-process", action="store_true",
                        help="train/decode: run both frameworks in this process instead of one "
                             "worker process each (their thread pools then interfere)")
    parser.add_argument("--child", choices=("startup", "memory", "worker"), help=argparse.SUPPRESS)
    parser.add_argument("--compile", action="store_true",
                        help="train/lm: also time PyTorch with torch.compile (a third column; "
                             "the warm-up calls compile)")
    parser.add_argument("--framework", choices=("npformer", "torch", "torch-compile"),
                        help=argparse.SUPPRESS)
    blas_env.add_arguments(parser)
    args = parser.parse_args(argv)
    configs = parse_list(args.configs, tuple(CONFIGS), "config")
    threads = [int(t) for t in parse_list(args.threads, ("1", "2", "3", "4"), "threads")]
    if args.steps < 1 or args.warmup < 0 or args.pause < 0:
        parser.error("--steps must be >= 1, --warmup and --pause >= 0")

    if args.child == "startup":
        print(json.dumps(child_startup(args.framework, configs[0], threads[0])))
        return
    if args.child == "memory":
        print(json.dumps(child_memory(args.framework, configs[0], threads[0], args.steps)))
        return
    if args.child == "worker":
        child_worker(args.framework, args.what, configs[0], threads[0])
        return

    what = parse_list(args.what, ("train", "lm", "decode", "startup", "memory"), "section")
    columns = blas_env.columns(args)
    if args.in_process and len(columns) > 1:
        parser.error("--in-process runs this process's own BLAS only: add --columns as-given")
    if args.in_process and columns[0].env.get("OPENBLAS_CORETYPE") != os.environ.get(
            "OPENBLAS_CORETYPE"):
        parser.error("--in-process cannot change this process's BLAS kernel: set the variables "
                     "in the shell instead")
    import numba
    import torch

    print(f"# npformer vs PyTorch\n\n{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
          f"{blas_env.cpu_text()}, {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.2f} at start; Python {platform.python_version()}, "
          f"NumPy {np.__version__}, Numba {numba.__version__}, torch {torch.__version__}")
    print("\nnpformer's BLAS columns: " + "; ".join(c.label for c in columns)
          + " (each in worker processes of its own; the kernel is read from each worker)")
    if blas_env.same_note(args):
        print(blas_env.same_note(args))
    t0 = time.perf_counter()
    if "train" in what:
        run_train(configs, threads, args.steps, args.warmup, args.pause, not args.in_process,
                  compiled=args.compile, columns=columns)
    if "lm" in what:
        run_train(configs, threads, args.steps, args.warmup, args.pause, not args.in_process, "lm",
                  compiled=args.compile, columns=columns)
    if "decode" in what:
        run_decode(threads, args.steps, args.warmup, args.pause, not args.in_process, columns)
    if ("startup" in what or "memory" in what) and len(columns) > 1:
        print(f"\n(start-up and memory: the first column only, {columns[0].label})")
    if "startup" in what:
        run_startup(threads[0], columns[0].env)
    if "memory" in what:
        run_memory(configs, threads[0], args.steps, columns[0].env)
    print(f"\n(total {time.perf_counter() - t0:.0f} s, load average now "
          f"{os.getloadavg()[0]:.2f})")


if __name__ == "__main__":
    main()
