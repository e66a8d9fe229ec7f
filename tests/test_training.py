import csv
import hashlib
import io
import logging
import math
import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import psutil
import pytest
import torch
import torch.nn.functional as F
import yaml
from PIL import Image, ImageFilter

from conftest import REPO, free_port, preset, read_history, stage, wait_for_epochs, write_params
from sr_core import training
from sr_core.checkpoint import hold_train_state, load_checkpoint, load_model, save_train_state
from sr_core.config import Params, TrainConfig, load_params
from sr_core.data import check_pairs, load_pair, write_split
from sr_core.distributed import LAUNCHER_PID, launch
from sr_core.metrics import psnr_y
from sr_core.model import ModelConfig
from sr_core.schedule import MAX_WARMUP_SHARE, Schedule
from sr_core.training import copy_state, fingerprint, train


def test_lr_schedules_over_the_nominal_epochs():
    constant = Schedule(TrainConfig(epochs=10, schedule="constant"), 1)
    assert [constant.learning_rate_factor(s) for s in (0, 5, 9)] == [1.0, 1.0, 1.0]
    cosine = Schedule(TrainConfig(epochs=10, schedule="cosine"), 1)
    assert cosine.learning_rate_factor(0) == 1.0 and cosine.learning_rate_factor(5) == pytest.approx(0.5)
    assert cosine.learning_rate_factor(9) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.9))) and cosine.learning_rate_factor(9) > 0
    warm = Schedule(TrainConfig(epochs=7, schedule="cosine", warmup_epochs=2), 2)
    assert [warm.learning_rate_factor(s) for s in (0, 3, 4)] == [0.25, 1.0, 1.0]
    step = Schedule(TrainConfig(epochs=10, schedule="step", step_epochs=3, step_gamma=0.1), 2)
    assert [step.learning_rate_factor(s) for s in (0, 5, 6, 12)] == pytest.approx([1.0, 1.0, 0.1, 0.01])
    for schedule in (constant, cosine, warm, step):
        schedule.plan(1000.0, 5)  # no budget: the plan is the nominal epochs
        assert schedule.total_steps == schedule.nominal_steps


def test_a_time_budget_plans_the_steps_that_fit_and_lays_the_schedule_over_them():
    """100 steps an epoch, 100 nominal epochs, a 4-epoch warmup, 60 seconds: the first 11 steps took
    6 s, and at 0.5 s a step 108 more fit; the warmup takes a bounded share of the 119, and no planned
    step has a learning rate of 0."""
    cfg = TrainConfig(epochs=100, schedule="cosine", warmup_epochs=4)
    schedule = Schedule(cfg, 100, budget=60.0)
    assert schedule.total_steps == 10_000 and schedule.warmup_steps == 400  # nothing measured yet
    schedule.plan(6.0, 11, pace=0.5)
    assert schedule.total_steps == 11 + 108 and schedule.warmup_steps == int(MAX_WARMUP_SHARE * 119) == 29
    factors = [schedule.learning_rate_factor(s) for s in range(schedule.total_steps)]
    assert factors[28] == 1.0 and min(factors) > 0 and factors[-1] < 0.001
    assert not schedule.ends_before(118) and schedule.ends_before(119)
    schedule.plan(61.0, 120)  # past the budget: over
    assert schedule.ends_before(120)
    schedule.plan(61.0, 120, at_least=1)  # a resumed run whose last epoch found time for one more
    assert schedule.total_steps == 121
    long = Schedule(TrainConfig(epochs=2, schedule="cosine"), 10, budget=3600.0)
    long.plan(10.0, 10)  # the nominal epochs end first
    assert long.total_steps == 20
    steps = Schedule(TrainConfig(epochs=10, schedule="step", step_epochs=5, step_gamma=0.1), 10, budget=60.0)
    steps.plan(10.0, 10)  # 60 steps fit: the drop comes at half of them, as at half of the nominal 100
    assert [steps.learning_rate_factor(s) for s in (29, 30, 59)] == pytest.approx([1.0, 0.1, 0.1])


def test_fingerprint_ignores_how_but_not_what(paired_folder):
    pairs, _ = check_pairs(paired_folder / "lr", paired_folder / "hr", 4)
    base = fingerprint(Params(), pairs[:4], pairs[4:], None, 1)
    how = TrainConfig(device="cpu", compile="reduce-overhead", deterministic=True, decode_cache="disk")
    assert base == fingerprint(Params(train=how), pairs[:4], pairs[4:], None, 1)
    # processes per machine is how; the world size is what: each process draws its own patches
    assert base == fingerprint(Params(train=TrainConfig(processes=2)), pairs[:4], pairs[4:], None, 1)
    assert base != fingerprint(Params(train=TrainConfig(processes=2)), pairs[:4], pairs[4:], None, 2)
    assert base != fingerprint(Params(lr=2e-4), pairs[:4], pairs[4:], None, 1)
    assert base != fingerprint(Params(train=TrainConfig(epochs=5)), pairs[:4], pairs[4:], None, 1)
    assert base != fingerprint(Params(model=ModelConfig(batch_norm=False)), pairs[:4], pairs[4:], None, 1)
    assert base != fingerprint(Params(), pairs[:3], pairs[3:], None, 1)
    # the starting weights count by content, not by the file's name
    started = fingerprint(Params(train=TrainConfig(init_from="a.pt")), pairs[:4], pairs[4:], "0" * 64, 1)
    assert started != base
    assert started == fingerprint(Params(train=TrainConfig(init_from="b.pt")), pairs[:4], pairs[4:], "0" * 64, 1)
    assert started != fingerprint(Params(train=TrainConfig(init_from="a.pt")), pairs[:4], pairs[4:], "1" * 64, 1)


