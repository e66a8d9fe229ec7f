"""The host's work in a training step of presets/gpu.yaml: what a GPU waits on when its kernels are
short. Counted on the CPU, before and after the changes that remove it, in one run:

    python benchmarks/step_overhead.py

  before   the previous step: each residual block's output multiplied by `res_scale` even at 1,
           Adam in its foreach form (PyTorch's default on CUDA), and with EMA, torch's AveragedModel
  after    the train stage's step (sr_core.training.training_step): no multiply by 1, fused Adam
           (one kernel for every weight), and with EMA, one foreach lerp (training.WeightAverage)

For each, in fp32 and under bf16 autocast (an H100's precision, whose casts are operations too; timed
in fp32 only, since on a CPU bf16's own kernels take the time):
  ops      top-level aten operations of one step, the batch cut included (torch.profiler; the
           operations a top-level one runs inside it are not counted): on a GPU each launches
           one or more kernels. Counted on batches of 4 patches of 32 px: the operations are the
           same at any batch and patch size (the batch cut is 34 at a batch of 64 or 256)
  host us  microseconds a step on tiny batches (1 patch of 8 px), where the arithmetic is
           small and what is left is mostly the host's work: on a CPU, its kernels' own call
           overhead too (median of --steps steps, before and after taken in turn)

A GPU is bound by its host when the host's time a step exceeds the GPU's; what the GPU's time is
for this step is measured by benchmarks/gpu_check.py (part `host_overhead`), not here.
"""

import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.profiler import ProfilerActivity, profile

from batch_path import GPU_SETTING  # this folder is on the path when a script here runs
from sr_core.cli import argument_parser
from sr_core.device import autocast, grad_scaler
from sr_core.model import ResidualBlock, SRResNet
from sr_core.sampler import PatchBatcher
from sr_core.stores import ImageStore
from sr_core.training import WeightAverage, training_step

SCALE = 4


def previous_block_forward(self: ResidualBlock, x: torch.Tensor) -> torch.Tensor:
    """ResidualBlock.forward before: the multiply by `res_scale` ran at 1 too."""
    return x + self.res_scale * self.body(x)


class Step:
    """One training step as before or after, on batches cut by the train stage's batcher on `device`,
    the network compiled in `compile_mode` (as train.compile)."""

    def __init__(self, after: bool, precision: str, batch_size: int, patch_size: int, ema_decay: float = 0.0,
                 device: torch.device = torch.device("cpu"), compile_mode: str = "eager"):
        torch.manual_seed(0)
        self.after, self.precision, self.device, self.compile_mode = after, precision, device, compile_mode
        self.model = SRResNet(GPU_SETTING).to(device).train()
        if device.type == "cuda":
            self.model = self.model.to(memory_format=torch.channels_last)
        self.forward = self.model if compile_mode == "eager" else torch.compile(self.model, mode=compile_mode)
        rng = np.random.default_rng(0)
        side = max(patch_size // SCALE, 8)
        decoded = [(rng.integers(0, 256, (side, side, 3), np.uint8),
                    rng.integers(0, 256, (SCALE * side, SCALE * side, 3), np.uint8)) for _ in range(4)]
        self.batcher = PatchBatcher(ImageStore.from_arrays(decoded, SCALE, device), patch_size, True, device, seed=0,
                                    batch_size=batch_size)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=1e-4, **({"fused": True} if after else
                                                                              {"foreach": True}))
        self.scaler = grad_scaler(self.device, precision)
        self.ema = None
        if ema_decay:
            self.ema = (WeightAverage(self.model, ema_decay) if after else
                        AveragedModel(self.model, multi_avg_fn=get_ema_multi_avg_fn(ema_decay), use_buffers=True))

    def __call__(self) -> None:
        forward = ResidualBlock.forward
        if not self.after:
            ResidualBlock.forward = previous_block_forward
        try:
            if self.compile_mode == "reduce-overhead":
                torch.compiler.cudagraph_mark_step_begin()
            if self.after:
                training_step(self.forward, *self.batcher.sample(), F.l1_loss, self.optimizer, self.scaler,
                              self.precision)
            else:
                lr_img, hr_img = self.batcher.sample()
                with autocast(self.device, self.precision):
                    loss = F.l1_loss(self.forward(lr_img), hr_img)
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.optimizer.step()
            if self.ema is not None:
                self.ema.update() if self.after else self.ema.update_parameters(self.model)
        finally:
            ResidualBlock.forward = forward


def top_level_ops(step: Step) -> int:
    """aten operations of one step that no other aten operation runs."""
    step()  # the first step allocates Adam's state
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step()
    count = 0
    for event in prof.events():
        parent = event.cpu_parent
        while parent is not None and not parent.name.startswith("aten::"):
            parent = parent.cpu_parent
        count += event.name.startswith("aten::") and parent is None
    return count


def host_microseconds(steps: list[Step], rounds: int) -> list[float]:
    """Median microseconds a step of each of `steps`, timed in turn round after round, so that
    whatever else the machine does weighs on each alike."""
    for step in steps:
        for _ in range(3):
            step()
    times = [[] for _ in steps]
    for _ in range(rounds):
        for step, taken in zip(steps, times):
            start = time.perf_counter()
            step()
            taken.append(time.perf_counter() - start)
    return [1e6 * statistics.median(taken) for taken in times]


def main() -> None:
    parser = argument_parser(__doc__, "python benchmarks/step_overhead.py")
    parser.add_argument("--steps", type=int, default=200, help="timed tiny steps of each setting")
    parser.add_argument("--ema-decay", type=float, default=0.999, help="the EMA rows' decay")
    args = parser.parse_args()
    torch.set_num_threads(1)  # the host's work is one thread's; the arithmetic is not what is counted
    print(f"presets/gpu.yaml's network ({GPU_SETTING.num_blocks} x {GPU_SETTING.num_features}); operations counted on "
          f"batches of 4 patches of 32 px, time on batches of 1 of 8 px; one CPU thread\n")
    print("| setting | precision | ops before | ops after | removed | host us before | host us after | removed |")
    print("|---|---|---|---|---|---|---|---|")
    for ema_decay in (0.0, args.ema_decay):
        name = f"step, EMA {ema_decay}" if ema_decay else "step (presets/gpu.yaml: no EMA)"
        for precision in ("fp32", "bf16"):
            counts = [top_level_ops(Step(after, precision, 4, 32, ema_decay)) for after in (False, True)]
            timed = "| | | "  # on a CPU, bf16's own kernels take the time, not the host's dispatch
            if precision == "fp32":
                micros = host_microseconds([Step(after, precision, 1, 8, ema_decay) for after in (False, True)],
                                           args.steps)
                timed = f"{micros[0]:,.0f} | {micros[1]:,.0f} | {1 - micros[1] / micros[0]:.0%} |"
            print(f"| {name} | {precision} | {counts[0]} | {counts[1]} | {1 - counts[1] / counts[0]:.0%} | {timed}")

if __name__ == "__main__":
    main()
