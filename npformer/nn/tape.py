"""The tape: a flat list of (name, backward, cache, input keys) records.

During the forward pass every layer call goes through `Tape.call`, which runs
the layer's forward function and appends one record. Forward order is already
a topological order, so `Tape.backward` simply walks the list with
`reversed()`: no recursion, no sorting, no graph library.

Values carry their names. A `Value` is an array plus the key its gradient is
collected under:
  - a parameter's key is its name in the model's parameter dict
    ("encoder.0.ffn.W_1"), see `param`;
  - an op's output is keyed by the op's name: `tape.call("encoder.0.ffn", ...)`
    returns `Value(y, "encoder.0.ffn")`;
  - a constant (token ids, a mask, a fixed table) is a plain array: no key, no
    gradient.
`tape.call` unwraps the Values it is given, so the layer functions see plain
arrays and stay pure forward/backward pairs. When a key appears as an input to
several records (the encoder output feeds every decoder layer; a tied
embedding is used at the bottom and the top), each record's gradient is added
to the same slot, so the key receives the SUM of its gradients.
"""
from typing import Any, Callable, NamedTuple


class Value:
    """An array and the tape key its gradient is collected under.

    A plain class with two slots rather than a NamedTuple: one is made for every
    op and every weight of every forward pass, and this is the cheapest to make.
    """

    __slots__ = ("data", "key")

    def __init__(self, data, key):
        self.data = data  # np.ndarray
        self.key = key  # str: the op that produced it, or the parameter's name

    def __repr__(self):
        return f"Value({self.key!r}, shape {getattr(self.data, 'shape', ())})"


def param(params, key):
    """The parameter `params[key]` as a Value keyed by its name."""
    return Value(params[key], key)


class Record(NamedTuple):
    """One op of the forward pass; its output is keyed by `name`."""

    name: str  # what ran and the key of its output, e.g. "decoder.1.cross_attn"
    backward: Callable  # backward(d_output, cache) -> tuple of input gradients
    cache: Any  # whatever the forward saved for the backward (a NamedTuple)
    input_keys: tuple  # one key (None: a constant) per positional argument of the forward


def _unwrap(args):
    """Values -> (arrays, keys); any other argument is passed through with key None."""
    arrays, keys = [], []
    for a in args:
        if type(a) is Value:
            arrays.append(a.data)
            keys.append(a.key)
        else:
            arrays.append(a)
            keys.append(None)
    return arrays, tuple(keys)


class Tape:
    """Records layer calls in forward order and replays their backwards in reverse."""

    def __init__(self):
        self.records = []
        self.names = set()  # op names used so far: each must be unique
        self.replayed = False

    def call(self, name, forward, backward, *args, **kwargs):
        """Run `forward(*args, **kwargs) -> (out, cache)`, record it, return Value(out, name).

        Arguments that are Values are passed to `forward` as arrays; their keys
        name the gradients `backward` returns, in the order of the arguments.
        """
        if self.replayed:
            raise RuntimeError("this tape was already replayed; record a new forward pass on a new Tape")
        if name in self.names:
            raise ValueError(f"op name {name!r} was already recorded on this tape; "
                             "every op needs its own name (it is the key of its output)")
        self.names.add(name)
        arrays, keys = _unwrap(args)
        out, cache = forward(*arrays, **kwargs)
        self.records.append(Record(name, backward, cache, keys))
        return Value(out, name)

    def run_backward(self, record, d_out):
        """One record's backward; the profiler overrides this to time it."""
        return record.backward(d_out, record.cache)

    def backward(self, param_grads, seed_key, seed=1.0, keep_activation_grads=False):
        """Replay the records in reverse, accumulating gradients.

        param_grads: dict {parameter key: gradient array}; gradients for these
            keys are ADDED in place (zero them first with `optim.zero_grads`).
        seed_key: key of the value to differentiate (usually the scalar "loss");
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
        for rec in reversed(self.records):
            if keep_activation_grads:
                d_out = act_grads.get(rec.name)
                if d_out is not None:
                    kept[rec.name] = d_out
            else:
                d_out = act_grads.pop(rec.name, None)  # consumed: free it
            if d_out is None:
                continue  # nothing downstream depends on this output
            d_inputs = self.run_backward(rec, d_out)
            for key, grad in zip(rec.input_keys, d_inputs):
                if key is None or grad is None:
                    continue
                if key in param_grads:
                    param_grads[key] += grad  # gradients accumulate
                elif key in act_grads:
                    act_grads[key] = act_grads[key] + grad  # second use: sum, new buffer
                else:
                    act_grads[key] = grad
        if keep_activation_grads:
            kept.update(act_grads)
            return kept
        return act_grads


class NoTape:
    """Stands in for a Tape when no gradients are needed (inference): runs forwards only."""

    def call(self, name, forward, backward, *args, **kwargs):
        """Run `forward` on the arrays of the arguments; return Value(out, name)."""
        out, _ = forward(*[a.data if type(a) is Value else a for a in args], **kwargs)
        return Value(out, name)
