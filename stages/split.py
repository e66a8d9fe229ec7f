"""Stage split: check every LR/HR pair, report the rejects, split the valid ones like the seed."""

import logging
from dataclasses import asdict

from sr_core.config import load_params
from sr_core.data import check_pairs, split_names, write_split
from sr_core.files import write_csv, write_json


def split() -> None:
    params = load_params()
    data, paths = params.data, params.paths
    pairs, rejects = check_pairs(data.train_lr_dir, data.train_hr_dir, params.model.scale, params.inference.workers)
    write_csv(paths.rejects, [asdict(r) for r in rejects], columns=["name", "reason"])
    for reject in rejects:
        logging.warning("rejected %s: %s", reject.name, reject.reason)
    if not pairs:
        raise SystemExit(f"no valid pair in {data.train_lr_dir} and {data.train_hr_dir}; "
                         f"{len(rejects)} rejected, see {paths.rejects}")
    train_names, val_names = split_names([p.name for p in pairs], params.split.val_split, params.split.seed)
    write_split(paths.split, train_names, val_names)
    write_json(paths.split_metrics, {"valid_pairs": len(pairs), "rejected": len(rejects),
                                     "train": len(train_names), "val": len(val_names)})
    logging.info("%d valid pairs (%d rejected): %d train, %d val",
                 len(pairs), len(rejects), len(train_names), len(val_names))


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    split()
