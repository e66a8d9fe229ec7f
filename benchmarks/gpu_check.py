"""One command for a GPU machine: everything that needs a GPU, measured in one run, each part
time-boxed, every result kept even if the run is cut short.

    PYTHONPATH=. python3 benchmarks/gpu_check.py --data gpu_data --out OUT       # on the GPU machine
    python benchmarks/gpu_check.py --smoke --out /tmp/gpu_check                  # every part, tiny, on a CPU

--data holds datasets/{T91,BSD200}/hr and benchmarks/x4/{Set5,Set14,BSD100} (see docs/results.md,
"The data sets"; copy them to the GPU machine if it cannot see them). The parts, in order; each is
added to OUT/gpu_check.json (rewritten whole after each part) and printed as a table when it ends.
Within a part, each setting runs on its own: one that fails keeps its error in its row, and the
others' rows stay. `--parts` runs some of them again.

  environment    GPU, compute capability, memory, torch / CUDA / cuDNN versions, the build's GPU
                 architectures, the precision `auto` picks, the C compiler torch.compile needs
  train_stage    the train stage's own command (`python stages/train.py`, as `dvc repro` runs it) with
                 train.processes=1 on small synthetic pairs: one process on the GPU, no torchrun. One
                 GPU cannot host two NCCL ranks, so several processes are tested on CPUs (gloo) only
  throughput     training at full size (HR 1920x1080): the reference script's loop against the engine on
                 whole images and on 96 px patches in fp32, fp32 with TF32, and the precision `auto`
                 picks, then compiled (default, reduce-overhead); HR MPix/s and MFU
  host_overhead  presets/gpu.yaml's steps a second (batch 64 of 96 px): the previous step (multiply by 1,
                 foreach Adam) against the train stage's (fused Adam), eager and compiled in each mode
  step_memory    presets/reference.yaml's training step (8 whole 480x270 LR images) as the train stage
                 measures it on a GPU (batches of 1 and 2, extended to 8), in fp32 and in the precision
                 `auto` picks; on a CPU, by arithmetic from autograd's saved tensors (labelled so)
  batch_path     the GPU setting's training steps a second with batches cut as the train stage cuts
                 them (pairs on the GPU, then in RAM), against the same steps on a pre-made batch
  real_scale     validation of 675 and predict+submit of 500 1080p images, measured on a fraction
                 and projected (labelled so)
  general        the general model in the setting recommended for a GPU (presets/gpu.yaml: 16x64, no
                 BatchNorm, PReLU upsampler, bicubic residual) on T91 + BSD200, patches, flips, warmup,
                 cosine, trained under a time budget, then Set5 / Set14 / BSD100 next to bicubic and
                 the published SRResNet row
  precision      that model's Set5 PSNR-Y in the precision `auto` picks against fp32
  onnx_fp16      that model exported to fp16 ONNX on onnxruntime's CUDA provider against torch, at
                 the real LR size (benchmarks/onnx_vs_torch.py); skipped, with the reason, where
                 onnxruntime with CUDA or the exporter's packages (onnx, onnxscript) are not installed

The default time box (--minutes) leaves slack beyond the parts' own for CUDA's start, cuDNN's
benchmarking and compiling. It needs only torch, numpy, Pillow, scikit-image, tqdm, pyyaml and
psutil: no dvc, no network. --smoke runs every part at tiny sizes on the CPU with synthetic data.
"""

import os

os.environ.setdefault("TQDM_DISABLE", "1")  # before tqdm is imported: the tables stay readable

import json
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import numpy as np
import skimage.data
import torch
import yaml
from PIL import Image

