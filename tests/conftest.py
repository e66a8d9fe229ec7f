import csv
import socket
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from sr_core.config import DemoConfig, Params
from sr_core.data import check_pairs
from sr_core.demo import make_demo_data
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
