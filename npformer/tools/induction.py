"""In-context learning in a small LanguageModel: the few-shot run, its scores, head ablation.

Shapes: B prompts, T positions, H heads, D head size, C d_model (= H*D), V vocab, L layers.

The run (`train_fewshot`) trains npformer's LanguageModel, with npformer's training
step (train.train_step: tape, AdamW, clipping), on few-shot lines with a fresh
symbol -> label mapping per line (npformer/data/fewshot.py). Two settings differ
from the toy LM of notebook 10, each an existing option:
- the input embedding is frozen at its random initial values (AdamW lr_scale 0) and
  the output projection is not tied to it: a symbol never seen in training is then
  a random vector like every other symbol, not an untrained row (as the items of
  Reddy 2023 are random vectors); with a trained embedding the model matched
  training symbols and not held-out ones (docs/language_models.md);
- learned positions: lines have a fixed layout (symbol, label, symbol, ...), and a
  head that reads the previous position is found much sooner than with sinusoids.

Scores, each computed from a model alone:
  fewshot_scores        accuracy and loss of the answer against k (held-out symbols)
  snapshot              all of them at once, with the ICL score: the answer's loss with
                        no example minus its loss with the most examples (nats;
                        Olsson et al. 2022 compare a late token with an early one)
  prefix_matching       per head: on a line shown twice, the attention a symbol in the
                        second copy pays to the label after the same symbol in the
                        first copy (the induction-head signature of Olsson et al.)
  previous_token        per head: the attention a label pays to the symbol before it
  ablate_heads          a copy of the model with heads' rows of W_o zeroed
"""
from dataclasses import asdict, dataclass, field

import numpy as np

from ..nn.config import ModelConfig
from ..data import fewshot
from ..models import build_model
from ..training.batching import Batch
from ..training.optim import AdamW, make_schedule
from ..tokenizers import BOS_ID, PAD_ID, WordTokenizer
from ..training.loop import train_step


@dataclass(frozen=True)
class FewShotRun:
    """One training run on few-shot lines (model, optimisation and data)."""

    spec: fewshot.FewShotSpec = field(default_factory=fewshot.FewShotSpec)
    d_model: int = 64  # C
    n_heads: int = 4  # H (D = 16)
    d_ff: int = 128  # F: a small feed-forward net; the copy is done by attention
    n_layers: int = 2  # the fewest that can hold an induction head (two heads in series)
    freeze_embedding: bool = True  # input embedding fixed at its random init (see above)
    batch_size: int = 128  # lines per step
    lr: float = 3e-3  # peak learning rate (constant after warm-up)
    warmup_steps: int = 50
    max_steps: int = 2000
    seed: int = 0  # initialisation and the lines of each step

    def model_config(self, vocab_size):
        return ModelConfig(src_vocab_size=vocab_size, tgt_vocab_size=vocab_size,
                           d_model=self.d_model, n_heads=self.n_heads, d_ff=self.d_ff,
                           n_encoder_layers=0, n_decoder_layers=self.n_layers,
                           max_len=2 * self.spec.max_examples + 2, dropout=0.0,
                           positional="learned", tie_output=False, seed=self.seed,
                           kind="decoder-only")

    def to_dict(self):
        return asdict(self)


def fewshot_tokenizer(spec):
    """A word tokenizer over fewshot.vocabulary(spec): held-out symbols get ids too."""
    return WordTokenizer(fewshot.vocabulary(spec))


def training_batch(spec, tok, batch_size, step, seed=0, mappings=None):
    """The batch of one training step (a function of (seed, step) only, as in train.py).

    Every label is a target (tgt_out); symbols are not (PAD there: ignored by the loss).
    Shapes: -> Batch with tgt_in, tgt_out (B,T), T = 2 * max_examples + 2
    """
    rng = np.random.default_rng([seed, step])
    if mappings is None:
        mappings = fewshot.fixed_mappings(spec)
    T = 2 * spec.max_examples + 2
    tgt_in = np.full((batch_size, T), PAD_ID, dtype=np.int64)  # (B,T)
    tgt_out = np.full((batch_size, T), PAD_ID, dtype=np.int64)  # (B,T)
    for b in range(batch_size):
        examples, query, answer = fewshot.training_line(rng, spec, mappings)
        ids = [BOS_ID] + tok.encode(fewshot.format_line(examples, query, answer))
        n = len(ids) - 1
        tgt_in[b, :n] = ids[:-1]
        tgt_out[b, 1:n:2] = ids[2::2]  # the labels: positions 1, 3, ... predict them
    return Batch(None, tgt_in, tgt_out, int((tgt_out != PAD_ID).sum()))


def train_fewshot(run, snapshot_steps=(), on_snapshot=None, log=None):
    """Train a fresh LanguageModel on few-shot lines -> (model, tokenizer, losses).

    losses: the training loss of every step. At each step in snapshot_steps,
    `on_snapshot(step, model, tokenizer)` is called (to score the model mid-run).
    """
    tok = fewshot_tokenizer(run.spec)
    model = build_model(run.model_config(tok.vocab_size))
    frozen = {"tgt_embed.W": 0.0} if run.freeze_embedding else None
    opt = AdamW(model.params, lr=run.lr, weight_decay=0.01, lr_scale=frozen)
    schedule = make_schedule("constant", peak_lr=run.lr,
                             warmup_steps=run.warmup_steps)
    mappings = fewshot.fixed_mappings(run.spec)
    losses = []
    for step in range(1, run.max_steps + 1):
        batch = training_batch(run.spec, tok, run.batch_size, step, run.seed, mappings)
        losses.append(train_step(model, opt, batch, schedule(step), rng=None, clip_norm=1.0))
        if step in snapshot_steps and on_snapshot is not None:
            on_snapshot(step, model, tok)
        if log is not None and step % 100 == 0:
            log(f"step {step}: loss {np.mean(losses[-100:]):.3f}")
    return model, tok, losses


