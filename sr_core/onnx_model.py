"""Running an exported ONNX model (see `export`) with onnxruntime, in place of the PyTorch model.

`OnnxModel` offers what inference uses of an `SRResNet` (`config`, `device`, a call on an
(N, 3, H, W) float batch), so tiling, batching, the alpha and size checks and PNG writing are the
same code for both. Batches go in and come out through host memory whatever provider runs them.
onnxruntime is imported only when an ONNX model is loaded: everything else runs without it.
"""

import json
from pathlib import Path

import numpy as np
import torch

from sr_core.config import ModelConfig, build

MODEL_CONFIG_KEY = "sr_core.model_config"  # metadata entry of an export: the model config as JSON
INPUT_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16}


class OnnxModel:
    """An onnxruntime session of an exported SRResNet, called like the PyTorch model."""

    device = torch.device("cpu")  # where its input and output tensors live

    def __init__(self, session, config: ModelConfig):
        self.session = session
        self.config = config
        self.input_dtype = INPUT_TYPES[session.get_inputs()[0].type]

    def __call__(self, lr_img: torch.Tensor) -> torch.Tensor:
        (sr_img,) = self.session.run(None, {"input": lr_img.numpy().astype(self.input_dtype, order="C", copy=False)})
        return torch.from_numpy(sr_img)


def onnxruntime_has_cuda() -> bool:
    """Whether the installed onnxruntime runs on CUDA (onnxruntime-gpu); False without onnxruntime."""
    try:
        import onnxruntime
    except ImportError:
        return False
    return "CUDAExecutionProvider" in onnxruntime.get_available_providers()


def providers(device: torch.device) -> list:
    """onnxruntime's providers for `device`: its CUDA provider (on that GPU) for CUDA, else the CPU's."""
    import onnxruntime

    if device.type != "cuda":
        return ["CPUExecutionProvider"]
    if not onnxruntime_has_cuda():
        raise ValueError(f"device {device} asked for, but this onnxruntime runs only on "
                         f"{', '.join(onnxruntime.get_available_providers())}: install onnxruntime-gpu, "
                         f"or run on the CPU with --device cpu")
    return [("CUDAExecutionProvider", {"device_id": device.index or 0}), "CPUExecutionProvider"]


def check_signature(path: str | Path, session) -> None:
    """Refuses a model that does not map one (N, 3, H, W) float batch to one (N, 3, H', W') batch."""
    inputs, outputs = session.get_inputs(), session.get_outputs()
    for kind, args in (("input", inputs), ("output", outputs)):
        if len(args) != 1:
            raise ValueError(f"{path}: not a super-resolution model: it has {len(args)} {kind}s, not one image batch")
        arg = args[0]
        if len(arg.shape) != 4 or arg.shape[1] != 3:
            raise ValueError(f"{path}: not a super-resolution model: its {kind} {arg.name!r} is {arg.shape}, "
                             f"not (N, 3, height, width)")
        if arg.type not in INPUT_TYPES:
            raise ValueError(f"{path}: its {kind} {arg.name!r} holds {arg.type}, not float or float16")
    if inputs[0].name != "input":
        raise ValueError(f"{path}: its input is named {inputs[0].name!r}; exports of sr-export "
                         f"name it 'input'")


def load_onnx(path: str | Path, device: torch.device) -> OnnxModel:
    """The ONNX model at `path` as an `OnnxModel` running on `device`; ValueError naming the file
    when it cannot be read, is not an image-to-image model, or carries no model config."""
    try:
        import onnxruntime
    except ImportError as error:
        raise ValueError(f"{path}: running ONNX models needs onnxruntime (pip install onnxruntime)") from error
    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # errors only: its warnings about unused initializers are not the user's
    chosen = providers(device)
    try:
        session = onnxruntime.InferenceSession(str(path), options, providers=chosen)
    except Exception as error:  # noqa: BLE001 (onnxruntime raises its own classes for every kind of bad file)
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ValueError(f"{path}: not an ONNX model, or damaged ({reason})") from error
    check_signature(path, session)
    metadata = session.get_modelmeta().custom_metadata_map
    if MODEL_CONFIG_KEY not in metadata:
        raise ValueError(f"{path}: an ONNX model without {MODEL_CONFIG_KEY!r} in its metadata; this project runs "
                         f"the models sr-export writes, whose tiling needs that config")
    try:
        config = build(ModelConfig, json.loads(metadata[MODEL_CONFIG_KEY]), f"{path}: {MODEL_CONFIG_KEY}")
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: its {MODEL_CONFIG_KEY} metadata is not JSON ({error})") from error
    return OnnxModel(session, config)
