"""Distributed training: the process group, data shards and reductions of a ``torchrun`` run.

``torchrun --nproc_per_node N -m snnkern train MODEL ...`` starts N processes with ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK`` and a rendezvous in their environment; :func:`session` joins them in
a process group (gloo on the CPU, NCCL on CUDA, each process on ``cuda:LOCAL_RANK``). Without
those variables (or with ``WORLD_SIZE=1``) a run is one plain process and none of this applies.

How the training uses it (:mod:`snnkern.train.loop`):

* ``--batch-size`` is the global batch. Every rank draws the same permutation of the training set
  (the per-epoch generator), and rank ``r`` of ``W`` takes the contiguous slice
  ``[r * B/W, (r + 1) * B/W)`` of each global batch: its own shard, deterministic, and together
  exactly the batch one process would train on. DistributedDataParallel averages the gradients,
  so the run follows the trajectory of one process at the same global batch (to float tolerance:
  the sums run in another order).
* Losses are all-reduced (one collective per step, together with the preemption flag, so every
  rank stops at the same step); evaluation predicts a contiguous shard of each set per rank and
  gathers the predictions.
* Only rank 0 reads and writes files (checkpoints, metrics.json, plots, generated data); it sends
  what the others need (the checkpoint, SHD data) over the process group, so the output folder
  need not be on a shared filesystem.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from .errors import ConfigError, TrainError

_T = TypeVar("_T")


def world_size_from_env() -> int:
    """The number of processes torchrun started (``WORLD_SIZE``; 1 without torchrun)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    value = os.environ.get("WORLD_SIZE", "1")
    try:
        return max(int(value), 1)
    except ValueError:
        raise ConfigError(f"the environment variable WORLD_SIZE must be an integer; got {value!r}") from None


class Dist:
    """This process's place in a distributed run (rank 0 of 1 without one)."""

    def __init__(self, rank: int = 0, world_size: int = 1, local_rank: int = 0, backend: str | None = None) -> None:
        self.rank, self.world_size, self.local_rank, self.backend = rank, world_size, local_rank, backend

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def __repr__(self) -> str:
        return f"Dist(rank={self.rank}, world_size={self.world_size}, backend={self.backend})"

    def device(self, device: str) -> str:
        """The device of this rank: ``cuda:LOCAL_RANK`` for ``cuda`` in a distributed run."""
        if self.enabled and torch.device(device).type == "cuda":
            return f"cuda:{self.local_rank}"
        return device

    def _tensor_device(self) -> torch.device:
        return torch.device(f"cuda:{self.local_rank}") if self.backend == "nccl" else torch.device("cpu")

    # -------------------------------------------------------------------------------- shards

    def shard(self, n: int) -> slice:
        """Contiguous slice of ``range(n)`` for this rank (the first ``n % W`` ranks get one more)."""
        base, extra = divmod(n, self.world_size)
        start = self.rank * base + min(self.rank, extra)
        return slice(start, start + base + (1 if self.rank < extra else 0))

    # ---------------------------------------------------------------------------- collectives

    def run_on_main(self, fn: Callable[[], _T]) -> _T:
        """Run ``fn`` on rank 0 and send its result to every rank; rank 0's error is raised on all."""
        if not self.enabled:
            return fn()
        box: list[Any] = [None]
        if self.is_main:
            try:
                box[0] = (fn(), None)
            except TrainError as error:
                box[0] = (None, error)
            finally:
                if box[0] is None:  # another exception is on its way up: stop the other ranks too
                    box[0] = (None, TrainError("rank 0 failed (its traceback says why)"))
                    dist.broadcast_object_list(box, src=0, device=self._tensor_device())
        dist.broadcast_object_list(box, src=0, device=self._tensor_device())
        result, failure = box[0]
        if failure is not None:
            raise failure
        return result

    def reduce_step(self, loss: torch.Tensor, stop: bool) -> tuple[float, bool]:
        """The mean loss over the ranks and whether any rank was asked to stop (one all-reduce)."""
        if not self.enabled:
            return loss.item(), stop
        t = torch.stack([loss.detach().to(torch.float64).reshape(()), torch.tensor(float(stop), dtype=torch.float64)])
        t = t.to(self._tensor_device())
        dist.all_reduce(t)
        return t[0].item() / self.world_size, bool(t[1].item() > 0)

    def any(self, flag: bool) -> bool:
        """True on every rank if ``flag`` is true on any."""
        if not self.enabled:
            return flag
        t = torch.tensor([float(flag)], device=self._tensor_device())
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item() > 0)

    def mean(self, values: torch.Tensor) -> torch.Tensor:
        """Elementwise mean over the ranks of a float64 tensor (unchanged in one process)."""
        if not self.enabled:
            return values
        t = values.to(self._tensor_device(), torch.float64).clone()
        dist.all_reduce(t)
        return (t / self.world_size).cpu()

    def gather(self, t: torch.Tensor) -> torch.Tensor:
        """The ranks' tensors concatenated along dim 0 in rank order (every rank gets all)."""
        if not self.enabled:
            return t
        parts: list[Any] = [None] * self.world_size
        dist.all_gather_object(parts, t.cpu())
        return torch.cat(parts)

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()


@contextmanager
def session(device: str) -> Iterator[Dist]:
    """Join the process group torchrun prepared (if any) for the duration; yields this rank's :class:`Dist`.

    An existing process group (``torch.distributed.init_process_group`` called by the caller) is
    used as it is and left open.
    """
    if dist.is_available() and dist.is_initialized():
        rank = dist.get_rank()
        yield Dist(rank, dist.get_world_size(), int(os.environ.get("LOCAL_RANK", rank)), dist.get_backend())
        return
    world_size = world_size_from_env()
    if world_size <= 1:
        yield Dist()
        return
    if not dist.is_available():
        raise ConfigError("WORLD_SIZE > 1 but this PyTorch build has no torch.distributed")
    backend = "nccl" if torch.device(device).type == "cuda" else "gloo"
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if backend == "nccl":
        torch.cuda.set_device(local_rank)
    try:
        dist.init_process_group(backend)
    except ValueError as error:  # e.g. WORLD_SIZE set by hand without MASTER_ADDR/MASTER_PORT
        raise ConfigError(
            f"WORLD_SIZE={world_size} but the process group cannot start ({error}); launch with torchrun"
        ) from None
    try:
        yield Dist(dist.get_rank(), dist.get_world_size(), local_rank, backend)
    finally:
        dist.destroy_process_group()
