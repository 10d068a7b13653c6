"""The exercises of the LLM half (the key/value-cache step is in catalog_attention.py).

The language-model loss with its shift, top-k/top-p filtering, one BPE merge step,
a power-law fit in log space and an in-context-learning score.

References: npformer's own code where it has one (the cross-entropy kernel's NumPy
twin, decoding.filter_logits, tokenizers/bpe.py's learn_merges and merge_pair),
else the formula itself, written out here (the power-law fit of npformer/tools/sweep.py,
and Olsson et al.'s in-context-learning score).

Shapes: B batch, T length, V vocab, n points.
"""
import numpy as np

from ..models.decoding import filter_logits
from ..nn.kernels import cross_entropy_np
from ..tokenizers.bpe import learn_merges, merge_pair
from .checker import Case, Exercise, Hint, LearnerError, Line, call
from .diagnose import Factor, Mistakes, Region, Structure


def randn(rng, *shape):
    return rng.standard_normal(shape)


PAD = 0  # the padding id in these cases


# ----------------------------------------------------------------- the LM loss and its shift
def lm_loss_cases(rng):
    def case(label, ids, V, scale=1.0):
        ids = np.array(ids)
        inputs = {"logits": scale * randn(rng, *ids.shape, V), "ids": ids, "pad_id": PAD}
        return Case(f"{label}, logits {(*ids.shape, V)}", inputs, float(rng.uniform(0.5, 2)))
    return [case("a padded batch", [[1, 4, 2, 5, 3], [1, 3, 3, 0, 0]], 6),
            case("one sequence", [[1, 2, 1, 2]], 3),
            case("two tokens a row", [[1, 2], [1, 3], [1, 0]], 4),
            case("large logits (exp would overflow)", [[1, 2, 3]], 4, scale=500.0)]


def lm_loss_simulate(case, no_shift=False, wrong_way=False, pad_counted=False, no_mean=False):
    """The loss and dlogits of npformer's kernel, with the shift or the mean changed."""
    logits, ids = case.inputs["logits"], case.inputs["ids"]
    B, T, V = logits.shape
    if no_shift:
        rows, pred, target = slice(None), logits, ids  # position t "predicts" itself
    elif wrong_way:
        rows, pred, target = slice(1, None), logits[:, 1:], ids[:, :-1]
    else:
        rows, pred, target = slice(None, -1), logits[:, :-1], ids[:, 1:]
    loss, n, dl = cross_entropy_np.cross_entropy_forward_backward(
        pred.reshape(-1, V), target.reshape(-1), -1 if pad_counted else PAD, 0.0)
    if no_mean:
        loss, dl = loss * n, dl * n
    dlogits = np.zeros_like(logits)
    dlogits[:, rows] = case.dout * dl.reshape(pred.shape)
    return {"loss": loss, "dlogits": dlogits}


LM_LOSS = Exercise(
    name="lm_loss", title="the language-model loss: position t predicts token t + 1",
    roles=("forward", "backward"), functions=("lm_loss_forward", "lm_loss_backward"),
    outputs=("loss", "dlogits"), make_cases=lm_loss_cases,
    reference=lambda case: lm_loss_simulate(case), wrt=(("logits", "dlogits"),),
    page="docs/derivations/cross_entropy.md",
    structure=lambda case, want: {"dlogits": Structure(regions=(
        Region("the last position (it predicts nothing: its next token is not in the "
               "batch, so zero)", (np.arange(case.inputs["ids"].shape[1]) ==
                                   case.inputs["ids"].shape[1] - 1)[None, :, None]),))},
    mistakes=Mistakes(lm_loss_simulate, {
        "no_shift": "the logits at position t predict the NEXT token, ids[:, t + 1]: compare "
                    "logits[:, :-1] with ids[:, 1:] (yours predicts the token at t itself).",
        "wrong_way": "the shift goes forward: logits[:, :-1] predict ids[:, 1:] (yours pairs "
                     "logits[:, 1:] with ids[:, :-1], the previous token).",
        "pad_counted": "padding targets must not count: the mean runs over the predicted "
                       "tokens ids[:, 1:] that are not pad_id.",
        "no_mean": "the loss is the MEAN over the predicted tokens that count, not the sum.",
    }),
    hints=())


