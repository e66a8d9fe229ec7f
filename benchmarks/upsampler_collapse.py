"""Why a network that adds its output to bicubic can end at exactly bicubic: what the first Adam
steps do to its upsampler, measured in one run.

    python benchmarks/upsampler_collapse.py --lr 5e-4                       # the reference network: dies
    python benchmarks/upsampler_collapse.py --lr 1e-3 --upsampler-activation none --warmup-steps 200

Trains one network (default: the reference script's 16x64 with `bicubic_residual`) with Adam and
L1 on random 64 px HR patches, batches of 16, from HR-only folders (LR by bicubic downscaling,
default the classic 291 images), and prints at chosen steps: the share of each upsampler stage's
activations that are positive on a fixed batch of 32 other patches (a ReLU at 0 % passes no
gradient, ever again), the mean |SR - bicubic| (the correction the network adds to bicubic), and
the SR patches' PSNR against bicubic's.
"""

import time

import torch
import torch.nn.functional as F
from torch import nn

from sr_core.cli import argument_parser
from sr_core.config import ModelConfig, TrainConfig
from sr_core.data import list_folder
from sr_core.model import SRResNet
from sr_core.sampler import PatchBatcher
from sr_core.schedule import Schedule
from sr_core.stores import ImageStore

REPORTED = (1, 5, 10, 20, 40, 100, 200, 400, 600, 1000)


def psnr(sr: torch.Tensor, hr: torch.Tensor) -> float:
    return (10 * torch.log10(1 / F.mse_loss(sr.clamp(0, 1), hr))).item()


@torch.no_grad()
def upsampler_alive(model: SRResNet, lr_img: torch.Tensor) -> list[float]:
    """For each upsampler stage, the share of its activations' outputs that are positive."""
    features = model.head(lr_img)
    features = features + model.body_tail(model.blocks(features))
    shares = []
    for layer in model.upsampler:
        features = layer(features)
        if not isinstance(layer, (nn.Conv2d, nn.PixelShuffle)):
            shares.append((features > 0).float().mean().item())
    return shares


def main() -> None:
    parser = argument_parser(__doc__.split("\n\n")[0], "python benchmarks/upsampler_collapse.py")
    parser.add_argument("--data", nargs="+", default=["../shared/datasets/T91", "../shared/datasets/BSD200"],
                        help="HR-only folders (each with hr/)")
    parser.add_argument("--lr", type=float, default=5e-4, help="Adam learning rate")
    parser.add_argument("--warmup-steps", type=int, default=0, help="linear warmup of the lr over this many steps")
    parser.add_argument("--steps", type=int, default=400, help="training steps")
    parser.add_argument("--num-blocks", type=int, default=16, help="residual blocks")
    parser.add_argument("--num-features", type=int, default=64, help="feature channels")
    parser.add_argument("--activation", default="relu", help="relu | prelu, in the head and blocks")
    parser.add_argument("--upsampler-activation", default="relu", help="relu | prelu | none, after each PixelShuffle")
    parser.add_argument("--no-batch-norm", action="store_true", help="residual blocks without BatchNorm")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the weights and the patches")
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    config = ModelConfig(num_blocks=args.num_blocks, num_features=args.num_features, bicubic_residual=True,
                         activation=args.activation, upsampler_activation=args.upsampler_activation,
                         batch_norm=not args.no_batch_norm)
    model = SRResNet(config)
    pairs = [pair for folder in args.data for pair in list_folder(folder)[0]]
    device = torch.device("cpu")
    store = ImageStore.decode(pairs, config.scale, device)
    val_lr, val_hr = PatchBatcher(store, 64, False, device, seed=args.seed + 1, batch_size=32).sample()
    bicubic = F.interpolate(val_lr, scale_factor=config.scale, mode="bicubic", align_corners=False)
    batcher = PatchBatcher(store, 64, True, device, seed=args.seed, batch_size=16)
    schedule = Schedule(TrainConfig(epochs=args.steps, warmup_epochs=args.warmup_steps, schedule="constant"), 1)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    print(f"{config}\nlr {args.lr}, warmup {args.warmup_steps} steps; bicubic {psnr(bicubic, val_hr):.3f} dB")
    print(f"{'step':>5} {'upsampler alive':>18} {'|SR - bicubic|':>15} {'PSNR - bicubic':>15}")
    start = time.perf_counter()
    for step in range(1, args.steps + 1):
        for group in optimizer.param_groups:
            group["lr"] = args.lr * schedule.learning_rate_factor(step - 1)
        model.train()
        lr_img, hr_img = batcher.sample()
        loss = F.l1_loss(model(lr_img), hr_img)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step in REPORTED or step == args.steps:
            model.eval()
            with torch.no_grad():
                sr = model(val_lr)
            alive = " ".join(f"{share:6.1%}" for share in upsampler_alive(model, val_lr)) or "(linear)"
            print(f"{step:5d} {alive:>18} {(sr - bicubic).abs().mean().item() * 255:11.2f}/255 "
                  f"{psnr(sr, val_hr) - psnr(bicubic, val_hr):+12.3f} dB", flush=True)
    print(f"{time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
