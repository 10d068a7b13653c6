"""Which BLAS kernel a benchmark ran, and running a benchmark in two columns.

NumPy's OpenBLAS picks its compute kernel when it loads, from the CPU it finds,
unless the environment overrides the choice:

  OPENBLAS_CORETYPE   force a kernel family (e.g. Haswell: AVX2 on a CPU with AVX-512)
  OPENBLAS_L2_SIZE    the L2 cache size OpenBLAS plans its blocking with

Both are read once, when the library loads, so a benchmark that compares two
environments runs each in a process of its own. Every benchmark here can run
in two columns:

  as given   the environment exactly as this shell has it (plus any
             --as-given-env KEY=VALUE), e.g. OPENBLAS_CORETYPE=Haswell on the
             project's machines
  auto       the same environment with both variables removed: OpenBLAS's own
             choice for this CPU, what a learner's laptop runs

When the environment sets neither variable, the two columns are the same
kernel; the benchmark says so and runs it once. Force the other kernel for the
first column explicitly to see both here:

    python benchmarks/gemm_floor.py --as-given-env OPENBLAS_CORETYPE=Haswell

The kernel a process really runs is read with threadpoolctl (library, version,
architecture, threads), so a table never has to trust the variables.

    python benchmarks/blas_env.py              # the kernel of each column
    python benchmarks/blas_env.py check        # correctness of each column's kernel
"""
import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

VARIABLES = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
AS_GIVEN, AUTO = "as-given", "auto"
REPO_ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------- the kernel
def blas_pools():
    """threadpoolctl's description of every BLAS library loaded in this process.

    Each a dict with internal_api (openblas, mkl, ...), version, architecture
    (the kernel family OpenBLAS runs), num_threads and the library's file name.
    An empty list when threadpoolctl is missing.
    """
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return []
    import numpy  # noqa: F401  (loads NumPy's BLAS, so threadpoolctl can see it)

    return [{"internal_api": p.get("internal_api"), "version": p.get("version"),
             "architecture": p.get("architecture"), "num_threads": p.get("num_threads"),
             "library": Path(p.get("filepath", "")).name, "filepath": p.get("filepath", "")}
            for p in threadpool_info() if p.get("user_api") == "blas"]


def numpy_blas():
    """The pool of NumPy's own BLAS (the one npformer's products run on), or None."""
    pools = blas_pools()
    mine = [p for p in pools if "numpy" in p["filepath"]]  # numpy.libs/libscipy_openblas...
    return (mine or pools or [None])[0]


def variables_text(env=None):
    """'OPENBLAS_CORETYPE=Haswell, OPENBLAS_L2_SIZE unset' for an environment."""
    env = os.environ if env is None else env
    return ", ".join(f"{v}={env[v]}" if v in env else f"{v} unset" for v in VARIABLES)


def kernel_text(pool=None, threads=None):
    """One line naming the BLAS kernel: 'OpenBLAS 0.3.31 SkylakeX, 1 thread'.

    pool: a blas_pools() entry (default: this process's NumPy BLAS); threads:
    the count to report instead of the pool's (e.g. the count a benchmark set).
    """
    pool = numpy_blas() if pool is None else pool
    if pool is None:
        return "BLAS kernel unknown (threadpoolctl not installed)"
    n = pool["num_threads"] if threads is None else threads
    name = {"openblas": "OpenBLAS", "mkl": "MKL", "blis": "BLIS"}.get(pool["internal_api"],
                                                                     pool["internal_api"])
    return (f"{name} {pool['version']} {pool['architecture']} kernel, "
            f"{n} thread{'s' if n != 1 else ''}")


def cpu_text():
    """'AMD EPYC (family 25, model 17)' from /proc/cpuinfo, or the platform's name.

    The kernel's speed depends on the processor's generation, not only on its
    instruction set: a CPU may run 512-bit instructions on 256-bit units, so the
    same AVX-512 kernel can be twice the AVX2 rate on one host and equal on another.
    """
    fields = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())
                if not line.strip():
                    break  # the first processor is enough
    except OSError:
        import platform

        return platform.processor() or platform.machine()
    return (f"{fields.get('model name', '?')} (family {fields.get('cpu family', '?')}, "
            f"model {fields.get('model', '?')})")


def kernel_report(threads=None):
    """The kernel line, the two variables and the CPU, as a benchmark prints them at its start."""
    return f"BLAS: {kernel_text(threads=threads)} ({variables_text()}); CPU {cpu_text()}"


