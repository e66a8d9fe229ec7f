"""The training loop: one function, read top to bottom.

Per epoch: train on batches cut from images decoded once -> (rank 0, every `val_every` epochs and
after the last) score the val split on the device with the EMA weights when EMA is on -> append a
history row -> keep the checkpoint with the best val RGB PSNR (the reference script's rule) -> write the resume
state. With `train.time_limit_minutes`, the run ends at the step its budget runs out, inside an
epoch if need be, the learning-rate schedule laid over the steps that fit (see schedule.py).
One device, or several processes under torchrun (DDP, see distributed.py):
`train.batch_size` is the global batch, split evenly over the processes, and every process cuts
its own random patches from the whole train split, so an epoch is the same number of steps and
samples whatever the number of processes.
"""

import copy
import functools
import hashlib
import json
import logging
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from sr_core.checkpoint import load_model, load_train_state, save_checkpoint, save_train_state
from sr_core.config import Params, TrainConfig
from sr_core.data import Pair, cache_key, lr_shape, pair_files
from sr_core.device import autocast, card, grad_scaler, resolve_precision, set_backends
from sr_core.distributed import agreed, from_every_rank, from_rank0, start_processes
from sr_core.evaluation import model_metrics
from sr_core.files import sha256_of, size_text, write_csv
from sr_core.images import changes, file_states
from sr_core.model import SRResNet
from sr_core.param_changes import DVC_YAML
from sr_core.sampler import PatchBatcher
from sr_core.schedule import PACE_STEPS, Schedule
from sr_core.stores import GPU_RESERVE, ImageStore, StripStore, decode_pairs, decoded_bytes, residency
from sr_core.validation import ImageBatches, validation_bytes

log = logging.getLogger(__name__)

LOSSES = {"l1": F.l1_loss, "mse": F.mse_loss}
PROGRESS_SECONDS = float(os.environ.get("SR_PROGRESS_SECONDS", 60))  # a progress line this often without a terminal
RUNTIME_KEYS = ("device", "compile", "decode_cache", "processes", "deterministic")  # change how, not what, is trained


def fingerprint(params: Params, train_pairs: list[Pair], val_pairs: list[Pair], init_sha256: str | None,
                world_size: int) -> str:
    """A hash of every param that shapes training, of the split's names, of the starting weights'
    content (not their file's name) and of the number of processes, each of which draws its own
    patches; a resume state with another one belongs to another run and is not resumed."""
    train = {k: v for k, v in params.train.model_dump().items() if k not in RUNTIME_KEYS + ("init_from",)}
    shaping = {"lr": params.lr, "model": params.model.model_dump(), "train": train, "data": params.data.model_dump(),
               "split": [[p.name for p in train_pairs], [p.name for p in val_pairs]], "init_from": init_sha256,
               "world_size": world_size, "patch_draws": 2,  # 2: drawn a batch at a time (earlier states differ)
               "schedule": 2}  # 2: a budget planned in steps (earlier states' history has no steps column)
    return hashlib.sha256(json.dumps(shaping, sort_keys=True).encode()).hexdigest()[:16]


class WeightAverage:
    """The exponential moving average of a model's weights and BatchNorm statistics, validated and
    saved in its place with `train.ema_decay`. One foreach lerp a step, with nothing read back to the
    host: torch's AveragedModel handles each tensor on its own and reads its step count from the
    device twice a step, which stalls a GPU's queue of kernels."""

    def __init__(self, model: torch.nn.Module, decay: float):
        self.module, self.decay = copy.deepcopy(model).requires_grad_(False), decay
        # listed once: training and resuming update the model's tensors in place
        (self._averages, self._weights), (self._counts, self._model_counts) = zip(
            float_and_other_tensors(self.module), float_and_other_tensors(model))

    @torch.no_grad()
    def update(self) -> None:
        """Moves the average towards the model's weights; counts (BatchNorm's batches) are copied."""
        torch._foreach_lerp_(self._averages, self._weights, 1 - self.decay)
        if self._counts:
            torch._foreach_copy_(self._counts, self._model_counts)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.module.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.module.load_state_dict(state)


