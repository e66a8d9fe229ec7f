"""The model for use outside this project: ONNX for any runtime, safetensors for any framework
(the export stage and `sr-export`).

- ONNX (opset 18): input `input`, (N, 3, H, W) float in 0..1 (RGB); output `output`, (N, 3,
  scale*H, scale*W), not clamped; N, H and W are dynamic. BatchNorm is folded into the
  convolutions. The fp16 file takes and gives float16.
- safetensors: the weights as the .pt holds them, no code; loadable without pickle.

Both carry the model config as JSON under the metadata key `sr_core.model_config`. Each file is
checked against the PyTorch model before it is moved into place (on batches of odd sizes) and is
refused if they disagree; the agreement is printed.
"""

import copy
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from sr_core.checkpoint import build_model, load_model, read_safetensors
from sr_core.files import atomic_write
from sr_core.model import SRResNet
from sr_core.onnx_model import MODEL_CONFIG_KEY, OnnxModel, load_onnx

log = logging.getLogger(__name__)

OPSET = 18
CHECK_SHAPES = ((2, 17, 23), (1, 40, 28))  # (N, H, W) of the check batches: odd sizes, a batch, the dynamic axes
TOLERANCE = {torch.float32: 1e-4, torch.float16: 5e-3}  # max abs difference from PyTorch's fp32 output


@dataclass(frozen=True)
class Agreement:
    """How an export's outputs compare with the PyTorch model's on the check batches."""

    max_abs: float  # of the float outputs
    uint8_equal: float  # fraction of the outputs rounded to 8 bits that are equal
    uint8_max_diff: int

    def __str__(self) -> str:
        return (f"max abs difference {self.max_abs:.2e}, {100 * self.uint8_equal:.3f} % of 8-bit values equal, "
                f"none off by more than {self.uint8_max_diff}")


def to_uint8(img: torch.Tensor) -> torch.Tensor:
    return img.float().clamp(0, 1).mul(255).round().to(torch.int16)


@torch.no_grad()
def agreement(reference: SRResNet, exported: SRResNet | OnnxModel) -> Agreement:
    """`exported`'s outputs against `reference`'s (fp32, CPU) on seeded random batches of CHECK_SHAPES."""
    generator = torch.Generator().manual_seed(0)
    max_abs, equal, total, max_diff = 0.0, 0, 0, 0
    for n, h, w in CHECK_SHAPES:
        lr_img = torch.rand((n, 3, h, w), generator=generator)
        want, got = reference(lr_img), exported(lr_img).float()
        if got.shape != want.shape:
            raise ValueError(f"the export's output is {tuple(got.shape)} for an input of {(n, 3, h, w)}, "
                             f"not {tuple(want.shape)}")
        max_abs = max(max_abs, (got - want).abs().max().item())
        diff = (to_uint8(got) - to_uint8(want)).abs()
        equal, total, max_diff = equal + (diff == 0).sum().item(), total + diff.numel(), max(max_diff, diff.max().item())
    return Agreement(max_abs, equal / total, max_diff)


def write_checked(path: Path, data: bytes, reference: SRResNet, load, tolerance: float) -> Agreement:
    """Writes `data` to `path` atomically once the model `load` reads back from the written file
    agrees with `reference` to `tolerance`; otherwise leaves `path` as it was and raises."""
    found = []

    def check(written: Path) -> None:
        found.append(agreement(reference, load(written)))
        if found[0].max_abs > tolerance:
            raise ValueError(f"{path}: not written: the export disagrees with the PyTorch model "
                             f"({found[0]}; at most {tolerance:g} is accepted)")

    with atomic_write(path, check=check) as f:
        f.write(data)
    log.info("%s: %s", path, found[0])
    return found[0]


def onnx_bytes(model: SRResNet, dtype: torch.dtype = torch.float32) -> bytes:
    """The model as an ONNX file (see the module's docstring), carrying its config as metadata."""
    import onnx  # here, not above: the rest of the project runs without the exporter's packages

    for chatty in ("onnxscript", "onnx_ir"):  # their optimiser logs every pass at INFO
        logging.getLogger(chatty).setLevel(logging.WARNING)
    network = copy.deepcopy(model).eval().to(dtype)
    example = torch.rand(1, 3, 32, 32, dtype=dtype)
    dynamic = {0: torch.export.Dim("batch"), 2: torch.export.Dim("height"), 3: torch.export.Dim("width")}
    program = torch.onnx.export(network, (example,), dynamo=True, input_names=["input"], output_names=["output"],
                                dynamic_shapes=(dynamic,), opset_version=OPSET, verbose=False)
    proto = program.model_proto
    onnx.helper.set_model_props(proto, {MODEL_CONFIG_KEY: json.dumps(model.config.model_dump())})
    return proto.SerializeToString()


def safetensors_bytes(model: SRResNet) -> bytes:
    """The model's weights as a safetensors file, its config in the metadata."""
    from safetensors.torch import save

    state_dict = {key: value.detach().cpu().contiguous() for key, value in model.state_dict().items()}
    return save(state_dict, metadata={MODEL_CONFIG_KEY: json.dumps(model.config.model_dump())})


def export_onnx(model: SRResNet, path: str | Path, fp16: bool = False) -> Agreement:
    """Writes the ONNX file of `model` (on the CPU; fp16 with `fp16`) once onnxruntime's CPU
    provider, running it, agrees with the PyTorch model."""
    dtype = torch.float16 if fp16 else torch.float32
    return write_checked(Path(path), onnx_bytes(model, dtype), model.eval(),
                         lambda written: load_onnx(written, torch.device("cpu")), TOLERANCE[dtype])


def export_safetensors(model: SRResNet, path: str | Path) -> Agreement:
    """Writes the safetensors file of `model` (on the CPU) once the model rebuilt from it agrees
    with the PyTorch model."""
    return write_checked(Path(path), safetensors_bytes(model), model.eval(),
                         lambda written: build_model(written, *read_safetensors(written)), TOLERANCE[torch.float32])


def export(model_path: str | Path, onnx_path: str | Path, safetensors_path: str | Path,
           fp16_path: str | Path | None = None) -> None:
    """Exports the model checkpoint at `model_path` to each of the paths given."""
    model = load_model(model_path, torch.device("cpu"))
    if not isinstance(model, SRResNet):
        raise ValueError(f"{model_path}: already an ONNX export; export the .pt or .safetensors it came from")
    export_onnx(model, onnx_path)
    export_safetensors(model, safetensors_path)
    if fp16_path is not None:
        export_onnx(model, fp16_path, fp16=True)