def tiny_params(**train) -> Params:
    settings = dict(epochs=3, batch_size=2, patch_size=32, patches_per_image=2, schedule="cosine", device="cpu")
    return Params(lr=1e-3, model=ModelConfig(num_blocks=1, num_features=8, bicubic_residual=True),
                  train=TrainConfig(**settings | train))


@pytest.mark.parametrize("ema_decay", [0.0, 0.9])
def test_training_writes_history_and_a_weights_only_checkpoint(paired_folder, ema_decay):
    pairs, _ = check_pairs(paired_folder / "lr", paired_folder / "hr", 4)
    out = paired_folder / "out"
    summary = train(tiny_params(ema_decay=ema_decay), pairs[:4], pairs[4:], out / "best.pt",
                    out / "history.csv", out / "last.pt", out / "cache")

    with open(out / "history.csv", newline="") as f:
        history = list(csv.DictReader(f))
    assert [int(row["epoch"]) for row in history] == [1, 2, 3]
    best = max(history, key=lambda row: float(row["val_psnr_rgb"]))
    assert summary["best_epoch"] == int(best["epoch"]) and summary["steps"] == 12

    checkpoint = torch.load(out / "best.pt", weights_only=True)
    assert checkpoint["epoch"] == summary["best_epoch"]
    assert checkpoint["model_config"] == {"scale": 4, "num_blocks": 1, "num_features": 8, "bicubic_residual": True,
                                          "activation": "relu", "upsampler_activation": "relu", "batch_norm": True,
                                          "res_scale": 1.0}
    assert checkpoint["params"]["lr"] == 1e-3
    model = load_model(out / "best.pt", torch.device("cpu"))
    assert not model.training
    assert model(torch.rand(1, 3, 5, 5)).shape == (1, 3, 20, 20)
    state = torch.load(out / "last.pt", weights_only=True)
    assert state["epoch"] == 3 and len(state["history"]) == 3 and bool(state["ema"]) == (ema_decay > 0)


def test_fine_tuning_starts_from_the_checkpoints_weights_and_records_it(paired_folder, caplog):
    caplog.set_level(logging.INFO)
    pairs, _ = check_pairs(paired_folder / "lr", paired_folder / "hr", 4)
    first, second = paired_folder / "first", paired_folder / "second"
    train(tiny_params(epochs=1), pairs[:4], pairs[4:], first / "best.pt", first / "h.csv", first / "last.pt", first / "c")
    start = torch.load(first / "best.pt", weights_only=True)["state_dict"]
    # lr so small that one epoch leaves the weights where they started, to the float rounding
    params = tiny_params(epochs=1, init_from=str(first / "best.pt")).model_copy(update=dict(lr=1e-12))
    summary = train(params, pairs[:4], pairs[4:], second / "best.pt", second / "h.csv", second / "last.pt",
                    second / "c")
    tuned = torch.load(second / "best.pt", weights_only=True)["state_dict"]
    for key, value in start.items():
        if value.is_floating_point() and "running" not in key:  # BatchNorm statistics move with the batches
            torch.testing.assert_close(tuned[key], value, rtol=0, atol=1e-6)
    assert summary["init_from"] == str(first / "best.pt")
    assert summary["init_from_sha256"] == hashlib.sha256((first / "best.pt").read_bytes()).hexdigest()
    assert (f"starting from the weights of train.init_from {first / 'best.pt'} (SHA-256 "
            f"{summary['init_from_sha256'][:12]}...), not from random ones") in caplog.messages  # the log names them
    scratch = train(tiny_params(epochs=1), pairs[:4], pairs[4:], second / "s.pt", second / "s.csv",
                    second / "s_last.pt", second / "c")
    assert scratch["init_from"] is None and scratch["init_from_sha256"] is None


