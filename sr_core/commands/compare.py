"""Which images a change helped or hurt: the per-image metrics of two runs, joined.

    sr-compare                          # the last commit (HEAD) against the workspace
    sr-compare main lr-2e-4 --top 6     # any two git revisions or experiment names
    sr-compare main lr-2e-4 --crops     # and a figure of the images that changed most

Reads each run's per-image file (`paths.eval_images`, written by the evaluate stage) from git or
DVC (`dvc.api`; it is kept in git, so no remote and no model is needed), joins them by set and
image name with pandas, and prints, per set, the mean change of each measure (the same as `dvc
metrics diff` on the per-set means) and how many images got better or worse in PSNR-Y, then the
images that changed most. It writes the joined table and the per-set table; with `--crops`, also
a figure of the most changed images' centre crops, A | B | HR, each with its PSNR-Y, made by
running both runs' models (read from the workspace, git or the DVC cache).
"""

from pathlib import Path

from sr_core.cli import argument_parser, run
from sr_core.compare import WORKSPACE, compare
from sr_core.device import pick_device


def main(argv: list[str] | None = None) -> None:
    parser = argument_parser(__doc__, "sr-compare")
    parser.add_argument("a", nargs="?", default="HEAD", help="a git revision or experiment name (dvc exp show lists them)")
    parser.add_argument("b", nargs="?", default=WORKSPACE, help=f"another, or {WORKSPACE}: the working tree's files")
    parser.add_argument("--out", type=Path, default=Path("compare"), help="where the tables and the figure go")
    parser.add_argument("--top", type=int, default=6, help="how many of the most changed images to list and show")
    parser.add_argument("--crops", action="store_true",
                        help="also a figure of the most changed images' crops, by running both runs' models (from "
                             "the workspace, git or the DVC cache)")
    parser.add_argument("--crop", type=int, default=128, help="HR side of each crop in the figure")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (with --crops)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    compare(args.a, args.b, args.out, args.top, args.crop, pick_device(args.device) if args.crops else None)


def command() -> None:
    """The command line: errors a user can act on as one line (see `cli.run`)."""
    run(main)


if __name__ == "__main__":
    command()
