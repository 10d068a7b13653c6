"""The tape: a flat list of (backward, cache, input keys, output key) records.

During the forward pass every layer call goes through `Tape.call`, which runs
the layer's forward function and appends one record. Forward order is already
a topological order, so `Tape.backward` simply walks the list with
`reversed()`: no recursion, no sorting, no graph library.

Values are named by string keys. A parameter's key is its name in the model's
parameter dict ("encoder.0.ffn.W_1"); an activation's key is chosen by the
code that records it ("encoder.0.attn_out"). When a key appears as an input
to several records (the encoder output feeds every decoder layer; a tied
embedding is used at the bottom and the top), each record's gradient is added
to the same slot, so the key receives the SUM of its gradients.
"""
import time
from typing import Any, Callable, NamedTuple


class Record(NamedTuple):
    name: str  # what ran, e.g. "decoder.1.cross_attn"
    backward: Callable  # backward(d_output, cache) -> tuple of input gradients
    cache: Any  # whatever the forward saved for the backward (a NamedTuple)
    input_keys: tuple  # one key (or None: no gradient wanted) per backward output
    output_key: str  # key of the value this op produced
    input_shapes: tuple
    output_shape: tuple
    forward_seconds: float


class Tape:
    """Records layer calls in forward order and replays their backwards in reverse."""

    def __init__(self, timed=False):
        self.records = []
        self.timed = timed  # measure backward time per record too (for summary)
        self.backward_seconds = []
        self.replayed = False

    def call(self, name, forward, backward, input_keys, output_key, *args, **kwargs):
        """Run `forward(*args, **kwargs) -> (out, cache)` and record it; return out.

        `input_keys` name the gradients `backward` returns, in order.
        """
        if self.replayed:
            raise RuntimeError("this tape was already replayed; record a new forward pass on a new Tape")
        t0 = time.perf_counter()
        out, cache = forward(*args, **kwargs)
        seconds = time.perf_counter() - t0
        shapes = tuple(getattr(a, "shape", ()) for a in args[: len(input_keys)])
        self.records.append(
            Record(name, backward, cache, tuple(input_keys), output_key, shapes,
                   getattr(out, "shape", ()), seconds)
        )
        return out

    def backward(self, param_grads, seed_key, seed=1.0, keep_activation_grads=False):
        """Replay the records in reverse, accumulating gradients.

        param_grads: dict {parameter key: gradient array}; gradients for these
            keys are ADDED in place (zero them first with `zero_grads`).
        seed_key: key of the value to differentiate (usually the scalar loss);
            its gradient is `seed`.
        Returns the dict of activation gradients that were not consumed (inputs
        no record produced), or all of them if keep_activation_grads is True.
        A tape can be replayed once; a second call raises RuntimeError.
        """
        if self.replayed:
            raise RuntimeError("backward was already called on this tape; run the forward pass again")
        self.replayed = True
        act_grads = {seed_key: seed}
        kept = {}
        self.backward_seconds = [0.0] * len(self.records)
        for index in reversed(range(len(self.records))):
            rec = self.records[index]
            if keep_activation_grads:
                d_out = act_grads.get(rec.output_key)
                if d_out is not None:
                    kept[rec.output_key] = d_out
            else:
                d_out = act_grads.pop(rec.output_key, None)  # consumed: free it
            if d_out is None:
                continue  # nothing downstream depends on this output
            t0 = time.perf_counter() if self.timed else 0.0
            d_inputs = rec.backward(d_out, rec.cache)
            for key, grad in zip(rec.input_keys, d_inputs):
                if key is None or grad is None:
                    continue
                if key in param_grads:
                    param_grads[key] += grad  # gradients accumulate
                elif key in act_grads:
                    act_grads[key] = act_grads[key] + grad  # second use: sum, new buffer
                else:
                    act_grads[key] = grad
            if self.timed:
                self.backward_seconds[index] = time.perf_counter() - t0
        if keep_activation_grads:
            kept.update(act_grads)
            return kept
        return act_grads

    def summary(self, times=False):
        """A table of the recorded ops: name, input shapes, output shape (and times)."""
        width = max([len(r.name) for r in self.records] + [2])
        head = f"{'#':>3}  {'op':<{width}} {'inputs':<44} {'output':<16}"
        if times:
            head += f" {'fwd ms':>8} {'bwd ms':>8}"
        lines = [head, "-" * len(head)]
        for i, rec in enumerate(self.records):
            ins = ", ".join("x".join(map(str, s)) or "scalar" for s in rec.input_shapes)
            if len(ins) > 44:
                ins = ins[:41] + "..."
            out = "x".join(map(str, rec.output_shape)) or "scalar"
            line = f"{i:>3}  {rec.name:<{width}} {ins:<44} {out:<16}"
            if times:
                bwd = self.backward_seconds[i] * 1e3 if self.backward_seconds else float("nan")
                line += f" {rec.forward_seconds * 1e3:8.3f} {bwd:8.3f}"
            lines.append(line)
        return "\n".join(lines)


class NoTape:
    """Stands in for a Tape when no gradients are needed (inference): runs forwards only."""

    records = ()

    def call(self, name, forward, backward, input_keys, output_key, *args, **kwargs):
        out, _ = forward(*args, **kwargs)
        return out


def zero_grads(grads):
    """Set every gradient array to zero in place (zeroing is always explicit)."""
    for g in grads.values():
        g.fill(0)
