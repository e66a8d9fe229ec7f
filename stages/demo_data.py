"""Stage demo_data: the bundled demo data set, from scikit-image's sample photographs."""

import logging

from sr_core.cli import run
from sr_core.config import load_params
from sr_core.demo import make_demo_data


def demo_data() -> None:
    params = load_params()
    counts = make_demo_data(params.demo, params.model.scale)
    logging.info("wrote %(train_pairs)d training pairs and %(test_images)d test images", counts)


if __name__ == "__main__":
    run(demo_data)