# ------------------------------------------------------------------ two columns
class Column(NamedTuple):
    name: str  # AS_GIVEN or AUTO
    env: dict  # the whole environment of the column's process
    label: str  # how a table heads it, e.g. "as given (OPENBLAS_CORETYPE=Haswell)"


def add_arguments(parser, default="both"):
    """--columns, --as-given-env and the hidden --column a child runs with."""
    parser.add_argument("--columns", default=default, choices=("both", AS_GIVEN, AUTO),
                        help="run in the environment as given, with OPENBLAS_CORETYPE and "
                             "OPENBLAS_L2_SIZE unset (auto: OpenBLAS's own kernel), or both, "
                             f"each in a process of its own (default {default})")
    parser.add_argument("--as-given-env", action="append", default=[], metavar="KEY=VALUE",
                        help="add KEY=VALUE to the 'as given' column's environment, e.g. "
                             "OPENBLAS_CORETYPE=Haswell when this shell sets neither variable "
                             "(repeatable)")
    parser.add_argument("--column", choices=(AS_GIVEN, AUTO), help=argparse.SUPPRESS)


def column_env(name, overrides=()):
    """The environment of one column: this one (+ overrides), or without both variables."""
    env = dict(os.environ)
    if name == AUTO:
        for v in VARIABLES:
            env.pop(v, None)
        return env
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"--as-given-env {item!r}: expected KEY=VALUE")
        env[key] = value
    return env


def columns(args):
    """The columns to run, in order; one when both would run the same environment."""
    wanted = (AS_GIVEN, AUTO) if args.columns == "both" else (args.columns,)
    result = []
    for name in wanted:
        env = column_env(name, args.as_given_env)
        label = ("as given" if name == AS_GIVEN else "auto") + f" ({variables_text(env)})"
        result.append(Column(name, env, label))
    if len(result) == 2 and all(result[0].env.get(v) == result[1].env.get(v) for v in VARIABLES):
        return [result[1]._replace(label="as given = auto (the environment sets neither "
                                         "variable)")]
    return result


def same_note(args):
    """The note printed when the environment sets neither variable, or '' when it does."""
    if args.columns != "both" or len(columns(args)) == 2:
        return ""
    return ("Note: this environment sets neither OPENBLAS_CORETYPE nor OPENBLAS_L2_SIZE, so "
            "'as given' and 'auto' are the same kernel and run once. To compare with the "
            "forced AVX2 kernel of the project's machines, add "
            "--as-given-env OPENBLAS_CORETYPE=Haswell.")


def child_env(env):
    """A column's environment, with this checkout first on PYTHONPATH."""
    env = dict(env)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    return env


def run_columns(args, script, argv, capture=False):
    """Run `script argv --column NAME` once per column, each with its column's environment.

    The parent (this process) has loaded its BLAS already, so every column runs
    in a child. capture=False: the child's output goes straight to this terminal
    under a heading; capture=True: returns [(Column, stdout)] for the caller to merge.
    """
    note = same_note(args)
    if note and not capture:
        print(note, flush=True)
    results = []
    for col in columns(args):
        cmd = [sys.executable, str(script), *argv, "--column", col.name]
        if not capture:
            print(f"\n### column: {col.label}\n", flush=True)
        out = subprocess.run(cmd, env=child_env(col.env), text=True,
                             stdout=subprocess.PIPE if capture else None)
        if out.returncode != 0:
            raise SystemExit(f"{Path(script).name}: the {col.name} column failed "
                             f"(exit {out.returncode})")
        results.append((col, out.stdout))
    return results, note


def strip_column_args(argv):
    """argv without --columns/--as-given-env (a child runs exactly one column)."""
    out, skip = [], False
    for item in argv:
        if skip:
            skip = False
            continue
        if item in ("--columns", "--as-given-env", "--column"):
            skip = True
            continue
        if item.startswith(("--columns=", "--as-given-env=", "--column=")):
            continue
        out.append(item)
    return out


def dispatch(args, script, argv=None):
    """In the parent: run every column in a child and return True; in a child: False.

    A benchmark's main() calls this right after parsing and returns when it is True.
    """
    if args.column is not None:
        return False
    cols = columns(args)
    if len(cols) == 1 and all(cols[0].env.get(v) == os.environ.get(v) for v in VARIABLES):
        return False  # the one column is this process's own environment: run it here
    argv = strip_column_args(sys.argv[1:] if argv is None else argv)
    run_columns(args, script, argv)
    return True


def result_line(payload):
    """A JSON line a column child prints for its parent to merge into one table."""
    return "RESULT " + json.dumps(payload)


