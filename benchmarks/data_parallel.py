"""Data parallelism on this machine: 1 and 2 processes against 1 and 2 BLAS threads and PyTorch.

    python benchmarks/data_parallel.py                  # train-step table, tiny/small/base
    python benchmarks/data_parallel.py --configs small --steps 30
    python benchmarks/data_parallel.py --toy            # time-to-quality of `npformer train`

Train-step table: the configurations of benchmarks/vs_torch.py (full-length random
batches, dropout 0.1, label smoothing 0.1, AdamW), one global batch per step:
  npformer 1 proc x 1 thread   the global batch in one process, one BLAS thread
  npformer 1 proc x 2 threads  the same with two BLAS threads
  npformer 2 procs x 1 thread  mpiexec -n 2: each process takes half of every batch,
                               one Allreduce sums the gradients (npformer/training/distributed.py)
  PyTorch 2 threads            the same model in PyTorch (vs_torch.py's worker)
Every mode runs in fresh processes of its own; the median of --steps timed steps
after --warmup is reported, with target tokens/s and the speed-up over 1 x 1.
For 2 processes the table also gives the time rank 0 spends in the two Allreduce
calls of a step (communication, including waiting for the slower rank) and the
gradient size; docs/distributed.md turns these into cluster estimates.

BLAS columns (benchmarks/blas_env.py): the whole table runs once with the
environment as given and once with OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE unset (the
children and mpiexec's ranks inherit the column's environment).

--toy runs the default `npformer train` once with 1 process and once with
`--workers 2`, and reports wall time, steps, tokens/s and the test-split score.
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
for path in (REPO_ROOT, REPO_ROOT / "benchmarks"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

import blas_env  # noqa: E402  (the BLAS kernel; the two columns)
import vs_torch  # noqa: E402  (configurations, batches and the PyTorch worker)


def npformer_steps(name, steps, warmup, threads, world=None):
    """Median seconds per training step and seconds per step spent in the Allreduce calls."""
    from npformer.training.batching import Batch
    from npformer.training.distributed import GradientSync
    from npformer.models.transformer import Transformer
    from npformer.training.optim import AdamW
    from npformer.nn.threads import set_blas_threads
    from npformer.training.loop import train_step

    set_blas_threads(threads)
    model = Transformer(vs_torch.model_config(name))
    opt = AdamW(model.params, lr=vs_torch.LR, betas=vs_torch.BETAS, eps=vs_torch.EPS,
                weight_decay=vs_torch.WEIGHT_DECAY)
    rank, size = (world.rank, world.size) if world else (0, 1)
    sync = GradientSync(world, model) if world else None
    comm = [0.0]
    if sync:
        inner = sync.__call__

        def timed_sync(loss, n_tokens):
            t0 = time.perf_counter()
            out = inner(loss, n_tokens)
            comm[0] += time.perf_counter() - t0
            return out
        call = timed_sync
    else:
        call = None
    batches = []
    for src, tgt_in, tgt_out in vs_torch.make_batches(name, 8):
        part = slice(rank, None, size)  # this process's rows of the global batch
        batches.append(Batch(src[part], tgt_in[part], tgt_out[part], tgt_out[part].size))
    times, comms = [], []
    for i in range(warmup + steps):
        rng = np.random.default_rng([0, i, rank])
        comm[0] = 0.0
        if world:
            world.comm.Barrier()  # both ranks start the step together
        t0 = time.perf_counter()
        train_step(model, opt, batches[i % len(batches)], vs_torch.LR, rng,
                   vs_torch.LABEL_SMOOTHING, 0.0, sync=call)
        if i >= warmup:
            times.append(time.perf_counter() - t0)
            comms.append(comm[0])
    return statistics.median(times), statistics.median(comms), model.n_params


def child(args):
    """One measurement in this process (or this MPI rank); prints one JSON line (rank 0)."""
    world = None
    if args.mode == "mpi":
        from npformer.training.distributed import world as get_world
        world = get_world()
    seconds, comm, n_params = npformer_steps(args.configs, args.steps, args.warmup,
                                             args.threads, world)
    if world is None or world.rank == 0:
        print(json.dumps({"seconds": seconds, "comm": comm, "n_params": n_params}))


def measure(name, mode, threads, steps, warmup):
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", "--mode", mode,
           "--configs", name, "--threads", str(threads), "--steps", str(steps),
           "--warmup", str(warmup)]
    if mode == "mpi":
        cmd = ["mpiexec", "-n", "2", *cmd]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=vs_torch.child_env())
    return json.loads(out.stdout.strip().splitlines()[-1])


def torch_median(name, threads, steps, warmup):
    worker = vs_torch.Worker("torch", "train", name, threads)
    try:
        times = [worker()[0] for _ in range(warmup + steps)][warmup:]
    finally:
        worker.close()
    return statistics.median(times)


def train_table(names, steps, warmup):
    rows = ["| config | 1 proc x 1 thread | 1 proc x 2 threads | 2 procs x 1 thread | "
            "PyTorch 2 threads | 2 procs vs 1x1 | 2 procs vs 1x2 | 2 procs vs PyTorch 2 | "
            "Allreduce ms (rank 0) | gradient MB |", "|---" * 10 + "|"]
    for name in names:
        tokens = vs_torch.CONFIGS[name].batch * vs_torch.CONFIGS[name].length
        one = measure(name, "single", 1, steps, warmup)
        two_threads = measure(name, "single", 2, steps, warmup)
        mpi = measure(name, "mpi", 1, steps, warmup)
        torch2 = torch_median(name, 2, steps, warmup)

        def cell(seconds):
            return f"{1e3 * seconds:.1f} ms, {tokens / seconds:,.0f} tok/s"
        rows.append(
            f"| {name} | {cell(one['seconds'])} | {cell(two_threads['seconds'])} | "
            f"{cell(mpi['seconds'])} | {cell(torch2)} | "
            f"{one['seconds'] / mpi['seconds']:.2f}x | "
            f"{two_threads['seconds'] / mpi['seconds']:.2f}x | {torch2 / mpi['seconds']:.2f}x | "
            f"{1e3 * mpi['comm']:.2f} | {4 * mpi['n_params'] / 1e6:.2f} |")
        print(rows[-1], flush=True)
    return "\n".join(rows)


def toy_run(workers):
    """`npformer train` (the default toy run), timed; returns a summary dict."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "npformer", "train", "--out-dir", tmp]
        if workers > 1:
            cmd += ["--workers", str(workers)]
        t0 = time.perf_counter()
        out = subprocess.run(cmd, capture_output=True, text=True, check=True)
        wall = time.perf_counter() - t0
        log = [json.loads(line) for line in Path(tmp, "log.jsonl").read_text().splitlines()]
    train_rows = [h for h in log if h["type"] == "train"]
    score = re.search(r"BLEU ([\d.]+), exact match ([\d.]+)%", out.stdout)
    valid = [(h["step"], round(h["bleu"], 1)) for h in log if h["type"] == "valid"]
    return {"workers": workers, "wall_s": wall, "steps": train_rows[-1]["step"],
            "tokens_per_s": statistics.median(h["tokens_per_s"] for h in train_rows),
            "test_bleu": float(score.group(1)), "test_exact": float(score.group(2)),
            "valid_bleu_by_step": valid}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default="tiny,small,base")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--toy", action="store_true", help="time-to-quality of npformer train")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--mode", choices=["single", "mpi"], help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    blas_env.add_arguments(parser)
    args = parser.parse_args(argv)
    if args.child:
        return child(args)
    if blas_env.dispatch(args, __file__, argv):
        return
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores, load "
          f"{os.getloadavg()[0]:.2f}; {blas_env.kernel_report(threads=1)} (the 1-thread "
          "modes; '1 proc x 2 threads' runs the same kernel with 2)")
    if args.toy:
        for workers in (1, 2):
            print(json.dumps(toy_run(workers)), flush=True)
        return
    print(train_table(args.configs.split(","), args.steps, args.warmup))


if __name__ == "__main__":
    main()