from batch_path import GPU_SETTING as GPU_MODEL, random_pairs, training_steps  # this folder is on the path
from real_scale import synthesize
from resources import step_bytes
from step_overhead import Step
from sr_core.evaluation import load_sets
from sr_core.checkpoint import load_model
from sr_core.cli import argument_parser
from sr_core.config import InferenceConfig, ModelConfig, Params, TrainConfig, read_params
from sr_core.data import check_pairs, split_names, write_split
from sr_core.device import card, resolve_precision
from sr_core.evaluation import score_pairs, summarize
from sr_core.files import write_json
from sr_core.images import bicubic_downscale, write_png
from sr_core.inference import upscale_files
from sr_core.metrics import min_scored_side
from sr_core.model import SRResNet
from sr_core.preset import read_preset, set_values
from sr_core.sampler import PatchBatcher
from sr_core.stores import ImageStore, decode_pairs
from sr_core.submission import write_submission
from sr_core.training import step_memory, train, validate
from sr_core.validation import ImageBatches
from train_throughput import FLOP_PER_HR_PIXEL, bf16_peak, engine, make_pairs, reference_loop, time_steps

SCALE = 4
PARTS = ("environment", "train_stage", "throughput", "host_overhead", "step_memory", "batch_path", "real_scale",
         "general", "precision", "onnx_fp16")
BENCHMARKS = ("Set5", "Set14", "BSD100")
PUBLISHED_SRRESNET = {"Set5": (32.05, 0.9019), "Set14": (28.49, 0.8184), "BSD100": (27.58, 0.7620)}  # Ledig et al.
FULL = {"val": 675, "test": 500}  # the reference task's val split and test set
# The setting recommended for a GPU, read from its preset (presets/gpu.yaml) so there is one: its
# network, and the training keys that do not depend on the data set (the time budget is this script's).
REPO = Path(__file__).resolve().parent.parent
GPU_PRESET = read_preset(REPO / "presets" / "gpu.yaml")
GPU_TRAIN = {"lr": GPU_PRESET["lr"]} | {key: GPU_PRESET[f"train.{key}"] for key in
                                        ("batch_size", "patch_size", "patches_per_image", "schedule", "warmup_epochs")}


def sizes(smoke: bool) -> dict:
    """Everything that differs between a real run and a smoke run. `minutes`: each part's time box;
    together they leave slack in the default --minutes for CUDA's start, cuDNN and compiling."""
    if smoke:
        return dict(width=192, height=108, pairs=8, steps=1, patch_batch=8, patch=32, val_images=2, test_images=2,
                    model=ModelConfig(num_blocks=1, num_features=8),
                    general_model=GPU_MODEL.model_copy(update=dict(num_blocks=1, num_features=8)),
                    batch_size=4, patches_per_image=2, val_every=2,
                    minutes={"train_stage": 0.3, "throughput": 0.5, "host_overhead": 0.3, "step_memory": 0.3,
                             "batch_path": 0.3, "real_scale": 0.3, "general": 0.1, "precision": 0.3,
                             "onnx_fp16": 0.3})
    return dict(width=1920, height=1080, pairs=16, steps=10, patch_batch=128, patch=96, val_images=32, test_images=32,
                model=ModelConfig(), general_model=GPU_MODEL, batch_size=GPU_TRAIN["batch_size"],
                patches_per_image=GPU_TRAIN["patches_per_image"], val_every=5,
                minutes={"train_stage": 0.4, "throughput": 1.0, "host_overhead": 0.8, "step_memory": 0.3,
                         "batch_path": 0.4, "real_scale": 0.6, "general": 2.0, "precision": 0.3, "onnx_fp16": 0.4})


def c_compiler() -> str | None:
    """The C compiler torch.compile needs (Triton builds its launchers with it), or None."""
    return next(filter(None, (shutil.which(name) for name in (os.environ.get("CC", "cc"), "gcc", "clang"))), None)


def compiled_skip(device: torch.device) -> str | None:
    """Why compiled settings cannot run here, or None."""
    if device.type != "cuda":
        return "compiling for a CPU takes minutes and says nothing about a GPU"
    if c_compiler() is None:
        return "no C compiler (cc, gcc or clang) on the PATH, which torch.compile needs"
    return None