# --------------------------------------------------------------------------- scores
def answer_logprobs(model, tok, prompts):
    """Log-probabilities of the next token after each prompt (all of one length).

    Shapes: n prompts -> (n,V) float64
    """
    ids = np.array([[BOS_ID] + tok.encode(prompt) for prompt, _ in prompts])  # (n,T)
    logits = model.forward(ids)[:, -1].astype(np.float64)  # (n,T,V) -> (n,V)
    logits -= logits.max(axis=1, keepdims=True)
    return logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))  # (n,V)


def answer_scores(model, tok, prompts):
    """-> (correct (n,) bool: greedy next token is the answer, loss (n,): -log p(answer))."""
    logp = answer_logprobs(model, tok, prompts)  # (n,V)
    answers = np.array([tok.token_to_id(answer) for _, answer in prompts])  # (n,)
    rows = np.arange(len(prompts))
    return logp.argmax(axis=1) == answers, -logp[rows, answers]


def fewshot_scores(model, tok, spec, ks, n=200, symbols="heldout", mapping="fresh",
                   query="shown", seed=0):
    """{k: {"hits", "n", "loss"}} on n prompts per k (make_prompts; k = 0: query alone)."""
    result = {}
    for k in ks:
        prompts = fewshot.make_prompts(spec, k, n, symbols, mapping,
                                       "absent" if k == 0 else query, seed)
        correct, loss = answer_scores(model, tok, prompts)
        result[k] = {"hits": int(correct.sum()), "n": n, "loss": float(loss.mean())}
    return result


def repeated_lines(spec, tok, n, k=4, seed=0):
    """n lines of k distinct held-out symbols with labels, each shown twice.

    Shapes: -> ids (n, 1 + 4k): BOS, then 2k tokens, then the same 2k again
    """
    prompts = fewshot.make_prompts(spec, k, n, "heldout", "fresh", "shown", seed)
    rows = []
    for prompt, _ in prompts:
        first = tok.encode(prompt)[:-1]  # the k pairs without the query
        rows.append([BOS_ID] + first + first)
    return np.array(rows)


def attention(model, ids):
    """Attention weights of every layer. Shapes: ids (n,T) -> (L,n,H,T,T)"""
    return np.stack(list(model.attention_maps(ids).values()))


def prefix_matching(model, tok, spec, n=100, k=4, seed=0):
    """Per head, how much a repeated symbol attends to the label after its first occurrence.

    On repeated_lines: the mean attention from a symbol of the second copy to the
    label after the same symbol in the first copy. Shapes: -> (L,H)
    Position 1 + 2i holds the i-th symbol of the first copy, 2 + 2i its label;
    in the second copy the same symbol is at 1 + 2k + 2i.
    """
    P = attention(model, repeated_lines(spec, tok, n, k, seed))  # (L,n,H,T,T)
    i = np.arange(k)
    return P[:, :, :, 1 + 2 * k + 2 * i, 2 + 2 * i].mean(axis=(1, 3))  # (L,n,H,k) -> (L,H)


def previous_token(model, tok, spec, n=100, k=4, seed=0):
    """Per head, the mean attention a label pays to the symbol just before it. -> (L,H)

    On repeated_lines, labels are at the even positions 2, 4, ...; a head that copies
    the symbol into its label's position is the first half of an induction circuit.
    """
    P = attention(model, repeated_lines(spec, tok, n, k, seed))  # (L,n,H,T,T)
    t = np.arange(2, P.shape[-1], 2)  # the labels
    return P[:, :, :, t, t - 1].mean(axis=(1, 3))  # (L,n,H,2k) -> (L,H)


def ablate_heads(model, heads):
    """A copy of the model in which each (layer, head) in `heads` writes nothing.

    The head's context vector (D values) enters the output projection W_o (C,C)
    through rows h*D .. (h+1)*D; zeroing them removes the head's contribution to
    the residual stream and leaves every other head as it was.
    """
    cfg = model.config
    D = cfg.d_model // cfg.n_heads
    params = {key: value.copy() for key, value in model.params.items()}
    for layer, head in heads:
        if not (0 <= layer < cfg.n_decoder_layers and 0 <= head < cfg.n_heads):
            raise ValueError(f"no head ({layer}, {head}) in a {cfg.n_decoder_layers}-layer, "
                             f"{cfg.n_heads}-head model")
        params[f"decoder.{layer}.self_attn.W_o"][head * D:(head + 1) * D] = 0.0  # (D,C) rows
    return build_model(cfg, params)


def snapshot(model, tok, spec, ks, n=200, seed=0):
    """Every score of one model, as JSON-ready lists (the curves over training use it).

    The ICL score is loss(k = 0) - loss(k = max(ks)): how much the examples help.
    -> {"hits": {k: int}, "n": n, "loss": {k: nats}, "icl_score": nats,
        "prefix_matching": (L,H) list, "previous_token": (L,H) list}
    """
    scores = fewshot_scores(model, tok, spec, ks, n, seed=seed)
    k_late = max(ks)
    return {"hits": {k: s["hits"] for k, s in scores.items()}, "n": n,
            "loss": {k: s["loss"] for k, s in scores.items()},
            "icl_score": scores[0]["loss"] - scores[k_late]["loss"] if 0 in scores else None,
            "prefix_matching": prefix_matching(model, tok, spec, seed=seed).tolist(),
            "previous_token": previous_token(model, tok, spec, seed=seed).tolist()}
