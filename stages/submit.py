"""Stage submit: the Kaggle CSV from the predictions, then checked by decoding every row back."""

import logging

from sr_core.config import load_params
from sr_core.submission import check_submission, write_submission


def submit() -> None:
    params = load_params()
    paths = params.paths
    write_submission(params.data.test_lr_dir, paths.predictions, paths.submission)
    rows = check_submission(paths.submission, params.data.test_lr_dir, params.model.scale)
    logging.info("%s: %d rows, each decoded and checked", paths.submission, rows)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    submit()
