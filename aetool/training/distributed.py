"""Several training processes (torchrun): who this process is, the process group, the few values
every rank must agree on, and each rank's share of the global batch.

Without torchrun (WORLD_SIZE unset or 1) nothing here talks to other processes: `Processes.world`
is 1 and the loop runs as a single process always has.

Every rank draws the whole global batch's random choices from the same seeded generators and
keeps its own slice, so N processes train on exactly the patches that one process would, and the
random state in a checkpoint is the same on every rank (--resume works across a change of N).
"""
from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

from ..errors import UsageError

# How long a rank waits for the others at a collective: rank 0 validates and writes files while
# the others wait, which can take minutes on a large --val folder. A rank that dies makes torchrun
# stop the others, so a long wait costs nothing when things go wrong.
TIMEOUT = datetime.timedelta(minutes=30)


@dataclass
class Processes:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    backend: str | None = None
    owns_group: bool = False  # False when the caller had already started the process group
    _device: str = "cpu"

    @property
    def main(self) -> bool:
        """Rank 0: the one that validates, logs and writes files."""
        return self.rank == 0

    @classmethod
    def from_env(cls) -> "Processes":
        """The ranks torchrun describes in the environment (RANK, WORLD_SIZE, LOCAL_RANK)."""
        try:
            world = int(os.environ.get("WORLD_SIZE", "1"))
            rank = int(os.environ.get("RANK", "0"))
            local = int(os.environ.get("LOCAL_RANK", str(rank)))
        except ValueError:
            raise UsageError("WORLD_SIZE, RANK and LOCAL_RANK must be integers (start several processes with "
                             "torchrun, which sets them)") from None
        if world <= 1:
            return cls()
        if not 0 <= rank < world:
            raise UsageError(f"RANK {rank} is not below WORLD_SIZE {world}")
        return cls(rank=rank, world=world, local_rank=local)

    def device(self, device: str) -> str:
        """The device of this rank: with several processes, CUDA means the GPU of its local rank."""
        if self.world == 1:
            return device
        import torch

        if device == "mps":
            raise UsageError("several processes cannot share Apple MPS; use --device cpu with torchrun")
        if device.startswith("cuda:"):
            raise UsageError(f"--device {device}: under torchrun each process takes the GPU of its local rank; "
                             "give --device cuda (or auto), and choose GPUs with CUDA_VISIBLE_DEVICES")
        if device == "cuda":
            if self.local_rank >= torch.cuda.device_count():
                raise UsageError(f"local rank {self.local_rank} has no GPU: this machine has "
                                 f"{torch.cuda.device_count()}; give --nproc-per-node at most that")
            return f"cuda:{self.local_rank}"
        return device

    def start(self, device: str) -> None:
        """Join the process group: NCCL for CUDA, gloo for the CPU."""
        if self.world == 1:
            return
        import torch
        import torch.distributed as dist

        self._device = device
        if dist.is_initialized():  # a Python caller's own group: use it, leave it to them
            self.backend = dist.get_backend()
            return
        if device.startswith("cuda"):
            torch.cuda.set_device(device)
            self.backend = "nccl"
            dist.init_process_group("nccl", timeout=TIMEOUT, device_id=torch.device(device))
        else:
            self.backend = "gloo"
            dist.init_process_group("gloo", timeout=TIMEOUT)
        self.owns_group = True

    def _tensor(self, values):
        """float64 values where the backend reduces them: NCCL on the GPU, gloo on the CPU."""
        import torch

        if torch.is_tensor(values):
            return values.detach().reshape(-1).to(self._comm_device, torch.float64)
        return torch.tensor(values, dtype=torch.float64, device=self._comm_device)

    @property
    def _comm_device(self) -> str:
        return self._device if self.backend == "nccl" else "cpu"

    def agree(self, stop: bool, elapsed: float) -> tuple[bool, float]:
        """(any rank asked to stop, rank 0's elapsed seconds): the time budget, the learning rate
        over time and a stop by a signal must be the same on every rank, or ranks deadlock."""
        if self.world == 1:
            return stop, elapsed
        import torch.distributed as dist

        t = self._tensor([float(stop), elapsed if self.main else 0.0])
        dist.all_reduce(t)
        return bool(t[0].item() > 0), float(t[1].item())

    def mean(self, value) -> float:
        """The mean over ranks of a scalar tensor (the loss of the global batch)."""
        if self.world == 1:
            return float(value)
        import torch.distributed as dist

        t = self._tensor(value)
        dist.all_reduce(t)
        return float(t.item()) / self.world

    def barrier(self) -> None:
        if self.world > 1:
            import torch.distributed as dist

            dist.barrier()

    def close(self) -> None:
        """Leave the process group we started (all ranks, on the way out)."""
        if self.owns_group:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()
            self.owns_group = False


def check_batch(batch_size: int, world: int) -> None:
    if world > 1 and batch_size % world:
        lower, upper = batch_size // world * world, (batch_size // world + 1) * world
        hint = f"{lower} or {upper}" if lower else f"{upper}"
        raise UsageError(f"--batch-size {batch_size} cannot be split evenly across {world} processes: --batch-size "
                         f"is the global batch, shared by all of them; give a multiple of {world} ({hint})")


def wrap(model, task, device: str):
    """DistributedDataParallel around the task's loss: its forward is task.loss(model, batch), so a
    loss that calls other methods of the model (the VAE's loss_terms) or reads its attributes
    (the codec's lambdas) is synchronised like a plain forward."""
    import torch
    from torch.nn.parallel import DistributedDataParallel

    class TaskLoss(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, batch):
            return task.loss(self.model, batch)

    ids = [torch.device(device).index] if device.startswith("cuda") else None
    return DistributedDataParallel(TaskLoss(), device_ids=ids)


def share(batch_size: int, procs: Processes) -> slice:
    """This rank's rows of the global batch."""
    n = batch_size // procs.world
    return slice(procs.rank * n, (procs.rank + 1) * n)


def sample_share(task, rng, gen, batch_size: int, device: str, procs: Processes):
    """This rank's share of the global batch: the whole batch made on the CPU with the global
    batch's random choices, sliced, and the slice moved to the device. Making the other ranks'
    rows costs each rank the sampling time of the whole batch (benchmarks/ddp_train.py measures
    it per trainer: milliseconds, small beside a step on the CPU)."""
    keep = share(batch_size, procs)
    batch = task.sample_batch(rng, gen, batch_size, "cpu")
    if isinstance(batch, (tuple, list)):
        return type(batch)(t[keep].to(device, non_blocking=True) for t in batch)
    return batch[keep].to(device, non_blocking=True)
