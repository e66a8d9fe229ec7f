"""Stage split: check every LR/HR pair, report the rejects, split the valid ones as the reference script does."""

import logging
from collections import Counter
from dataclasses import asdict

from sr_core.cli import run_stage
from sr_core.config import Params
from sr_core.data import NOTE_KINDS, check_pairs, pixels_digest, split_names, write_split
from sr_core.files import write_csv, write_json
from sr_core.folders import require_folders
from sr_core.metrics import min_scored_side


def split(params: Params) -> None:
    require_folders(params, "data.train_lr_dir", "data.train_hr_dir", "data.extra_train_dirs")
    data, paths = params.data, params.paths
    scale, patch_size = params.model.scale, params.train.patch_size
    # any pair may land in the val split, so each must be large enough to cut a patch from and to score
    notes = []  # (kind, message) of what reading valid pairs drops, each logged by check_pairs
    pairs, rejects = check_pairs(data.train_lr_dir, data.train_hr_dir, scale, params.inference.workers,
                                 min_hr_side=max(patch_size, min_scored_side(scale)), one_size=patch_size == 0,
                                 extra_dirs=data.extra_train_dirs, notes=notes)
    write_csv(paths.rejects, [asdict(r) for r in rejects], columns=["name", "reason"])
    for reject in rejects:
        logging.warning("rejected %s: %s", reject.name, reject.reason)
    train_names, val_names = split_names([p.name for p in pairs], params.split.val_split, params.split.seed,
                                         params.split.method)
    if not train_names or not val_names:
        raise ValueError(f"{len(pairs)} valid training pairs ({len(rejects)} "
                         f"rejected, see {paths.rejects}) split into {len(train_names)} train and {len(val_names)} "
                         f"val with split.val_split {params.split.val_split}; training needs at least one of each")
    write_split(paths.split, train_names, val_names, pixels_digest(pairs))
    counts = Counter(kind for kind, _ in notes)
    write_json(paths.split_metrics, {"valid_pairs": len(pairs), "rejected": len(rejects),
                                     "train": len(train_names), "val": len(val_names)}
               | {kind: counts[kind] for kind in NOTE_KINDS})
    logging.info("%d valid pairs (%d rejected): %d train, %d val",
                 len(pairs), len(rejects), len(train_names), len(val_names))


if __name__ == "__main__":
    run_stage(split, __file__)
