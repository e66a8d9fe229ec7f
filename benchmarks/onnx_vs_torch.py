"""One model through the project's PyTorch path and through onnxruntime, timed in one run.

    python benchmarks/onnx_vs_torch.py            # the reference network at the real LR size, 480x270
    python benchmarks/onnx_vs_torch.py --blocks 4 --features 32 --width 96 --height 64 --repeats 1   # a quick look

Each runs `inference.upscale` on the same LR image (the same tiling, rounding and batching); only
the network differs:

  torch                     the PyTorch model; its NHWC input makes the convolutions channels_last
  onnxruntime               the ONNX export as `load_model` runs it: all graph optimisations (the
                            NCHWc layout among them), one thread per core
  onnxruntime, no layout    graph optimisations short of the layout transform (ORT_ENABLE_EXTENDED)
  onnxruntime, 1 thread     the default session on one thread

and prints seconds per output image (1920x1080 at the default size) with each one's speed against
torch, and the export's agreement with the PyTorch model. The network is the reference script's
(16 blocks, 64 features, BatchNorm, ReLU) with random weights: speed does not depend on them.
`benchmarks/gpu_check.py` runs `fp16_rows` on a GPU: the fp16 export on onnxruntime's CUDA
provider against torch in the precision `auto` picks there (bf16 or fp16).
"""

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime
import torch

from sr_core.config import ModelConfig
from sr_core.device import resolve_precision
from sr_core.export import export_onnx
from sr_core.inference import upscale
from sr_core.model import SRResNet
from sr_core.onnx_model import OnnxModel, load_onnx


def seconds(run, repeats: int) -> float:
    """The fastest of `repeats` timed calls of `run`, after one untimed call (warm-up)."""
    run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def session(path: Path, level: onnxruntime.GraphOptimizationLevel, threads: int = 0) -> OnnxModel:
    options = onnxruntime.SessionOptions()
    options.graph_optimization_level, options.intra_op_num_threads = level, threads
    model = load_onnx(path, torch.device("cpu"))
    return OnnxModel(onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"]), model.config)


def cpu_rows(model: SRResNet, lr_img: np.ndarray, onnx_path: Path, tile: int, repeats: int) -> list[dict]:
    """Seconds per image of each CPU path, and its speed against torch's."""
    levels = onnxruntime.GraphOptimizationLevel
    paths = {
        "torch": model,
        "onnxruntime": load_onnx(onnx_path, torch.device("cpu")),
        "onnxruntime, no layout": session(onnx_path, levels.ORT_ENABLE_EXTENDED),
        "onnxruntime, 1 thread": session(onnx_path, levels.ORT_ENABLE_ALL, threads=1),
    }
    timed = {name: seconds(lambda network=network: upscale(network, lr_img, tile), repeats)
             for name, network in paths.items()}
    return [{"path": name, "seconds": round(s, 3), "vs torch": round(timed["torch"] / s, 2)} for name, s in timed.items()]


def fp16_rows(model: SRResNet, lr_img: np.ndarray, work: Path, device: torch.device, tile: int, repeats: int
              ) -> list[dict]:
    """On `device`: torch in the precision `auto` picks there (bf16 or fp16 on a GPU, fp32 on a CPU)
    against the fp16 export on onnxruntime (its CUDA provider for CUDA): seconds per image, speed
    against torch, and the export's agreement."""
    fp16_path = work / "model.fp16.onnx"
    check = export_onnx(model.cpu(), fp16_path, fp16=True)
    onnx_model = load_onnx(fp16_path, device)
    torch_model = model.to(device)
    precision = resolve_precision("auto", device)[0]
    timed = {f"torch {precision}": seconds(lambda: upscale(torch_model, lr_img, tile, precision), repeats),
             f"onnxruntime fp16 ({onnx_model.session.get_providers()[0]})":
                 seconds(lambda: upscale(onnx_model, lr_img, tile), repeats)}
    return [{"path": name, "seconds": round(s, 4), "vs torch": round(timed[f"torch {precision}"] / s, 2),
             "export_max_abs": check.max_abs, "export_uint8_equal": round(check.uint8_equal, 5)}
            for name, s in timed.items()]


def reference_network(blocks: int = 16, features: int = 64) -> SRResNet:
    torch.manual_seed(0)
    return SRResNet(ModelConfig(num_blocks=blocks, num_features=features, batch_norm=True, bicubic_residual=False,
                                activation="relu", upsampler_activation="relu")).eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--blocks", type=int, default=16)
    parser.add_argument("--features", type=int, default=64)
    parser.add_argument("--width", type=int, default=480, help="LR width")
    parser.add_argument("--height", type=int, default=270, help="LR height")
    parser.add_argument("--tile", type=int, default=512, help="as inference.tile")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    model = reference_network(args.blocks, args.features)
    lr_img = np.random.default_rng(0).integers(0, 256, (args.height, args.width, 3), dtype=np.uint8)
    with tempfile.TemporaryDirectory() as work:
        onnx_path = Path(work) / "model.onnx"
        print(f"export: {export_onnx(model, onnx_path)}")
        rows = cpu_rows(model, lr_img, onnx_path, args.tile, args.repeats)
    print(f"{args.blocks}x{args.features} network, LR {args.width}x{args.height} -> {4 * args.width}x{4 * args.height}, "
          f"{torch.get_num_threads()} torch threads, onnxruntime {onnxruntime.__version__}, torch {torch.__version__}")
    for row in rows:
        print(f"  {row['path']:<24} {row['seconds']:8.3f} s per image   {row['vs torch']:.2f}x torch")


if __name__ == "__main__":
    main()
