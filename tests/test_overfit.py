"""End to end: the model, the tape and AdamW can memorise one fixed batch."""
import numpy as np

from npformer.nn.config import ModelConfig
from npformer.models.transformer import Transformer
from npformer.training.optim import AdamW, clip_grad_norm
from npformer.nn.tape import Tape

STEPS = 60  # AdamW steps allowed
FACTOR = 50.0  # the loss must fall by at least this factor within STEPS


def test_overfit_one_batch():
    cfg = ModelConfig(src_vocab_size=20, tgt_vocab_size=20, d_model=32, n_heads=4, d_ff=64,
                      n_encoder_layers=2, n_decoder_layers=2, max_len=16, dropout=0.0, seed=3)
    model = Transformer(cfg)
    rng = np.random.default_rng(0)
    src = rng.integers(3, 20, size=(8, 7))
    src[1, 5:] = 0  # padding
    tgt = np.concatenate([np.ones((8, 1), int), src[:, ::-1], 2 * np.ones((8, 1), int)], axis=1)
    tgt_in, tgt_out = tgt[:, :-1], tgt[:, 1:]
    opt = AdamW(model.params, lr=3e-3)
    losses = []
    for _ in range(STEPS):
        tape = Tape()
        model.zero_grad()
        losses.append(model.loss(src, tgt_in, tgt_out, tape=tape))
        tape.backward(model.grads, "loss")
        clip_grad_norm(model.grads, 1.0)
        opt.step(model.grads)
    assert losses[-1] < losses[0] / FACTOR, f"loss {losses[0]:.3f} -> {losses[-1]:.3f}"
