import numpy as np
import pytest
from PIL import Image


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
