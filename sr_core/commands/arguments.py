"""The `[MODEL] INPUT ...` arguments of the commands that run a model (sr-upscale, sr-benchmark)."""

import argparse
from pathlib import Path

from sr_core.checkpoint import OPTIONAL_MODEL_HELP, model_and_others


def add_model_and_inputs(parser: argparse.ArgumentParser, inputs: str) -> None:
    """The positional `[MODEL] INPUT ...`: a model file first (else the shipped one), then `inputs`."""
    parser.add_argument("paths", nargs="+", type=Path, metavar="PATH",
                        help=f"[MODEL] INPUT ...: {inputs}; {OPTIONAL_MODEL_HELP}")


def model_and_inputs(parser: argparse.ArgumentParser, paths: list[Path], what: str) -> tuple[Path | None, list[Path]]:
    """The model (None: the shipped one) and the inputs of `add_model_and_inputs`; a model with no
    input after it is a usage error saying what to give."""
    model_path, inputs = model_and_others(paths)
    if not inputs:
        parser.error(f"give the {what} after the model {model_path}")
    return model_path, inputs
