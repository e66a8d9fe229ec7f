"""The SRGD competition's score of a submission in its format, computed as its scorer computes it
(metrics.competition_score: 8-bit arithmetic, which wraps), so the leaderboard's number is known
before submitting.

    python -m sr_core.score solution.csv submission.csv      # the competition's solution file
    python -m sr_core.score data/val/hr submission.csv       # or a folder of the true HR images

SOLUTION is a file in the competition's layout (id, filename, rle, and optionally Usage, whose
Public and Private rows are then scored apart too), or a folder holding the true image of each
filename the submission names. The competition's scorer pairs the rows of the two files by their
order, not by filename: a submission whose rows are in another order is scored against the wrong
images there, so it is refused here, naming the first row that differs.
"""

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from itertools import zip_longest
from pathlib import Path

import numpy as np

from sr_core.cli import argument_parser, run
from sr_core.competition import bgr_bytes, decode_cell, read_rows
from sr_core.images import read_rgb
from sr_core.metrics import competition_score
from sr_core.parallel import num_workers, ordered_map


def solution_rows(solution: Path) -> Iterator[tuple[str, str | None, Callable[[], np.ndarray], str]]:
    """(filename, usage, the true image's flat BGR bytes when called, where) of each row of a solution
    file, read as they are consumed."""
    header, rows = read_rows(solution)
    for number, row in rows:
        fields, where = dict(zip(header, row)), f"{solution} line {number}"
        yield fields["filename"], fields.get("Usage"), lambda cell=fields["rle"], where=where: decode_cell(cell, where), where


def score_files(solution: str | Path, submission: str | Path, workers: int = 0) -> dict[str, float | int]:
    """The competition's score of `submission` against `solution` (see the module's docstring): its
    mean over the rows (`score`), the row count, and with a Usage column the mean of each usage."""
    solution, submission = Path(solution), Path(submission)
    header, rows = read_rows(submission)
    filename, rle = header.index("filename"), header.index("rle")
    truths = (None if solution.is_dir() else solution_rows(solution))

    def score_row(pair) -> tuple[str | None, float]:
        submitted, truth = pair
        if submitted is None:
            raise ValueError(f"{submission}: fewer rows than the solution, whose row {truth[3]} has no counterpart")
        number, fields = submitted
        shown = f"{submission} line {number} ({fields[filename]})"
        if solution.is_dir():
            path = solution / fields[filename]
            truth = fields[filename], None, lambda: bgr_bytes(read_rgb(path)), str(path)
        elif truth is None:
            raise ValueError(f"{shown}: a row past the solution's last")
        name, usage, truth_of, where = truth
        if fields[filename] != name:
            raise ValueError(f"{shown}: the solution's row there is {name!r} ({where}); the competition pairs rows "
                             f"by their order, so put the submission's rows in the solution's")
        expected, prediction = truth_of(), decode_cell(fields[rle], shown)
        if expected.shape != prediction.shape:
            raise ValueError(f"{shown}: decodes to {prediction.size} bytes, the truth ({where}) to {expected.size}")
        return usage, competition_score(prediction, expected)

    scores: dict[str | None, list[float]] = {}
    workers = num_workers(workers)
    pairs = zip_longest(rows, truths or ())
    with ThreadPoolExecutor(workers) as pool:
        for usage, row_score in ordered_map(pool, score_row, pairs, ahead=2 * workers):
            scores.setdefault(usage, []).append(row_score)
    if not scores:
        raise ValueError(f"{submission}: no rows")
    result = {"score": float(np.mean([s for values in scores.values() for s in values])),
              "rows": sum(len(values) for values in scores.values())}
    return result | {f"score_{usage.lower()}": float(np.mean(values)) for usage, values in scores.items() if usage}


def main(argv: list[str] | None = None) -> None:
    parser = argument_parser(__doc__, "python -m sr_core.score")
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
