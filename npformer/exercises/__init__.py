"""Exercises: write each backward pass (and the LLM pieces) yourself, checked on the spot.

    from npformer.exercises import check
    check("softmax", forward=softmax_forward, backward=softmax_backward)

`check` runs your functions on small random float64 cases (masks, padding,
repeated tokens, odd sizes), compares the output and every gradient with
npformer's reference and with central differences of your own forward, and
prints one line per case, the largest error and where it is, and a HINT that
names the likely mistake: a catalogued one, or one found by the structure of
the error (npformer/exercises/diagnose.py). If your function calls another answer
of yours that fails (attention calling your softmax), it says to fix that first.
It returns a CheckResult, truthy when every case passes. `progress(globals())`
is the table of every exercise: done / failing / not started.

The exercises in course order, their function names and signatures (shapes in the
docstrings of the model answers, npformer/exercises/solutions*.py). check(name,
forward=..., backward=...) for a layer; the one-function exercises take the
keyword in brackets.

  linear         linear_forward(x, W, b)                       linear_backward(dy, cache)
  relu, gelu     relu_forward(x), gelu_forward(x)              *_backward(dy, cache)
  softmax        softmax_forward(x, mask)                      softmax_backward(dy, cache)
  layernorm      layernorm_forward(x, gamma, beta)             layernorm_backward(dy, cache)
  embedding      embedding_forward(ids, W, P, pad_id)          embedding_backward(dy, cache)
  sinusoidal     [table=] sinusoidal_table(max_len, d_model) -> table
  dropout        dropout_forward(x, rate, rng)                 dropout_backward(dy, cache)
  ffn            ffn_forward(x, W_1, b_1, W_2, b_2, activation)  ffn_backward(dy, cache)
  attention      attention_forward(q, k, v, mask)              attention_backward(dout, cache)
  mha            mha_forward(x_q, x_kv, W_q, W_k, W_v, W_o, mask, n_heads)   mha_backward(dy, cache)
  cross_entropy  cross_entropy_forward(logits, targets, pad_id, smoothing)
                 cross_entropy_backward(dloss, cache)
  tied           tied_forward(ids, E, b)                       tied_backward(dlogits, cache)
  output_loss    output_loss_forward(x, E, b, targets, pad_id) output_loss_backward(dloss, cache)
  pooling        pool_forward(x, key_ok, mode)                 pool_backward(dy, cache)
  block          [block=] encoder_block(run, prefix, x, mask) -> Value: a whole pre-LN
                 encoder (or, causal, GPT) block composed of the taped ops of
                 npformer/nn/blocks.py (the tape does the backward; the check compares y, dx
                 and every parameter gradient)
  decoder_block  [block=] decoder_block(run, prefix, y, memory, self_mask, cross_mask)
  adamw          [step=] adamw_step(p, g, m, v, t, lr, betas, eps, weight_decay) -> (p, m, v)
  clip           [clip=] clip_grad_norm(grads, max_norm) -> norm, grads scaled in place
  rnn            rnn_forward(x, h0, W_x, W_h, b)               rnn_backward(dh, cache)
  lm_loss        lm_loss_forward(logits, ids, pad_id)          lm_loss_backward(dloss, cache)
  bpe_merge      [merge=] bpe_merge_step(words, freqs, new_id) -> (pair, new words)
  filter         [filter=] filter_logits(logits, top_k, top_p) -> filtered logits
  kv_step        [step=] kv_attention_step(x, W_q, W_k, W_v, W_o, past_k, past_v, n_heads)
                 -> (y, k, v)
  lora           lora_forward(x, W, b, A, B, alpha)            lora_backward(dy, cache)
  power_law      [fit=] fit_power_law(x, y, floor) -> (a, alpha)
  icl_score      [score=] icl_score(logits, targets, pad_id, early, late) -> float

A forward returns (output, cache); a backward returns the gradients of the
array inputs in the forward's order (one array, or a tuple). Masks are
boolean, True = may attend (the block exercises take the additive masks their ops use).
Stubs: notebooks/exercises_backward.ipynb, notebooks/exercises_llm.ipynb. Answers:
docs/exercises.md. A file of answers: `npformer exercises --check FILE` (graded in a
child process with a time and a memory limit, npformer/exercises/sandbox.py).
"""
from .answers import progress_table
from .catalog import EXERCISES
from .checker import CheckResult, run

__all__ = ["check", "check_functions", "progress", "EXERCISES", "CheckResult"]


def check(name, *, verbose=True, seed=0, **functions):
    """Check your functions for one exercise; print the report and return a CheckResult.

    `functions` are keyword arguments named by the exercise's roles: forward= and
    backward= for a layer (backward may be left out to check the forward alone),
    else the one keyword the module docstring gives in brackets (step= for adamw, ...).
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
    names = list(names or EXERCISES)
    graded = check_functions(namespace, names, verbose=False)
    results = {name: {"status": "not answered", "n_passed": 0, "n_cases": 0, "hints": [],
                      "notes": []} for name in names}
    for name, r in graded.items():
        results[name] = {"status": r.status, "n_passed": r.n_passed, "n_cases": len(r.cases),
                         "hints": r.hints, "notes": r.notes, "error": r.first_error}
    return progress_table(results, names)
