"""A Tape that also notes each op's shapes and forward/backward time.

Inspection wraps the autograd core from outside: `TimedTape` records exactly
what `Tape` records, and keeps its notes in lists parallel to `tape.records`.
The profiler (npformer/tools/profile.py) sums the times by kind of layer; `summary`
prints one line per op.

    tape = TimedTape()
    model.loss(src, tgt_in, tgt_out, tape=tape)
    tape.backward(model.grads, "loss")
    print(tape.summary(times=True))
"""
import time

from ..nn.tape import Tape


def _shape(x):
    """Shape of an array or Value; () for anything else (a scalar, a flag)."""
    return getattr(getattr(x, "data", x), "shape", ())


class TimedTape(Tape):
    """Tape + per-record input shapes, output shape, forward and backward seconds."""

    def __init__(self):
        super().__init__()
        self.input_shapes = []  # per record: the shapes of its array arguments
        self.output_shapes = []  # per record: the shape of its output
        self.forward_seconds = []  # per record
        self.backward_seconds = []  # per record, filled by backward (0.0 if skipped)

    def call(self, name, forward, backward, *args, **kwargs):
        """Tape.call, timed; shapes of the arguments that have one are noted."""
        t0 = time.perf_counter()
        out = super().call(name, forward, backward, *args, **kwargs)
        self.forward_seconds.append(time.perf_counter() - t0)
        self.input_shapes.append(tuple(_shape(a) for a in args if _shape(a)))
        self.output_shapes.append(_shape(out))
        return out

    def run_backward(self, record, d_out):
        """Tape.run_backward, timed."""
        t0 = time.perf_counter()
        d_inputs = super().run_backward(record, d_out)
        self.backward_seconds[self._index[record.name]] = time.perf_counter() - t0
        return d_inputs

    def backward(self, *args, **kwargs):
        """Tape.backward; afterwards backward_seconds[i] is record i's backward time."""
        self.backward_seconds = [0.0] * len(self.records)
        self._index = {rec.name: i for i, rec in enumerate(self.records)}
        return super().backward(*args, **kwargs)

    def summary(self, times=False):
        """A table of the recorded ops: name, input shapes, output shape (and times)."""
        width = max([len(r.name) for r in self.records] + [2])
        head = f"{'#':>3}  {'op':<{width}} {'inputs':<44} {'output':<16}"
        if times:
            head += f" {'fwd ms':>8} {'bwd ms':>8}"
        lines = [head, "-" * len(head)]
        for i, rec in enumerate(self.records):
            ins = ", ".join("x".join(map(str, s)) for s in self.input_shapes[i])
            if len(ins) > 44:
                ins = ins[:41] + "..."
            out = "x".join(map(str, self.output_shapes[i])) or "scalar"
            line = f"{i:>3}  {rec.name:<{width}} {ins:<44} {out:<16}"
            if times:
                bwd = self.backward_seconds[i] * 1e3 if self.backward_seconds else float("nan")
                line += f" {self.forward_seconds[i] * 1e3:8.3f} {bwd:8.3f}"
            lines.append(line)
        return "\n".join(lines)