# ----------------------------------------------------------------- top-k / top-p filtering
def filter_cases(rng):
    def case(label, logits, top_k, top_p=1.0):
        if top_p == "mid":  # halfway between two cumulative masses: no float near-ties
            top_p = nucleus_midpoint(logits, top_k)
        inputs = {"logits": logits, "top_k": top_k, "top_p": top_p}
        return Case(f"{label}, logits {logits.shape}, top_k {top_k}, top_p {top_p:.4g}",
                    inputs, None)
    peaked = 2.0 * randn(rng, 1, 6)
    peaked[0, 2] += 12.0  # one token holds almost all the probability
    # Six clear leaders and a long tail: the nucleus of the six (renormalised) holds 4
    # tokens, while the tail keeps the top six below top_p in the full distribution, so
    # a nucleus taken before renormalising keeps all six: two tokens more, not one.
    leaders = np.array([4.0, 3.6, 3.2, 2.8, 2.4, 2.0]) + 0.05 * randn(rng, 2, 6)
    tail = 1.6 - 0.3 * np.abs(randn(rng, 2, 20))
    long_tail = np.concatenate([leaders, tail], axis=1)[:, rng.permutation(26)]
    return [case("top-k", 2.0 * randn(rng, 2, 8), 3),
            case("top-p", 2.0 * randn(rng, 3, 10), 0, "mid"),
            case("top-k, then top-p on what is left", long_tail, 6, "mid"),
            case("no filter", 2.0 * randn(rng, 2, 5), 0),
            case("top_k >= V keeps all", 2.0 * randn(rng, 1, 4), 4),
            case("a peaked row: the nucleus is one token", peaked, 0, "mid")]


def nucleus_midpoint(logits, top_k):
    """A top_p halfway between two cumulative masses of the first row (no float near-ties).

    The nucleus of row 0 then holds 3 tokens (1 if one token has nearly all the mass).
    """
    row = np.sort(logits[0])[::-1]  # best first
    if top_k:
        row = row[:top_k]
    p = np.exp(row - row[0])
    cumulative = np.cumsum(p / p.sum())
    i = 0 if cumulative[0] > 0.99 else 2
    return float((cumulative[i] + cumulative[i + 1]) / 2)


def filter_outputs(exercise, functions, case, got):
    x = case.inputs
    got["filtered"] = call(functions["filter"], "filter_logits", x["logits"].copy(),
                           x["top_k"], x["top_p"])


def kept_line(what, got, want, case):
    """Same tokens kept (finite), row by row, and their logits unchanged."""
    got = np.asarray(got, dtype=np.float64)
    if got.shape != want.shape:
        return Line(what, False, f"has shape {got.shape}, expected {want.shape}")
    kept_got, kept_want = got > -np.inf, want > -np.inf
    for b in range(want.shape[0]):
        if not np.array_equal(kept_got[b], kept_want[b]):
            return Line(what, False, f"row {b} keeps tokens {np.flatnonzero(kept_got[b]).tolist()}"
                                     f", expected {np.flatnonzero(kept_want[b]).tolist()}")
    if not np.allclose(got[kept_want], want[kept_want], rtol=1e-12, atol=0):
        return Line(what, False, "keeps the right tokens but changes their logits: a filter "
                                 "only sets the others to -inf")
    return Line(what, True, "")


def filter_with(logits, top_k, top_p, k_off=0, p_off=0, renormalise=True, descending=True):
    """filter_logits with its choices changed: what the learner's kept tokens may come from.

    k_off: keeps top_k + k_off; p_off: -1 drops the token at which the total reaches top_p,
    +1 keeps one past it; renormalise=False takes the nucleus from the softmax of ALL the
    logits; descending=False sorts worst first. Shapes: logits (R,V) -> (R,V) kept mask
    """
    out = np.array(logits, dtype=np.float64)
    V = out.shape[-1]
    order = np.argsort(-out if descending else out, axis=-1, kind="stable")  # (R,V)
    if 0 < top_k < V:
        np.put_along_axis(out, order[:, max(top_k + k_off, 0):], -np.inf, axis=-1)
    if top_p < 1.0:
        source = out if renormalise else np.array(logits, dtype=np.float64)
        ranked = np.take_along_axis(source, order, axis=-1)  # (R,V) in the sort order
        p = np.exp(ranked - ranked.max(axis=-1, keepdims=True))
        p /= p.sum(axis=-1, keepdims=True)
        before = np.cumsum(p, axis=-1) - p  # the mass of the tokens sorted before
        drop = before + (p if p_off == -1 else 0.0) >= top_p
        if p_off == 1:  # keeps the first token past the nucleus too
            drop = np.concatenate([np.zeros_like(drop[:, :1]), drop[:, :-1]], axis=1)
        ranked = np.take_along_axis(out, order, axis=-1)
        ranked[drop] = -np.inf
        np.put_along_axis(out, order, ranked, axis=-1)
    return out > -np.inf


