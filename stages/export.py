"""Stage export: the best model as ONNX and safetensors, each checked against it when written."""

from sr_core.checkpoint import require_trained_with
from sr_core.cli import run_stage
from sr_core.config import Params
from sr_core.export import export


def export_model(params: Params) -> None:
    paths = params.paths
    require_trained_with(paths.model, params)
    export(paths.model, paths.onnx, paths.safetensors)


if __name__ == "__main__":
    run_stage(export_model, __file__)
