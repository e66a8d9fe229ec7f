"""The batch path alone: batches a second and tensor operations a batch of training patches (64 of
96 px from 1920x1080 pairs by default) wherever the decoded pairs live, against the sampler the
train stage used before (one patch at a time, cut by ~3,500 tensor operations a batch), measured in
one run.

    python benchmarks/batch_path.py                      # RAM, disk from a cold page cache, the GPU on CUDA
    python benchmarks/batch_path.py --disk-pairs 512     # a larger set on disk

  RAM    decoded pairs in RAM (training on the CPU, or a GPU fed through pinned memory)
  disk   decoded pairs on disk as when they exceed RAM, read from a cold page cache: every file
         is dropped from the cache first (fsync, then posix_fadvise DONTNEED, which needs no root)
  GPU    on CUDA only: decoded pairs on the GPU, and the GPU setting's training steps a second with
         these batches against the same steps on one pre-made batch (the model's own rate)

The pairs are random pixels made in memory: what is measured is where bytes go, not what they show.
Operation counts are aten operations seen by torch.profiler in every thread, nested ones included;
a GPU-resident store runs the same operations as RAM, on the GPU. The GPU's step rate is also
estimated from FLOPs, with the arithmetic printed: an estimate, not a measurement.
"""

import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.profiler import ProfilerActivity, profile

from sr_core.cli import argument_parser
from sr_core.files import write_bytes
from sr_core.model import ModelConfig
from sr_core.preset import read_preset
from sr_core.sampler import PatchBatcher
from sr_core.stores import ImageStore, StripStore, strips
from train_throughput import FLOP_PER_HR_PIXEL, bf16_peak, engine, time_steps  # this folder is on the path

SCALE = 4
ASSUMED_MFU = 0.35  # share of a GPU's dense peak the estimate assumes for SRResNet-16x64 training
T4_FP16_PEAK = 65e12  # Kaggle's T4 has no bf16 and trains in fp16: its tensor cores' peak (NVIDIA's figure)
GPU_SETTING = ModelConfig(**{key.removeprefix("model."): value for key, value in
                             read_preset(Path(__file__).resolve().parents[1] / "presets" / "gpu.yaml").items()
                             if key.startswith("model.")})  # the network of the setting recommended for a GPU


