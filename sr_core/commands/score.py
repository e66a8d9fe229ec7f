"""The SRGD competition's score of a submission in its format, computed as its scorer computes it
(metrics.competition_score: 8-bit arithmetic, which wraps), so the leaderboard's number is known
before submitting.

    sr-score solution.csv submission.csv      # the competition's solution file
    sr-score data/val/hr submission.csv       # or a folder of the true HR images

SOLUTION is a file in the competition's layout (id, filename, rle, and optionally Usage, whose
Public and Private rows are then scored apart too), or a folder holding the true image of each
filename the submission names. The competition's scorer pairs the rows of the two files by their
order, not by filename: a submission whose rows are in another order is scored against the wrong
images there, so it is refused here, naming the first row that differs.
"""

from pathlib import Path

from sr_core.cli import argument_parser, run
from sr_core.score import score_files


def main(argv: list[str] | None = None) -> None:
    parser = argument_parser(__doc__, "sr-score")
    parser.add_argument("solution", type=Path, help="the competition's solution file, or a folder of the true images")
    parser.add_argument("submission", type=Path, help="a submission in the competition's layout (id, filename, rle)")
    parser.add_argument("--workers", type=int, default=0, help="threads that decode rows (0: one per core)")
    args = parser.parse_args(argv)
    result = score_files(args.solution, args.submission, args.workers)
    parts = [f"{key.removeprefix('score_')} {value:.4f}" for key, value in result.items() if key.startswith("score_")]
    print(f"score {result['score']:.4f} over {result['rows']} rows" + (f" ({', '.join(parts)})" if parts else ""))


def command() -> None:
    """The command line: errors a user can act on as one line (see `cli.run`)."""
    run(main)


if __name__ == "__main__":
    command()
