"""Stage submit: the Kaggle CSV from the predictions, checked by decoding every row back before it
is renamed into place: the reference script's file (`submit.format: png`) or the SRGD competition's
(`rle`, in the rows and order of `data.sample_submission`)."""

import logging

from sr_core.checkpoint import require_trained_with
from sr_core.cli import run_stage
from sr_core.competition import write_competition_submission
from sr_core.config import Params
from sr_core.files import sha256_of
from sr_core.folders import require_folders
from sr_core.submission import write_submission


def submit(params: Params) -> None:
    require_folders(params, "data.test_lr_dir")
    paths = params.paths
    require_trained_with(params.predict.model, params)
    model_sha256 = sha256_of(params.predict.model)
    if params.submit.format == "rle":
        rows = write_competition_submission(params.data.test_lr_dir, paths.predictions, paths.submission,
                                            params.model.scale, model_sha256, params.data.sample_submission or None,
                                            params.inference.workers)
    else:
        rows = write_submission(params.data.test_lr_dir, paths.predictions, paths.submission, params.model.scale,
                                params.inference.workers, model_sha256=model_sha256)
    logging.info("%s: %d rows, each decoded and checked", paths.submission, rows)


if __name__ == "__main__":
    run_stage(submit, __file__)