def test_fine_tuning_refuses_another_network_naming_the_difference(paired_folder):
    pairs, _ = check_pairs(paired_folder / "lr", paired_folder / "hr", 4)
    out = paired_folder / "out"
    train(tiny_params(epochs=1), pairs[:4], pairs[4:], out / "best.pt", out / "h.csv", out / "last.pt", out / "c")
    other = tiny_params(epochs=1, init_from=str(out / "best.pt")).model_copy(
        update=dict(model=ModelConfig(num_blocks=2, num_features=8, bicubic_residual=True, batch_norm=False)))
    with pytest.raises(ValueError, match=r"train.init_from .*best.pt: its model differs: num_blocks 1 there, 2 in "
                                         r"params.model; batch_norm True there, False in params.model"):
        train(other, pairs[:4], pairs[4:], out / "b.pt", out / "h2.csv", out / "l2.pt", out / "c")
    resume_state = tiny_params(epochs=1, init_from=str(out / "last.pt"))
    with pytest.raises(ValueError, match="last.pt: not a model checkpoint .* not its resume state"):
        train(resume_state, pairs[:4], pairs[4:], out / "b.pt", out / "h2.csv", out / "l2.pt", out / "c")
    with pytest.raises(ValueError, match="nothere.pt: cannot read: No such file"):
        train(tiny_params(init_from=str(out / "nothere.pt")), pairs[:4], pairs[4:], out / "b.pt", out / "h2.csv",
              out / "l2.pt", out / "c")


def test_resume_state_holds_the_best_weights_not_the_latest(paired_folder):
    pairs, _ = check_pairs(paired_folder / "lr", paired_folder / "hr", 4)
    out = paired_folder / "out"
    summary = train(tiny_params(schedule="constant", seed=3), pairs[:4], pairs[4:], out / "best.pt",
                    out / "history.csv", out / "last.pt", out / "cache")  # seed 3: the best epoch is 1
    assert summary["best_epoch"] < 3, "this check needs a best epoch before the last one"
    best = torch.load(out / "best.pt", weights_only=True)["state_dict"]
    state = torch.load(out / "last.pt", weights_only=True)
    assert all(torch.equal(state["best"]["state_dict"][key], value) for key, value in best.items())
    assert not all(torch.equal(state["model"][key], value) for key, value in best.items())


def test_pairs_on_disk_train_the_same_run_as_pairs_in_ram(paired_folder):
    pairs, _ = check_pairs(paired_folder / "lr", paired_folder / "hr", 4)
    histories = {}
    for decode_cache in ("memory", "disk"):
        out = paired_folder / decode_cache
        train(tiny_params(decode_cache=decode_cache, epochs=2), pairs[:4], pairs[4:], out / "best.pt",
              out / "history.csv", out / "last.pt", out / "cache")
        with open(out / "history.csv", newline="") as f:
            histories[decode_cache] = [{k: v for k, v in row.items() if k not in ("seconds", "steps_per_second")}
                                       for row in csv.DictReader(f)]
    assert len(list((paired_folder / "disk" / "cache").glob("*.strips"))) == 4  # the train pairs went to disk
    assert not (paired_folder / "memory" / "cache").exists()
    assert histories["disk"] == histories["memory"] and len(histories["disk"]) == 2


def test_copied_state_does_not_follow_later_training():
    from sr_core.model import SRResNet
    model = SRResNet(ModelConfig(num_blocks=1, num_features=8))
    copied = copy_state(model)
    with torch.no_grad():
        model.tail.weight.add_(1.0)
    assert not torch.equal(copied["tail.weight"], model.tail.weight)


def test_training_without_val_pairs_is_an_error(paired_folder):
    pairs, _ = check_pairs(paired_folder / "lr", paired_folder / "hr", 4)
    with pytest.raises(ValueError, match="needs train and val pairs; got 6 and 0"):
        train(Params(), pairs, [], *(paired_folder / name for name in ("m.pt", "h.csv", "s.pt", "c")))


def test_bf16_autocast_keeps_batchnorm_statistics_in_float32():
    from sr_core.model import SRResNet
    model = SRResNet(ModelConfig(num_blocks=1, num_features=8))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        model(torch.rand(2, 3, 8, 8)).float().mean().backward()
    assert all(m.running_mean.dtype == torch.float32 for m in model.modules()
               if isinstance(m, torch.nn.BatchNorm2d))


@pytest.fixture
def workspace(paired_folder):
    """A folder laid out like the repo for `stages/train.py`: params.yaml, a split, paired data."""
    names = sorted(p.name for p in (paired_folder / "lr").iterdir())
    write_split(paired_folder / "data" / "split.json", names[:5], names[5:])
    params = {
        "lr": 1e-3,
        "data": {"train_lr_dir": "lr", "train_hr_dir": "hr"},
        "model": {"num_blocks": 1, "num_features": 8, "bicubic_residual": True},
        "train": {"epochs": 8, "batch_size": 4, "patch_size": 32, "patches_per_image": 20,
                  "schedule": "cosine", "ema_decay": 0.5, "device": "cpu"},
    }
    write_params(paired_folder, params)
    return paired_folder


def train_command(*prefix: str) -> list[str]:
    return [sys.executable, *prefix, str(REPO / "stages" / "train.py")]


