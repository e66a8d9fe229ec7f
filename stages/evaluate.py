"""Stage evaluate: the best model and bicubic on the val split and `evaluate.benchmarks`."""

from sr_core.evaluation import benchmark, load_sets
from sr_core.checkpoint import require_trained_with
from sr_core.cli import run_stage
from sr_core.config import Params
from sr_core.data import read_split
from sr_core.folders import require_folders
from sr_core.inference import inference_model


def evaluate(params: Params) -> None:
    require_folders(params, "evaluate.benchmarks")
    paths, scale, config = params.paths, params.model.scale, params.evaluate
    data = params.data
    _, val_pairs = read_split(paths.split, data.train_lr_dir, data.train_hr_dir, data.extra_train_dirs)
    sets = {"val": val_pairs} | load_sets(config.benchmarks)
    require_trained_with(paths.model, params)
    model = inference_model(paths.model, params.inference, scale)
    benchmark(model, sets, scale, params.inference, config.num_samples, config.sample_crop,
              paths.eval_images, paths.eval_metrics, paths.eval_samples)


if __name__ == "__main__":
    run_stage(evaluate, __file__)
