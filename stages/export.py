"""Stage export: the best model as ONNX and safetensors, each checked against it when written."""

from sr_core.cli import run
from sr_core.config import load_params
from sr_core.export import export


def export_model() -> None:
    paths = load_params().paths
    export(paths.model, paths.onnx, paths.safetensors)


if __name__ == "__main__":
    run(export_model)
