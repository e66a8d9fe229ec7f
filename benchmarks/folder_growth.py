"""Predict's images a second into an empty output folder against the same into a folder that
already holds many files: whether writing stays linear as the folder grows.

    python benchmarks/folder_growth.py                      # 1,000 8x8 images; 49,000 files already there
    python benchmarks/folder_growth.py --images 2000 --present 98000

Prints both rates and their ratio (1.0: the folder's size costs nothing). The model is a tiny
SRResNet: what is measured is the work around the network, per file.
"""

import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from sr_core.cli import argument_parser
from sr_core.config import InferenceConfig
from sr_core.images import write_png
from sr_core.inference import predict_folder
from sr_core.model import ModelConfig, SRResNet


def rate(model: SRResNet, test_dir: Path, out_dir: Path, count: int) -> float:
    start = time.perf_counter()
    predict_folder(model, test_dir, out_dir, InferenceConfig(workers=2))
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argument_parser(__doc__, "python benchmarks/folder_growth.py")
    parser.add_argument("--images", type=int, default=1000, help="test images predicted each time")
    parser.add_argument("--present", type=int, default=49_000, help="files already in the fuller output folder")
    parser.add_argument("--side", type=int, default=8, help="test images' side in pixels")
    args = parser.parse_args()
    torch.manual_seed(0)
    model = SRResNet(ModelConfig(num_blocks=1, num_features=8)).eval()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        for i in range(args.images):
            write_png(folder / "test" / f"{i:06d}.png", rng.integers(0, 256, (args.side, args.side, 3), np.uint8))
        (folder / "full").mkdir()
        for i in range(args.present):
            (folder / "full" / f"other{i:06d}.png").write_bytes(b"")
        empty = rate(model, folder / "test", folder / "empty", args.images)
        full = rate(model, folder / "test", folder / "full", args.images)
    print(f"{args.images:,} images of {args.side}x{args.side}: {empty:,.0f} images/s into an empty folder, "
          f"{full:,.0f} into one holding {args.present:,} files: ratio {full / empty:.2f}")


if __name__ == "__main__":
    main()
