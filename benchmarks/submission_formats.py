"""The two submission files side by side, measured in one run on 1080p predictions: the reference
script's (`submit.format: png`: base64 PNG) and the SRGD competition's (`rle`: its run-length cells).

    python benchmarks/submission_formats.py                   # 50 predictions of 1920x1080
    python benchmarks/submission_formats.py --images 500      # the full test set's size, measured

  encode    one 1920x1080 prediction's cell: the project's (runs found with array operations),
            against a loop over the bytes in Python as the competition kit's encoder is written
            (timed on a slice and projected to the whole image, labelled so), and zlib's levels
  predict   the predict stage's host work on --images predictions (decode, PNG encode, write),
            with and without the cells (with submit.format rle it also writes each cell)
  submit    the submit stage's work for those images in each format (gather the rows, then decode
            every row back and check it), and the file's size, multiplied out to 500 test images
            when fewer are measured (labelled so)

The predictions are bicubic upscales of synthetic 480x270 images cut from photographs (a model's
output is as smooth or smoother), so that the network's time does not hide the host's.
"""

import os

os.environ.setdefault("TQDM_DISABLE", "1")  # before tqdm is imported: the tables stay readable

import statistics
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from real_scale import synthesize  # this folder is on the path when a script here runs
from sr_core.cli import argument_parser
from sr_core.competition import bgr_bytes, encode_cell, run_pairs, write_cell, write_competition_submission
from sr_core.config import InferenceConfig, ModelConfig
from sr_core.images import read_rgb
from sr_core.inference import predict_folder
from sr_core.submission import write_submission

SCALE = 4
FULL_TEST = 500  # the reference task's test images


class Bicubic:
    """A stand-in model: bicubic upscaling, called as the network is, at almost no cost."""

    config, device = ModelConfig(), torch.device("cpu")

    def __call__(self, lr_img: torch.Tensor) -> torch.Tensor:
        return F.interpolate(lr_img, scale_factor=SCALE, mode="bicubic", align_corners=False)


def loop_pairs(flat: np.ndarray) -> bytes:
    """Run-length pairs found by a loop over every byte in Python, the competition kit's encoder's
    way (the baseline; the same bytes as `competition.run_pairs`)."""
    out, count = bytearray(), 1
    for i in range(1, len(flat)):
        if flat[i] == flat[i - 1] and count < 255:
            count += 1
        else:
            out += bytes((flat[i - 1], count))
            count = 1
    return bytes(out + bytes((flat[-1], count)))


def seconds(run, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argument_parser(__doc__, "python benchmarks/submission_formats.py")
    parser.add_argument("--images", type=int, default=50, help="test images of 480x270, predicted 1920x1080")
    parser.add_argument("--slice", type=int, default=20, help="the Python loop runs on 1/SLICE of an image")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each submit, taken in turn")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        pairs = synthesize(work / "pairs", args.images, 1920, 1080)
        (work / "test").mkdir()
        for pair in pairs:
            (work / "test" / pair.lr_path.name).symlink_to(pair.lr_path)
        config = InferenceConfig(workers=0)
        predict_seconds = {}
        for name, also in (("png", None), ("rle", write_cell)):
            start = time.perf_counter()
            predict_folder(Bicubic(), work / "test", work / f"pred_{name}", config, model_sha256="m", also=also)
            predict_seconds[name] = time.perf_counter() - start
        prediction = read_rgb(next((work / "pred_rle").glob("*.png")))
        flat = bgr_bytes(prediction)

        print(f"## encode: one {prediction.shape[1]}x{prediction.shape[0]} prediction ({flat.size:,} bytes)\n")
        part = flat[:flat.size // args.slice]
        loop = seconds(lambda: loop_pairs(part), 1) * args.slice
        assert loop_pairs(part) == run_pairs(part).tobytes()  # the same pairs
        runs = seconds(lambda: run_pairs(flat))
        raw = run_pairs(flat).tobytes()
        print("| step | seconds | size |\n|---|---|---|")
        print(f"| runs, a Python loop over the bytes (projected from 1/{args.slice} of the image) | {loop:.1f} | |")
        print(f"| runs, array operations (competition.run_pairs) | {runs:.3f} | {len(raw) / 1e6:.2f} MB of pairs |")
        for level in (1, 6, 9):
            compress = seconds(lambda level=level: zlib.compress(raw, level))
            size = len(encode_cell(prediction, level)) - 3
            print(f"| zlib level {level} + base64 | {compress:.3f} | {size / 1e6:.2f} MB a cell |")
        cell = seconds(lambda: encode_cell(prediction))
        print(f"| the whole cell (level 1) | {cell:.3f} | |")

        print(f"\n## predict and submit: {args.images} predictions of 1920x1080, {config.workers or 'all'} cores\n")
        times = {"png": [], "rle": []}
        for _ in range(args.repeats):
            for name in times:
                out = work / f"submission_{name}.csv"
                start = time.perf_counter()
                if name == "png":
                    write_submission(work / "test", work / "pred_png", out, SCALE, model_sha256="m")
                else:
                    write_competition_submission(work / "test", work / "pred_rle", out, SCALE, "m")
                times[name].append(time.perf_counter() - start)
        sizes = {name: (work / f"submission_{name}.csv").stat().st_size for name in times}
        print("| format | predict (host) | submit | submit against png | file | file at 500 test images |")
        print("|---|---|---|---|---|---|")
        for name in times:
            submit = statistics.median(times[name])
            full = sizes[name] / args.images * FULL_TEST
            label = "" if args.images == FULL_TEST else f" (x {FULL_TEST / args.images:g}, projected)"
            print(f"| {name} | {predict_seconds[name]:.1f} s | {submit:.2f} s | "
                  f"{submit / statistics.median(times['png']):.2f}x | {sizes[name] / 1e6:.0f} MB | "
                  f"{full / 1e9:.2f} GB{label} |")


if __name__ == "__main__":
    main()