def filter_mistake(case, got):
    """The fewest changed choices of filter_with that keep the learner's tokens, or None.

    Every combination of the four choices is tried, so two mistakes together (top-k one
    short and a top-p one too many, say) are both named. {} when nothing is wrong.
    """
    g = np.asarray(got["filtered"], dtype=np.float64)
    x = case.inputs
    if g.shape != x["logits"].shape:
        return None
    kept = g > -np.inf
    choices = [dict(k_off=k, p_off=p, renormalise=r, descending=d)
               for k in (0, -1, 1) for p in (0, -1, 1) for r in (True, False)
               for d in (True, False)]
    choices.sort(key=lambda c: (c["k_off"] != 0) + (c["p_off"] != 0) + (not c["renormalise"])
                 + (not c["descending"]))  # fewest changes first
    for choice in choices:
        if np.array_equal(kept, filter_with(x["logits"], x["top_k"], x["top_p"], **choice)):
            return choice
    return None


def chose(**wrong):
    """A hint test: the learner's kept tokens come from this wrong choice (with others)."""
    def test(case, got, want):
        found = filter_mistake(case, got)
        return bool(found) and all(found[k] == v for k, v in wrong.items())
    return test


FILTER = Exercise(
    name="filter", title="top-k and top-p (nucleus) filtering of the logits",
    roles=("filter",), functions=("filter_logits",), outputs=("filtered",),
    make_cases=filter_cases,
    reference=lambda case: {"filtered": filter_logits(case.inputs["logits"].astype(np.float64),
                                                      case.inputs["top_k"], case.inputs["top_p"])},
    learner_outputs=filter_outputs, comparators={"filtered": kept_line},
    page="npformer/models/decoding.py",
    hints=(
        Hint("top-p keeps one token too few in every row: the nucleus INCLUDES the token at "
             "which the total probability reaches top_p (drop a token only when the mass of "
             "the better tokens, before it, is already >= top_p).",
             chose(p_off=-1)),
        Hint("top-p keeps one token too many in every row: stop at the first token at which "
             "the total reaches top_p (keep a token when the mass BEFORE it is < top_p).",
             chose(p_off=1)),
        Hint("top-k keeps k tokens: the k largest logits, no more, no fewer.",
             chose(k_off=-1)),
        Hint("top-k keeps k tokens, not k + 1.",
             chose(k_off=1)),
        Hint("the nucleus is taken from what top-k left, renormalised: softmax over the kept "
             "tokens only (the -inf ones have probability 0), then the cumulative sum.",
             chose(renormalise=False)),
        Hint("sort the logits in DECREASING order (best first): np.argsort(-logits).",
             chose(descending=False)),
    ))


# ----------------------------------------------------------------- one BPE merge step
def bpe_cases(rng):
    def case(label, words, freqs, new_id=260):
        return Case(f"{label}, {len(words)} words", {"words": words, "freqs": freqs,
                                                     "new_id": new_id}, None)
    return [
        case("frequencies decide", [[1, 2, 3], [2, 3], [1, 2]], [1, 5, 2]),
        case("a tie: the smaller pair wins", [[5, 6], [3, 4], [7, 8, 7]], [2, 2, 1]),
        case("a run of one id", [[7, 7, 7], [7, 7, 7, 7], [1, 7]], [1, 1, 1]),
        case("the pair at a word's end", [[4, 9, 9, 4], [3, 4, 9], [9, 4]], [3, 1, 2]),
    ]


def bpe_reference(case):
    words, freqs, new_id = (case.inputs[k] for k in ("words", "freqs", "new_id"))
    (pair,) = learn_merges([list(w) for w in words], list(freqs), 1)
    return {"pair": tuple(pair), "words": [merge_pair(w, pair, new_id) for w in words]}


