"""How a device runs the network: which device, in which precision, with which backend flags, and
whether the installed torch has kernels for the GPU at all. Training, validation and inference
all decide here, so they agree, and each choice comes with its reason for the log.

Precision (`train.precision`, `inference.precision`): `auto` takes the fastest one the device
computes well (bf16 from sm_80; fp16 with loss scaling on sm_60, sm_70 and sm_75, whose fp16 runs
at least twice their fp32 rate, on tensor cores from sm_70; fp32 on the CPU and on other GPUs).
`bf16`, `fp16` and `fp32` are taken as asked, on the CPU too (CPU autocast computes both), except
bf16 on a GPU without it, which is refused rather than emulated slowly.
"""

import os
import re
from importlib.metadata import version

import torch

from sr_core.config import PRECISIONS

AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
FAST_FP16 = ((6, 0), (6, 2), (7, 0), (7, 2), (7, 5))  # before sm_80; sm_61 (P40, GTX 10xx) runs fp16 at 1/64 of fp32
LEGACY_INDEX = "https://download.pytorch.org/whl/cu126"  # PyTorch's CUDA 12.6 builds: kernels for sm_50 to sm_90


def pick_device(name: str = "auto") -> torch.device:
    """'auto' is CUDA when present, else CPU; 'cpu', 'cuda' or 'cuda:N' are taken as given. A GPU
    whose kernels this torch lacks is refused here, before any data are read (`require_kernels`)."""
    if name == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        try:
            device = torch.device(name)
        except RuntimeError as error:
            raise ValueError(f"device must be auto, cpu, cuda or cuda:N; got {name!r}") from error
    require_kernels(device)
    return device


def card(device: torch.device) -> str:
    """The GPU's name and compute capability, e.g. 'Tesla T4 (sm_75)'."""
    major, minor = torch.cuda.get_device_capability(device)
    return f"{torch.cuda.get_device_name(device)} (sm_{major}{minor})"


def has_kernels(capability: tuple[int, int], arch_list: list[str]) -> bool:
    """Whether a build compiled for `arch_list` (torch.cuda.get_arch_list(): 'sm_75', 'compute_120',
    ...) runs on a GPU of `capability`: a binary for the same major version and a minor one no
    higher, or PTX for an older or equal capability, which the driver compiles."""
    major, minor = capability
    for arch in arch_list:
        kind, _, digits = arch.partition("_")
        number = int(re.sub(r"\D", "", digits) or 0)
        if kind == "sm" and number // 10 == major and number % 10 <= minor:
            return True
        if kind == "compute" and number <= 10 * major + minor:
            return True
    return False


def require_kernels(device: torch.device) -> None:
    """Refuses, in one line, a GPU that the installed torch was not built for ("no kernel image is
    available" at the first kernel otherwise), naming the card and the build that has its kernels."""
    if device.type != "cuda":
        return
    capability, arch_list = torch.cuda.get_device_capability(device), torch.cuda.get_arch_list()
    if has_kernels(capability, arch_list):
        return
    built_for = ", ".join(arch_list) or "no GPU"
    if (5, 0) <= capability < (7, 5):
        versions = f"torch=={version('torch').split('+')[0]} torchvision=={version('torchvision').split('+')[0]}"
        route = (f"PyTorch's CUDA 12.6 build, which has them: pip install {versions} --index-url {LEGACY_INDEX} "
                 f"(or keep a torch that runs on this card, such as a notebook's: pip install -e . without the constraints)")
    else:
        route = "a PyTorch build for it (pytorch.org, Get started)"
    raise ValueError(f"{card(device)} is not among the GPUs this torch {torch.__version__} has kernels for "
                     f"({built_for}): install {route}")


def resolve_precision(requested: str, device: torch.device) -> tuple[str, str]:
    """The precision `requested` (one of `PRECISIONS`) runs in on `device`, and why."""
    if requested not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}; got {requested!r}")
    if device.type != "cuda":
        if requested == "auto":
            return "fp32", "auto on the CPU: fp32, its fast path (autocast to bf16 or fp16 is slower on most CPUs)"
        return requested, f"{requested} as set, CPU autocast"
    capability, name = torch.cuda.get_device_capability(device), card(device)
    if requested == "bf16" and capability < (8, 0):
        raise ValueError(f"precision bf16: {name} has no bf16 units (sm_80 and newer have): set auto "
                         f"({'fp16' if capability in FAST_FP16 else 'fp32'} on this card) or fp16 or fp32")
    if requested != "auto":
        return requested, f"{requested} as set, on {name}"
    if capability >= (8, 0):
        return "bf16", f"auto on {name}: bf16, native from sm_80, no loss scaling needed"
    if capability in FAST_FP16:
        return "fp16", f"auto on {name}: fp16 with loss scaling (no bf16 before sm_80; fp16 runs faster than fp32 here)"
    return "fp32", f"auto on {name}: fp32 (no bf16, and fp16 is slow on this card)"


def autocast(device: torch.device, precision: str) -> torch.autocast:
    """Autocast to `precision` (resolved: bf16, fp16 or fp32, which turns it off) on `device`.
    Convolutions run in the low precision; BatchNorm statistics and the loss stay float32."""
    dtype = AUTOCAST_DTYPES.get(precision, torch.float32)
    return torch.autocast(device.type, dtype=dtype, enabled=precision in AUTOCAST_DTYPES)


def grad_scaler(device: torch.device, precision: str) -> torch.amp.GradScaler:
    """The loss scaler fp16 needs (its 5 exponent bits underflow small gradients); a no-op otherwise.
    It skips a step whose gradients overflow and lowers the scale, so fp16 never applies an inf."""
    return torch.amp.GradScaler(device.type, enabled=precision == "fp16")


def set_tf32(device: torch.device, tf32: bool) -> bool:
    """TF32 for this process's float32 convolutions and matrix products, or IEEE float32 (PyTorch's
    own default is on for convolutions and off for matrix products). Whether it is in effect."""
    # the flags torch.export and others still read (the per-operator fp32_precision settings, set to
    # "ieee", make reading them fail)
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    return tf32 and device.type == "cuda" and torch.cuda.get_device_capability(device) >= (8, 0)


def set_backends(device: torch.device, tf32: bool, deterministic: bool) -> dict[str, bool]:
    """Sets this process's flags for training: TF32 (`set_tf32`), and with `deterministic`,
    deterministic algorithms only, cuDNN's benchmark off; else benchmark on, which picks the fastest
    algorithms but not always the same ones. Returns what is in effect, for the metrics and the
    checkpoint."""
    cuda = device.type == "cuda"
    in_effect = set_tf32(device, tf32)
    torch.backends.cudnn.benchmark = cuda and not deterministic
    torch.backends.cudnn.deterministic = deterministic
    if deterministic and cuda:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS's deterministic workspaces
    torch.use_deterministic_algorithms(deterministic)
    return {"tf32": in_effect, "deterministic": deterministic}
