"""Training throughput: the reference script's loop against this engine, measured in one run on the same data.

    python benchmarks/train_throughput.py                     # reduced sizes on a CPU
    python benchmarks/train_throughput.py --width 1920 --height 1080 --pairs 32   # on a GPU

Prints HR megapixels trained per second by
  (a) the reference script's loop: fp32, eager, both PNGs decoded by PIL for every item, whole images, batch 8;
  (b) this engine: pairs decoded once, random patches cut on the training device, the train stage's
      own step (sr_core.training.training_step, fused Adam) in the precision `auto` picks (bf16 or
      fp16 on a GPU, fp32 on a CPU), channels_last on CUDA (and torch.compile with --compile MODE);
their ratio; on CUDA the share of the device's dense bf16 peak that (b) reaches; and the batcher
alone, in patches per second, against the patches per second that (b)'s model consumes.
Both train the reference script's network (16 blocks, 64 features) with L1 and Adam. The data are synthetic
PNG pairs (smooth gradients with noise and edges) written to a temporary folder.
"""

import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from sr_core.cli import argument_parser
from sr_core.config import COMPILE_MODES
from sr_core.data import Pair
from sr_core.device import grad_scaler, resolve_precision, set_backends
from sr_core.images import bicubic_downscale
from sr_core.model import ModelConfig, SRResNet
from sr_core.sampler import PatchBatcher
from sr_core.stores import ImageStore, decode_pairs
from sr_core.training import training_step

FLOP_PER_HR_PIXEL = 0.83e6  # SRResNet-16x64, forward + backward, per HR pixel per step
BF16_PEAKS = {"H200": 989e12, "H100": 989e12, "A100": 312e12}  # dense bf16 FLOP/s (SXM boards; H200 NVL: 835e12)


def bf16_peak(device_name: str) -> float | None:
    """The dense bf16 peak of a GPU, by its name, or None if not known here."""
    return next((peak for name, peak in BF16_PEAKS.items() if name in device_name), None)


def make_pairs(folder: Path, count: int, width: int, height: int, scale: int) -> list[Pair]:
    """Synthetic HR PNGs with gradients, edges and noise, and their bicubic LR."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:height, 0:width]
    pairs = []
    for i in range(count):
        base = np.stack([(x * (i + 1) + y) % 256, (y * 2 + i * 40) % 256, (x + y * (i % 5)) % 256], axis=2)
        blocks = ((x // 37 + y // 23 + i) % 3 == 0)[..., None] * 60
        hr_img = np.clip(base + blocks + rng.normal(0, 6, base.shape), 0, 255).astype(np.uint8)
        pair = Pair(f"{i:04d}.png", folder / "lr" / f"{i:04d}.png", folder / "hr" / f"{i:04d}.png")
        for path, img in ((pair.hr_path, hr_img), (pair.lr_path, bicubic_downscale(hr_img, scale))):
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).save(path)
        pairs.append(pair)
    return pairs


class ReferenceDataset(Dataset):
    """The reference script's data path: both PNGs opened and decoded by PIL for every item, whole images."""

    def __init__(self, pairs: list[Pair]):
        self.pairs = pairs

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        pair = self.pairs[index]  # as torchvision's ToTensor, which a lent GPU machine may not have
        return tuple(torch.from_numpy(np.array(Image.open(p).convert("RGB"))).permute(2, 0, 1).float().div(255)
                     for p in (pair.lr_path, pair.hr_path))


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(step, steps: int, warmup: int, device: torch.device) -> float:
    """Seconds per call of `step`, after `warmup` calls."""
    for _ in range(warmup):
        step()
    sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    sync(device)
    return (time.perf_counter() - start) / steps


def reference_loop(pairs: list[Pair], device: torch.device, steps: int, workers: int,
              config: ModelConfig = ModelConfig()) -> float:
    """HR MPix/s of the reference script's loop (on the reference script's network unless `config` says otherwise)."""
    model = SRResNet(config).to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    loader = DataLoader(ReferenceDataset(pairs), batch_size=8, shuffle=True, num_workers=workers, drop_last=True,
                        persistent_workers=workers > 0)
    batches = iter(())

    def step() -> None:
        nonlocal batches
        try:
            lr_img, hr_img = next(batches)
        except StopIteration:
            batches = iter(loader)
            lr_img, hr_img = next(batches)
        loss = F.l1_loss(model(lr_img.to(device)), hr_img.to(device))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    width, height = Image.open(pairs[0].hr_path).size
    hr_pixels = 8 * width * height
    return hr_pixels / time_steps(step, steps, 1, device) / 1e6


