"""Exercises: write each backward pass yourself and have it checked on the spot.

    from npformer.exercises import check
    check("softmax", forward=softmax_forward, backward=softmax_backward)

`check` runs your functions on small random float64 cases (masks, padding,
repeated tokens, odd sizes), compares the output and every gradient with
npformer's reference and with central differences of your own forward, and
prints one line per case, the largest error and where it is, and a HINT when
the answer looks like a known mistake. It returns a CheckResult, truthy when
every case passes.

The exercises, their function names and signatures (shapes in the docstrings
of npformer/exercises/solutions.py, which holds the model answers):

  linear         linear_forward(x, W, b)                       linear_backward(dy, cache)
  relu, gelu     relu_forward(x), gelu_forward(x)              *_backward(dy, cache)
  softmax        softmax_forward(x, mask)                      softmax_backward(dy, cache)
  layernorm      layernorm_forward(x, gamma, beta)             layernorm_backward(dy, cache)
  embedding      embedding_forward(ids, W, P, pad_id)          embedding_backward(dy, cache)
  attention      attention_forward(q, k, v, mask)              attention_backward(dout, cache)
  mha            mha_forward(x_q, x_kv, W_q, W_k, W_v, W_o, mask, n_heads)   mha_backward(dy, cache)
  cross_entropy  cross_entropy_forward(logits, targets, pad_id, smoothing)
                 cross_entropy_backward(dloss, cache)
  adamw          adamw_step(p, g, m, v, t, lr, betas, eps, weight_decay) -> (p, m, v)
  block          encoder_block(run, prefix, x, mask) -> Value: a whole pre-LN encoder
                 block composed of the taped ops of npformer/blocks.py (the tape does
                 the backward; the check compares y, dx and every parameter gradient)

A forward returns (output, cache); a backward returns the gradients of the
array inputs in the forward's order (one array, or a tuple). Masks are
boolean, True = may attend (the block exercise takes the additive mask its ops use).
Stubs: notebooks/exercises_backward.ipynb. Answers: docs/exercises.md.
"""
from .catalog import EXERCISES
from .checker import CheckResult, run

__all__ = ["check", "check_functions", "progress", "EXERCISES", "CheckResult"]


def check(name, *, verbose=True, seed=0, **functions):
    """Check your functions for one exercise; print the report and return a CheckResult.

    `functions` are keyword arguments named by the exercise's roles: forward= and
    backward= for a layer (backward may be left out to check the forward alone),
    step= for adamw, block= for the encoder block.
    """
    exercise = EXERCISES.get(name)
    if exercise is None:
        raise ValueError(f"no exercise {name!r}; the exercises are: {', '.join(EXERCISES)}")
    unknown = sorted(set(functions) - set(exercise.roles))
    if unknown:
        raise TypeError(f"check({name!r}) takes {', '.join(r + '=' for r in exercise.roles)} "
                        f"not {', '.join(unknown)}")
    result = run(exercise, functions, seed=seed, registry=EXERCISES)
    if verbose:
        print(result.report())
    return result


def check_functions(namespace, names=None, verbose=True):
    """Check every exercise whose functions `namespace` defines; returns {name: CheckResult}.

    `namespace` is a dict (e.g. a module's vars()); functions are found by their
    conventional names (softmax_forward, ...).
    """
    results = {}
    for name, exercise in EXERCISES.items():
        if names and name not in names:
            continue
        functions = {role: namespace.get(fn) if callable(namespace.get(fn)) else None
                     for role, fn in zip(exercise.roles, exercise.functions)}
        if not any(functions.values()):
            continue
        results[name] = check(name, verbose=verbose, **functions)
    return results


def progress(namespace, names=None):
    """The progress view of the answers `namespace` defines: a table, done / failing / not started.

    The notebooks call progress(globals()); `npformer exercises --check FILE` prints the
    same table for a file.
    """
    from .cli import progress_table

    names = list(names or EXERCISES)
    graded = check_functions(namespace, names, verbose=False)
    results = {name: {"status": "not answered", "n_passed": 0, "n_cases": 0, "hints": [],
                      "notes": []} for name in names}
    for name, r in graded.items():
        results[name] = {"status": r.status, "n_passed": r.n_passed, "n_cases": len(r.cases),
                         "hints": r.hints, "notes": r.notes, "error": r.first_error}
    return progress_table(results, names)
