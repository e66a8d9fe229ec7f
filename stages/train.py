"""Stage train: SRResNet on the train split, best checkpoint by val PSNR; resumes after a kill.

With `train.processes` N above 1 this command restarts itself as torchrun with N workers (DDP);
on several machines see docs/scale-and-gpus.md.
"""

from sr_core.checkpoint import hold_train_state
from sr_core.cli import run_stage
from sr_core.config import Params
from sr_core.data import read_split, split_pixels
from sr_core.distributed import launch, under_torchrun
from sr_core.files import write_json
from sr_core.training import train as train_model


def train(params: Params) -> None:
    if not under_torchrun():  # torchrun's workers train under the lock of the process that started them
        hold_train_state(params.paths.train_state)
    launch(params.train.processes, __file__)
    paths = params.paths
    data = params.data
    train_pairs, val_pairs = read_split(paths.split, data.train_lr_dir, data.train_hr_dir, data.extra_train_dirs)
    summary = train_model(params, train_pairs, val_pairs, paths.model, paths.history, paths.train_state,
                          paths.decode_cache, pixels=split_pixels(paths.split))
    if summary is not None:  # rank 0
        write_json(paths.train_metrics, summary)


if __name__ == "__main__":
    run_stage(train, __file__)
