import csv
import importlib.util
import logging
import logging.handlers
import runpy
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from sr_core import cli
from sr_core.checkpoint import save_checkpoint
from sr_core.commands.export import main as export_main
from sr_core.config import DemoConfig, ModelConfig, Params
from sr_core.data import check_pairs
from sr_core.demo import make_demo_data
from sr_core.model import SRResNet
from sr_core.preset import preset_params, read_preset

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


def save(path, array: np.ndarray, mode: str | None = None) -> None:
    """Writes an array as an image file, creating the folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(array)
    (image.convert(mode) if mode else image).save(path)


@pytest.fixture
def paired_folder(tmp_path, rng):
    """lr/ and hr/ with 6 valid RGB pairs whose HR is the LR with each pixel repeated 4x4."""
    for i in range(6):
        lr_img = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)
        save(tmp_path / "lr" / f"{i:03d}.png", lr_img)
        save(tmp_path / "hr" / f"{i:03d}.png", np.kron(lr_img, np.ones((4, 4, 1), np.uint8)))
    return tmp_path


@pytest.fixture(scope="module")
def photo_tiles(tmp_path_factory) -> list:
    """Paired 64 px HR tiles of three of scikit-image's photographs (the demo data's way)."""
    folder = tmp_path_factory.mktemp("tiles")
    make_demo_data(DemoConfig(out_dir=str(folder), train_images=("astronaut", "coffee", "chelsea"),
                              test_images=("camera",), tile_size=64), 4)
    pairs, _ = check_pairs(folder / "train" / "lr", folder / "train" / "hr", 4)
    return pairs


@pytest.fixture
def test_and_predictions(tmp_path, rng):
    """Two test LR images (one greyscale JPEG) and their 4x RGB predictions."""
    save(tmp_path / "test" / "00029.png", rng.integers(0, 256, (6, 8, 3), dtype=np.uint8))
    save(tmp_path / "test" / "00030.jpg", rng.integers(0, 256, (5, 7), dtype=np.uint8))
    save(tmp_path / "pred" / "00029.png", rng.integers(0, 256, (24, 32, 3), dtype=np.uint8))
    save(tmp_path / "pred" / "00030.png", rng.integers(0, 256, (20, 28, 3), dtype=np.uint8))
    return tmp_path / "test", tmp_path / "pred"


def deep_update(values: dict, updates: dict) -> dict:
    """`values` with `updates` applied key by key, nested mappings merged."""
    for key, value in updates.items():
        values[key] = deep_update(values[key], value) if isinstance(value, dict) else value
    return values


def write_params(folder: Path, updates: dict) -> Path:
    """folder/params.yaml: the repo's params.yaml with `updates` applied."""
    values = deep_update(yaml.safe_load((REPO / "params.yaml").read_text()), updates)
    path = folder / "params.yaml"
    path.write_text(yaml.safe_dump(values, sort_keys=False))
    return path


def preset(name: str) -> Params:
    """The params that presets/NAME.yaml gives, applied to the repo's params.yaml."""
    return preset_params(read_preset(REPO / "presets" / f"{name}.yaml"), REPO / "params.yaml")


DEMO = preset("demo").model
VARIANTS = {  # the demo network, and without the bicubic residual but with BatchNorm (the reference script's)
    "demo": DEMO,
    "no residual, BatchNorm": DEMO.model_copy(update=dict(bicubic_residual=False, batch_norm=True, activation="prelu")),
}


def trained_looking(config: ModelConfig) -> SRResNet:
    """A network of `config` whose BatchNorm layers hold statistics other than their defaults, so
    that folding them into the convolutions is put to the test."""
    torch.manual_seed(0)
    model = SRResNet(config)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.1, 0.1)
    return model.eval()


@contextmanager
def logging_to(handler: logging.Handler) -> Iterator[logging.Handler]:
    """The INFO log and above also go to `handler` for the block, as a command's logging setup
    sends them to stderr."""
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


@dataclass(frozen=True)
class Exported:
    """A network exported by sr-export: the files it wrote and what it logged."""
    model: SRResNet
    checkpoint: Path
    onnx: Path
    safetensors: Path
    logged: str


@pytest.fixture(scope="session", params=list(VARIANTS))
def exported(request, tmp_path_factory) -> Exported:
    """Each network variant exported once for the session by sr-export's `main` (`--out`, and
    `--fp16` for the demo network): the files every export test reads."""
    folder = tmp_path_factory.mktemp("export")
    model, checkpoint, out = trained_looking(VARIANTS[request.param]), folder / "best.v2.pt", folder / "out"
    save_checkpoint(checkpoint, model)
    with logging_to(logging.handlers.BufferingHandler(capacity=1000)) as handler:
        export_main([str(checkpoint), "--out", str(out), *(["--fp16"] if request.param == "demo" else [])])
    return Exported(model, checkpoint, out / "best.v2.onnx", out / "best.v2.safetensors",
                    "\n".join(record.getMessage() for record in handler.buffer))


def free_port() -> int:
    """A TCP port free on this host now: a rendezvous for torchrun's machines in a test."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def read_history(root: Path) -> list[dict]:
    """The rows of root/metrics/history.csv, the train stage's per-epoch history."""
    with open(root / "metrics" / "history.csv", newline="") as f:
        return list(csv.DictReader(f))


def wait_for_epochs(root: Path, process: subprocess.Popen, epochs: int) -> int:
    """How many epochs root/metrics/history.csv holds once it holds `epochs`, while `process` (a
    training) runs; fails the test if it ends or stalls first."""
    deadline = time.time() + 240
    while time.time() < deadline and process.poll() is None:
        if (root / "metrics" / "history.csv").exists() and len(rows := read_history(root)) >= epochs:
            return len(rows)
        time.sleep(0.02)
    pytest.fail(f"{process.args} ended or stalled before epoch {epochs}: {process.poll()}")


@dataclass
class Ran:
    """How a command line ended: its exit status and what it printed."""
    status: int
    out: str
    err: str


@pytest.fixture
def command_line(capsys) -> Callable[..., Ran]:
    """Runs an sr-* command's `main` with the given arguments as its console script does (through
    `cli.run`: the same one-line errors, exit status and logging to stderr), in this process: a
    fresh interpreter would add only the seconds of importing torch. The console scripts themselves
    are run as programs where that is what a test proves."""
    def run(main: Callable[[list[str]], object], *args) -> Ran:
        capsys.readouterr()
        with logging_to(logging.StreamHandler(sys.stderr)):
            try:
                cli.run(lambda: main([str(arg) for arg in args]))
                status = 0
            except SystemExit as stopped:
                if isinstance(stopped.code, str):  # as the interpreter does with sys.exit("message")
                    print(stopped.code, file=sys.stderr)
                status = 1 if isinstance(stopped.code, str) else stopped.code or 0
        out, err = capsys.readouterr()
        return Ran(status, out, err)
    return run


def stage(name: str):
    """stages/NAME.py as a module, to call the stage's function in this process."""
    spec = importlib.util.spec_from_file_location(f"stage_{name}", REPO / "stages" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def stage_script(name: str) -> Callable[[list[str]], object]:
    """`python stages/NAME.py` (its one-line errors, its params check), in this process, as
    `command_line` runs a command's `main`."""
    return lambda argv: runpy.run_path(str(REPO / "stages" / f"{name}.py"), run_name="__main__")
