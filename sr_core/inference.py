"""Running a trained model on images: batched, tiled, with memory bounded by the output.

Images are NHWC uint8 tensors (numpy's HWC with a batch dimension) on both sides of the network:
the conversion to and from float happens per tile on the model's device, so the host holds only
the 8-bit input and output. Files are decoded and PNG-encoded in threads, overlapped with the
network.
"""

import argparse
import hashlib
import logging
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import numpy as np
import psutil
import torch
from tqdm import tqdm

from sr_core.checkpoint import load_model
from sr_core.config import PRECISIONS, InferenceConfig, build
from sr_core.device import autocast, pick_device, resolve_precision, set_tf32
from sr_core.files import sha256_of, size_text, write_bytes, write_json
from sr_core.images import (KEPT_WITH_ALPHA, Decoded, ImageError, changes, encode_png, file_states, list_images,
                            name_key, read_image, resize_bicubic, warn_dropped)
from sr_core.model import SRResNet, inference_bytes, receptive_radius
from sr_core.onnx_model import OnnxModel, onnxruntime_has_cuda
from sr_core.parallel import num_workers, ordered_map

log = logging.getLogger(__name__)

T = TypeVar("T")


class SelfEnsemble:
    """A model's x8 self-ensemble (Lim et al. 2017, EDSR+): the mean of its outputs on the 8 flips
    and 90-degree turns of the input, each turned back exactly. Called like the model it wraps (an
    NCHW batch in 0..1 in, the SR batch out), so tiles and batches work as they do for it: a tile's
    margin covers the network's reach in every orientation, so tiled equals whole here too."""

    def __init__(self, model: "SRResNet | OnnxModel"):
        self.model, self.config, self.device = model, model.config, model.device

    def __call__(self, lr_img: torch.Tensor) -> torch.Tensor:
        total = None
        for turns in range(4):
            for flip in (False, True):
                turned = torch.rot90(lr_img.flip(-1) if flip else lr_img, turns, (-2, -1))
                sr_img = torch.rot90(self.model(turned).float(), -turns, (-2, -1))
                sr_img = sr_img.flip(-1) if flip else sr_img
                total = sr_img if total is None else total.add_(sr_img)
        return total.div_(8)


# what runs on images: the PyTorch model, its ONNX export in onnxruntime, or either's self-ensemble
Model = SRResNet | OnnxModel | SelfEnsemble


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """--tile, --workers, --precision, --self-ensemble and --device, for the commands that run a model on images."""
    defaults = InferenceConfig()
    parser.add_argument("--tile", type=int, default=defaults.tile,
                        help="LR side above which an image runs in tiles; a batch holds at most tile^2 LR pixels "
                             "(0: whole images, one at a time)")
    parser.add_argument("--workers", type=int, default=defaults.workers,
                        help="threads that decode and encode images (0: one per core)")
    parser.add_argument("--precision", choices=PRECISIONS, default=defaults.precision,
                        help="auto: bf16 on GPUs from sm_80, fp16 on sm_60/70/75, else fp32")
    parser.add_argument("--self-ensemble", action="store_true",
                        help="the mean of the outputs on the 8 flips and 90-degree turns of each image (8x the time)")
    parser.add_argument("--device", default=defaults.device, help="auto, cpu, cuda or cuda:N")


def config_from(args: argparse.Namespace, **settings: int) -> InferenceConfig:
    """The InferenceConfig of the options `add_arguments` added, plus any other `settings`."""
    return build(InferenceConfig, dict(tile=args.tile, precision=args.precision, device=args.device,
                                       workers=args.workers, self_ensemble=args.self_ensemble, **settings), "inference")


def configured(model: Model, config: InferenceConfig) -> Model:
    """`model` as `config` runs it: its self-ensemble with `config.self_ensemble`."""
    return SelfEnsemble(model) if config.self_ensemble else model


def run_precision(model: Model, requested: str) -> tuple[str, str]:
    """The precision `model` runs in when `requested` (see `device.resolve_precision`), and why: an
    ONNX export runs in the type it was exported in, whatever is asked."""
    inner = model.model if isinstance(model, SelfEnsemble) else model
    if isinstance(inner, OnnxModel):
        return ("fp16" if inner.input_dtype == np.float16 else "fp32"), "an ONNX export runs in the type it was exported in"
    return resolve_precision(requested, model.device)