def first_line(error: Exception) -> str:
    """An error's first line, for a table (the JSON keeps the whole traceback)."""
    return (str(error).strip().splitlines() or [""])[0]


def settings_rows(settings: list[tuple[str, Callable[[], dict]]], deadline: float) -> list[dict]:
    """A row per setting, each run on its own: a setting that fails or is skipped keeps its reason
    in its row, and the others' rows stay; settings past `deadline` are skipped."""
    rows = []
    for name, run in settings:
        if time.monotonic() > deadline:
            rows.append({"setting": name, "status": "skipped: time box spent"})
            continue
        try:
            rows.append({"setting": name, **run(), "status": "ok"})
        except Skipped as reason:
            rows.append({"setting": name, "status": f"skipped: {reason}"})
        except Exception as error:  # noqa: BLE001 (one setting's failure must not cost the others' rows)
            rows.append({"setting": name, "status": f"failed: {type(error).__name__}: {first_line(error)}",
                         "traceback": traceback.format_exc()})
        finally:
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
    return rows


def make_smoke_data(folder: Path) -> Path:
    """Tiny stand-ins for ../shared: HR-only training sets and paired benchmark sets, cut from the
    photographs inside scikit-image."""
    photos = [np.asarray(Image.fromarray(getattr(skimage.data, name)()).convert("RGB"))
              for name in ("astronaut", "coffee", "chelsea", "rocket")]
    for set_index, name in enumerate(("T91", "BSD200")):
        for i, photo in enumerate(photos):
            write_png(folder / "datasets" / name / "hr" / f"{i}.png", photo[40 * set_index:][:96, 100 * i:][:, :120])
    for set_index, name in enumerate(BENCHMARKS):
        for i, photo in enumerate(photos[:2]):
            hr_img = photo[200 + 30 * set_index:][:64, 150 * i:][:, :64]
            write_png(folder / "benchmarks" / "x4" / name / "hr" / f"{i}.png", hr_img)
            write_png(folder / "benchmarks" / "x4" / name / "lr" / f"{i}.png", bicubic_downscale(hr_img, SCALE))
    return folder


def environment(device: torch.device) -> list[dict]:
    cuda = device.type == "cuda"
    props = torch.cuda.get_device_properties(device) if cuda else None
    return [{
        "device": card(device) if cuda else f"cpu ({platform.machine()})",
        "memory_gib": round(props.total_memory / 2**30, 1) if cuda else None,
        "bf16_peak_tflops": (bf16_peak(props.name) or 0) / 1e12 if cuda else None,
        "auto_precision": " ".join(resolve_precision("auto", device)),
        "torch": torch.__version__, "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version(),
        "arch_list": " ".join(torch.cuda.get_arch_list()), "c_compiler": c_compiler(),
        "python": platform.python_version(), "cpu_cores": len(os.sched_getaffinity(0)),
    }]


