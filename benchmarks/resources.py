"""What a job needs besides time: memory or disk for the decoded pairs, the files on disk, GPU memory
for one training step of a preset, and the submission's size.

    python benchmarks/resources.py                                    # the Kaggle job, presets/gpu.yaml
    python benchmarks/resources.py --pairs 4500 --test 500 --width 1920 --height 1080 --preset presets/gpu.yaml

Measured, on a few synthetic pairs of the given size (photographs from scikit-image, HR as opaque
RGBA PNG like the reference task's): the PNG files' sizes, the decoded arrays' bytes, and the size of
one submission row (the base64 of a PNG at `inference.png_compress_level` of the LR's bicubic
upscale, which stands in for a prediction: smoother than a screenshot, so it compresses as one). Measured on
this machine's CPU: the tensors one training step of the preset's network keeps for the backward
pass (autograd's saved tensors, in fp32 and under bf16 autocast), which is what grows with the
batch on a GPU; the GPU adds the weights, Adam's state, cuDNN workspaces and its allocator's slack,
which this script cannot see (stated as such). Totals for --pairs and --test are these figures
multiplied out.
"""

import base64
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from real_scale import synthesize  # this folder is on the path when a script here runs
from sr_core.cli import argument_parser
from sr_core.config import load_params
from sr_core.data import load_pair
from sr_core.images import bicubic_upscale, encode_png
from sr_core.model import SRResNet
from sr_core.preset import preset_params, read_preset

REPO = Path(__file__).resolve().parent.parent


def saved_bytes(model: SRResNet, batch: int, lr_side: int, bf16: bool) -> int:
    """Bytes of the tensors autograd keeps from one forward pass of a training batch."""
    total = 0

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        nonlocal total
        total += tensor.numel() * tensor.element_size()
        return tensor

    lr = torch.rand(batch, 3, lr_side, lr_side)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor), \
            torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        loss = F.l1_loss(model(lr), torch.rand(batch, 3, 4 * lr_side, 4 * lr_side))
    loss.backward()
    return total


def main() -> None:
    parser = argument_parser(__doc__, "python benchmarks/resources.py")
    parser.add_argument("--pairs", type=int, default=4500, help="training pairs of the job (train and val)")
    parser.add_argument("--test", type=int, default=500, help="test images of the job")
    parser.add_argument("--width", type=int, default=1920, help="HR width")
    parser.add_argument("--height", type=int, default=1080, help="HR height")
    parser.add_argument("--samples", type=int, default=3, help="synthetic pairs measured")
    parser.add_argument("--preset", type=Path, default=REPO / "presets" / "gpu.yaml", help="the training setting")
    args = parser.parse_args()
    params = preset_params(read_preset(args.preset), REPO / "params.yaml", str(args.preset))
    level = load_params(REPO / "params.yaml").inference.png_compress_level
    with tempfile.TemporaryDirectory() as folder:
        pairs = synthesize(Path(folder), args.samples, args.width, args.height)
        files = np.mean([pair.hr_path.stat().st_size + pair.lr_path.stat().st_size for pair in pairs])
        decoded = np.mean([sum(image.nbytes for image in load_pair(pair, 4)) for pair in pairs])
        # a prediction is smoother than a screenshot, so it is stood in for by the LR's bicubic upscale
        row = np.mean([len(base64.b64encode(encode_png(bicubic_upscale(load_pair(pair, 4)[0], 4), level)))
                       for pair in pairs])
    print(f"per pair of {args.width}x{args.height}: PNG files {files / 1e6:.2f} MB, decoded {decoded / 1e6:.2f} MB")
    print(f"{args.pairs} pairs: PNG files {args.pairs * files / 1e9:.1f} GB; decoded {args.pairs * decoded / 1e9:.1f} GB "
          f"(in RAM when it fits in half the free memory, else memory-mapped files in paths.decode_cache)")
    print(f"submission: {row / 1e6:.2f} MB a row (PNG level {level}, base64), "
          f"{args.test} rows {args.test * row / 1e9:.2f} GB")
    train = params.train
    model = SRResNet(params.model)
    weights = sum(p.numel() for p in model.parameters()) * 4
    side = train.patch_size // params.model.scale if train.patch_size else None
    print(f"\n{args.preset.name}: {params.model.num_blocks}x{params.model.num_features}, {weights / 4:,.0f} parameters; "
          f"weights + Adam state + gradients {4 * weights / 1e6:.0f} MB")
    if side is None:
        print("whole-image training: activations scale with the image; run with a patch preset")
        return
    per_patch = {bf16: saved_bytes(model, 2, side, bf16) / 2 for bf16 in (False, True)}
    for bf16, name in ((False, "fp32"), (True, "bf16 autocast")):
        print(f"saved activations, {name}: {per_patch[bf16] / 1e6:.2f} MB a {train.patch_size} px patch, "
              f"{train.batch_size * per_patch[bf16] / 1e9:.2f} GB a batch of {train.batch_size} "
              f"(measured on the CPU; a GPU adds cuDNN workspace and allocator slack)")


if __name__ == "__main__":
    main()
