"""Benchmarking a checkpoint against bicubic on sets of paired images (Set5, Set14, BSD100, the
val split, ...): per-image rows to a CSV, per-set means to a JSON, centre crops to a figure.

The evaluate stage runs it on the val split plus `evaluate.benchmarks`; as a command:

    sr-benchmark models/best.pt data/benchmarks/x4/Set5 --out results
    sr-benchmark data/benchmarks/x4/Set5 --self-ensemble    # the general model that comes with the package
"""

from pathlib import Path

from sr_core.cli import argument_parser, run
from sr_core.commands.arguments import add_model_and_inputs, model_and_inputs
from sr_core.config import EvaluateConfig
from sr_core.evaluation import benchmark, load_sets
from sr_core.inference import add_arguments, config_from, inference_model


def main(argv: list[str] | None = None) -> None:
    parser = argument_parser(__doc__, "sr-benchmark")
    add_model_and_inputs(parser, "folders with hr/ and optionally lr/")
    parser.add_argument("--out", type=Path, default=Path("benchmark"),
                        help="the folder the per-image CSV, the per-set JSON and the figure go to")
    add_arguments(parser)
    parser.add_argument("--num-samples", type=int, default=EvaluateConfig().num_samples, help="images per set in the figure")
    parser.add_argument("--crop", type=int, default=EvaluateConfig().sample_crop,
                        help="HR side of each crop in the figure")
    args = parser.parse_args(argv)
    model_path, folders = model_and_inputs(parser, args.paths, "folders to benchmark")
    inference = config_from(args)
    model = inference_model(model_path, inference)
    benchmark(model, load_sets(folders), model.config.scale, inference, args.num_samples, args.crop,
              args.out / "images.csv", args.out / "metrics.json", args.out / "samples.png")


def command() -> None:
    """The command line: errors a user can act on as one line (see `cli.run`)."""
    run(main)


if __name__ == "__main__":
    command()
