"""Stage demo_data: the bundled demo data set, from scikit-image's sample photographs."""

import logging

from sr_core.cli import run_stage
from sr_core.config import Params
from sr_core.demo import make_demo_data


def demo_data(params: Params) -> None:
    counts = make_demo_data(params.demo, params.model.scale)
    logging.info("wrote %(train_pairs)d training pairs and %(test_images)d test images", counts)


if __name__ == "__main__":
    run_stage(demo_data, __file__)