def inference_model(path: str | Path, config: InferenceConfig, scale: int | None = None) -> Model:
    """The model at `path` on `config.device`, its device and precision logged. An ONNX model runs
    on onnxruntime's CPU provider, with a warning, where onnxruntime has no CUDA provider (no
    onnxruntime-gpu), unless a GPU was asked for by name."""
    device = pick_device(config.device)
    if Path(path).suffix.lower() == ".onnx" and device.type == "cuda" and config.device == "auto" \
            and not onnxruntime_has_cuda():
        log.warning("%s: this onnxruntime has no CUDA provider, so the ONNX model runs on the CPU (pip install "
                    "onnxruntime-gpu for the GPU)", path)
        device = torch.device("cpu")
    model = load_model(path, device, scale)
    set_tf32(device, False)  # fp32 means IEEE float32 here
    precision, why = run_precision(model, config.precision)
    log.info("running %s on %s in %s: %s", path, device, precision, why)
    return model


@torch.no_grad()
def upscale_into(model: Model, lr: torch.Tensor, out: torch.Tensor, tile: int = 0, precision: str = "fp32") -> None:
    """Writes the model's output for `lr` into `out`, rounded to 8 bits.

    `lr`: NHWC uint8 on any device; `out`: NHWC uint8, `scale` times larger, on any device. With
    `tile` > 0, images larger than `tile` LR pixels on a side run in tiles that overlap by the
    model's receptive radius, so the result equals the whole-image one (up to float rounding) and
    beyond `out` only one tile is in flight, whatever the image's size. `precision`: resolved (see
    `run_precision`).
    """
    device, scale = model.device, model.config.scale
    height, width = lr.shape[1:3]
    step_y, step_x = (tile, tile) if tile else (height, width)
    margin = receptive_radius(model.config) if tile else 0
    for y in range(0, height, step_y):
        for x in range(0, width, step_x):
            y_end, x_end = min(y + step_y, height), min(x + step_x, width)
            top, left = max(y - margin, 0), max(x - margin, 0)
            piece = lr[:, top:min(y_end + margin, height), left:min(x_end + margin, width)]
            # NHWC viewed as NCHW is the channels_last layout, which the model uses on CUDA
            piece = piece.to(device, non_blocking=True).permute(0, 3, 1, 2).float().div_(255)
            with autocast(device, precision):
                sr = model(piece)
            sr = sr.float().clamp_(0, 1).mul_(255).round_().to(torch.uint8).permute(0, 2, 3, 1)
            out[:, scale * y:scale * y_end, scale * x:scale * x_end] = \
                sr[:, scale * (y - top):scale * (y_end - top), scale * (x - left):scale * (x_end - left)]


def upscale(model: Model, lr_img: np.ndarray, tile: int = 0, precision: str = "fp32") -> np.ndarray:
    """HWC uint8 LR -> HWC uint8 SR, `scale` times larger (see `upscale_into`)."""
    scale = model.config.scale
    sr_img = np.empty((scale * lr_img.shape[0], scale * lr_img.shape[1], 3), np.uint8)
    upscale_into(model, torch.from_numpy(lr_img)[None], torch.from_numpy(sr_img)[None], tile, precision)
    return sr_img


def same_size_batches(items: Iterable[T], size: Callable[[T], tuple[int, int]], tile: int) -> Iterator[list[T]]:
    """Runs of consecutive items whose LR images share one (height, width), each run holding at
    most tile x tile LR pixels (the most one pass of the network takes; at least one item)."""
    batch, batch_size = [], None
    for item in items:
        item_size = size(item)
        if batch and (item_size != batch_size or (len(batch) + 1) * item_size[0] * item_size[1] > tile * tile):
            yield batch
            batch = []
        batch.append(item)
        batch_size = item_size
    if batch:
        yield batch


def stack(images: list[np.ndarray] | tuple[np.ndarray, ...]) -> torch.Tensor:
    """HWC arrays of one shape as one NHWC tensor (without a copy for a single image)."""
    return torch.from_numpy(images[0])[None] if len(images) == 1 else torch.from_numpy(np.stack(images))