def train_stage(device: torch.device, size: dict, work: Path) -> list[dict]:
    """`python stages/train.py` in a folder laid out as the repo (params.yaml, a split, pairs) with
    train.processes=1: the single-process path, which must start no torchrun."""
    folder = work / "train_stage"
    pairs = make_pairs(folder / "pairs", 6, 128, 96, SCALE)
    write_split(folder / "data" / "split.json", [p.name for p in pairs[:4]], [p.name for p in pairs[4:]])
    model, values = size["model"], read_params(REPO / "params.yaml")
    set_values(values, {"data.train_lr_dir": "pairs/lr", "data.train_hr_dir": "pairs/hr",
                        "model.num_blocks": model.num_blocks, "model.num_features": model.num_features,
                        "train.epochs": 2, "train.batch_size": 4, "train.patch_size": 32,
                        "train.patches_per_image": 4, "train.device": device.type, "train.processes": 1}, "gpu_check")
    (folder / "params.yaml").write_text(yaml.safe_dump(values, sort_keys=False))
    command = [sys.executable, str(REPO / "stages" / "train.py")]
    began = time.monotonic()
    ran = subprocess.run(command, cwd=folder, capture_output=True, text=True, timeout=300,
                         env=os.environ | {"PYTHONPATH": str(REPO)})
    seconds = time.monotonic() - began
    if ran.returncode:
        raise RuntimeError(f"{' '.join(command)} failed: {ran.stderr[-2000:]}")
    summary = json.loads((folder / "metrics" / "train.json").read_text())
    if summary["device"] != f"1 x {device.type}" or "training processes" in ran.stderr:
        raise RuntimeError(f"expected one process on {device.type}, got {summary['device']}: {ran.stderr[-2000:]}")
    return [{"command": "python stages/train.py", "train.processes": 1, "torchrun": False,
             "device": summary["device"], "epochs": summary["epochs"],
             "steps_per_second": round(summary["steps_per_second"], 2), "seconds_in_all": round(seconds, 1)}]


def throughput(device: torch.device, size: dict, work: Path, deadline: float) -> list[dict]:
    """HR MPix/s of training at full size: the reference script's loop, then the engine in each setting,
    as many as the time box holds (compiled last: their first steps compile)."""
    pairs = make_pairs(work / "throughput", size["pairs"], size["width"], size["height"], SCALE)
    store = ImageStore.from_arrays(decode_pairs(pairs, SCALE), SCALE, device)
    whole = PatchBatcher(store, 0, False, device, seed=0, batch_size=8)
    patches = PatchBatcher(store, 96, True, device, seed=0, batch_size=size["patch_batch"])
    cuda, image_pixels = device.type == "cuda", size["width"] * size["height"]
    peak = bf16_peak(torch.cuda.get_device_name(device)) if cuda else None
    model, workers = size["model"], min(8, len(os.sched_getaffinity(0)))
    auto = resolve_precision("auto", device)[0]
    baseline = []

    def measured(batch: int, run: Callable[[], float]) -> Callable[[], dict]:
        def row() -> dict:
            mpix = run()
            baseline.append(baseline[0] if baseline else mpix)
            return {"batch": batch, "hr_mpix_per_s": round(mpix, 3), "vs_reference_loop": round(mpix / baseline[0], 2),
                    "mfu": round(mpix * 1e6 * FLOP_PER_HR_PIXEL / peak, 4) if peak else None}
        return row

    def compiled(mode: str) -> Callable[[], dict]:
        def row() -> dict:
            if reason := compiled_skip(device):
                raise Skipped(reason)
            return measured(size["patch_batch"], lambda: engine(patches, 96 * 96, device, size["steps"], mode, auto,
                                                                model))()
        return row

    settings = [("reference script loop: fp32, PIL per item, whole images",
                 measured(8, lambda: reference_loop(pairs, device, size["steps"], workers, model)))]
    for precision in dict.fromkeys(("fp32", auto)):
        settings.append((f"engine: whole images, {precision}", measured(8, lambda precision=precision: engine(
            whole, image_pixels, device, size["steps"], "eager", precision, model))))
    for precision, tf32 in dict.fromkeys((("fp32", False), ("fp32", True), (auto, False))):
        settings.append((f"engine: 96 px patches, {precision}{' with TF32' if tf32 else ''}",
                         measured(size["patch_batch"], lambda precision=precision, tf32=tf32: engine(
                             patches, 96 * 96, device, size["steps"], "eager", precision, model, tf32))))
    for mode in ("default", "reduce-overhead"):
        settings.append((f"engine: 96 px patches, {auto}, compiled ({mode})", compiled(mode)))
    return settings_rows(settings, deadline)