def bpe_outputs(exercise, functions, case, got):
    x = case.inputs
    out = call(functions["merge"], "bpe_merge_step", [list(w) for w in x["words"]],
               list(x["freqs"]), x["new_id"])
    if not (isinstance(out, (tuple, list)) and len(out) == 2):
        raise LearnerError("bpe_merge_step must return (pair, new words)")
    pair, words = out
    try:
        got["pair"] = tuple(int(i) for i in pair)
    except (TypeError, ValueError):
        got["pair"] = pair
    try:
        got["words"] = [[int(i) for i in w] for w in words]
    except (TypeError, ValueError):
        got["words"] = words


def equal_line(what, got, want, case):
    if got == want:
        return Line(what, True, "")
    if isinstance(want, list) and isinstance(got, list) and len(got) == len(want):
        i = next(i for i, (a, b) in enumerate(zip(got, want)) if a != b)
        return Line(what, False, f"word {i}: yours {got[i]}, expected {want[i]}")
    return Line(what, False, f"yours {got}, expected {want}")


def bpe_simulate(case, unweighted=False, tie_largest=False, right_to_left=False):
    words, freqs, new_id = (case.inputs[k] for k in ("words", "freqs", "new_id"))
    counts = {}
    for word, f in zip(words, freqs):
        for pair in zip(word, word[1:]):
            counts[pair] = counts.get(pair, 0) + (1 if unweighted else f)
    best = max(counts.values())
    tied = [p for p, c in counts.items() if c == best]
    pair = max(tied) if tie_largest else min(tied)
    if right_to_left:  # 7 7 7 -> [7, new]
        merged = [merge_pair(w[::-1], pair[::-1], new_id)[::-1] for w in words]
    else:
        merged = [merge_pair(w, pair, new_id) for w in words]
    return {"pair": pair, "words": merged}


BPE_MERGE = Exercise(
    name="bpe_merge", title="one BPE training step: count the pairs, merge the most frequent",
    roles=("merge",), functions=("bpe_merge_step",), outputs=("pair", "words"),
    make_cases=bpe_cases, reference=bpe_reference, learner_outputs=bpe_outputs,
    comparators={"pair": equal_line, "words": equal_line}, page="npformer/tokenizers/bpe.py",
    mistakes=Mistakes(bpe_simulate, {
        "unweighted": "a pair's count is the sum of the FREQUENCIES of the words it occurs in "
                      "(a word seen 5 times counts 5 times), not the number of distinct words.",
        "tie_largest": "ties go to the smaller pair (min over the pairs with the top count), "
                       "so training is deterministic.",
        "right_to_left": "merge left to right: in a run like 7 7 7 the first two merge, "
                         "giving [new, 7].",
    }),
    hints=())


# ----------------------------------------------------------------- power-law fit
def power_law_cases(rng):
    def case(label, a, alpha, floor, n, noise):
        x = np.geomspace(1e3, 1e6, n)
        y = floor + a * x ** -alpha * np.exp(noise * rng.standard_normal(n))
        return Case(f"{label}, {n} points, floor {floor}", {"x": x, "y": y, "floor": floor},
                    None)
    return [case("an exact power law", 30.0, 0.3, 0.0, 5, 0.0),
            case("noisy points", 8.0, 0.08, 0.0, 7, 0.02),
            case("above an irreducible floor", 5.0, 0.2, 1.5, 6, 0.01),
            case("two points", 2.0, 0.5, 0.0, 2, 0.0)]


def power_law_simulate(case, sign=False, floor_ignored=False, a_not_exp=False,
                       swapped=False):
    x, y, floor = case.inputs["x"], case.inputs["y"], case.inputs["floor"]
    lx, ly = np.log(x), np.log(y - (0.0 if floor_ignored else floor))
    if swapped:  # log x = c + s log y  =>  log y = -c/s + (1/s) log x
        s, c = np.polyfit(ly, lx, 1)
        slope, intercept = 1.0 / s, -c / s
    else:
        slope, intercept = np.polyfit(lx, ly, 1)
    return {"a": intercept if a_not_exp else float(np.exp(intercept)),
            "alpha": float(slope if sign else -slope)}