@pytest.mark.slow
def test_resume_after_sigkill_continues_where_it_stopped(workspace, tmp_path_factory, monkeypatch, caplog):
    uninterrupted = tmp_path_factory.mktemp("uninterrupted")
    subprocess.run(["cp", "-r", f"{workspace}/.", str(uninterrupted)], check=True)
    subprocess.run(train_command(), cwd=uninterrupted, check=True, capture_output=True)

    process = subprocess.Popen(train_command(), cwd=workspace, stderr=subprocess.PIPE, text=True)
    wait_for_epochs(workspace, process, 2)
    assert process.poll() is None, "training ended before it could be killed"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    killed_at = torch.load(workspace / "models" / "last.pt", weights_only=True)["epoch"]
    assert 1 <= killed_at < 8
    (workspace / "models" / "best.pt").unlink()  # as `dvc repro` removes non-persistent outputs

    resumed = subprocess.run(train_command(), cwd=workspace, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming after epoch {killed_at} of 8" in resumed.stderr
    rows = read_history(workspace)
    assert [int(row["epoch"]) for row in rows] == list(range(1, 9))
    # RNG, optimizer, schedule and EMA states resume exactly: the same run as without the kill
    for column in ("train_loss", "val_psnr_rgb", "lr"):
        assert [row[column] for row in rows] == [row[column] for row in read_history(uninterrupted)]
    assert torch.load(workspace / "models" / "last.pt", weights_only=True)["epoch"] == 8
    best = torch.load(workspace / "models" / "best.pt", weights_only=True)
    assert best["epoch"] == int(max(rows, key=lambda row: float(row["val_psnr_rgb"]))["epoch"])

    (workspace / "models" / "best.pt").unlink()  # a run DVC did not record (dvc killed, params.yaml edited)
    monkeypatch.setattr(training, "train_epoch", lambda *args: pytest.fail("trained again"))
    caplog.set_level(logging.INFO)
    train_stage_here(workspace, monkeypatch)
    assert "of these params, code and data: its model, history and metrics are written again" in caplog.text
    assert read_history(workspace) == rows and (workspace / "models" / "best.pt").exists()

    os.utime(workspace / "hr" / sorted(os.listdir(workspace / "hr"))[0])  # as an edited image
    assert "from a finished run (8 epochs) of other code or data: starting afresh" in resume_decision(
        workspace, monkeypatch, caplog)

    params = yaml.safe_load((workspace / "params.yaml").read_text())
    params["lr"] = 5e-4  # another run: its state must not be resumed
    (workspace / "params.yaml").write_text(yaml.safe_dump(params))
    fresh = resume_decision(workspace, monkeypatch, caplog)
    assert "starting afresh" in fresh and "resuming" not in fresh


def train_stage_here(workspace: Path, monkeypatch) -> None:
    """The train stage on `workspace`, in this process (without the lock on its resume state, which
    this process would hold to its end)."""
    monkeypatch.chdir(workspace)
    train_stage = stage("train")
    monkeypatch.setattr(train_stage, "hold_train_state", lambda path: None)
    train_stage.train(load_params())


class Decided(Exception):
    """Raised where training would start its first epoch."""


def resume_decision(workspace: Path, monkeypatch, caplog) -> str:
    """The train stage's log up to where it has said whether it resumes or starts afresh; the
    training it would then run is not run, as it proves nothing more."""
    def decided(*args):
        raise Decided
    monkeypatch.setattr(training, "train_epoch", decided)
    caplog.clear()
    with pytest.raises(Decided):
        train_stage_here(workspace, monkeypatch)
    return caplog.text


def test_one_process_on_one_machine_starts_no_torchrun(monkeypatch):
    monkeypatch.setattr(os, "execv", lambda *args: pytest.fail(f"started {args}"))
    for variable in ("LOCAL_RANK", "PET_NNODES"):
        monkeypatch.delenv(variable, raising=False)
    launch(1, "stages/train.py")
    monkeypatch.setenv("PET_NNODES", "1:1")
    launch(1, "stages/train.py")


@pytest.mark.parametrize(("processes", "nnodes"), [(2, "1"), (1, "2"), (4, "2:4")])
def test_several_processes_or_machines_exec_torchrun_in_this_process(monkeypatch, processes, nnodes):
    started = []
    monkeypatch.setattr(os, "execv", lambda path, argv: started.append(argv))
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    monkeypatch.setenv("PET_NNODES", nnodes)  # torchrun reads it, and its other options, itself
    monkeypatch.setenv(LAUNCHER_PID, "")  # so that what launch sets is undone after the test
    launch(processes, "stages/train.py")
    assert started == [[sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={processes}",
                        "stages/train.py"]]
    assert os.environ[LAUNCHER_PID] == str(os.getpid())  # the workers' parent once exec'd


@pytest.mark.slow
def test_torchrun_started_by_hand_must_match_train_processes(workspace):
    result = subprocess.run(train_command("-m", "torch.distributed.run", "--nproc-per-node=2"),
                            cwd=workspace, capture_output=True, text=True, timeout=240)
    assert result.returncode != 0
    assert "train.processes is 1 but torchrun started 2 processes on this machine" in result.stderr
    assert not (workspace / "metrics" / "history.csv").exists()


@pytest.mark.slow
def test_machines_with_other_params_are_refused_before_training(workspace, tmp_path_factory):
    other = tmp_path_factory.mktemp("other-machine")
    subprocess.run(["cp", "-r", f"{workspace}/.", str(other)], check=True)
    params = yaml.safe_load((other / "params.yaml").read_text())
    params["lr"] = 5e-4  # forgotten on one machine
    (other / "params.yaml").write_text(yaml.safe_dump(params))
    rendezvous = {"PET_NNODES": "2", "PET_MASTER_ADDR": "127.0.0.1", "PET_MASTER_PORT": str(free_port())}
    machines = [subprocess.Popen(train_command(), cwd=folder, env=os.environ | rendezvous | {"PET_NODE_RANK": rank},
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                for rank, folder in (("0", workspace), ("1", other))]
    for machine in machines:
        assert machine.wait(timeout=240) != 0
        assert "the training processes would train different runs" in machine.stderr.read()
    assert not (workspace / "metrics" / "history.csv").exists()


def test_validation_every_n_epochs_keeps_the_best_of_the_validated(paired_folder):
    pairs, _ = check_pairs(paired_folder / "lr", paired_folder / "hr", 4)
    out = paired_folder / "out"
    summary = train(tiny_params(epochs=5, val_every=2), pairs[:4], pairs[4:], out / "best.pt", out / "history.csv",
                    out / "last.pt", out / "cache")
    with open(out / "history.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    validated = [int(row["epoch"]) for row in rows if row["val_psnr_rgb"]]
    assert [int(row["epoch"]) for row in rows] == [1, 2, 3, 4, 5]
    assert validated == [2, 4, 5]  # every second epoch, and the last
    assert all(row["train_loss"] for row in rows)
    assert summary["best_epoch"] in validated
    assert torch.load(out / "best.pt", weights_only=True)["epoch"] == summary["best_epoch"]


def test_validation_equals_the_reference_metrics(paired_folder):
    """The device path of validation (batched, rounded to 8 bits, torch metrics) gives the numpy
    reference's means over the val images."""
    from sr_core.stores import decode_pairs
    from sr_core.validation import ImageBatches
    from sr_core.inference import upscale
    from sr_core.metrics import image_metrics
    from sr_core.model import SRResNet
    from sr_core.training import validate
    pairs, _ = check_pairs(paired_folder / "lr", paired_folder / "hr", 4)
    torch.manual_seed(0)
    model = SRResNet(ModelConfig(num_blocks=1, num_features=8, bicubic_residual=True))
    decoded = decode_pairs(pairs, 4, workers=2)
    for tile in (64, 8, 0):  # all six in one batch; tiles; one image at a time
        val = validate(model, ImageBatches(decoded, tile, torch.device("cpu")), tile, "fp32")
        reference = [image_metrics(upscale(model, lr_img), hr_img, 4, ssim=False) for lr_img, hr_img in decoded]
        for key in ("psnr_rgb", "psnr_y", "mae", "mse"):
            assert val[key] == pytest.approx(sum(r[key] for r in reference) / len(reference), rel=1e-5), key


def run_on_a_fake_clock(paired_folder: Path, monkeypatch, step_seconds: Callable[[int], float] = lambda step: 1.0,
                        **train_changes) -> tuple[dict, list[dict]]:
    """A tiny training whose clock advances `step_seconds(step)` per training step, one second
    unless given, and nothing else (validation takes no time): timings that do not depend on the
    machine. Its summary and history rows."""
    import types
    from sr_core.sampler import PatchBatcher
    clock, taken = [0.0], [0]
    monkeypatch.setattr(training, "time", types.SimpleNamespace(perf_counter=lambda: clock[0]))
    sample = PatchBatcher.sample

    def timed_sample(self):
        clock[0] += step_seconds(taken[0])
        taken[0] += 1
        return sample(self)
    monkeypatch.setattr(PatchBatcher, "sample", timed_sample)
    pairs, _ = check_pairs(paired_folder / "lr", paired_folder / "hr", 4)
    out = paired_folder / "out"
    summary = train(tiny_params(**train_changes), pairs[:4], pairs[4:], out / "best.pt", out / "history.csv",
                    out / "last.pt", out / "c")
    with open(out / "history.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert torch.load(out / "last.pt", weights_only=True)["finished"]
    return summary, rows


def test_a_time_budget_ends_the_run_at_the_step_it_runs_out(paired_folder, monkeypatch):
    """4 steps an epoch, a 10-second budget, 10 nominal epochs: after epoch 1 (4 s) 6 more steps fit,
    so epoch 3 ends after 2 steps, at 10 s; the cosine, laid over those 10 steps, never reaches 0."""
    summary, rows = run_on_a_fake_clock(paired_folder, monkeypatch, epochs=10, val_every=5, time_limit_minutes=10 / 60)
    assert (summary["epochs"], summary["nominal_epochs"], summary["stopped_by"]) == (3, 10, "time limit")
    assert [(int(row["steps"]), float(row["seconds"])) for row in rows] == [(4, 4.0), (4, 4.0), (2, 2.0)]
    assert summary["steps"] == 10 and summary["steps_per_second"] == 1.0
    assert [bool(row["val_psnr_rgb"]) for row in rows] == [False, False, True]  # the last epoch is validated
    # epoch 1 under the nominal plan (40 steps), then the 10 that fit
    cosine = [0.5 * (1 + math.cos(math.pi * step / total)) * 1e-3 for step, total in ((3, 40), (7, 10), (9, 10))]
    assert [float(row["lr"]) for row in rows] == pytest.approx(cosine) and float(rows[-1]["lr"]) > 0


def test_an_epoch_cut_short_by_the_budget_is_the_last_even_when_the_steps_speed_up(paired_folder, monkeypatch):
    """20 steps an epoch, a 15-second budget: steps 2 to 11 take 1 s, so 15 steps are planned; the
    next ones take 0.5 s, and with 2 s left after step 15 the plan grew to 17, past the epoch's
    cut but short of epoch 2's first step (20): epoch 2 took no step and divided its loss by 0."""
    summary, rows = run_on_a_fake_clock(paired_folder, monkeypatch, step_seconds=lambda step: 1.0 if step < 11 else 0.5,
                               epochs=10, patches_per_image=10, time_limit_minutes=15 / 60)
    assert [(int(row["steps"]), float(row["seconds"])) for row in rows] == [(15, 13.0)]
    assert (summary["epochs"], summary["steps"], summary["stopped_by"]) == (1, 15, "time limit")


def test_a_budget_shorter_than_an_epoch_is_planned_from_the_first_steps(paired_folder, monkeypatch):
    """20 steps an epoch, a 1-epoch warmup, a 15-second budget: the pace of steps 2 to 11 (1 s each)
    plans 15 steps, the warmup takes a bounded share of them, and the run ends inside epoch 1."""
    summary, rows = run_on_a_fake_clock(paired_folder, monkeypatch, epochs=10, patches_per_image=10, warmup_epochs=1,
                               time_limit_minutes=15 / 60)
    assert [(int(row["steps"]), float(row["seconds"])) for row in rows] == [(15, 15.0)]
    assert summary["stopped_by"] == "time limit" and bool(rows[0]["val_psnr_rgb"])
    warmup = int(MAX_WARMUP_SHARE * 15)
    assert float(rows[0]["lr"]) == pytest.approx(0.5 * (1 + math.cos(math.pi * (14 - warmup) / (15 - warmup))) * 1e-3)


def test_the_reference_setting_trains_on_whole_images_one_pass_an_epoch(paired_folder):
    pairs, _ = check_pairs(paired_folder / "lr", paired_folder / "hr", 4)
    reference = preset("reference")
    train_config = reference.train.model_copy(update=dict(epochs=1, batch_size=2, device="cpu"))
    params = reference.model_copy(update=dict(train=train_config))
    out = paired_folder / "out"
    summary = train(params, pairs[:4], pairs[4:], out / "best.pt", out / "h.csv", out / "last.pt", out / "c")
    assert summary["steps"] == 2  # 4 whole images in batches of 2
    assert torch.load(out / "best.pt", weights_only=True)["model_config"] == reference.model.model_dump()


@torch.no_grad()
def correction_over_bicubic(model_path: Path, pairs: list) -> tuple[float, float]:
    """(PSNR-Y gain in dB, spatial std in 8-bit levels) of what the model adds to PyTorch's bicubic,
    averaged over the pairs. A collapsed bicubic-residual network adds a constant: its last
    upsampler stage passes nothing, leaving the final convolution's bias."""
    model = load_model(model_path, torch.device("cpu"))
    gains, spreads = [], []
    for pair in pairs:
        lr_img, hr_img = load_pair(pair, 4)
        lr = torch.from_numpy(lr_img).permute(2, 0, 1)[None].float() / 255
        bicubic = F.interpolate(lr, scale_factor=4, mode="bicubic", align_corners=False)
        sr = model(lr)
        spreads.append(255 * (sr - bicubic).flatten(2).std(dim=2).mean().item())
        as_uint8 = [t.clamp(0, 1).mul(255).round().to(torch.uint8)[0].permute(1, 2, 0).numpy() for t in (sr, bicubic)]
        gains.append(psnr_y(as_uint8[0], hr_img, 4) - psnr_y(as_uint8[1], hr_img, 4))
    return float(np.mean(gains)), float(np.mean(spreads))


def short_run(params: Params, pairs: list, out: Path, **train_changes) -> tuple[float, float]:
    """Trains briefly on 32 px patches of all but the last 6 pairs; the correction on those 6."""
    config = params.train.model_copy(update=dict(time_limit_minutes=0, patch_size=32, patches_per_image=2,
                                                 batch_size=8, val_every=100, device="cpu", **train_changes))
    train(params.model_copy(update=dict(train=config)), pairs[:-6], pairs[-6:], out / "best.pt", out / "h.csv",
          out / "last.pt", out / "cache")
    return correction_over_bicubic(out / "best.pt", pairs[-6:])


@pytest.mark.slow
@pytest.mark.parametrize("lr", [5e-4, 1e-3])
def test_the_general_setting_does_not_collapse_to_bicubic_at_high_learning_rates(photo_tiles, tmp_path, lr):
    """The general setting's network and schedule (a warmup, then a cosine) keep a correction that
    varies over the image (measured here: 0.14-0.22 levels of spread) and costs nothing against
    bicubic, at the point where the reference network's is a constant (below)."""
    general = preset("general")
    gain, spread = short_run(general.model_copy(update=dict(lr=lr)), photo_tiles, tmp_path,
                             epochs=general.train.warmup_epochs + 2)
    assert spread > 0.05 and gain > -0.01, f"collapsed: gain {gain:.3f} dB, spread {spread:.3f} levels"


@pytest.mark.slow
def test_the_reference_network_with_a_bicubic_residual_collapses_at_lr_1e_3(photo_tiles, tmp_path):
    """The control: the measure above tells a collapsed network. The reference script's ReLU after
    each PixelShuffle dies within its first 64 steps, leaving a constant correction (measured: a
    spread of 1e-6 levels)."""
    reference = preset("reference")
    params = reference.model_copy(update=dict(lr=1e-3, model=reference.model.model_copy(update=dict(bicubic_residual=True))))
    gain, spread = short_run(params, photo_tiles, tmp_path, epochs=2, schedule="constant")
    assert spread < 1e-3, f"not collapsed: gain {gain:.3f} dB, spread {spread:.3f} levels"


@pytest.mark.slow
def test_params_edited_while_a_stage_runs_fail_it_naming_the_key(workspace, monkeypatch):
    write_params(workspace, {"data": {"train_lr_dir": "lr", "train_hr_dir": "hr"},
                             "model": {"num_blocks": 1, "num_features": 8}, "lr": 1e-3,
                             "train": {"epochs": 4, "batch_size": 4, "patch_size": 32, "device": "cpu"}})
    process = subprocess.Popen(train_command(), cwd=workspace, stderr=subprocess.PIPE, text=True)
    edited_at = wait_for_epochs(workspace, process, 1)  # the check runs at the stage's end: 3 epochs on
    params = yaml.safe_load((workspace / "params.yaml").read_text())
    params["lr"], params["evaluate"]["num_samples"] = "5e-04", 1  # as `dvc exp run -S lr=5e-4` writes it
    (workspace / "params.yaml").write_text(yaml.safe_dump(params))
    _, stderr = process.communicate(timeout=300)
    assert edited_at < 4 and process.returncode == 1
    assert stderr.splitlines()[-2].startswith("error: params.yaml changed while stage train ran (lr 0.001 at its "
                                              "start, 0.0005 now), so it fails and DVC records nothing")
    assert "num_samples" not in stderr  # a key the train stage does not track

    # the stages that use the model refuse it: it is not what params.yaml now trains
    monkeypatch.chdir(workspace)
    with pytest.raises(ValueError, match=re.escape("models/best.pt was trained with other params than params.yaml's "
                                                   "(lr 0.001 there, 0.0005 in params.yaml)")):
        stage("evaluate").evaluate(load_params())


@pytest.mark.slow
def test_one_training_at_a_time_and_it_dies_with_its_parent(workspace, monkeypatch):
    write_params(workspace, {"data": {"train_lr_dir": "lr", "train_hr_dir": "hr"},
                             "model": {"num_blocks": 1, "num_features": 8},
                             "train": {"epochs": 200, "batch_size": 4, "patch_size": 32, "device": "cpu"}})
    # a parent that starts the stage as `dvc repro` does, then is killed (a scheduler's stop, `kill`)
    parent = subprocess.Popen([sys.executable, "-c", "import subprocess, sys, time; "
                               f"subprocess.Popen({train_command()!r}, stderr=subprocess.DEVNULL); time.sleep(600)"],
                              cwd=workspace)
    wait_for_epochs(workspace, parent, 1)
    (trainer,) = psutil.Process(parent.pid).children()

    monkeypatch.chdir(workspace)
    with pytest.raises(ValueError, match=re.escape(f"models/last.pt: another training is running on it (process "
                                                   f"{trainer.pid}), and two would overwrite each other's files")):
        stage("train").train(load_params())  # the stage's function, in this process
    assert trainer.is_running()

    parent.kill()
    parent.wait()
    trainer.wait(timeout=30)  # gone with its parent, not training on alone
    hold_train_state(workspace / "models" / "last.pt")  # free again: the next run resumes (tested above)


def test_without_a_terminal_training_logs_its_progress_within_epochs(paired_folder, monkeypatch, caplog):
    """Under `dvc repro` in a log, a CI job or a notebook, tqdm's bar is off: lines say how it goes
    (here every 3 s of a clock that takes 1 s a step, so on any machine)."""
    monkeypatch.setattr(sys, "stderr", io.StringIO())  # not a terminal, whatever pytest's capture
    monkeypatch.setattr(training, "PROGRESS_SECONDS", 3)
    caplog.set_level(logging.INFO)
    run_on_a_fake_clock(paired_folder, monkeypatch, patches_per_image=20, batch_size=4)
    lines = re.findall(r"epoch (\d)/3: step (\d+)/20, ([\d.]+) steps/s, loss ([\d.]+), (\d+):(\d\d):(\d\d) left",
                       caplog.text)
    assert {int(epoch) for epoch, *_ in lines} == {1, 2, 3}  # every epoch reports
    assert all(0 < int(step) < 20 and float(rate) == 1 and 0 < float(loss) < 1 for _, step, rate, loss, *_ in lines)
    left = [3600 * int(h) + 60 * int(m) + int(s) for *_, h, m, s in lines]
    assert left == sorted(left, reverse=True) and left[0] > left[-1] > 0  # the time left counts down


def killed_after_epoch(monkeypatch, epoch: int) -> None:
    """Training raises KeyboardInterrupt once the resume state of `epoch` is written, as a kill would
    stop it there."""
    def save_then_stop(path, state):
        save_train_state(path, state)
        if state["epoch"] == epoch:
            raise KeyboardInterrupt

    monkeypatch.setattr("sr_core.training.save_train_state", save_then_stop)


def test_a_resume_state_made_on_other_pixels_under_the_same_names_starts_afresh(paired_folder, monkeypatch, caplog):
    """The split records a hash of the pixels it read; a state made on other pixels is not resumed."""
    caplog.set_level(logging.INFO)
    monkeypatch.chdir(paired_folder)
    write_params(paired_folder, {"data": {"train_lr_dir": "lr", "train_hr_dir": "hr"}, "split": {"val_split": 0.2},
                                 "model": {"num_blocks": 1, "num_features": 8},
                                 "train": {"epochs": 3, "batch_size": 2, "patch_size": 32, "patches_per_image": 2,
                                           "device": "cpu"}})
    split, train_stage = stage("split"), stage("train")
    monkeypatch.setattr(train_stage, "hold_train_state", lambda path: None)  # its lock lasts as long as the process
    split.split(load_params())
    killed_after_epoch(monkeypatch, 1)
    with pytest.raises(KeyboardInterrupt):
        train_stage.train(load_params())
    monkeypatch.setattr("sr_core.training.save_train_state", save_train_state)
    for path in (paired_folder / "lr").iterdir():  # the same names, blurred pixels
        Image.open(path).filter(ImageFilter.GaussianBlur(1)).save(path)
    split.split(load_params())
    caplog.clear()
    train_stage.train(load_params())
    assert "resuming" not in caplog.text
    assert "models/last.pt is from a run on other pixels" in caplog.text
    assert [int(row["epoch"]) for row in read_history(paired_folder)] == [1, 2, 3]


def test_a_resume_state_that_cannot_be_applied_is_set_aside_and_training_starts_afresh(paired_folder, monkeypatch,
                                                                                       caplog):
    pairs, _ = check_pairs(paired_folder / "lr", paired_folder / "hr", 4)
    out = paired_folder / "out"
    files = (out / "best.pt", out / "history.csv", out / "last.pt", out / "cache")
    killed_after_epoch(monkeypatch, 1)
    with pytest.raises(KeyboardInterrupt):
        train(tiny_params(), pairs[:4], pairs[4:], *files)
    monkeypatch.setattr("sr_core.training.save_train_state", save_train_state)
    state = load_checkpoint(out / "last.pt")
    state["torch_rng"] = state["torch_rng"][:100]  # a damaged random state
    save_train_state(out / "last.pt", state)
    summary = train(tiny_params(), pairs[:4], pairs[4:], *files)
    [aside] = out.glob("last.pt.*.unreadable")
    assert f"{out / 'last.pt'}: a resume state that cannot be applied (" in caplog.text
    assert f"set aside as {aside}, training starts afresh" in caplog.text and "resuming" not in caplog.text
    assert summary["epochs"] == 3 and load_checkpoint(out / "last.pt")["epoch"] == 3


def test_a_training_pair_changed_while_training_runs_fails_the_run_naming_it(paired_folder, monkeypatch):
    pairs, _ = check_pairs(paired_folder / "lr", paired_folder / "hr", 4)
    edited = pairs[1].lr_path

    def save_then_edit(path, state):
        save_train_state(path, state)
        if state["epoch"] == 1:  # DVC would hash the folder at the end, with this file's new pixels
            Image.open(edited).filter(ImageFilter.GaussianBlur(1)).save(edited)

    monkeypatch.setattr("sr_core.training.save_train_state", save_then_edit)
    out = paired_folder / "out"
    with pytest.raises(ValueError, match=f"the training pairs changed while training ran \\(changed {edited}\\): the "
                                         f"model is of them as they were, so the stage fails and DVC records nothing"):
        train(tiny_params(), pairs[:4], pairs[4:], out / "best.pt", out / "history.csv", out / "last.pt", out / "cache")
