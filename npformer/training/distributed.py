"""Data parallelism over MPI: N processes train one model on N shards of every batch.

Every process (a "rank") holds a full copy of the model. At each step:
  1. rank r takes its shard of the global batch (examples r, r+N, r+2N, ...);
  2. it runs forward and backward on the shard, as a single process would;
  3. ONE MPI Allreduce over a flat buffer holding every parameter's gradient sums
     the shards' gradients, each weighted by its share of the batch's tokens, so
     the result is the gradient of the global batch's mean loss;
  4. every rank applies the same clipping and AdamW update to the same gradient,
     so the copies stay identical (checked every `check_every` steps).
Only rank 0 logs, validates, writes checkpoints and plots; checkpoints are the
same files as a single process writes, so a run can be resumed with any number
of processes.

The gradient buffer: `flat_gradients(model)` re-points every entry of model.grads
at a slice of one contiguous array, so the tape accumulates straight into it and
the Allreduce needs no packing or unpacking copies.

mpi4py is imported only when more than one process runs: a single process needs
nothing beyond numpy. Start N processes with `mpiexec -n N npformer train ...` or
`npformer train --workers N` (which runs that command). docs/distributed.md
explains the all-reduce and its cost.
"""
import os
import shutil
import sys
import zlib

import numpy as np

# (size, rank) variables that MPICH and Open MPI set in each process they start
LAUNCHER_ENV = (("PMI_SIZE", "PMI_RANK"), ("OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_RANK"))


class DistributedError(RuntimeError):
    """Something about the processes is wrong (missing mpi4py, diverged parameters)."""


def launcher_env():
    """(size, rank) as an MPI launcher set them in the environment; (1, 0) without one.

    A launcher sets both variables of its pair, with 0 <= rank < size. A variable left
    over in a shell (a stale PMI_RANK alone, a rank without a size, a rank beyond the
    size) is not a launcher's: it is ignored, so it cannot make this process think it
    is rank 3 of nothing and keep its errors to itself.
    """
    for size_name, rank_name in LAUNCHER_ENV:
        size, rank = os.environ.get(size_name, ""), os.environ.get(rank_name, "")
        if size.isdigit() and rank.isdigit() and int(rank) < int(size):
            return int(size), int(rank)
    return 1, 0


def mpi_size_from_env():
    """How many processes the MPI launcher started (1 when not started by one)."""
    return launcher_env()[0]


def rank_from_env():
    """This process's rank as the MPI launcher set it (0 when not started by one)."""
    return launcher_env()[1]


class SingleProcess:
    """The world of one process: every collective operation is the identity."""

    rank, size = 0, 1

    def sum_(self, array):
        """Sum `array` over all processes, in place."""
        return array

    def broadcast(self, data):
        """Rank 0's bytes, on every rank."""
        return data

    def check_same(self, arrays, what):
        """Fail loudly unless `arrays` are identical on every rank."""


class MPIWorld:
    """The processes started by mpiexec, talking through MPI.COMM_WORLD."""

    def __init__(self):
        try:
            from mpi4py import MPI
        except ImportError:
            raise DistributedError(
                "more than one process needs mpi4py and an MPI library: "
                'pip install -e ".[mpi]"  (brings mpi4py and the mpich wheel)') from None
        self.MPI = MPI
        self.comm = MPI.COMM_WORLD
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()

    def sum_(self, array):
        self.comm.Allreduce(self.MPI.IN_PLACE, array, op=self.MPI.SUM)
        return array

    def broadcast(self, data):
        n = self.comm.bcast(len(data) if self.rank == 0 else None, root=0)
        buf = np.frombuffer(data, np.uint8).copy() if self.rank == 0 else np.empty(n, np.uint8)
        self.comm.Bcast(buf, root=0)
        return buf.tobytes()

    def check_same(self, arrays, what):
        crc = 0
        for a in arrays:
            data = a if isinstance(a, bytes) else np.ascontiguousarray(a).reshape(-1).view(np.uint8)
            crc = zlib.crc32(data, crc)
        every = self.comm.allgather(crc)
        if len(set(every)) > 1:
            raise DistributedError(f"{what} differ between ranks (CRC32 per rank: {every}); "
                                   "the processes no longer train the same model")


def world():
    """The current world: MPIWorld under an MPI launcher with >1 process, else SingleProcess."""
    if mpi_size_from_env() > 1:
        return MPIWorld()
    return SingleProcess()


def flat_gradients(model):
    """Put every gradient of `model` into one contiguous buffer; returns the buffer.

    model.grads keeps its keys; each value becomes a view of a slice of the buffer.
    Shapes: buffer (P,) with P = number of parameters, in model.grads' key order.
    """
    total = sum(g.size for g in model.grads.values())
    dtype = next(iter(model.grads.values())).dtype
    flat = np.zeros(total, dtype)  # (P,)
    offset = 0
    for key, g in model.grads.items():
        view = flat[offset: offset + g.size].reshape(g.shape)  # (P,) slice -> parameter shape
        view[...] = g
        model.grads[key] = view
        offset += g.size
    return flat


class GradientSync:
    """Sums the gradients of all ranks after each backward: `sync(loss, n_tokens) -> loss`.

    Rank r's gradient is of the mean loss over its n_r tokens; the global batch's
    gradient is sum_r (n_r / N) * grad_r with N = sum_r n_r. First a small
    Allreduce of [loss * n_r, n_r, votes...] gives N, the global mean loss and
    the votes (`votes`: flags any rank may raise, e.g. "stop after this step");
    then each rank scales its flat gradient by n_r / N and one Allreduce sums them.
    """

    def __init__(self, world, model, n_votes=2):
        self.world = world
        self.flat = flat_gradients(model)  # (P,) every gradient, as one buffer
        self.votes = np.zeros(n_votes)  # set before the step; after it: summed over ranks
        self.n_tokens = 0  # of the last global batch

    def __call__(self, loss, n_tokens):
        scalars = np.array([loss * n_tokens, n_tokens, *self.votes], np.float64)
        self.world.sum_(scalars)
        total = scalars[1]
        self.votes[:] = scalars[2:]
        self.n_tokens = int(total)
        self.flat *= n_tokens / total  # this shard's share of the global batch
        self.world.sum_(self.flat)
        return float(scalars[0] / total)


def shard(indices, rank, size):
    """This rank's share of a global batch: examples rank, rank+size, ... (may be empty)."""
    return indices[rank::size]


def launch_command(workers, argv):
    """The mpiexec command line that runs `npformer ARGV` in `workers` processes.

    Each process gets one BLAS thread unless --threads says otherwise: N processes
    on N cores is the point, and more threads per process would oversubscribe them.
    """
    mpiexec = shutil.which("mpiexec")
    if mpiexec is None:
        raise DistributedError("--workers needs mpiexec, which is not installed: "
                               'pip install -e ".[mpi]"  (brings mpi4py and the mpich wheel)')
    try:
        import mpi4py  # noqa: F401  (checked here so the error comes before any start-up)
    except ImportError:
        raise DistributedError("--workers needs mpi4py: "
                               'pip install -e ".[mpi]"  (brings mpi4py and the mpich wheel)') from None
    return [mpiexec, "-n", str(workers), sys.executable, "-m", "npformer", *argv]