def upscale_stream(model: Model, lr_imgs: Iterable[np.ndarray], tile: int = 0, precision: str = "fp32"
                   ) -> Iterator[np.ndarray]:
    """The SR image of each HWC uint8 LR image, in order; same-size images go through the network
    together (see `same_size_batches`)."""
    scale = model.config.scale
    for batch in same_size_batches(lr_imgs, lambda img: img.shape[:2], tile):
        height, width = batch[0].shape[:2]
        sr = torch.empty((len(batch), scale * height, scale * width, 3), dtype=torch.uint8)
        upscale_into(model, stack(batch), sr, tile, precision)
        yield from sr.numpy()


def prediction_path(out_dir: str | Path, lr_path: Path) -> Path:
    """Where the SR image of `lr_path` goes: the same name, as PNG."""
    return Path(out_dir) / f"{lr_path.stem}.png"


RECORDS = "records.json"  # in a predictions folder: what each prediction was made from


HOST_BYTES_PER_OUTPUT_PIXEL = 3.3  # an RGB output and its PNG encoding (measured: benchmarks/real_scale.py)
ALPHA_BYTES_PER_OUTPUT_PIXEL = 5.0  # the upscaled alpha, and the RGBA copy of the output encoded with it


def require_memory(model: Model, path: Path, lr_size: tuple[int, int], alpha: bool, tile: int) -> None:
    """Refuses, with one line naming `path` and `--tile`, an image whose upscaling would need more
    memory than is free: its output and encoding in RAM, the network's activations for one tile (or
    the whole image) on the model's device. Checked before the output is allocated, so an image
    too large for the machine stops with a reason instead of an allocation failure."""
    height, width = lr_size
    scale = model.config.scale
    output = scale * scale * height * width * (HOST_BYTES_PER_OUTPUT_PIXEL + (ALPHA_BYTES_PER_OUTPUT_PIXEL if alpha else 0))
    margin = 2 * receptive_radius(model.config)
    piece = min(tile + margin, height) * min(tile + margin, width) if tile else height * width  # as upscale_into cuts
    network = inference_bytes(model.config, piece)
    ram = psutil.virtual_memory().available
    if model.device.type == "cuda":
        gpu = torch.cuda.mem_get_info(model.device)[0]
        short = [(need, free, where) for need, free, where in ((output, ram, "RAM"), (network, gpu, "GPU memory"))
                 if need > free]
    else:
        short = [(output + network, ram, "memory")] if output + network > ram else []
    if short:
        need, free, where = short[0]
        raise ValueError(f"{path}: upscaling this {width}x{height} image needs about {size_text(need)} of {where} "
                         f"({size_text(output)} for its {scale * width}x{scale * height} output, "
                         f"{size_text(network)} for the network at --tile {tile}), more than the {size_text(free)} "
                         f"free: lower --tile (inference.tile) for the network's share, or split the image")


