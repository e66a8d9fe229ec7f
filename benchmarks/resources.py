"""What a job needs besides time: memory or disk for the decoded pairs, the files on disk, GPU memory
for one training step of a preset, and the submission's size.

    python benchmarks/resources.py                                    # the Kaggle job, presets/gpu.yaml
    python benchmarks/resources.py --pairs 4500 --test 500 --width 1920 --height 1080 --preset presets/gpu.yaml

    python benchmarks/resources.py --preset presets/reference.yaml   # its batch of 8 whole 480x270 images

Measured, on a few synthetic pairs of the given size (photographs from scikit-image, HR as opaque
RGBA PNG like the reference task's): the PNG files' sizes, the decoded arrays' bytes, and the size of
one submission row (the base64 of a PNG at `inference.png_compress_level` of the LR's bicubic
upscale, which stands in for a prediction: smoother than a screenshot, so it compresses as one).
The GPU memory of one training step of the preset, by arithmetic from what this machine's CPU
measures (see `step_bytes`): in fp32, fp32 with the residual blocks checkpointed, and under bf16
and fp16 autocast. Totals for --pairs and --test are these figures multiplied out.
"""

import base64
import tempfile
from pathlib import Path

import numpy as np
import torch

from real_scale import synthesize  # this folder is on the path when a script here runs
from sr_core.cli import argument_parser
from sr_core.config import load_params
from sr_core.data import load_pair
from sr_core.device import autocast
from sr_core.images import bicubic_upscale, encode_png
from sr_core.model import SRResNet
from sr_core.preset import preset_params, read_preset

REPO = Path(__file__).resolve().parent.parent


def saved_bytes(model: SRResNet, lr_shape: tuple[int, int, int, int], precision: str) -> int:
    """Bytes of the tensors autograd keeps from one forward pass of a training batch of `lr_shape`,
    each storage counted once (a tensor two operations save is one allocation)."""
    storages = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storages[tensor.untyped_storage().data_ptr()] = tensor.untyped_storage().nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor), \
            autocast(torch.device("cpu"), precision):
        model(torch.rand(lr_shape))
    return sum(storages.values())


def step_bytes(model: SRResNet, batch: int, lr_size: tuple[int, int], precision: str, checkpoint_blocks: bool = False
               ) -> tuple[int, int]:
    """(bytes, saved activations' bytes) of a training step of `batch` LR images of `lr_size`, by
    arithmetic from CPU measurements: autograd's saved tensors at batches of 1 and 2 of a 5x
    smaller image, extended in a line over the pixels and the batch (activations grow with both,
    the weights and their casts do not), plus the weights, their gradients and Adam's two moments.

    With `checkpoint_blocks`, the residual blocks as activation checkpointing would keep them: each
    block's input, and one block's activations at a time, recomputed in the backward pass."""
    small = (max(lr_size[0] // 5, 8), max(lr_size[1] // 5, 8))
    scale = lr_size[0] * lr_size[1] / (small[0] * small[1])
    blocks = model.blocks
    if checkpoint_blocks:
        model.blocks = torch.nn.Identity()  # what is saved outside them
    one, two = (saved_bytes(model, (n, 3, *small), precision) for n in (1, 2))
    model.blocks = blocks
    per_sample, fixed = two - one, 2 * one - two
    activations = fixed + batch * per_sample * scale
    if checkpoint_blocks:
        features = torch.rand(1, model.config.num_features, *small)
        block = saved_bytes(blocks[0], features.shape, precision) - saved_bytes(torch.nn.Identity(), features.shape,
                                                                                 precision)
        inputs = len(blocks) * features.numel() * (2 if precision in ("bf16", "fp16") else 4)
        activations += batch * scale * (block + inputs)
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    return int(activations + 4 * weights), int(activations)


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
    model = SRResNet(params.model).train()
    weights = sum(p.numel() for p in model.parameters()) * 4
    print(f"\n{args.preset.name}: {params.model.num_blocks}x{params.model.num_features}, {weights / 4:,.0f} parameters; "
          f"weights + Adam state + gradients {4 * weights / 1e6:.0f} MB")
    side = train.patch_size // params.model.scale
    lr_size = (side, side) if side else (args.height // params.model.scale, args.width // params.model.scale)
    samples = f"{train.batch_size} patches of {train.patch_size} px" if side else \
        f"{train.batch_size} whole images of {lr_size[1]}x{lr_size[0]} LR"
    print(f"a training step of {samples}, by arithmetic from CPU measurements (autograd's saved tensors, each "
          f"storage once, measured at batches of 1 and 2 and extended in a line; + weights, gradients, Adam): a GPU "
          f"adds cuDNN's workspaces and its allocator's slack, and the train stage logs its own measured figure\n")
    print("| precision | saved activations | a step in all |\n|---|---|---|")
    for precision, checkpoint_blocks in (("fp32", False), ("fp32", True), ("bf16", False), ("fp16", False)):
        total, activations = step_bytes(model, train.batch_size, lr_size, precision, checkpoint_blocks)
        name = precision + (", residual blocks checkpointed" if checkpoint_blocks else "")
        print(f"| {name} | {activations / 2**30:.2f} GiB ({activations / 1e9:.2f} GB) | "
              f"{total / 2**30:.2f} GiB ({total / 1e9:.2f} GB) |")

if __name__ == "__main__":
    main()
