"""Benchmarking a checkpoint against bicubic on sets of paired images (Set5, Set14, BSD100, the
val split, ...): per-image rows to a CSV, per-set means to a JSON, centre crops to a figure.

The evaluate stage runs it on the val split plus `evaluate.benchmarks`; as a command:

    python -m sr_core.benchmark models/best.pt data/benchmarks/x4/Set5 --out results
    python -m sr_core.benchmark data/benchmarks/x4/Set5 --self-ensemble    # the general model that comes with the package
"""

import logging
from pathlib import Path

from sr_core.checkpoint import OPTIONAL_MODEL_HELP, model_and_others
from sr_core.cli import argument_parser, run
from sr_core.config import EvaluateConfig, InferenceConfig
from sr_core.data import Pair, list_folder
from sr_core.evaluation import figure, model_and_bicubic, sample_crops, score_pairs, summarize
from sr_core.files import write_csv, write_json
from sr_core.images import write_png
from sr_core.inference import Model, add_arguments, config_from, configured, inference_model, run_precision

log = logging.getLogger(__name__)

# Below this PSNR-Y gain over bicubic a model has learnt little: the demo's gains 0.16 dB on its val
# split after its first epoch and 2.4 dB after ten.
LEARNT_LITTLE_DB = 0.5


def load_sets(folders: list[str | Path]) -> dict[str, list[Pair]]:
    """Each folder's pairs (hr/ with or without lr/) under the folder's name, listed, not decoded.

    A benchmark must be complete: a file without its partner is an error that lists them all, and
    so is a file that cannot be used when it is scored (see `evaluation.score_pairs`).
    """
    sets = {}
    for folder in map(Path, folders):
        if folder.name in sets:
            raise ValueError(f"{folder}: another benchmark folder is also named {folder.name!r}")
        pairs, rejects = list_folder(folder)
        if rejects or not pairs:
            problems = "; ".join(f"{r.name}: {r.reason}" for r in rejects) or "no images in hr/"
            raise ValueError(f"{folder}: {problems}")
        sets[folder.name] = pairs
    return sets


def benchmark(model: Model, sets: dict[str, list[Pair]], scale: int, inference: InferenceConfig,
              num_samples: int, crop: int, rows_path: str | Path, metrics_path: str | Path,
              figure_path: str | Path) -> dict:
    """Scores every set, writes the three files, and returns the per-set summary."""
    model = configured(model, inference)
    rows, summary = [], {}
    for name, pairs in sets.items():
        set_rows = score_pairs(pairs, scale, model, bicubic=True, ssim=True, config=inference)
        rows += [{"set": name, **row} for row in set_rows]
        summary[name] = summarize(set_rows)
        log.info("%s (%d images): PSNR-Y %.3f dB, SSIM %.4f | bicubic %.3f dB, %.4f", name, len(pairs),
                 summary[name]["model"]["psnr_y"], summary[name]["model"]["ssim"],
                 summary[name]["bicubic"]["psnr_y"], summary[name]["bicubic"]["ssim"])
        gain = summary[name]["gain_over_bicubic"]["psnr_y"]
        if gain < LEARNT_LITTLE_DB:
            log.warning("%s: the model's PSNR-Y is %+.2f dB against bicubic's, so it has learnt little: train it "
                        "longer (train.epochs, or train.time_limit_minutes)", name, gain)
    write_csv(rows_path, rows)
    write_json(metrics_path, summary)
    samples = [(name, pair) for name, pairs in sets.items() for pair in pairs[:num_samples]]
    precision, _ = run_precision(model, inference.precision)
    write_png(figure_path, figure(sample_crops(model_and_bicubic(model, precision), samples, scale, crop)))
    return summary


def main(argv: list[str] | None = None) -> None:
    parser = argument_parser(__doc__, "python -m sr_core.benchmark")
    parser.add_argument("paths", nargs="+", type=Path, metavar="PATH",
                        help=f"[MODEL] FOLDER ...: folders with hr/ and optionally lr/; {OPTIONAL_MODEL_HELP}")
    parser.add_argument("--out", type=Path, default=Path("benchmark"),
                        help="the folder the per-image CSV, the per-set JSON and the figure go to")
    add_arguments(parser)
    parser.add_argument("--num-samples", type=int, default=EvaluateConfig.num_samples, help="images per set in the figure")
    parser.add_argument("--crop", type=int, default=EvaluateConfig.sample_crop,
                        help="HR side of each crop in the figure")
    args = parser.parse_args(argv)
    model_path, folders = model_and_others(args.paths)
    if not folders:
        parser.error(f"give the folders to benchmark after the model {model_path}")
    inference = config_from(args)
    model = inference_model(model_path, inference)
    benchmark(model, load_sets(folders), model.config.scale, inference, args.num_samples, args.crop,
              args.out / "images.csv", args.out / "metrics.json", args.out / "samples.png")


def command() -> None:
    """The command line: errors a user can act on as one line (see `cli.run`)."""
    run(main)


if __name__ == "__main__":
    command()