def upscale_files(model: Model, lr_paths: list[Path], out_dir: str | Path,
                  config: InferenceConfig = InferenceConfig(), keep_alpha_and_profile: bool = False,
                  keep_going: bool = False, also: Callable[[Path, np.ndarray], dict] | None = None
                  ) -> dict[Path, dict]:
    """Upscales each image file to a PNG of the same name in `out_dir` (see `prediction_path`).

    Decoding and PNG encoding run in `config.workers` threads, a few images ahead of and behind the
    network, so the host's work overlaps the device's and memory stays bounded. The files are
    byte-identical whatever the number of workers. A file that does not decode stops the run with
    its name; with `keep_going` (the upscale command), it is named in a warning, every other file is
    written, and then one error names them all. With `keep_alpha_and_profile` (the upscale command),
    an input's alpha is upscaled bicubic into an RGBA output and its ICC profile is carried over;
    without it (predictions are RGB by contract), what is dropped is logged per file. `also`, if
    given, is called in the writer threads with each output's path and its SR image, to write more
    from it (the competition's cells). Returns a record of each written file by its path: its
    SHA-256, and what `also` returned.
    """
    out_paths = [prediction_path(out_dir, path) for path in lr_paths]
    sources = {}  # by the output's name as file systems compare names (see images.name_key)
    for lr_path, out_path in zip(lr_paths, out_paths):
        sources.setdefault(name_key(out_path.name), []).append((lr_path, out_path))
    clashes = [f"{', '.join(str(lr) for lr, _ in paths)} would all be written to {paths[0][1]}"
               for paths in sources.values() if len(paths) > 1]
    if clashes:
        raise ValueError("; ".join(clashes) + " (or to names that differ only in case, one file on macOS, Windows "
                         "and most shared drives); rename one of each")
    workers = num_workers(config.workers)
    scale = model.config.scale
    model = configured(model, config)
    precision, _ = run_precision(model, config.precision)
    kept = deque()  # (out_path, alpha, profile) of the images the network has taken, in order, until written
    failed = []  # with keep_going: why each file that did not decode was skipped

    def read(path: Path) -> Decoded | ImageError:
        try:
            return read_image(path)
        except ImageError as error:
            if not keep_going:
                raise
            return error

    def rgb_of(decoded_images: Iterable) -> Iterator[np.ndarray]:
        for path, out_path, decoded in zip(lr_paths, out_paths, decoded_images):
            if isinstance(decoded, ImageError):
                log.warning("skipping %s", decoded)
                failed.append(str(decoded))
                continue
            require_memory(model, path, decoded.rgb.shape[:2], keep_alpha_and_profile and decoded.alpha is not None,
                           config.tile)
            if keep_alpha_and_profile:
                warn_dropped(path, decoded, KEPT_WITH_ALPHA)
            else:  # predictions are RGB by contract, as both competitions' files are
                warn_dropped(path, decoded, where=", in its prediction and its submission row (RGB)")
            kept.append((out_path, *((decoded.alpha, decoded.icc_profile) if keep_alpha_and_profile else (None, None))))
            yield decoded.rgb

    def write(out_path: Path, sr_img: np.ndarray, alpha: np.ndarray | None, icc_profile: bytes | None
              ) -> tuple[Path, dict]:
        if alpha is not None:
            alpha = resize_bicubic(alpha, scale * alpha.shape[1], scale * alpha.shape[0])
        png = encode_png(sr_img, config.png_compress_level, alpha, icc_profile)
        write_bytes(out_path, png)
        return out_path, {"sha256": hashlib.sha256(png).hexdigest(), **(also(out_path, sr_img) if also else {})}

    with ThreadPoolExecutor(workers) as pool:
        sr_imgs = upscale_stream(model, rgb_of(ordered_map(pool, read, lr_paths, ahead=workers)),
                                 config.tile, precision)
        written = ordered_map(pool, lambda item: write(*item),
                              ((out_path, sr_img, alpha, profile) for sr_img in sr_imgs
                               for out_path, alpha, profile in [kept.popleft()]), ahead=workers)
        records = dict(tqdm(written, total=len(lr_paths), desc="upscaling", unit="img"))
    if failed:
        written = f"the other {len(records)} {'was' if len(records) == 1 else 'were'} written to {out_dir}"
        raise ValueError(f"{len(failed)} of {len(lr_paths)} images could not be read, and {written}: "
                         f"{'; '.join(failed)}")
    return records


def predict_folder(model: Model, lr_dir: str | Path, out_dir: str | Path,
                   config: InferenceConfig = InferenceConfig(), model_sha256: str = "",
                   also: Callable[[Path, np.ndarray], dict] | None = None) -> list[Path]:
    """Upscales every image in `lr_dir` to a PNG of the same name in `out_dir` (see `upscale_files`,
    and its `also`), and records in `out_dir/records.json` what each was made from (the test file's
    name and SHA-256, and `model_sha256`, the checkpoint's) and its own SHA-256, so that a submission
    can refuse a stale prediction, or one that changed since it was written.

    A file that does not decode stops the run with its name: a submission needs every test image.
    So does a folder that changed while it ran (a file added, removed or replaced), named.
    """
    lr_paths = list_images(lr_dir)
    if not lr_paths:
        raise FileNotFoundError(f"{lr_dir}: no images to predict")
    listed = file_states(lr_paths)
    written = upscale_files(model, lr_paths, out_dir, config, also=also)
    changed = changes(listed, file_states(list_images(lr_dir, quiet=True)))
    if changed:  # DVC hashes the folder when the stage ends: it would record files nothing was predicted from
        raise ValueError(f"{lr_dir} changed while predict ran ({changed}): the predictions are of the folder as it "
                         f"was at the start, so the stage fails and DVC records nothing; run dvc repro again to "
                         f"predict the folder as it is now")
    write_json(Path(out_dir) / RECORDS, {
        "model_sha256": model_sha256,
        "predictions": {out.name: {"source": lr.name, "source_sha256": sha256_of(lr), **record}
                        for lr, (out, record) in zip(lr_paths, written.items())}})
    log.info("wrote %d predictions to %s, and what each was made from to %s", len(written), out_dir, RECORDS)
    return list(written)
