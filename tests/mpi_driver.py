"""Run `npformer ARGS` in one MPI rank with a fault patched in from outside (tests only).

    mpiexec -n 2 python tests/mpi_driver.py '<json spec>' train ...

spec: {"rank": r, "fault": "die" | "drift", "call": n}
  die    rank r kills itself (SIGKILL) at its n-th backward pass: a crashed worker
  drift  rank r nudges one parameter after its n-th optimizer step: copies that diverge
"""
import json
import os
import signal
import sys

from npformer.cli import main
from npformer.training.distributed import rank_from_env
from npformer.training.optim import AdamW
from npformer.nn.tape import Tape


def inject(spec):
    if rank_from_env() != spec["rank"]:
        return
    calls = {"n": 0}
    if spec["fault"] == "die":
        original = Tape.backward

        def backward(self, *args, **kwargs):
            calls["n"] += 1
            if calls["n"] == spec["call"]:
                os.kill(os.getpid(), signal.SIGKILL)
            return original(self, *args, **kwargs)
        Tape.backward = backward
    elif spec["fault"] == "drift":
        original = AdamW.step

        def step(self, *args, **kwargs):
            result = original(self, *args, **kwargs)
            calls["n"] += 1
            if calls["n"] == spec["call"]:
                next(iter(self.params.values())).flat[0] += 1e-3
            return result
        AdamW.step = step


if __name__ == "__main__":
    inject(json.loads(sys.argv[1]))
    sys.exit(main(sys.argv[2:]))
