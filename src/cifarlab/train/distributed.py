"""Data-parallel training on torch.distributed (DDP): which process this is, the few collectives
training needs, and the launcher. `train.processes: N` makes the train stage start N copies of
itself through torch's elastic launcher (what `torchrun --standalone` runs), so `dvc repro` stays
the one command; a stage already started by `torchrun` (several machines) is a worker as it is.
gloo on CPU, NCCL on CUDA (one process per GPU). Rank 0 alone writes files."""
from __future__ import annotations

import contextlib
import gc
import logging
import os
import re
import signal
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn

from cifarlab.core.errors import UserError, first_line, set_key

T = TypeVar("T")


@dataclass(frozen=True)
class Group:
    rank: int = 0  # this process among all of them
    world: int = 1  # processes in the run, over every machine
    local_rank: int = 0  # this process among those on its machine (its GPU index)
    local_world: int = 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that prints progress and writes outputs."""
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1

    # The seam between training and data parallelism: training code says what rank 0 alone does
    # through these three, and reads the same on one process as on many.
    def say(self, text: str) -> None:
        """Progress printed once for the whole run."""
        if self.is_main:
            print(text, flush=True)

    def main_only(self, make: Callable[[], T], elsewhere: T = None) -> T:
        """What rank 0 alone holds (the resume file, the scoring batches); `elsewhere` on the others."""
        return make() if self.is_main else elsewhere

    def decided_by_main(self, decide: Callable[[], T]) -> T:
        """What rank 0 decides (the resumed state, the LR range test's peak), on every process."""
        return share(self, decide() if self.is_main else None)


SINGLE = Group()


def launched() -> bool:
    """Whether torchrun (or our launcher) started this process as one rank of a run."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def from_env() -> Group:
    if not launched():
        return SINGLE
    env = os.environ
    return Group(int(env["RANK"]), int(env["WORLD_SIZE"]), int(env.get("LOCAL_RANK", 0)),
                 int(env.get("LOCAL_WORLD_SIZE", 1)))


@contextlib.contextmanager
def joined(group: Group, device: torch.device) -> Iterator[None]:
    """Inside: this process is in the run's process group (on a CPU, with its share of the cores:
    N processes with all cores each would fight over them). A collective that fails because
    another process died becomes one UserError line, not a gloo/NCCL traceback; an error of this
    process's own (one that every process meets alike) is named as this process's failure."""
    if not group.active:
        yield
        return
    if device.type == "cpu":
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // group.local_world))
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo",
                            device_id=device if device.type == "cuda" else None)
    try:
        yield
    except (RuntimeError, dist.DistError) as err:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the launcher is stopping us anyway: leave with this line
        raise UserError(failure_line(err, group)) from None
    finally:
        dist.destroy_process_group()


# what gloo and NCCL say when the process at the other end of a collective is gone
_PEER_GONE = re.compile(r"connection (closed|reset|refused)|closed by peer|broken pipe|remote process|timed? ?out",
                        re.IGNORECASE)


def failure_line(err: Exception, group: Group) -> str:
    """What stopped this process: a peer that went away, or an error of its own."""
    cause = first_line(err)
    if isinstance(err, dist.DistError) or _PEER_GONE.search(str(err)):
        return f"training process {group.rank} of {group.world} stopped because another one failed or was stopped " \
               f"({cause})"
    return f"training process {group.rank} of {group.world} failed: {cause}"


def total(group: Group, values: torch.Tensor) -> torch.Tensor:
    """`values` summed element-wise over all processes, in place (unchanged on one process)."""
    if group.active:
        dist.all_reduce(values)
    return values


class DataParallel:
    """A model's DDP wrapper for each epoch: gradients averaged over processes at each step. With
    sync_bn its BatchNorm layers (the same parameters) normalise over the global batch. A model
    that stops training some parameters partway (airbench's whitening bias, see its start_epoch)
    leaves them without a gradient from then on; DDP must then look for such parameters after
    every forward (a walk of the autograd graph), or it waits for their gradients forever. So the
    wrapper looks only in the epochs where the model says some are idle, and is rebuilt, old hooks
    dropped first, when that changes."""

    def __init__(self, model: nn.Module, device: torch.device, sync_bn: bool = False) -> None:
        self.module = nn.SyncBatchNorm.convert_sync_batchnorm(model) if sync_bn else model
        self.device = device
        self.wrapper: nn.parallel.DistributedDataParallel | None = None

    def for_epoch(self, epoch: int) -> nn.parallel.DistributedDataParallel:
        idle = bool(getattr(self.module, "idle_parameters", lambda _epoch: False)(epoch))
        if self.wrapper is None or self.wrapper.find_unused_parameters != idle:
            self.wrapper = None  # its reducer's gradient hooks go with it, before the new one adds its own
            gc.collect()
            self.wrapper = nn.parallel.DistributedDataParallel(
                self.module, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=idle)
        return self.wrapper


def share(group: Group, value: Any) -> Any:
    """Rank 0's `value` on every process (a picklable object: a float, a dict of tensors)."""
    if not group.active:
        return value
    box = [value if group.is_main else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def check_batch_split(batch_size: int, group: Group) -> None:
    """train.batch_size stays the global batch, so a recipe means the same on 1 or N processes:
    each takes an equal part of it (under torchrun, N may differ from train.processes)."""
    if batch_size % group.world:
        raise UserError(f"params.yaml: train.batch_size = {batch_size} must divide evenly among the "
                        f"{group.world} training processes")


def check_devices(processes: int, device: torch.device, sync_bn: bool) -> None:
    """What this machine must offer for `processes` local processes, checked before any starts."""
    if device.type == "cuda" and processes > torch.cuda.device_count():
        raise UserError(f"params.yaml: train.processes = {processes}, but this machine has "
                        f"{torch.cuda.device_count()} CUDA GPUs (one process per GPU)")
    if device.type == "mps" and processes > 1:
        raise UserError("params.yaml: train.processes > 1 needs CUDA GPUs or a CPU; Apple MPS has no "
                        "torch.distributed backend")
    if sync_bn and processes > 1 and device.type != "cuda":
        raise UserError("params.yaml: train.sync_bn = true needs CUDA GPUs (torch's SyncBatchNorm has no CPU "
                        f"kernel); on a CPU, {set_key('train.sync_bn', 'false')}")


def launch(processes: int, entrypoint: Callable | str, *args: Any) -> dict[int, Any]:
    """Run `entrypoint(*args)` (a function, or a program such as sys.executable with its
    arguments) as `processes` ranks on this machine, as `torchrun --standalone --nproc-per-node`
    would: a free port (two runs at once never collide), no restarts. Returns each rank's return
    value (a function's); a rank that fails stops the others and becomes one UserError."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)  # we say what failed
    config = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=processes, run_id=uuid.uuid4().hex,
                          rdzv_backend="c10d", rdzv_endpoint="localhost:0", max_restarts=0,
                          monitor_interval=0.2)
    try:
        return elastic_launch(config, entrypoint)(*args)
    except ChildFailedError as err:
        rank, failure = err.get_first_failure()
        code = failure.exitcode
        how = f"was killed by {signal.Signals(-code).name}" if code < 0 else f"exited with status {code}"
        raise UserError(f"training process {rank} of {processes} {how}; the others were stopped. The last "
                        "finished epoch is saved: run the stage again to resume after it") from None