class PreviousBatcher:
    """The train stage's sampler before this one, kept here to measure against: per patch, an
    image from a random order, two random positions, a random flip and turn, each cut and
    stacked as tensors (on memory-mapped arrays, each patch row is read from the file)."""

    def __init__(self, decoded: list[tuple[np.ndarray, np.ndarray]], patch_size: int, seed: int):
        self.images = [tuple(torch.as_tensor(img).permute(2, 0, 1) for img in pair) for pair in decoded]
        self.p, self.generator = patch_size // SCALE, torch.Generator().manual_seed(seed)
        self.order, self.position = torch.randperm(len(self.images), generator=self.generator), 0

    def sample(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        g, p, s = self.generator, self.p, SCALE
        lr_patches, hr_patches = [], []
        for _ in range(batch_size):
            if self.position == len(self.order):
                self.order, self.position = torch.randperm(len(self.images), generator=g), 0
            lr_img, hr_img = self.images[int(self.order[self.position])]
            self.position += 1
            y = int(torch.randint(lr_img.shape[1] - p + 1, (), generator=g))
            x = int(torch.randint(lr_img.shape[2] - p + 1, (), generator=g))
            lr_img, hr_img = lr_img[:, y:y + p, x:x + p], hr_img[:, s * y:s * (y + p), s * x:s * (x + p)]
            turns = int(torch.randint(4, (), generator=g))
            if torch.randint(2, (), generator=g):
                lr_img, hr_img = lr_img.flip(-1), hr_img.flip(-1)
            lr_patches.append(torch.rot90(lr_img, turns, (-2, -1)))
            hr_patches.append(torch.rot90(hr_img, turns, (-2, -1)))
        return tuple(torch.stack(t).float().div_(255).contiguous() for t in (lr_patches, hr_patches))


def random_pairs(count: int, width: int, height: int, seed: int):
    """(lr_img, hr_img) HWC uint8 pairs of random pixels, one at a time."""
    rng = np.random.default_rng(seed)
    for _ in range(count):
        yield (rng.integers(0, 256, (height // SCALE, width // SCALE, 3), dtype=np.uint8),
               rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def batches_per_second(sample, batches: int, warmup: int = 2) -> float:
    return 1 / time_steps(sample, batches, warmup, torch.device("cpu"))


def operations_per_batch(sample, batches: int = 100, close=None) -> float:
    """aten operations of every thread while `sample` runs `batches` times, divided by `batches`.
    With `close`, the background thread is stopped before and stops within the count, so the
    batches it prepared ahead (at most PREFETCH + 1) are counted too: the figure errs high."""
    if close:
        close()
    config = torch._C._profiler._ExperimentalConfig(profile_all_threads=True)
    with profile(activities=[ProfilerActivity.CPU], experimental_config=config) as prof:
        for _ in range(batches):
            sample()
        if close:
            close()
    return sum(event.name.startswith("aten::") for event in prof.events()) / batches


def drop_from_page_cache(paths: list[Path]) -> None:
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)  # dirty pages cannot be dropped
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


class PremadeBatch:
    """One batch given again and again: the training step alone, the model's own rate."""

    def __init__(self, batcher: PatchBatcher):
        self.batch, self.batch_size = batcher.sample(), batcher.batch_size

    def sample(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.batch


def training_steps(store: ImageStore, batch_size: int, patch_size: int, device: torch.device, steps: int,
                   config: ModelConfig) -> dict:
    """Training steps a second of `config` (the train stage's step, see `engine`) with
    batches cut from `store` as training cuts them, and on one pre-made batch; and the tensor
    operations a batch takes."""
    batcher = PatchBatcher(store, patch_size, True, device, seed=0, batch_size=batch_size)
    rates = {"operations_a_batch": operations_per_batch(batcher.sample, close=batcher.close)}
    for name, source in (("premade_steps_per_s", PremadeBatch(batcher)), ("steps_per_s", batcher)):
        mpix = engine(source, patch_size**2, device, steps, config=config)
        rates[name] = mpix * 1e6 / (batch_size * patch_size**2)
    batcher.close()
    return rates


def main() -> None:
    parser = argument_parser(__doc__, "python benchmarks/batch_path.py")
    parser.add_argument("--width", type=int, default=1920, help="HR width")
    parser.add_argument("--height", type=int, default=1080, help="HR height")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--patch-size", type=int, default=96, help="HR patch side")
    parser.add_argument("--pairs", type=int, default=32, help="pairs in RAM")
    parser.add_argument("--disk-pairs", type=int, default=256, help="pairs on disk (0: skip the disk)")
    parser.add_argument("--batches", type=int, default=200, help="timed batches of the new path")
    parser.add_argument("--previous-batches", type=int, default=30, help="timed batches of the previous path in RAM")
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="the folder the disk files go into, made if missing (default: a temporary folder)")
    args = parser.parse_args()
    if args.cache_dir is not None:
        args.cache_dir.mkdir(parents=True, exist_ok=True)
    cpu, b, p = torch.device("cpu"), args.batch_size, args.patch_size
    print(f"{args.batch_size} patches of {p} px a batch, from {args.width}x{args.height} pairs; "
          f"{torch.get_num_threads()} CPU threads")

    print(f"\n## Decoded pairs in RAM ({args.pairs} pairs)\n")
    decoded = list(random_pairs(args.pairs, args.width, args.height, seed=0))
    previous = PreviousBatcher(decoded, p, seed=0)
    store = ImageStore.from_arrays(decoded, SCALE, cpu)
    new = PatchBatcher(store, p, True, cpu, seed=0, batch_size=b)
    old_rate = batches_per_second(lambda: previous.sample(b), args.previous_batches)
    new_rate = batches_per_second(new.sample, args.batches)
    old_ops = operations_per_batch(lambda: previous.sample(b), 5)
    new_ops = operations_per_batch(new.sample)
    wide_ops = operations_per_batch(PatchBatcher(store, p, True, cpu, seed=0, batch_size=4 * b).sample)
    print("| sampler | batches/s | operations a batch |\n|---|---|---|")
    print(f"| previous (a patch at a time) | {old_rate:,.1f} | {old_ops:,.0f} |")
    print(f"| this one | {new_rate:,.1f} | {new_ops:,.1f} (batch {4 * b}: {wide_ops:,.1f}) |")
    print(f"ratio: {new_rate / old_rate:.1f}x the batches a second, {old_ops / new_ops:.0f}x fewer operations")
    del previous, store, new, decoded

    if args.disk_pairs:
        print(f"\n## Decoded pairs on disk, from a cold page cache ({args.disk_pairs} pairs)\n")
        with tempfile.TemporaryDirectory(dir=args.cache_dir) as folder:
            folder = Path(folder)
            npy, strip_files = [], []
            start = time.perf_counter()
            for i, (lr_img, hr_img) in enumerate(random_pairs(args.disk_pairs, args.width, args.height, seed=1)):
                for kind, img in (("lr", lr_img), ("hr", hr_img)):
                    np.save(folder / f"{i}.{kind}.npy", img)  # the previous layout: memory-mapped arrays
                    npy.append(folder / f"{i}.{kind}.npy")
                strip_files.append(folder / f"{i}.strips")
                write_bytes(strip_files[-1], strips(lr_img, hr_img, SCALE, p // SCALE))
            print(f"written in {time.perf_counter() - start:.0f} s: previous layout "
                  f"{sum(f.stat().st_size for f in npy) / 1e9:.2f} GB, strips "
                  f"{sum(f.stat().st_size for f in strip_files) / 1e9:.2f} GB")
            drop_from_page_cache(npy)
            mapped = [(np.load(npy[2 * i], mmap_mode="c"), np.load(npy[2 * i + 1], mmap_mode="c"))
                      for i in range(args.disk_pairs)]
            previous = PreviousBatcher(mapped, p, seed=0)
            old_rate = batches_per_second(lambda: previous.sample(b), 3, warmup=0)
            shapes = [(args.height // SCALE, args.width // SCALE)] * args.disk_pairs
            disk = StripStore(strip_files, shapes, SCALE, p // SCALE)
            drop_from_page_cache(strip_files)
            batcher = PatchBatcher(disk, p, True, cpu, seed=0, batch_size=b)
            new_rate = batches_per_second(batcher.sample, args.batches, warmup=0)
            drop_from_page_cache(strip_files)
            disk_ops = operations_per_batch(batcher.sample, close=batcher.close)
            batcher.close()
            disk.close()
            read = p // SCALE * int(disk.record_bytes.max())
            print("| sampler | batches/s (cold) | read a patch |\n|---|---|---|")
            print(f"| previous (memory-mapped .npy, a patch at a time) | {old_rate:,.2f} | {p} rows of "
                  f"{3 * p} B, {3 * args.width} B apart |")
            print(f"| this one (strips, {os.cpu_count()} cores, background reads) | {new_rate:,.1f} | one read of "
                  f"{read / 1e3:.0f} kB |")
            print(f"ratio: {new_rate / old_rate:.0f}x; operations a batch, background thread included: {disk_ops:.1f}")

    print("\n## The GPU setting's step rate (16 x 64, batch of 64 x 96 px)\n")
    flop = FLOP_PER_HR_PIXEL * b * p * p
    print(f"a step: {FLOP_PER_HR_PIXEL / 1e6:.2f} MFLOP per HR pixel x {b} x {p}^2 = {flop / 1e12:.2f} TFLOP")
    for name, peak in (("H100 (bf16)", bf16_peak("H100")), ("T4 (fp16)", T4_FP16_PEAK)):
        seconds = flop / (ASSUMED_MFU * peak)
        print(f"estimate, {name}: {flop / 1e12:.2f} TFLOP / ({ASSUMED_MFU:.0%} x {peak / 1e12:.0f} TFLOP/s) = "
              f"{1e3 * seconds:.2f} ms a step = {1 / seconds:,.0f} steps/s")
    if torch.cuda.is_available():
        device = torch.device("cuda")
        decoded = list(random_pairs(args.pairs, args.width, args.height, seed=0))
        for where, store_device in (("the GPU", device), ("RAM (pinned, a background thread)", cpu)):
            rates = training_steps(ImageStore.from_arrays(decoded, SCALE, store_device), b, p, device, 100, GPU_SETTING)
            print(f"measured on {torch.cuda.get_device_name()}, pairs in {where}: {rates['steps_per_s']:,.0f} "
                  f"steps/s against {rates['premade_steps_per_s']:,.0f} on a pre-made batch "
                  f"({rates['steps_per_s'] / rates['premade_steps_per_s']:.0%}); "
                  f"{rates['operations_a_batch']:.1f} operations a batch")
    else:
        print("no CUDA here: the GPU's rate is not measured (benchmarks/gpu_check.py measures it on a GPU)")


if __name__ == "__main__":
    main()
