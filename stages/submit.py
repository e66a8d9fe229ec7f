"""Stage submit: the Kaggle CSV from the predictions, checked by decoding every row back before it
is renamed into place."""

import logging

from sr_core.checkpoint import require_trained_with
from sr_core.cli import run_stage
from sr_core.config import Params, require_folders
from sr_core.files import sha256_of
from sr_core.submission import write_submission


def submit(params: Params) -> None:
    require_folders(params, "data.test_lr_dir")
    paths = params.paths
    require_trained_with(params.predict.model, params)
    rows = write_submission(params.data.test_lr_dir, paths.predictions, paths.submission, params.model.scale,
                            params.inference.workers, model_sha256=sha256_of(params.predict.model))
    logging.info("%s: %d rows, each decoded and checked", paths.submission, rows)


if __name__ == "__main__":
    run_stage(submit, __file__)
