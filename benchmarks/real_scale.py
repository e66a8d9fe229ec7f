"""The work around the network at the reference task's size: a plain serial baseline against sr_core, in one run.

    python benchmarks/real_scale.py                           # a few 1080p images on this machine
    python benchmarks/real_scale.py --images 64 --out real_scale.json

Synthesises pairs at the reference shape (HR 1920x1080 opaque RGBA PNG, LR 480x270 RGB PNG, cut
from scikit-image's photographs) and times, per image, in the same run:
  decoding a pair; validation metrics (no SSIM); evaluate metrics (SSIM); inference of the reference script's
  network (with the network alone reported apart); PNG encoding; a submission row and its check;
  predict+submit's host work with 1 worker against all workers; the upscale's memory per output
  pixel (peak RSS of two sizes in fresh processes).
"Baseline" is the straightforward path, written out here: serial numpy/scikit-image and Pillow on
the host, the csv module, float images assembled on the host. "Now" is sr_core. It prints a table,
the PNG compression levels' size against time, and projections of one reference epoch (3,825 train +
675 val) and of predict+submit for 500 test images, for this machine and for a 16-core GPU
machine; it writes everything as JSON.
"""

import os

os.environ.setdefault("TQDM_DISABLE", "1")  # before tqdm is imported: no progress bars between the figures

import argparse
import base64
import csv
import io
import json
import platform
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import skimage.data
import torch
import torch.nn.functional as F
from PIL import Image

from sr_core.checkpoint import save_checkpoint
from sr_core.cli import argument_parser
from sr_core.data import Pair, load_pair
from sr_core.device import autocast, grad_scaler, resolve_precision
from sr_core.images import bicubic_upscale, encode_png, image_size, read_rgb, write_png
from sr_core.inference import upscale_stream
from sr_core.metrics import batch_metrics, image_metrics
from sr_core.model import ModelConfig, SRResNet, receptive_radius
from sr_core.parallel import num_workers, ordered_map
from sr_core.stores import decode_pairs
from sr_core.submission import write_submission
from sr_core.training import training_step
from train_throughput import time_steps  # this folder is on the path when a script here runs

SCALE = 4
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry")  # bundled: no download
REFERENCE_EPOCH = {"train": 3825, "val": 675}
TEST_IMAGES = 500
GPU_CORES = 16