def float_and_other_tensors(model: torch.nn.Module) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """The model's parameters and buffers, floating-point ones first, then the others, in order."""
    tensors = list(model.state_dict(keep_vars=True).values())
    return [t for t in tensors if t.is_floating_point()], [t for t in tensors if not t.is_floating_point()]


def load_init_weights(model: SRResNet, path: str) -> None:
    """The weights of the model checkpoint at `path` into `model`, whose config must be the same."""
    init = load_model(path, torch.device("cpu"))
    if not isinstance(init, SRResNet):
        raise ValueError(f"train.init_from {path}: an ONNX model's weights are not trainable here; start from "
                         f"the .pt or .safetensors it was exported with")
    ours, theirs = model.config.model_dump(), init.config.model_dump()
    differences = [f"{key} {theirs[key]!r} there, {ours[key]!r} in params.model" for key in ours if ours[key] != theirs[key]]
    if differences:
        raise ValueError(f"train.init_from {path}: its model differs: {'; '.join(differences)}")
    model.load_state_dict(init.state_dict())


@dataclass
class Run:
    """What the epochs of one training run share, in one process (rank)."""
    params: Params
    rank: int
    world_size: int
    device: torch.device
    precision: str  # of the training steps, resolved
    val_precision: str
    record: dict  # what the run computes with, as recorded: precision, TF32, deterministic algorithms, the GPU
    run_id: str  # the fingerprint a resume state must carry
    init_sha256: str | None
    model: SRResNet
    ema: WeightAverage | None
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    schedule: Schedule
    steps_per_epoch: int
    sources: str | None  # rank 0's: see sources_stamp
    read: dict  # rank 0's: the pairs' files as read, to tell a change at the end
    history: list[dict] = field(default_factory=list)
    best: dict | None = None
    first_epoch: int = 1
    elapsed: float = 0.0  # seconds of this run, across resumes

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def train(params: Params, train_pairs: list[Pair], val_pairs: list[Pair], model_path: str | Path,
          history_path: str | Path, state_path: str | Path, decode_cache_dir: str | Path, pixels: str = "") -> dict | None:
    """Trains SRResNet, writing the best checkpoint, the per-epoch history and the resume state.
    `pixels` is the split's digest of the pairs' pixels (data.pixels_digest): a resume state made on
    other pixels is not resumed.

    Returns a summary on rank 0 (None on the other ranks, which write nothing).
    """
    cfg = params.train
    if not train_pairs or not val_pairs:
        raise ValueError(f"training needs train and val pairs; got {len(train_pairs)} and {len(val_pairs)}")
    run = start_run(params, train_pairs, val_pairs)
    state = read_resume_state(run, state_path, pixels, len(train_pairs))
    if state is not None and run.is_main:  # DVC removed these outputs before the stage ran; the state holds them
        write_csv(history_path, state["history"])
        save_best(model_path, params, state["best"])
    if state is not None and state["finished"]:
        if run.world_size > 1:
            dist.destroy_process_group()
        return summary(run, state["history"], state["best"], state["run"]) if run.is_main else None
    store, val_batches = decode_data(params, train_pairs, val_pairs if run.is_main else [], decode_cache_dir,
                                     run.device, run.model, cfg.batch_size // run.world_size, run.precision,
                                     log_choice=run.is_main)
    batcher = PatchBatcher(store, cfg.patch_size, cfg.augment, run.device, seed=cfg.seed + run.rank,
                           batch_size=cfg.batch_size // run.world_size)
    if state is not None:
        resume(run, state, batcher, state_path)
    step_model = DistributedDataParallel(run.model) if run.world_size > 1 else run.model
    if cfg.compile != "eager":
        step_model = torch.compile(step_model, mode=cfg.compile)
    if run.is_main:
        log.info("training %d parameters on %d x %s: %d train / %d val pairs, %d steps per epoch of %d",
                 sum(p.numel() for p in run.model.parameters()), run.world_size, run.device, len(train_pairs),
                 len(val_pairs), run.steps_per_epoch, cfg.batch_size)
    run.schedule.plan(run.elapsed, (run.first_epoch - 1) * run.steps_per_epoch, at_least=1)  # resumed: its pace so far
    for epoch in range(run.first_epoch, cfg.epochs + 1):
        epoch_start = time.perf_counter()
        loss_sum, taken = train_epoch(run, step_model, batcher, epoch, epoch_start)
        if end_epoch(run, epoch, epoch_start, loss_sum, taken, batcher, val_batches, model_path, history_path,
                     state_path, pixels):
            break
    batcher.close()
    store.close()
    if run.world_size > 1:
        dist.destroy_process_group()
    changed = changes(run.read, file_states(pair_files(train_pairs + val_pairs))) if run.is_main else ""
    if changed:  # DVC hashes the data when the stage ends: it would record pixels this model never saw
        raise ValueError(f"the training pairs changed while training ran ({changed}): the model is of them as they "
                         f"were, so the stage fails and DVC records nothing; run dvc repro again to split and train "
                         f"on them as they are now")
    return summary(run, run.history, run.best, run.record) if run.is_main else None


def start_run(params: Params, train_pairs: list[Pair], val_pairs: list[Pair]) -> Run:
    """The processes, the precision, the model (from train.init_from's weights or random ones, the
    same on every rank), its optimizer and the schedule: everything a run needs but the data."""
    cfg = params.train
    rank, world_size, device = start_processes(cfg.device)
    if cfg.batch_size % world_size:
        raise ValueError(f"train.batch_size ({cfg.batch_size}) must divide over {world_size} processes")
    precision, why = resolve_precision(cfg.precision, device)
    val_precision, val_why = resolve_precision(params.inference.precision, device)
    record = {"precision": precision, **set_backends(device, cfg.tf32, cfg.deterministic),
              "gpu": card(device) if device.type == "cuda" else None}
    if rank == 0:
        log.info("training in %s (%s); validation in %s%s; TF32 %s; deterministic algorithms %s", precision, why,
                 val_precision, "" if val_why == why else f" ({val_why})", "on" if record["tf32"] else "off",
                 "only" if cfg.deterministic else "not asked for")
    torch.manual_seed(cfg.seed)  # the same initial weights on every rank
    model = SRResNet(params.model)
    init_sha256 = sha256_of(cfg.init_from) if cfg.init_from else None
    run_id = fingerprint(params, train_pairs, val_pairs, init_sha256, world_size)
    fingerprints = from_every_rank(run_id, world_size)
    if len(set(fingerprints)) > 1:  # another machine's params, data or weights: before decoding
        raise ValueError(f"the training processes would train different runs (fingerprints by rank: "
                         f"{', '.join(fingerprints)}): every machine needs the same params.yaml, split and data")
    if cfg.init_from:
        load_init_weights(model, cfg.init_from)
        if rank == 0:
            log.info("starting from the weights of train.init_from %s (SHA-256 %s...), not from random ones",
                     cfg.init_from, init_sha256[:12])
    model = model.to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    steps_per_epoch = max(1, len(train_pairs) * cfg.patches_per_image // cfg.batch_size)
    return Run(params=params, rank=rank, world_size=world_size, device=device, precision=precision,
               val_precision=val_precision, record=record, run_id=run_id, init_sha256=init_sha256, model=model,
               ema=WeightAverage(model, cfg.ema_decay) if cfg.ema_decay else None,
               optimizer=torch.optim.Adam(model.parameters(), lr=params.lr, fused=True),  # one kernel for all weights
               scaler=grad_scaler(device, precision),
               schedule=Schedule(cfg, steps_per_epoch, 60 * cfg.time_limit_minutes), steps_per_epoch=steps_per_epoch,
               sources=sources_stamp(train_pairs + val_pairs) if rank == 0 else None,
               read=file_states(pair_files(train_pairs + val_pairs)) if rank == 0 else {})


def read_resume_state(run: Run, state_path: str | Path, pixels: str, num_images: int) -> dict | None:
    """Rank 0's resume state of this run, if there is one it can apply, on every rank."""
    usable = functools.partial(check_resume_state, model=run.model, optimizer=run.optimizer, scaler=run.scaler,
                               ema=run.ema, world_size=run.world_size, num_images=num_images)
    state = (load_train_state(state_path, run.run_id, run.params.train.epochs, run.sources, pixels, usable)
             if run.is_main else None)
    return from_rank0(state, run.world_size)


def resume(run: Run, state: dict, batcher: PatchBatcher, state_path: str | Path) -> None:
    """The run as it was after the state's epoch: weights, optimizer, loss scale, EMA, random draws, record."""
    run.model.load_state_dict(state["model"])
    run.optimizer.load_state_dict(state["optimizer"])
    if state["run"]["precision"] != run.precision:
        log.warning("%s was trained in %s, and this device trains in %s: the run goes on in %s", state_path,
                    state["run"]["precision"], run.precision, run.precision)
    elif state["scaler"]:
        run.scaler.load_state_dict(state["scaler"])
    run.elapsed = state["elapsed"]
    if run.ema is not None:
        run.ema.load_state_dict(state["ema"])
    batcher.set_state(state["batches"][run.rank])
    torch.set_rng_state(state["torch_rng"])
    run.history, run.best, run.first_epoch = state["history"], state["best"], state["epoch"] + 1
    log.info("resuming after epoch %d of %d from %s", state["epoch"], run.params.train.epochs, state_path)


def train_epoch(run: Run, step_model: torch.nn.Module, batcher: PatchBatcher, epoch: int,
                epoch_start: float) -> tuple[torch.Tensor, int]:
    """The epoch's training steps, all of them unless the schedule ends the run inside it; returns
    the summed loss (on the device: no host sync per step) and the number of steps taken."""
    cfg, steps_per_epoch, device = run.params.train, run.steps_per_epoch, run.device
    loss_fn = LOSSES[cfg.loss]
    report_every = PROGRESS_SECONDS if run.is_main and not sys.stderr.isatty() else math.inf  # tqdm's bar is off there
    last_report = epoch_start
    run.model.train()
    loss_sum, taken = torch.zeros((), device=device), 0
    for i in tqdm(range(steps_per_epoch), desc=f"epoch {epoch}/{cfg.epochs}", unit="step",
                  leave=False, disable=None if run.is_main else True):  # None: off when not on a terminal
        step = (epoch - 1) * steps_per_epoch + i
        if run.schedule.ends_before(step):
            break
        if time.perf_counter() - last_report >= report_every:
            last_report = time.perf_counter()
            log.info(progress_line(epoch, cfg.epochs, i, steps_per_epoch, last_report - epoch_start,
                                   loss_sum.item() / max(i, 1), run.elapsed, run.schedule.budget))
        if run.schedule.budget and epoch == 1 and i in (1, 1 + PACE_STEPS):  # the first steps' pace, after the first
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if i == 1:
                pace_start = time.perf_counter()
            else:
                now = time.perf_counter()
                run.schedule.plan(agreed(now - epoch_start, run.world_size, device), step,
                                  agreed((now - pace_start) / PACE_STEPS, run.world_size, device))
        for group in run.optimizer.param_groups:
            group["lr"] = run.params.lr * run.schedule.learning_rate_factor(step)
        if cfg.compile == "reduce-overhead":
            torch.compiler.cudagraph_mark_step_begin()  # the last step's graph outputs are no longer read
        loss_sum += training_step(step_model, *batcher.sample(), loss_fn, run.optimizer, run.scaler, run.precision)
        if run.ema is not None:
            run.ema.update()
        taken += 1
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return loss_sum, taken


def end_epoch(run: Run, epoch: int, epoch_start: float, loss_sum: torch.Tensor, taken: int, batcher: PatchBatcher,
              val_batches: ImageBatches | None, model_path: str | Path, history_path: str | Path,
              state_path: str | Path, pixels: str) -> bool:
    """After an epoch's steps: plan the rest, validate (every `val_every` epochs and after the last),
    append the history row, keep the best, write the resume state. Returns whether it was the last."""
    cfg, params = run.params.train, run.params
    steps_per_second = taken / (time.perf_counter() - epoch_start)  # without validation
    if run.world_size > 1:
        dist.all_reduce(loss_sum)
    steps = (epoch - 1) * run.steps_per_epoch + taken
    # planned before validation, so that the last epoch is validated
    run.schedule.plan(run.elapsed + agreed(time.perf_counter() - epoch_start, run.world_size, run.device), steps)
    last = run.schedule.ends_before(epoch * run.steps_per_epoch)  # the next epoch's first step: none if cut short
    batcher_states = from_every_rank(batcher.state(), run.world_size)  # a collective: every rank joins
    if run.is_main:
        eval_model = run.ema.module if run.ema is not None else run.model
        validated = epoch % cfg.val_every == 0 or last
        val = validate(eval_model, val_batches, params.inference.tile, run.val_precision) if validated else {}
        row = {
            "epoch": epoch,
            "train_loss": loss_sum.item() / taken / run.world_size,
            "val_loss": val.get("mae" if cfg.loss == "l1" else "mse"),  # None (blank) when not validated
            "val_psnr_rgb": val.get("psnr_rgb"),
            "val_psnr_y": val.get("psnr_y"),
            "val_competition_score": val.get("competition_score"),  # the SRGD competition's (metrics.py)
            "lr": run.optimizer.param_groups[0]["lr"],  # of the epoch's last step
            "steps": taken,
            "steps_per_second": steps_per_second,  # a run slowed by another process shows here
            "seconds": time.perf_counter() - epoch_start,
        }
        run.history.append(row)
        write_csv(history_path, run.history)
        if validated and (run.best is None or row["val_psnr_rgb"] > run.best["val_psnr_rgb"]):
            run.best = {**row, "state_dict": copy_state(eval_model), "run": run.record}
            save_best(model_path, params, run.best)
    run.elapsed += agreed(time.perf_counter() - epoch_start, run.world_size, run.device)
    if run.is_main:
        save_train_state(state_path, {
            "fingerprint": run.run_id, "sources": run.sources, "pixels": pixels, "epoch": epoch, "finished": last,
            "elapsed": run.elapsed, "model": run.model.state_dict(), "optimizer": run.optimizer.state_dict(),
            "ema": run.ema.state_dict() if run.ema is not None else {}, "torch_rng": torch.get_rng_state(),
            "scaler": run.scaler.state_dict(), "run": run.record, "batches": batcher_states, "history": run.history,
            "best": run.best,
        })
        log.info("epoch %d/%d: train loss %.5f, %s, %.1f s", epoch, cfg.epochs, row["train_loss"],
                 f"val loss {row['val_loss']:.5f}, val PSNR {row['val_psnr_rgb']:.3f} dB "
                 f"(Y {row['val_psnr_y']:.3f} dB)" if validated else "not validated", row["seconds"])
        if last and steps < run.schedule.nominal_steps:
            log.info("stopping after epoch %d of %d (%d of its %d steps): %.1f of %g minutes spent", epoch,
                     cfg.epochs, taken, run.steps_per_epoch, run.elapsed / 60, cfg.time_limit_minutes)
    return last


def check_resume_state(state: dict, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                       scaler: torch.amp.GradScaler, ema: WeightAverage | None, world_size: int, num_images: int) -> None:
    """Applies every part of a resume state to spare copies of the run's objects, so that a state
    that cannot be applied (damaged, or written by other code) fails before it touches the run."""
    spare = copy.deepcopy(model)
    spare.load_state_dict(state["model"])
    type(optimizer)(spare.parameters(), **optimizer.defaults).load_state_dict(state["optimizer"])
    if state["scaler"]:  # a no-op unless this run is in fp16 too, as in train
        copy.deepcopy(scaler).load_state_dict(state["scaler"])
    if ema is not None:
        copy.deepcopy(ema.module).load_state_dict(state["ema"])
    torch.Generator().set_state(state["torch_rng"])
    if len(state["batches"]) != world_size:
        raise ValueError(f"batch draws for {len(state['batches'])} processes, not {world_size}")
    for batches in state["batches"]:
        PatchBatcher.check_state(batches, num_images)
    if state["best"] is not None:
        spare.load_state_dict(state["best"]["state_dict"])
    if not all(isinstance(row, dict) for row in state["history"]) or len(state["history"]) != state["epoch"]:
        raise ValueError(f"a history of {len(state['history'])} rows after epoch {state['epoch']}")
    if not isinstance(state["elapsed"], float) or "precision" not in state["run"]:
        raise ValueError("no time spent or precision recorded")


def training_step(model: torch.nn.Module, lr_img: torch.Tensor, hr_img: torch.Tensor, loss_fn: Callable,
                  optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler, precision: str) -> torch.Tensor:
    """One optimizer step on a batch, in `precision` (resolved); returns the loss, left on the device."""
    with autocast(lr_img.device, precision):
        loss = loss_fn(model(lr_img), hr_img)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()  # fp16: scaled, so that small gradients do not underflow; else as it is
    scaler.step(optimizer)  # fp16: unscaled first, and skipped when a gradient overflowed
    scaler.update()
    return loss.detach()


def progress_line(epoch: int, epochs: int, step: int, steps_per_epoch: int, epoch_seconds: float, loss: float,
                  elapsed: float, budget: float) -> str:
    """What a run without a terminal logs every `PROGRESS_SECONDS` within an epoch: `step` steps of
    it done in `epoch_seconds`, the mean loss so far, and the time left at this pace (to the end of
    the epochs, or of the time budget when that comes first)."""
    rate = step / epoch_seconds if epoch_seconds else 0.0
    left = ((epochs - epoch + 1) * steps_per_epoch - step) / rate if rate else math.inf
    if budget:
        left = min(left, budget - elapsed - epoch_seconds)
    seconds = int(max(left, 0)) if math.isfinite(left) else None
    eta = "unknown" if seconds is None else f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
    return (f"epoch {epoch}/{epochs}: step {step}/{steps_per_epoch}, {rate:.2f} steps/s, loss {loss:.5f}, "
            f"{eta} left")


def summary(run: Run, history: list[dict], best: dict, record: dict) -> dict:
    """The run's figures for the train stage's metrics file, with what it computed with (`record`:
    precision, TF32, deterministic algorithms, the GPU)."""
    params = run.params
    steps = sum(row["steps"] for row in history)
    return {
        "best_epoch": best["epoch"],
        "best_val_psnr_rgb": best["val_psnr_rgb"],
        "best_val_psnr_y": best["val_psnr_y"],
        "epochs": len(history),
        "nominal_epochs": params.train.epochs,
        "stopped_by": "epochs" if steps == run.schedule.nominal_steps else "time limit",
        "time_limit_minutes": params.train.time_limit_minutes,
        "steps": steps,
        "steps_per_second": steps / sum(row["steps"] / row["steps_per_second"] for row in history),  # all epochs
        "init_from": params.train.init_from or None,
        "init_from_sha256": run.init_sha256,
        "num_params": sum(p.numel() for p in run.model.parameters()),
        "device": f"{run.world_size} x {run.device.type}",
        **record,
        "train_seconds": sum(row["seconds"] for row in history),
    }


def sources_stamp(pairs: list[Pair]) -> str:
    """A hash of what DVC reruns the train stage for besides params: the project's code (sr_core and
    the stage scripts, by content) and the pairs' files (by path, size and modification time, as
    `data.cache_key`). A finished resume state is reused only when it matches too, so a stage rerun
    for new code or data trains again, while one rerun after a run DVC did not record (params.yaml
    edited meanwhile, `dvc` killed) writes that run's outputs without training again."""
    code = sorted(Path(__file__).parent.glob("*.py")) + sorted((DVC_YAML.parent / "stages").glob("*.py"))
    digest = hashlib.sha256()
    for path in code:
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    digest.update(repr([cache_key(pair) for pair in pairs]).encode())
    return digest.hexdigest()[:16]


def decode_data(params: Params, train_pairs: list[Pair], val_pairs: list[Pair], cache_dir: str | Path,
                device: torch.device, model: SRResNet, batch_size: int, precision: str, log_choice: bool
                ) -> tuple[ImageStore | StripStore, ImageBatches | None]:
    """The train pairs decoded once where `residency` chooses (the choice and its reason logged),
    and the val pairs, if any, as batches beside them: scored again and again, they are decoded once too.
    On a GPU, a setting whose training step or validation would not fit is refused first."""
    cfg, scale, workers = params.train, params.model.scale, params.inference.workers
    gpu = ()
    if device.type == "cuda":
        lr_side = cfg.patch_size // scale
        lr_size = (lr_side, lr_side) if lr_side else lr_shape(train_pairs[0], scale)
        step = step_memory(model, lr_size, cfg.loss, batch_size, device, precision)
        val_peak = validation_bytes([lr_shape(pair, scale) for pair in val_pairs], params.model,
                                    params.inference.tile) if val_pairs else 0
        free = torch.cuda.mem_get_info(device)[0]
        require_step_fits(step, val_peak, free, card(device), cfg, precision, resolve_precision("auto", device)[0])
        if log_choice:
            log.info("a training step takes about %s of GPU memory (measured at batches of 1 and 2, for %d), "
                     "validation about %s, of the %s free", size_text(step), batch_size, size_text(val_peak),
                     size_text(free))
        if cfg.decode_cache != "disk":  # where the pairs could live on the GPU
            gpu = (free, step, val_peak)
    where, why = residency(sum(decoded_bytes(pair, scale) for pair in train_pairs + val_pairs), cfg.decode_cache,
                           psutil.virtual_memory().available, int(os.environ.get("LOCAL_WORLD_SIZE", 1)), *gpu)
    if log_choice:
        log.info("decoded pairs %s: %s", {"gpu": "on the GPU", "ram": "in RAM", "disk": f"on disk in {cache_dir}"}[where],
                 why)
    store_device = device if where == "gpu" else torch.device("cpu")
    if where == "disk":
        store = StripStore.decode(train_pairs, scale, cfg.patch_size // scale, cache_dir, workers)
    else:
        store = ImageStore.decode(train_pairs, scale, store_device, workers)
    val_batches = (ImageBatches(decode_pairs(val_pairs, scale, cache_dir if where == "disk" else None, workers),
                                params.inference.tile, device, store_device) if val_pairs else None)
    return store, val_batches


def step_peak_bytes(model: SRResNet, lr_img_shape: tuple[int, ...], loss: str, device: torch.device,
                    precision: str) -> int:
    """The GPU memory one training step on a batch of `lr_img_shape` takes at its peak, measured:
    forward and backward of a copy of `model` on zeros. OutOfMemoryError when it does not fit."""
    probe = copy.deepcopy(model)  # BatchNorm's running statistics of the model stay untouched
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    try:
        with autocast(device, precision):
            sr_img = probe(torch.zeros(lr_img_shape, device=device).contiguous(memory_format=torch.channels_last))
            LOSSES[loss](sr_img, torch.zeros_like(sr_img)).backward()
        del sr_img
        return torch.cuda.max_memory_allocated(device) - before
    finally:
        del probe
        torch.cuda.empty_cache()  # what the probe held is free again when the free memory is read


def step_memory(model: SRResNet, lr_size: tuple[int, int], loss: str, batch_size: int, device: torch.device,
                precision: str) -> int:
    """The GPU memory a training step of `batch_size` LR samples of `lr_size` takes, plus Adam's two
    moments: measured at batches of 1 and 2, and extended in a line, so that a setting that does not
    fit is measured too."""
    sample = (3, *lr_size)
    try:
        one, two = (step_peak_bytes(model, (n, *sample), loss, device, precision) for n in (1, 2))
    except torch.cuda.OutOfMemoryError:
        raise ValueError(f"a training step of 2 samples of {sample[2]}x{sample[1]} LR pixels does not fit in the GPU "
                         f"memory free on {card(device)}: lower train.patch_size, or model.num_features or "
                         f"model.num_blocks") from None
    return one + (batch_size - 1) * (two - one) + 2 * sum(p.numel() * p.element_size() for p in model.parameters())


def require_step_fits(step: int, val_peak: int, free: int, gpu: str, cfg: TrainConfig, precision: str,
                      auto_precision: str) -> None:
    """Refuses, before any pair is decoded, a setting whose training step (`step` bytes) or validation
    pass (`val_peak`) does not fit in the `free` bytes of the GPU beside `GPU_RESERVE`, saying by how
    much and which params lower it. The two never run at once, and validation reuses the memory the
    step freed, so the larger of them counts."""
    need = max(step, val_peak) + GPU_RESERVE
    if need <= free:
        return
    remedies = []
    if step + GPU_RESERVE > free:
        remedies += [f"lower train.batch_size ({cfg.batch_size})",
                     f"lower train.patch_size ({cfg.patch_size})" if cfg.patch_size else
                     "train on patches (train.patch_size, 0 for whole images now)"]
        if precision == "fp32" and auto_precision != "fp32":
            remedies.append(f"set train.precision to auto ({auto_precision} on this card: about half the memory)")
    if val_peak + GPU_RESERVE > free:
        remedies.append("lower inference.tile for validation")
    samples = f"patches of {cfg.patch_size} px" if cfg.patch_size else "whole images"
    raise ValueError(f"a training step of {cfg.batch_size} {samples} in {precision} needs about {size_text(step)} of "
                     f"GPU memory and validation about {size_text(val_peak)}: with {size_text(GPU_RESERVE)} of "
                     f"reserve, {size_text(need - free)} more than the {size_text(free)} free on {gpu}. To fit: "
                     f"{'; '.join(remedies)}")


def validate(model: SRResNet, val_batches: ImageBatches, tile: int, precision: str) -> dict[str, float]:
    """Mean measures (without SSIM) of `model` over the val batches; the SR images and per-image
    measures stay on the device, only the means come back."""
    model.eval()
    per_batch = [model_metrics(model, lr, hr, False, tile, precision) for lr, hr in val_batches]
    means = {key: torch.cat([measured[key] for measured in per_batch]).mean() for key in per_batch[0]}
    return dict(zip(means, torch.stack(list(means.values())).tolist()))


def copy_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The model's weights and buffers, copied to the host: a state_dict() alone would keep changing
    with training, so the resume state's "best" would hold the latest weights instead."""
    return {key: value.detach().to("cpu", copy=True) for key, value in model.state_dict().items()}


def save_best(path: str | Path, params: Params, best: dict) -> None:
    model = SRResNet(params.model)
    model.load_state_dict(best["state_dict"])
    save_checkpoint(path, model, epoch=best["epoch"], val_psnr_rgb=best["val_psnr_rgb"],
                    val_psnr_y=best["val_psnr_y"], params=params.model_dump(), run=best["run"])