def host_overhead(device: torch.device, size: dict, deadline: float) -> list[dict]:
    """presets/gpu.yaml's training steps a second, the previous step against the train stage's,
    eager and compiled (benchmarks/step_overhead.py counts their operations on a CPU)."""
    auto = resolve_precision("auto", device)[0]
    rates = {}

    def rate(after: bool, mode: str) -> Callable[[], dict]:
        def row() -> dict:
            if mode != "eager" and (reason := compiled_skip(device)):
                raise Skipped(reason)
            step = Step(after, auto, size["batch_size"], size["patch"], device=device, compile_mode=mode)
            rates[(after, mode)] = 1 / time_steps(step, 10 * size["steps"], 1 if mode == "eager" else 3, device)
            return {"precision": auto, "batch": size["batch_size"], "steps_per_s": round(rates[(after, mode)], 1),
                    "vs_previous": round(rates[(after, mode)] / rates[(False, "eager")], 2)
                    if (False, "eager") in rates else None}
        return row

    return settings_rows([("previous: multiply by res_scale 1, foreach Adam", rate(False, "eager")),
                          ("train stage: fused Adam", rate(True, "eager")),
                          ("train stage, compiled (default)", rate(True, "default")),
                          ("train stage, compiled (reduce-overhead: CUDA graphs)", rate(True, "reduce-overhead"))],
                         deadline)