def synthesize(folder: Path, count: int, width: int, height: int) -> list[Pair]:
    """`count` pairs: HR photographs resized to width x height, saved as opaque RGBA; LR 4x smaller."""
    pairs = []
    for i in range(count):
        photo = getattr(skimage.data, PHOTOS[i % len(PHOTOS)])()
        hr_img = np.array(Image.fromarray(photo).convert("RGB").resize((width, height), Image.Resampling.LANCZOS))
        hr_img = np.roll(hr_img, 37 * i, axis=1)  # no two alike
        lr_img = np.array(Image.fromarray(hr_img).resize((width // SCALE, height // SCALE), Image.Resampling.BICUBIC))
        pair = Pair(f"{i:05d}.png", folder / "lr" / f"{i:05d}.png", folder / "hr" / f"{i:05d}.png")
        write_png(pair.hr_path, np.dstack([hr_img, np.full((height, width), 255, np.uint8)]))
        write_png(pair.lr_path, lr_img)
        pairs.append(pair)
    return pairs


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.machine()


def clock(fn, device: torch.device) -> float:
    """Seconds of one call of `fn`, the device's queue drained on both sides."""
    return time_steps(fn, steps=1, warmup=0, device=device)


# --- the baseline: the straightforward serial path -----------------------------------------------------

@torch.no_grad()
def baseline_upscale(model: SRResNet, lr_img: np.ndarray, tile: int) -> np.ndarray:
    """The baseline upscale: float tensors, the SR image assembled in float32 on the host."""
    device = next(model.parameters()).device
    lr = torch.from_numpy(np.ascontiguousarray(lr_img)).permute(2, 0, 1).float().div(255)[None].to(device)
    height, width = lr.shape[-2:]

    def to_image(tensor: torch.Tensor) -> np.ndarray:
        return tensor.detach().clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).cpu().numpy()

    if not tile or (height <= tile and width <= tile):
        return to_image(model(lr)[0])
    s, margin = model.config.scale, receptive_radius(model.config)
    sr = torch.empty(3, s * height, s * width)
    for y in range(0, height, tile):
        for x in range(0, width, tile):
            y_end, x_end = min(y + tile, height), min(x + tile, width)
            top, left = max(y - margin, 0), max(x - margin, 0)
            out = model(lr[..., top:min(y_end + margin, height), left:min(x_end + margin, width)])[0]
            sr[:, s * y:s * y_end, s * x:s * x_end] = \
                out[:, s * (y - top):s * (y_end - top), s * (x - left):s * (x_end - left)].cpu()
    return to_image(sr)


def baseline_submission(test_paths: list[Path], pred_dir: Path, out_path: Path) -> None:
    """The baseline submit: rows through the csv module, then every row decoded back, serially."""
    csv.field_size_limit(sys.maxsize)
    with open(out_path, "w") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(("id", "Encoded_Image"))
        for path in test_paths:
            writer.writerow((path.name, base64.b64encode((pred_dir / path.name).read_bytes()).decode("ascii")))
    expected = {path.name: image_size(path) for path in test_paths}
    with open(out_path, newline="") as f:
        reader = csv.reader(f)
        next(reader)
        for name, encoded in reader:
            with Image.open(io.BytesIO(base64.b64decode(encoded, validate=True))) as image:
                image.load()
                if image.size != (SCALE * expected[name][0], SCALE * expected[name][1]):
                    raise ValueError(f"{name}: {image.size}")


PEAK_PROBE = """
import re, sys
def status_bytes(field):
    return int(re.search(field + r":\\s+(\\d+) kB", open("/proc/self/status").read()).group(1)) * 1024
"""  # what both probes below start with: the peak and current RSS from /proc

MEMORY_PROBE = PEAK_PROBE + """
import numpy as np, torch
sys.path.insert(0, {benchmarks!r})
from real_scale import baseline_upscale
from sr_core.inference import upscale
from sr_core.model import ModelConfig, SRResNet
model = SRResNet(ModelConfig(num_blocks=1, num_features=8)).eval()
run = baseline_upscale if sys.argv[1] == "baseline" else upscale
run(model, np.zeros((64, 64, 3), np.uint8), 64)
open("/proc/self/clear_refs", "w").write("5")  # reset the peak RSS: count only what follows
start = status_bytes("VmRSS")
side = int(sys.argv[2])
run(model, np.random.default_rng(0).integers(0, 256, (side, side, 3), dtype=np.uint8), 64)
print(status_bytes("VmHWM") - start)
"""


COMMAND_PROBE = PEAK_PROBE + """
from sr_core.commands.upscale import main
checkpoint, warm_up, image, out = sys.argv[1:5]
main([checkpoint, warm_up, "--out", out, "--tile", "300", "--workers", "1"])
open("/proc/self/clear_refs", "w").write("5")  # reset the peak RSS: count only what follows
start = status_bytes("VmRSS")
main([checkpoint, image, "--out", out, "--tile", "300", "--workers", "1"])
print(status_bytes("VmHWM") - start)
"""


def command_memory_slope(checkpoint: Path, folder: Path, sides: tuple[int, int] = (600, 1200)) -> float:
    """Bytes of peak RSS per output pixel of the whole upscale command (decode, network, PNG encode
    and write), from a photograph at two LR sizes in fresh processes, after a warm-up. Tiles of 300
    cut both sizes into tiles of one shape, so the slope is what grows with the image, not the
    network's working set for another tile shape."""
    photo = Image.fromarray(skimage.data.astronaut())
    write_png(folder / "warm" / "w.png", np.zeros((64, 64, 3), np.uint8))
    peaks = []
    for side in sides:
        write_png(folder / str(side) / "in.png", np.array(photo.resize((side, side), Image.Resampling.BICUBIC)))
        result = subprocess.run([sys.executable, "-c", COMMAND_PROBE, str(checkpoint), str(folder / "warm" / "w.png"),
                                 str(folder / str(side) / "in.png"), str(folder / f"out{side}")],
                                capture_output=True, text=True, check=True,
                                env={**os.environ, "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"})
        peaks.append(int(result.stdout.split()[-1]))
    return (peaks[1] - peaks[0]) / (SCALE**2 * (sides[1]**2 - sides[0]**2))


def memory_slope(path: str, sides: tuple[int, int] = (300, 900)) -> float:
    """Bytes of peak RSS per output pixel of `path`'s upscale ("baseline" or "now"), from two LR sizes
    in fresh processes, tiles of 64 and a one-block network (the slope does not depend on it).

    Each process resets its peak (VmHWM) after a warm-up, so the import's peak does not count.
    glibc's mmap threshold is fixed: left dynamic, it moves with the timing of frees, and the peak
    varied by +-0.5 bytes per output pixel from run to run under load (measured).
    """
    peaks = []
    for side in sides:
        result = subprocess.run([sys.executable, "-c", MEMORY_PROBE.format(benchmarks=str(Path(__file__).parent)),
                                 path, str(side)], capture_output=True, text=True, check=True,
                                env={**os.environ, "OMP_NUM_THREADS": "1", "MALLOC_MMAP_THRESHOLD_": "131072"})
        peaks.append(int(result.stdout))
    return (peaks[1] - peaks[0]) / (SCALE**2 * (sides[1]**2 - sides[0]**2))


# --- the measurements -----------------------------------------------------------------------------

def measure_metrics(sr_imgs: list[np.ndarray], hr_imgs: list[np.ndarray], device: torch.device) -> dict:
    """Per image: the reference's metrics on the host against batch_metrics on `device`."""
    sr, hr = (torch.from_numpy(np.stack(images)).to(device) for images in (sr_imgs, hr_imgs))
    timings = {}
    for name, ssim in (("validation metrics (no SSIM)", False), ("evaluate metrics (SSIM)", True)):
        batch_metrics(sr[:1], hr[:1], SCALE, ssim)  # warm-up
        baseline = clock(lambda: [image_metrics(s, h, SCALE, ssim) for s, h in zip(sr_imgs, hr_imgs)], device)
        now = clock(lambda: batch_metrics(sr, hr, SCALE, ssim), device)
        timings[name] = {"baseline": baseline / len(hr), "now": now / len(hr)}
    return timings


def measure_inference(model: SRResNet, lr_imgs: list[np.ndarray], device: torch.device) -> dict:
    """Per image: the baseline upscale against upscale_stream, and the network's forward alone."""
    lr = torch.from_numpy(lr_imgs[0]).permute(2, 0, 1)[None].to(device).float().div(255)
    precision = resolve_precision("auto", device)[0]
    with torch.no_grad(), autocast(device, precision):
        model(lr[..., :64, :64])  # warm-up
        network = clock(lambda: model(lr), device)
    baseline = clock(lambda: [baseline_upscale(model, lr_img, 512) for lr_img in lr_imgs], device)
    now = clock(lambda: list(upscale_stream(model, lr_imgs, tile=512, precision=precision)), device)
    return {"baseline": baseline / len(lr_imgs), "now": now / len(lr_imgs), "network alone": network}


def measure_encoding(sr_imgs: list[np.ndarray], workers: int, device: torch.device) -> tuple[dict, dict]:
    """Per image: PNG encoding (level 6) serially against the thread pool; and each level's size and time."""
    baseline = clock(lambda: [encode_png(img) for img in sr_imgs], device)
    with ThreadPoolExecutor(workers) as pool:
        now = clock(lambda: list(ordered_map(pool, encode_png, sr_imgs, workers)), device)
    levels = {level: {"bytes": len(encode_png(sr_imgs[0], level)),
                      "seconds": clock(lambda: encode_png(sr_imgs[0], level), device)} for level in (0, 1, 3, 6, 9)}
    return {"baseline": baseline / len(sr_imgs), "now": now / len(sr_imgs)}, levels


def measure_submission(folder: Path, test_paths: list[Path], sr_imgs: list[np.ndarray], workers: int,
                       device: torch.device) -> dict:
    """Per image: a submission row and its check; and all of predict+submit's work around the
    network (decode the LR, encode and write the SR PNG, the row and its check), baseline and now,
    and now with one worker."""
    test_dir, pred_dir = test_paths[0].parent, folder / "pred"
    pred_paths = [pred_dir / path.name for path in test_paths]
    for path, img in zip(pred_paths, sr_imgs):
        write_png(path, img)
    n = len(test_paths)
    baseline = clock(lambda: baseline_submission(test_paths, pred_dir, folder / "baseline.csv"), device)
    now = clock(lambda: write_submission(test_dir, pred_dir, folder / "submission.csv", SCALE, workers), device)

    def baseline_host_work() -> None:
        for lr_path, pred_path, img in zip(test_paths, pred_paths, sr_imgs):
            read_rgb(lr_path)
            write_png(pred_path, img)
        baseline_submission(test_paths, pred_dir, folder / "baseline.csv")

    def host_work(threads: int) -> None:  # as upscale_files and write_submission do it
        with ThreadPoolExecutor(threads) as pool:
            list(ordered_map(pool, read_rgb, test_paths, threads))
            list(ordered_map(pool, lambda item: write_png(*item), zip(pred_paths, sr_imgs), threads))
        write_submission(test_dir, pred_dir, folder / "submission.csv", SCALE, threads)

    return {"submission row + check": {"baseline": baseline / n, "now": now / n},
            "predict+submit host work": {"baseline": clock(baseline_host_work, device) / n,
                                         "now": clock(lambda: host_work(workers), device) / n,
                                         "now, 1 worker": clock(lambda: host_work(1), device) / n}}


def measure_train_step(model: SRResNet, width: int, height: int, device: torch.device) -> float:
    """Seconds of a training step of `model` per HR image of width x height; on a CPU scaled from a
    1/16-area crop (a convolution's cost is linear in pixels)."""
    cuda = device.type == "cuda"
    crop = 1 if cuda else 4
    lr = torch.rand(1, 3, height // SCALE // crop, width // SCALE // crop, device=device)
    hr = torch.rand(1, 3, SCALE * lr.shape[2], SCALE * lr.shape[3], device=device)
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), fused=True)
    precision = resolve_precision("auto", device)[0]
    scaler = grad_scaler(device, precision)

    def train_step() -> None:
        training_step(model, lr, hr, F.l1_loss, optimizer, scaler, precision)

    train_step()
    return clock(train_step, device) * width * height / hr[0, 0].numel()


def project(results: dict, hr_mpix: float, args: argparse.Namespace, cuda: bool) -> dict:
    """One reference epoch and predict+submit of 500 test images, from the per-image figures.

    This machine: the measured figures. The 16-core GPU machine: measured figures when this runs
    on one; else the network at the assumed rates (flags), the baseline's host work as here
    (it is serial), the new path's host work scaled from this run's workers to 16 cores, and its
    metrics, which run on the GPU, left out (not measured).
    """
    t = results["per_image_seconds"]
    inference = t["inference (reference network)"]
    projections = {}
    for machine in ("this machine", f"{GPU_CORES}-core GPU machine"):
        measured = cuda or machine == "this machine"
        train = results["train_step_seconds"] if measured else hr_mpix / args.gpu_train_mpix
        network = inference["network alone"] if measured else hr_mpix / args.gpu_infer_mpix
        host_speedup = 1 if measured else GPU_CORES / results["workers"]
        infer_baseline = network + max(inference["baseline"] - inference["network alone"], 0)
        infer_now = network + max(inference["now"] - inference["network alone"], 0)
        val_baseline = infer_baseline + t["validation metrics (no SSIM)"]["baseline"]
        val_now = infer_now + (t["validation metrics (no SSIM)"]["now"] if measured else 0)
        projections[machine] = {
            "basis": "measured" if measured else "projected: network at the assumed rates, host work scaled",
            "reference epoch": {"baseline": REFERENCE_EPOCH["train"] * train + REFERENCE_EPOCH["val"] * val_baseline,
                           "now": REFERENCE_EPOCH["train"] * train + REFERENCE_EPOCH["val"] * val_now},
            "reference epoch: validation": {"baseline": REFERENCE_EPOCH["val"] * val_baseline, "now": REFERENCE_EPOCH["val"] * val_now},
            # the baseline runs every step in turn; now the host's work runs in threads beside the network
            "predict+submit 500": {
                "baseline": TEST_IMAGES * (infer_baseline + t["predict+submit host work"]["baseline"]),
                "now": TEST_IMAGES * max(infer_now, t["predict+submit host work"]["now"] / host_speedup)},
        }
    return projections


def report(results: dict) -> None:
    print(f"\nper {results['hr_size'][0]}x{results['hr_size'][1]} image, seconds:")
    print(f"{'work':34s} {'baseline':>9s} {'now':>9s} {'speed-up':>9s}")
    for name, t in results["per_image_seconds"].items():
        extra = f"  (network alone {t['network alone']:.3f} s)" if "network alone" in t else ""
        if "now, 1 worker" in t:
            extra = (f"  (now with 1 worker {t['now, 1 worker']:.4f} s: {results['workers']} workers are "
                     f"{t['now, 1 worker'] / t['now']:.2f}x faster)")
        print(f"{name:34s} {t['baseline']:9.4f} {t['now']:9.4f} {t['baseline'] / t['now']:8.2f}x{extra}")
    if "memory_bytes_per_output_pixel" in results:
        memory = results["memory_bytes_per_output_pixel"]
        print(f"{'upscale memory, bytes/output px':34s} {memory['baseline']:9.2f} {memory['now']:9.2f}")
        print(f"{'sr-upscale, whole process, B/px':34s} {'':9s} "
              f"{results['upscale_command_bytes_per_output_pixel']:9.2f}")
    print(f"train step of the reference script's network: {results['train_step_seconds']:.3f} s per image")
    print("\nPNG compression of one SR image:")
    for level, value in results["png_levels"].items():
        print(f"  level {level}: {value['bytes'] / 1e6:6.2f} MB, {value['seconds']:.3f} s")
    print("\nprojections, seconds:")
    for machine, figures in results["projections"].items():
        print(f"  {machine} ({figures['basis']}):")
        for name, value in figures.items():
            if name != "basis":
                print(f"    {name:30s} baseline {value['baseline']:10.1f}   now {value['now']:10.1f}")


def main() -> None:
    cuda = torch.cuda.is_available()
    parser = argument_parser(__doc__, "python benchmarks/real_scale.py")
    parser.add_argument("--images", type=int, default=32 if cuda else 8, help="synthetic pairs and test images")
    parser.add_argument("--infer-images", type=int, default=None,
                        help="images for the inference timings (default: all on CUDA, 2 on a CPU, where the "
                             "reference script's network takes ~5 s an image)")
    parser.add_argument("--width", type=int, default=1920, help="HR width")
    parser.add_argument("--height", type=int, default=1080, help="HR height")
    parser.add_argument("--workers", type=int, default=0, help="threads for the host's work (0: one per core)")
    parser.add_argument("--gpu-train-mpix", type=float, default=300.0,
                        help="assumed training rate on the GPU machine, HR MPix/s, when not run on one")
    parser.add_argument("--gpu-infer-mpix", type=float, default=900.0,
                        help="assumed inference rate on the GPU machine, HR MPix/s, when not run on one")
    parser.add_argument("--memory-sides", type=int, nargs=2, default=(300, 900),
                        help="the two LR sides of the memory measurement")
    parser.add_argument("--command-memory-sides", type=int, nargs=2, default=(600, 1200),
                        help="the two LR sides of the whole upscale command's memory measurement")
    parser.add_argument("--skip-memory", action="store_true",
                        help="leave out the memory measurements (six fresh processes, each importing torch)")
    parser.add_argument("--out", type=Path, default=Path("real_scale.json"), help="the JSON file written")
    args = parser.parse_args()
    device = torch.device("cuda" if cuda else "cpu")
    workers = num_workers(args.workers)
    n = args.images
    infer_n = min(n, args.infer_images or (n if cuda else 2))
    hr_mpix = args.width * args.height / 1e6
    results = {"device": torch.cuda.get_device_name() if cuda else f"CPU ({cpu_name()})",
               "cores": len(os.sched_getaffinity(0)), "workers": workers, "images": n, "infer_images": infer_n,
               "hr_size": [args.width, args.height], "per_image_seconds": {}}
    timings = results["per_image_seconds"]
    print(f"device: {results['device']}, {results['cores']} cores, {workers} workers; {n} pairs of "
          f"{args.width}x{args.height} (inference on {infer_n})")

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        pairs = synthesize(folder, n, args.width, args.height)
        baseline = clock(lambda: [load_pair(pair, SCALE) for pair in pairs], device) / n
        decoded = []
        now = clock(lambda: decoded.extend(decode_pairs(pairs, SCALE, workers=workers)), device) / n
        timings["decode a pair"] = {"baseline": baseline, "now": now}
        # the SR images are bicubic: smooth like a model's, so PNGs compress as they would
        sr_imgs = [bicubic_upscale(lr_img, SCALE) for lr_img, _ in decoded]
        timings |= measure_metrics(sr_imgs, [hr_img for _, hr_img in decoded], device)
        model = SRResNet(ModelConfig()).to(device).eval()
        if cuda:
            model = model.to(memory_format=torch.channels_last)
        timings["inference (reference network)"] = measure_inference(model, [lr for lr, _ in decoded[:infer_n]], device)
        timings["PNG encode (level 6)"], results["png_levels"] = measure_encoding(sr_imgs, workers, device)
        timings |= measure_submission(folder, [pair.lr_path for pair in pairs], sr_imgs, workers, device)
        results["train_step_seconds"] = measure_train_step(model, args.width, args.height, device)

    if not args.skip_memory:
        results["memory_bytes_per_output_pixel"] = {path: memory_slope(path, args.memory_sides)
                                                     for path in ("baseline", "now")}
        with tempfile.TemporaryDirectory() as tmp:  # the whole command, with a one-block network
            torch.manual_seed(0)
            save_checkpoint(Path(tmp) / "model.pt", SRResNet(ModelConfig(num_blocks=1, num_features=8)).eval())
            results["upscale_command_bytes_per_output_pixel"] = command_memory_slope(
                Path(tmp) / "model.pt", Path(tmp), tuple(args.command_memory_sides))
    results["projections"] = project(results, hr_mpix, args, cuda)
    report(results)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