def power_law_outputs(exercise, functions, case, got):
    x = case.inputs
    out = call(functions["fit"], "fit_power_law", x["x"].copy(), x["y"].copy(), x["floor"])
    if not (isinstance(out, (tuple, list)) and len(out) == 2):
        raise LearnerError("fit_power_law must return (a, alpha)")
    got["a"], got["alpha"] = out


POWER_LAW = Exercise(
    name="power_law", title="fit y - floor = a x^-alpha as a straight line in log-log axes",
    roles=("fit",), functions=("fit_power_law",), outputs=("a", "alpha"),
    make_cases=power_law_cases, reference=lambda case: power_law_simulate(case),
    learner_outputs=power_law_outputs, page="npformer/tools/sweep.py",
    mistakes=Mistakes(power_law_simulate, {
        "sign": "alpha is MINUS the slope: log y = log a - alpha log x, and the loss falls, "
                "so the slope is negative and alpha positive.",
        "floor_ignored": "subtract the floor first: it is y - floor that follows a x^-alpha.",
        "a_not_exp": "the intercept is log(a): a = exp(intercept).",
        "swapped": "regress log y on log x (np.polyfit(log x, log y, 1)), not log x on log y: "
                   "least squares minimises the errors in y.",
    }),
    structure=lambda case, want: {"alpha": Structure(factors=(
        Factor(-1.0, "alpha has the wrong sign: alpha is minus the slope"),))},
    hints=())


# ----------------------------------------------------------------- in-context-learning score
def icl_cases(rng):
    def case(label, B, T, V, early, late, pads=(), scale=1.0):
        targets = rng.integers(1, V, size=(B, T))
        for b, t in pads:
            targets[b, t:] = PAD  # padding to the end of the row
        inputs = {"logits": scale * randn(rng, B, T, V), "targets": targets, "pad_id": PAD,
                  "early": early, "late": late}
        return Case(f"{label}, logits {(B, T, V)}, early {early}, late {late}", inputs, None)
    return [case("padding at the late position", 6, 8, 5, 1, 6, pads=((2, 5), (4, 6))),
            case("no padding", 4, 5, 3, 0, 4),
            case("large logits (exp would overflow)", 3, 4, 4, 0, 3, scale=1000.0),
            case("padding at both positions", 5, 10, 4, 2, 9, pads=((1, 2), (3, 7)))]


def icl_simulate(case, sign=False, padding_counted=False, one_based=False, ratio=False):
    x = case.inputs
    logits, targets = x["logits"], x["targets"]
    z = logits - logits.max(axis=-1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=-1, keepdims=True))
    loss = -np.take_along_axis(logp, targets[..., None], axis=-1)[..., 0]  # (B,T)
    valid = np.ones_like(targets, dtype=bool) if padding_counted else targets != x["pad_id"]
    shift = -1 if one_based else 0

    def at(t):
        return loss[valid[:, t + shift], t + shift].mean()
    late, early = at(x["late"]), at(x["early"])
    score = late / early if ratio else late - early
    return {"score": float(-score if sign else score)}


def icl_outputs(exercise, functions, case, got):
    x = case.inputs
    got["score"] = call(functions["score"], "icl_score", x["logits"].copy(),
                        x["targets"].copy(), x["pad_id"], x["early"], x["late"])


ICL_SCORE = Exercise(
    name="icl_score", title="the in-context-learning score: loss late in the context minus "
                            "loss early",
    roles=("score",), functions=("icl_score",), outputs=("score",), make_cases=icl_cases,
    reference=lambda case: icl_simulate(case), learner_outputs=icl_outputs,
    page="docs/exercises.md",
    mistakes=Mistakes(icl_simulate, {
        "sign": "the score is loss(late) - loss(early): negative when the context helps.",
        "padding_counted": "leave out the sequences whose target is padding at that position: "
                           "average each position's loss over the real targets only.",
        "one_based": "early and late are 0-based positions: the loss at index `late` is "
                     "loss[:, late].",
        "ratio": "the score is a DIFFERENCE of losses (in nats), not a ratio.",
    }),
    hints=(
        Hint("exp overflows for large logits: subtract the row maximum first "
             "(log-softmax = z - log(sum(exp(z))) with z = logits - max).",
             lambda c, got, want: np.abs(c.inputs["logits"]).max() > 100
             and not np.isfinite(np.asarray(got["score"], dtype=float)).all()),
    ))