def step_memory_rows(device: torch.device, size: dict, deadline: float) -> list[dict]:
    """presets/reference.yaml's training step, batch 8 of whole LR images of the reference size, in
    fp32 and in the precision `auto` picks: measured as the train stage does on a GPU; by
    arithmetic from the CPU's saved tensors elsewhere (labelled so)."""
    reference = read_preset(REPO / "presets" / "reference.yaml")
    model_config = size["model"] if device.type != "cuda" else ModelConfig(**{
        key.removeprefix("model."): value for key, value in reference.items() if key.startswith("model.")})
    train_config = TrainConfig(batch_size=reference["train.batch_size"], patch_size=0, device=device.type)
    lr_size = (size["height"] // SCALE, size["width"] // SCALE)
    model = SRResNet(model_config).to(device)

    def figure(precision: str) -> Callable[[], dict]:
        def row() -> dict:
            if device.type == "cuda":
                needed = step_memory(model.to(memory_format=torch.channels_last), lr_size, train_config.loss,
                                     train_config.batch_size, device, precision)
                how = "measured: batches of 1 and 2 on this GPU, extended to 8 (the train stage's figure)"
            else:
                needed = step_bytes(model, train_config.batch_size, lr_size, precision)[0]
                how = "arithmetic: autograd's saved tensors on the CPU, + weights, gradients, Adam (no GPU here)"
            return {"precision": precision, "batch": train_config.batch_size, "lr_size": f"{lr_size[1]}x{lr_size[0]}",
                    "step_gib": round(needed / 2**30, 2), "step_gb": round(needed / 1e9, 2), "how": how}
        return row

    precisions = dict.fromkeys(("fp32", "fp16", resolve_precision("auto", device)[0]))  # fp16: a 16 GB card's
    return settings_rows([(f"reference step, {precision}", figure(precision)) for precision in precisions], deadline)


def batch_path(device: torch.device, size: dict) -> list[dict]:
    """The GPU setting's training steps a second with batches cut as the train stage cuts them,
    from pairs kept on the GPU and in RAM, against the same steps on one pre-made batch."""
    decoded = list(random_pairs(size["pairs"], size["width"], size["height"], seed=0))
    rows = []
    for where, store_device in (("gpu", device), ("ram", torch.device("cpu"))):
        store = ImageStore.from_arrays(decoded, SCALE, store_device)
        rates = training_steps(store, size["batch_size"], GPU_TRAIN["patch_size"], device, 10 * size["steps"],
                               size["general_model"])
        ratio = rates["steps_per_s"] / rates["premade_steps_per_s"]
        rows.append({"pairs_in": where, "batch": size["batch_size"], "steps_per_s": round(rates["steps_per_s"], 1),
                     "premade_steps_per_s": round(rates["premade_steps_per_s"], 1), "ratio": round(ratio, 3),
                     "within_10_percent": ratio >= 0.9,
                     "operations_a_batch": round(rates["operations_a_batch"], 1)})
    return rows


def real_scale(device: torch.device, size: dict, work: Path) -> list[dict]:
    """Validation and predict+submit at the reference size, on a fraction of the images, projected
    to the full counts (the projection is labelled as such)."""
    model = SRResNet(size["model"]).to(device).eval()
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    inference = InferenceConfig()
    precision = resolve_precision(inference.precision, device)[0]
    count = max(size["val_images"], size["test_images"])
    pairs = synthesize(work / "real_scale", count, size["width"], size["height"])
    start = time.perf_counter()
    decoded = decode_pairs(pairs[:size["val_images"]], SCALE)
    decode_seconds = time.perf_counter() - start
    batches = ImageBatches(decoded, inference.tile, device)
    validate(model, batches, inference.tile, precision)  # warm-up: cuDNN picks its kernels
    val_seconds = time_steps(lambda: validate(model, batches, inference.tile, precision), 1, 0, device)

    test_paths = [pair.lr_path for pair in pairs[:size["test_images"]]]
    test_dir = work / "real_scale" / "test"
    test_dir.mkdir()
    for path in test_paths:
        (test_dir / path.name).symlink_to(path)
    start = time.perf_counter()
    upscale_files(model, sorted(test_dir.iterdir()), work / "real_scale" / "pred", inference)
    predict_seconds = time.perf_counter() - start
    start = time.perf_counter()
    write_submission(test_dir, work / "real_scale" / "pred", work / "real_scale" / "submission.csv", SCALE)
    submit_seconds = time.perf_counter() - start

    def row(what: str, seconds: float, measured: int, full: int) -> dict:
        return {"what": what, "measured_images": measured, "measured_s": round(seconds, 3),
                "per_image_s": round(seconds / measured, 5), "full_images": full,
                "projected_full_s": round(seconds / measured * full, 1)}
    return [row("decode val pairs once (host threads)", decode_seconds, size["val_images"], FULL["val"]),
            row("validation (no SSIM), on the device", val_seconds, size["val_images"], FULL["val"]),
            row("predict: decode, network, PNG encode", predict_seconds, size["test_images"], FULL["test"]),
            row("submit: encode and check every row", submit_seconds, size["test_images"], FULL["test"])]


def general(device: torch.device, size: dict, data: Path, out: Path, minutes: float, residual: bool,
            work: Path) -> list[dict]:
    """The general model under a time budget, then the benchmarks next to bicubic and the published
    SRResNet row. Returns the rows; the model is left at OUT/general/best.pt."""
    patch = GPU_TRAIN["patch_size"]
    pairs, rejects = check_pairs(None, data / "datasets" / "T91" / "hr", SCALE,
                                 min_hr_side=max(patch, min_scored_side(SCALE)),
                                 extra_dirs=(data / "datasets" / "BSD200",))
    by_name = {pair.name: pair for pair in pairs}
    train_names, val_names = split_names(list(by_name), 0.15, 42)
    config = TrainConfig(epochs=100_000, batch_size=size["batch_size"], patch_size=patch,
                         patches_per_image=size["patches_per_image"], schedule=GPU_TRAIN["schedule"],
                         warmup_epochs=GPU_TRAIN["warmup_epochs"],
                         val_every=size["val_every"], time_limit_minutes=minutes, device=device.type)
    model = size["general_model"].model_copy(update=dict(bicubic_residual=residual))
    params = Params(lr=GPU_TRAIN["lr"], model=model, train=config)
    folder = out / "general"
    summary = train(params, [by_name[n] for n in train_names], [by_name[n] for n in val_names], folder / "best.pt",
                    folder / "history.csv", folder / "last.pt", work / "cache")
    model = load_model(folder / "best.pt", device)
    rows = [{"set": "training", "pairs": len(pairs), "rejected": len(rejects), "epochs": summary["epochs"],
             "steps": summary["steps"], "train_minutes": round(summary["train_seconds"] / 60, 2),
             "best_val_psnr_y": round(summary["best_val_psnr_y"], 3), "bicubic_residual": residual}]
    sets = load_sets([data / "benchmarks" / "x4" / name for name in BENCHMARKS])
    for name, set_pairs in sets.items():
        means = summarize(score_pairs(set_pairs, SCALE, model, bicubic=True, config=InferenceConfig()))
        rows.append({"set": name, "psnr_y": round(means["model"]["psnr_y"], 3),
                     "ssim": round(means["model"]["ssim"], 4), "bicubic_psnr_y": round(means["bicubic"]["psnr_y"], 3),
                     "bicubic_ssim": round(means["bicubic"]["ssim"], 4),
                     "published_srresnet": "{} / {}".format(*PUBLISHED_SRRESNET[name])})
    return rows


def precision_against_fp32(device: torch.device, data: Path, out: Path) -> list[dict]:
    """PSNR-Y on Set5 of the general model in the precision `auto` picks and in fp32 (on a CPU both
    are fp32)."""
    model = load_model(out / "general" / "best.pt", device)
    set5 = load_sets([data / "benchmarks" / "x4" / "Set5"])["Set5"]
    auto = resolve_precision("auto", device)[0]
    psnr = {precision: summarize(score_pairs(set5, SCALE, model, bicubic=True,
                                             config=InferenceConfig(precision=precision)))["model"]["psnr_y"]
            for precision in ("auto", "fp32")}
    difference = psnr["auto"] - psnr["fp32"]
    return [{"set": "Set5", "auto": auto, "psnr_y_auto": round(psnr["auto"], 4), "psnr_y_fp32": round(psnr["fp32"], 4),
             "difference_db": round(difference, 4), "within_0.05_db": abs(difference) < 0.05}]


class Skipped(Exception):
    """A part that cannot run here, for the reason given."""


def onnx_fp16(device: torch.device, size: dict, out: Path, work: Path) -> list[dict]:
    """Torch (in the precision `auto` picks) against the general model's fp16 ONNX export on onnxruntime (its CUDA provider on
    a GPU), one real-size LR image (a tiny one in a smoke run)."""
    try:
        import onnx, onnxruntime, onnxscript  # noqa: F401, E401 (the exporter's packages and the runtime)
    except ImportError as error:
        raise Skipped(f"{error.name} is not installed here (pip install onnx onnxscript onnxruntime-gpu)") from error
    from onnx_vs_torch import fp16_rows

    if device.type == "cuda" and "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        raise Skipped(f"this onnxruntime has no CUDA provider ({', '.join(onnxruntime.get_available_providers())})")
    model = load_model(out / "general" / "best.pt", torch.device("cpu"))
    lr_img = np.random.default_rng(0).integers(0, 256, (size["height"] // SCALE, size["width"] // SCALE, 3), np.uint8)
    return fp16_rows(model, lr_img, work, device, InferenceConfig().tile, repeats=3)


def print_table(title: str, rows: list[dict]) -> None:
    columns = [key for key in dict.fromkeys(key for row in rows for key in row) if key != "traceback"]  # in the JSON
    print(f"\n## {title}\n")
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for row in rows:
        print("| " + " | ".join("" if row.get(c) is None else str(row.get(c)).splitlines()[0] for c in columns) + " |")
    sys.stdout.flush()


def main() -> None:
    parser = argument_parser(__doc__, "python benchmarks/gpu_check.py")
    parser.add_argument("--data", type=Path, default=Path("../shared"), help="datasets/ and benchmarks/x4/ (see above)")
    parser.add_argument("--out", type=Path, required=True, help="where gpu_check.json and the general model go")
    parser.add_argument("--minutes", type=float, default=7.5, help="the whole run's time box")
    parser.add_argument("--parts", default=",".join(PARTS), help="the parts to run, by name, comma-separated")
    parser.add_argument("--general-minutes", type=float, default=None, help="the general model's training budget")
    parser.add_argument("--no-residual", action="store_true", help="the general model without the bicubic residual")
    parser.add_argument("--smoke", action="store_true", help="every part at tiny sizes on the CPU, synthetic data")
    args = parser.parse_args()
    start = time.monotonic()
    device = torch.device("cuda" if torch.cuda.is_available() and not args.smoke else "cpu")
    size = sizes(args.smoke)
    budget = size["minutes"] | ({"general": args.general_minutes} if args.general_minutes else {})
    report = {"command": " ".join(sys.argv), "smoke": args.smoke, "parts": []}
    wanted = {"environment", *args.parts.split(",")}
    if unknown := wanted - set(PARTS):
        parser.error(f"no part {', '.join(sorted(unknown))}; the parts: {', '.join(PARTS)}")
    results = args.out / "gpu_check.json"

    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        data = make_smoke_data(work / "data") if args.smoke else args.data

        def minutes_left() -> float:
            return args.minutes - (time.monotonic() - start) / 60

        def part(name: str, run: Callable[[float], list[dict]], minutes: float = 0.0) -> None:
            """Runs one part if asked for and `minutes` of the whole run's time box are left, records it
            (or why not) and prints it; `run` gets its deadline."""
            if name not in wanted:
                return
            entry = {"part": name}
            if minutes < 0 or minutes_left() < minutes:
                entry["status"] = f"skipped: {60 * minutes_left():.0f} s left of the time box"
            else:
                began = time.monotonic()
                try:
                    entry["rows"] = run(began + 60 * minutes)
                    failed = [row["setting"] for row in entry["rows"] if row.get("status", "").startswith("failed")]
                    entry["status"] = f"ok, but failed: {'; '.join(failed)}" if failed else "ok"
                except Skipped as reason:
                    entry["status"] = f"skipped: {reason}"
                except Exception as error:  # noqa: BLE001 (one part's failure must not cost the others' results)
                    entry["status"] = f"failed: {type(error).__name__}: {first_line(error)}"
                    entry["traceback"] = traceback.format_exc()
                entry["seconds"] = round(time.monotonic() - began, 1)
            report["parts"].append(entry)
            write_json(results, report)
            print_table(f"{name} ({entry['status']}, {entry.get('seconds', 0)} s)", entry.get("rows", []))

        part("environment", lambda deadline: environment(device))
        part("train_stage", lambda deadline: train_stage(device, size, work), budget["train_stage"])
        part("throughput", lambda deadline: throughput(device, size, work, deadline), budget["throughput"])
        part("host_overhead", lambda deadline: host_overhead(device, size, deadline), budget["host_overhead"])
        part("step_memory", lambda deadline: step_memory_rows(device, size, deadline), budget["step_memory"])
        part("batch_path", lambda deadline: batch_path(device, size), budget["batch_path"])
        part("real_scale", lambda deadline: real_scale(device, size, work), budget["real_scale"])
        # what is left after the parts that follow it, at most the general budget
        general_minutes = min(budget["general"], minutes_left() - budget["precision"] - budget["onnx_fp16"])
        part("general", lambda deadline: general(device, size, data, args.out, general_minutes,
                                                 not args.no_residual, work), general_minutes)
        part("precision", lambda deadline: precision_against_fp32(device, data, args.out), budget["precision"])
        part("onnx_fp16", lambda deadline: onnx_fp16(device, size, args.out, work), budget["onnx_fp16"])
    print(f"\n{results}: {sum(p['status'] == 'ok' for p in report['parts'])} of {len(report['parts'])} parts ok, "
          f"{time.monotonic() - start:.0f} s")


if __name__ == "__main__":
    main()
