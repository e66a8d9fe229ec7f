"""Training in several processes (DDP): starting them from the train stage, joining them, and
the few values they must share.

With `train.processes` above 1, or torchrun's `PET_NNODES` naming more than one machine, the train
stage's command (`exec python stages/train.py`) replaces itself with torchrun in the same process
(`exec`), so the process DVC started, killed or waited for is torchrun's, and with 1 on one machine
nothing is started at all. torchrun reads its other options from `PET_*` variables (`PET_NNODES`,
`PET_NODE_RANK`, `PET_MASTER_ADDR`, `PET_MASTER_PORT`, or `PET_RDZV_BACKEND`/`PET_RDZV_ENDPOINT`/`PET_RDZV_ID`),
which is how a run spans machines (docs/scale-and-gpus.md).

A stage outlives a `dvc` that is killed (a scheduler's SIGTERM, `kill`, a closing container), and
would train on with nobody to record its results, beside the next `dvc repro`: the stage's process
asks the kernel for a SIGTERM when its parent dies (torchrun, which keeps that request across
`exec`, then stops its workers). Its parent is `dvc` itself because the stage's command starts
with `exec`: DVC runs commands through `$SHELL -c` (else `/bin/sh`), and dash, unlike bash, stays
as the parent of a single command and would outlive `dvc`. torchrun starts its workers in their own sessions, so a SIGKILL
to the stage's process group would leave them training too: every worker asks the kernel to kill
it when torchrun dies.
"""

import ctypes
import logging
import os
import signal
import sys

import torch
import torch.distributed as dist

from sr_core.device import pick_device

log = logging.getLogger(__name__)

LAUNCHER_PID = "SR_TRAIN_LAUNCHER_PID"  # set by `launch`: the torchrun process the workers belong to
PR_SET_PDEATHSIG = 1  # linux/prctl.h


def under_torchrun() -> bool:
    return "LOCAL_RANK" in os.environ


def several_machines() -> bool:
    """Whether torchrun's `PET_NNODES` asks for more than one machine (a count or a `min:max` range)."""
    return os.environ.get("PET_NNODES", "1") not in ("1", "1:1")


def launch(processes: int, script: str) -> None:
    """Returns when this process is the one to train: a single process, or a worker of torchrun with
    `processes` workers on this machine. Otherwise replaces this process with torchrun running
    `script` in `processes` workers, and does not return. Either way, the training ends when the
    process that started the stage (`dvc`) dies."""
    parent = os.getppid()
    if under_torchrun():
        started = int(os.environ["LOCAL_WORLD_SIZE"])
        if started != processes:
            raise ValueError(f"train.processes is {processes} but torchrun started {started} processes on this "
                             f"machine: set train.processes to {started} (e.g. dvc exp run -S train.processes="
                             f"{started}), and the train stage starts torchrun itself")
        die_with_parent(signal.SIGKILL, int(os.environ[LAUNCHER_PID]) if LAUNCHER_PID in os.environ else None)
        return
    die_with_parent(signal.SIGTERM, parent)
    if processes == 1 and not several_machines():
        return
    command = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={processes}", script]
    log.info("starting %d training processes on this machine: %s", processes, " ".join(command[1:]))
    os.environ[LAUNCHER_PID] = str(os.getpid())  # exec keeps the pid: torchrun's, the workers' parent
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, command)


def die_with_parent(sig: int, parent: int | None) -> None:
    """Has the kernel send `sig` to this process when its parent dies, and exits if `parent` (the
    pid it was started by, when known) is gone already, before the request took effect."""
    if sys.platform != "linux":
        return
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, sig)
    if parent is not None and os.getppid() != parent:
        sys.exit(f"error: the process {parent} that started this one is gone")


def start_processes(device_name: str) -> tuple[int, int, torch.device]:
    """(rank, world size, device); under torchrun, joins the process group (NCCL on GPUs, else gloo)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return 0, 1, pick_device(device_name)
    local_rank, local_size = int(os.environ["LOCAL_RANK"]), int(os.environ["LOCAL_WORLD_SIZE"])
    cuda = torch.cuda.is_available() and device_name != "cpu"
    if cuda and local_size > torch.cuda.device_count():
        raise ValueError(f"{local_size} training processes on this machine but it has {torch.cuda.device_count()} "
                         f"GPU(s): NCCL runs one process per GPU; set train.processes to at most that")
    device = pick_device(f"cuda:{local_rank}" if cuda else "cpu")
    if cuda:
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if cuda else "gloo")
    return dist.get_rank(), world_size, device


def agreed(value: float, world_size: int, device: torch.device) -> float:
    """Rank 0's `value` on every rank: times that steer the schedule and the stop must not differ."""
    if world_size == 1:
        return value
    shared = torch.tensor([value], dtype=torch.float64, device=device)
    dist.broadcast(shared, 0)
    return shared.item()


def from_rank0(value: object, world_size: int) -> object:
    """Rank 0's `value` (any picklable object) on every rank: the resume state, which only rank 0
    reads, since another machine's workers have no copy of its file."""
    if world_size == 1:
        return value
    shared = [value]
    dist.broadcast_object_list(shared, 0)
    return shared[0]


def from_every_rank(value: object, world_size: int) -> list:
    """Every rank's `value` on every rank, in rank order: the fingerprints, which must agree, and
    the batcher RNG states, so a resumed run continues each rank's patch stream."""
    if world_size == 1:
        return [value]
    values = [None] * world_size
    dist.all_gather_object(values, value)
    return values
