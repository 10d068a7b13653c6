"""Does the default `npformer train` meet the toy target? (run by hand, not a test)

Target (issue "toy translator"): at least 95% exact match and BLEU >= 90 on the
toy test split within three minutes of wall-clock time on a 2-core CPU,
including the first-run JIT compile.

This script runs exactly what a new user runs, `npformer train` with no
arguments, in a fresh output directory and with an EMPTY Numba cache (so the
compile time is included), times it end to end, and prints the test-split
score that the command itself reports.

    python benchmarks/toy_target.py [--keep-cache] [--columns both|as-given|auto]
                                    [--as-given-env KEY=VALUE] [extra npformer train flags...]

--columns (benchmarks/blas_env.py; default as-given): the run in the environment as
given, with OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE unset (OpenBLAS's own kernel), or both
one after the other; each line names the BLAS kernel.
"""
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import blas_env  # noqa: E402  (the BLAS kernel; the two columns)


def main():
    import argparse

    parser = argparse.ArgumentParser(add_help=False)
    blas_env.add_arguments(parser, default=blas_env.AS_GIVEN)
    ours, args = parser.parse_known_args(sys.argv[1:])
    if blas_env.dispatch(ours, __file__):
        return 0
    print(blas_env.kernel_report(threads=1) + " (npformer train's default: 1 thread)", flush=True)
    keep_cache = "--keep-cache" in args
    args = [a for a in args if a != "--keep-cache"]
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ)
        if not keep_cache:
            env["NUMBA_CACHE_DIR"] = os.path.join(tmp, "numba-cache")  # cold start
        out_dir = os.path.join(tmp, "run")
        cmd = [sys.executable, "-m", "npformer", "train", "--out-dir", out_dir, *args]
        print("running:", " ".join(cmd), flush=True)
        t0 = time.perf_counter()
        result = subprocess.run(cmd, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t0
    sys.stderr.write(result.stderr[-3000:])
    print(result.stdout)
    match = re.search(r"BLEU ([\d.]+), exact match ([\d.]+)%", result.stdout)
    if result.returncode != 0 or not match:
        print(f"FAILED (exit {result.returncode})")
        return 1
    bleu, em = float(match.group(1)), float(match.group(2))
    ok = wall <= 180 and em >= 95 and bleu >= 90
    print(f"wall-clock {wall:.1f} s (cold Numba cache: {not keep_cache}); test BLEU {bleu:.2f}, "
          f"exact match {em:.1f}% -> target {'MET' if ok else 'NOT met'} "
          f"(<= 180 s, >= 95% exact match, BLEU >= 90)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