def parse_result(stdout):
    """The payload of the last RESULT line of a child's output."""
    lines = [line for line in stdout.splitlines() if line.startswith("RESULT ")]
    if not lines:
        raise SystemExit("a column child printed no RESULT line")
    return json.loads(lines[-1][len("RESULT "):])


# --------------------------------------------------------------------- checks
def check_products(rtol_units=1.0):
    """Product shapes of the vs_torch models, float32 and float64, against long double.

    The reference is computed without BLAS (np.einsum's C loops in long double).
    The bound is the classical one for a dot product of length K: each entry's
    error is at most K * u * sum_k |a_ik| |b_kj| (u = 2^-24 for float32, 2^-53 for
    float64). The returned 'worst' is the largest error divided by
    u * sum_k |a_ik| |b_kj|, so a correct kernel stays below K (and in practice
    near sqrt(K)). Returns a list of dicts, one per shape and dtype.
    """
    import numpy as np

    rng = np.random.default_rng(0)
    # (batch, M, K, N, transposed a): the linear, weight-gradient, output and attention
    # products of tiny, small and base (vs_torch.CONFIGS), strided views included
    shapes = [(1, 1024, 64, 256, False), (1, 1536, 128, 384, False), (1, 128, 1536, 512, True),
              (1, 1536, 512, 128, False), (1, 256, 128, 4000, False), (1, 1024, 256, 1024, False),
              (1, 1024, 1024, 256, True), (1, 256, 256, 8000, False), (1, 256, 4000, 128, False),
              (256, 24, 32, 24, False), (256, 24, 24, 32, True), (256, 32, 32, 32, False)]
    rows = []
    for batch, M, K, N, trans in shapes:
        a32 = rng.standard_normal((batch, K, M) if trans else (batch, M, K)).astype(np.float32)
        a32 = a32.transpose(0, 2, 1) if trans else a32  # a strided view, as x.T @ dy is
        b32 = rng.standard_normal((batch, K, N)).astype(np.float32)
        # one reference for both dtypes: float32 values are exact in float64 and long double
        la, lb = a32.astype(np.longdouble), b32.astype(np.longdouble)
        ref = np.einsum("bmk,bkn->bmn", la, lb, optimize=False)  # no BLAS: NumPy's C loops
        scale = np.einsum("bmk,bkn->bmn", abs(la), abs(lb), optimize=False)
        for dtype, u in ((np.float32, 2.0 ** -24), (np.float64, 2.0 ** -53)):
            a, b = a32.astype(dtype), b32.astype(dtype)  # astype keeps the transposed layout
            got = np.matmul(a, b) if batch > 1 else a[0] @ b[0]  # as kernels.matmul/bmm call it
            got = got.reshape(batch, M, N)
            worst = float((abs(got - ref) / (u * scale)).max())
            rows.append({"shape": f"{batch}x({M},{K})@({K},{N})" + (" a.T view" if trans else ""),
                         "dtype": np.dtype(dtype).name, "K": K, "worst": worst,
                         "ok": worst <= rtol_units * K})
    return rows


def main_check(args):
    """Per column: the kernel, then every product checked (check_products)."""
    if args.column is None:
        results, note = run_columns(args, __file__, ["check"], capture=True)
        if note:
            print(note)
        for col, stdout in results:
            payload = parse_result(stdout)
            print(f"\n### {col.label}: {payload['kernel']}\n")
            print("| product | dtype | K | max error / (u * sum|a||b|) | bound K | ok |")
            print("|---|---|---:|---:|---:|---|")
            for r in payload["rows"]:
                print(f"| {r['shape']} | {r['dtype']} | {r['K']} | {r['worst']:.2f} | {r['K']} "
                      f"| {'ok' if r['ok'] else 'FAIL'} |")
        bad = sum(not r["ok"] for _, s in results for r in parse_result(s)["rows"])
        print(f"\n{'all products within the bound' if not bad else f'{bad} products FAIL'}")
        return 1 if bad else 0
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        rows = check_products()
    print(result_line({"kernel": f"{kernel_text(threads=1)} ({variables_text()})",
                       "rows": rows}))
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", nargs="?", default="show", choices=("show", "check"),
                        help="show: the kernel of each column; check: products against a "
                             "long-double reference in each column")
    add_arguments(parser)
    args = parser.parse_args(argv)
    if args.command == "check":
        return main_check(args)
    if args.column is None:
        results, note = run_columns(args, __file__, ["show"], capture=True)
        if note:
            print(note)
        for col, stdout in results:
            print(f"{col.label}: {parse_result(stdout)['kernel']}")
        return 0
    print(result_line({"kernel": kernel_report()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
