"""Stage predict: every test LR image -> a 4x PNG of the same name, by `predict.model` (the .pt or
an export of it); with `submit.format: rle`, also the competition's cell of each (NAME.rle)."""

from sr_core.checkpoint import require_trained_with
from sr_core.cli import run_stage
from sr_core.competition import write_cell
from sr_core.config import Params
from sr_core.files import sha256_of
from sr_core.folders import require_folders
from sr_core.inference import inference_model, predict_folder


def predict(params: Params) -> None:
    require_folders(params, "data.test_lr_dir")
    model_path = params.predict.model
    require_trained_with(model_path, params)
    model = inference_model(model_path, params.inference, params.model.scale)
    predict_folder(model, params.data.test_lr_dir, params.paths.predictions, params.inference,
                   model_sha256=sha256_of(model_path), also=write_cell if params.submit.format == "rle" else None)


if __name__ == "__main__":
    run_stage(predict, __file__)