def engine(batcher: PatchBatcher, sample_pixels: int, device: torch.device, steps: int, compile_mode: str = "eager",
           precision: str = "auto", config: ModelConfig = ModelConfig(), tf32: bool = False) -> float:
    """HR MPix/s of the train stage's step (`training_step`: fused Adam, loss scaling in fp16) in
    `precision` (as train.precision), channels_last on CUDA, `compile_mode` as train.compile;
    `sample_pixels` HR pixels per sample."""
    model = SRResNet(config).to(device).train()
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    set_backends(device, tf32, deterministic=False)
    precision = resolve_precision(precision, device)[0]
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4, fused=True)
    scaler = grad_scaler(device, precision)
    forward = model if compile_mode == "eager" else torch.compile(model, mode=compile_mode)

    def step() -> None:
        if compile_mode == "reduce-overhead":
            torch.compiler.cudagraph_mark_step_begin()
        training_step(forward, *batcher.sample(), F.l1_loss, optimizer, scaler, precision)

    warmup = 1 if compile_mode == "eager" else 3  # compiling, and recording CUDA graphs
    return batcher.batch_size * sample_pixels / time_steps(step, steps, warmup, device) / 1e6


def main() -> None:
    parser = argument_parser(__doc__, "python benchmarks/train_throughput.py")
    cuda = torch.cuda.is_available()
    parser.add_argument("--width", type=int, default=1920 if cuda else 256, help="HR width")
    parser.add_argument("--height", type=int, default=1080 if cuda else 144, help="HR height")
    parser.add_argument("--pairs", type=int, default=32 if cuda else 16, help="synthetic training pairs")
    parser.add_argument("--steps", type=int, default=20 if cuda else 4, help="timed steps per loop")
    parser.add_argument("--batch-size", type=int, default=64 if cuda else 16, help="engine batch")
    parser.add_argument("--patch-size", type=int, default=192 if cuda else 96, help="engine HR patch side")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers of the reference script's loop")
    parser.add_argument("--compile", choices=COMPILE_MODES, default="eager", help="torch.compile the engine's model")
    args = parser.parse_args()
    device = torch.device("cuda" if cuda else "cpu")
    print(f"device: {torch.cuda.get_device_name() if cuda else 'cpu'}, {torch.get_num_threads()} CPU threads")
    print(f"data: {args.pairs} synthetic pairs, HR {args.width}x{args.height}")

    with tempfile.TemporaryDirectory() as folder:
        pairs = make_pairs(Path(folder), args.pairs, args.width, args.height, 4)
        reference = reference_loop(pairs, device, args.steps, args.workers)
        print(f"(a) reference script loop (fp32, PIL per item, whole images, batch 8):   {reference:9.3f} HR MPix/s")

        start = time.perf_counter()
        store = ImageStore.from_arrays(decode_pairs(pairs, 4), 4, device)
        batcher = PatchBatcher(store, args.patch_size, True, device, seed=0, batch_size=args.batch_size)
        decode_seconds = time.perf_counter() - start
        ours = engine(batcher, args.patch_size**2, device, args.steps, args.compile)
        precision = resolve_precision("auto", device)[0]
        settings = f"{precision}, channels_last" + (f", compiled ({args.compile})" if args.compile != "eager" else "") \
            if cuda else "fp32 (CPU)"
        print(f"(b) this engine ({settings}, batch {args.batch_size} of {args.patch_size} px): "
              f"{ours:9.3f} HR MPix/s  (decoding once took {decode_seconds:.1f} s)")
        print(f"ratio (b) / (a): {ours / reference:.2f}x")
        peak = bf16_peak(torch.cuda.get_device_name()) if cuda else None
        if peak:
            print(f"(b) reaches {ours * 1e6 * FLOP_PER_HR_PIXEL / peak:.1%} of the device's dense bf16 peak "
                  f"({FLOP_PER_HR_PIXEL / 1e6:.2f} MFLOP per HR pixel per step)")

        consumed = ours * 1e6 / args.patch_size**2
        loader = args.batch_size / time_steps(batcher.sample, 50, 2, device)
        print(f"batcher alone: {loader:,.0f} patches/s; the model consumes {consumed:,.0f} patches/s "
              f"-> the loader has {loader / consumed:.0f}x headroom")


if __name__ == "__main__":
    main()
