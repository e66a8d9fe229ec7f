"""The SRGD competition's score of a submission in its format, computed as its scorer computes it
(metrics.competition_score: 8-bit arithmetic, which wraps), row by row against a solution."""

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from itertools import zip_longest
from pathlib import Path

import numpy as np

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
