"""Scoring a trained translator: validation loss, translation of many sentences, BLEU.

These are what `npformer train` (at every validation), `npformer translate` and
`npformer eval` call; none of them needs the training loop.
"""
from ..training.batching import bucket_batches, collate, pair_length
from .metrics import corpus_bleu, exact_match
from ..tokenizers import EOS_ID


def validation_loss(model, examples, max_tokens, task=None):
    """Mean cross-entropy (no smoothing, no dropout) over encoded examples.

    `task` (tasks.py) says how examples become batches; default: translation pairs.
    """
    length, make_batch = (task.length, task.collate) if task else (pair_length, collate)
    total, count = 0.0, 0
    for idx in bucket_batches(examples, max_tokens, seed=0, epoch=0, shuffle=False,
                              length=length):
        batch = make_batch([examples[i] for i in idx])
        total += model.batch_loss(batch) * batch.n_tokens
        count += batch.n_tokens
    return total / max(count, 1)


def translate_texts(model, src_tok, tgt_tok, texts, method="greedy", **kw):
    """Translate a list of strings (greedy, beam or sampling); returns a list of strings.

    A source longer than the model's positions is cut to fit (the CLI warns first).
    """
    from ..models.decoding import translate_ids

    max_src = model.config.max_len - 1
    rows = [src_tok.encode(t)[:max_src] + [EOS_ID] if t.strip() else [] for t in texts]
    out = translate_ids(model, rows, method=method, **kw)
    return [tgt_tok.decode(ids) for ids in out]


def evaluate(model, src_tok, tgt_tok, pairs, method="greedy", **kw):
    """BLEU, exact match and the per-sentence hypotheses for (source, reference) pairs."""
    hyps = translate_texts(model, src_tok, tgt_tok, [s for s, _ in pairs], method, **kw)
    refs = [t for _, t in pairs]
    bleu = corpus_bleu(hyps, refs)
    return {"bleu": bleu.score, "exact_match": exact_match(hyps, refs), "n": len(pairs),
            "hypotheses": hyps}
