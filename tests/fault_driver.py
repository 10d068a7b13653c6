"""Run the npformer CLI with faults injected; tests/test_faults.py starts it in a subprocess.

    python tests/fault_driver.py '<json spec>' train --out-dir ... [--resume]

The spec names a place in the training process and the signal to send the
process itself when it gets there:
  {"signal": "KILL" or "INT", "where": "backward" | "update" | "validate" | "fsync",
   "call": n, "times": 1 or 2}
  backward  inside a training step, after the dropout masks were drawn
  update    right after an AdamW update, before the step is counted
  validate  at the start of a validation (its validation loss)
  fsync     inside a checkpoint write: the temporary file is written, not yet renamed
`call` is which call of that place fires (1 = the first); `times` = 2 sends the
signal twice in a row (a second Ctrl-C). SIGKILL ends the process at once, as a
power cut or the out-of-memory killer would; SIGINT is Ctrl-C.
Nothing here is part of npformer: the faults are patched in from outside.
"""
import json
import os
import signal
import sys

import npformer.training.checkpoint
import npformer.training.optim
import npformer.nn.tape
import npformer.tasks
import npformer.training.loop
from npformer.cli import main


def inject(spec):
    sig = getattr(signal, "SIG" + spec["signal"])
    calls = {"n": 0}

    def fire():
        calls["n"] += 1
        if calls["n"] == spec["call"]:
            for _ in range(spec.get("times", 1)):
                os.kill(os.getpid(), sig)

    def before(owner, name):
        original = getattr(owner, name)

        def patched(*args, **kwargs):
            fire()
            return original(*args, **kwargs)
        setattr(owner, name, patched)

    def after(owner, name):
        original = getattr(owner, name)

        def patched(*args, **kwargs):
            result = original(*args, **kwargs)
            fire()
            return result
        setattr(owner, name, patched)

    where = spec["where"]
    if where == "backward":
        before(npformer.nn.tape.Tape, "backward")
    elif where == "update":
        after(npformer.training.optim.AdamW, "step")
    elif where == "validate":
        before(npformer.tasks.evaluation, "validation_loss")  # every task's validation starts with it
    elif where == "fsync":
        before(npformer.training.checkpoint.os, "fsync")
    else:
        raise SystemExit(f"unknown fault place {where!r}")


if __name__ == "__main__":
    inject(json.loads(sys.argv[1]))
    sys.exit(main(sys.argv[2:]))
