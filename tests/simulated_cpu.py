"""Another CPU, simulated on this one: the environment and proof that it moves the numbers.

A float from BLAS, a jitted loop or a NumPy SIMD path differs in its last bits between
CPUs. The suite must pass on any reasonable CPU, so .ci/run runs the numeric tests and
the notebooks a second time with the arithmetic changed the ways we can change it here:

  NPFORMER_BACKEND=numpy           the NumPy twins instead of the Numba kernels (other
                                   summation orders, no float64 accumulators)
  NPY_DISABLE_CPU_FEATURES=...     NumPy's runtime-dispatched SIMD paths turned off (every
                                   target NumPy would dispatch to on this CPU: on an AVX-512
                                   machine X86_V3 X86_V4 AVX512_ICL AVX512_SPR), which
                                   changes exp, log1p, tanh and the reductions

(NUMBA_CPU_NAME=generic alone gave bit-identical kernel outputs here, and OpenBLAS's own
kernel choice, OPENBLAS_CORETYPE, is left alone in tests and CI.)

    python tests/simulated_cpu.py env       print the variables, as NAME=value lines
    python tests/simulated_cpu.py compare   compute a few fingerprints in both
                                            environments and show that they differ
"""
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def simulated_env():
    """{name: value} of the simulated CPU's environment variables."""
    from numpy._core._multiarray_umath import __cpu_dispatch__  # the SIMD targets of this build

    return {"NPFORMER_BACKEND": "numpy", "NPY_DISABLE_CPU_FEATURES": " ".join(__cpu_dispatch__)}


def fingerprints():
    """A few computations whose last bits depend on the CPU: {name: list of floats}."""
    import numpy as np

    from npformer.nn import kernels
    from npformer.nn.config import ModelConfig
    from npformer.models.transformer import Transformer
    from npformer.nn.tape import Tape

    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 96)).astype(np.float32)  # (N,C)
    out = {"np.exp": np.exp(x), "np.log1p": np.log1p(np.abs(x)), "np.tanh": np.tanh(x)}
    y, _, _ = kernels.layernorm_forward(x, np.ones(96, np.float32), np.zeros(96, np.float32), 1e-5)
    out["layernorm"] = y
    model = Transformer(ModelConfig(src_vocab_size=50, tgt_vocab_size=50, dropout=0.0))
    src = rng.integers(3, 50, size=(8, 12))
    tgt = rng.integers(3, 50, size=(8, 10))
    tape = Tape()
    model.zero_grad()
    out["loss"] = np.array([model.loss(src, tgt[:, :-1], tgt[:, 1:], tape=tape)])
    tape.backward(model.grads, "loss")
    out["grad of W_qkv"] = model.grads["encoder.0.self_attn.W_qkv"]
    return {k: np.asarray(v, np.float64).ravel().tolist() for k, v in out.items()}


def run(env):
    code = (f"import json, sys; sys.path.insert(0, {str(HERE)!r}); import simulated_cpu; "
            "print(json.dumps(simulated_cpu.fingerprints()))")
    done = subprocess.run([sys.executable, "-c", code], env={**os.environ, **env},
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def fingerprints_differ():
    """The names of the fingerprints whose values differ on the simulated CPU."""
    here, there = run({}), run(simulated_env())
    return [name for name in here if here[name] != there[name]]


def compare():
    import numpy as np

    here = run({})
    there = run(simulated_env())
    print(f"simulated CPU: {' '.join(f'{k}={v!r}' for k, v in simulated_env().items())}")
    moved = 0
    for name in here:
        a, b = np.array(here[name]), np.array(there[name])
        differ = int((a != b).sum())
        moved += differ > 0
        rel = float(np.max(np.abs(a - b)) / max(np.abs(a).max(), 1e-300))
        print(f"  {name:<15} {differ:>6} of {a.size} values differ; max difference "
              f"{rel:.1e} of the largest value")
    print(f"{moved} of {len(here)} computations give other numbers: "
          + ("the second pass tests other arithmetic" if moved else
             "WARNING: nothing moved; the second pass repeats the first"))


if __name__ == "__main__":
    if sys.argv[1:] == ["env"]:
        for name, value in simulated_env().items():
            print(f"{name}={value}")
    elif sys.argv[1:] == ["compare"]:
        compare()
    else:
        print(__doc__)
        sys.exit(2)
