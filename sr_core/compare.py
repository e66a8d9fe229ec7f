"""Which images a change helped or hurt: the per-image metrics of two runs (git revisions or
experiments), joined by set and image with pandas; the figure of the images that changed most."""

import io
import tempfile
from pathlib import Path

import dvc.api
import pandas as pd
from dvc.exceptions import DvcException, PathMissingError
from dvc.scm import RevError
import torch

from sr_core.checkpoint import load_model
from sr_core.config import Params, build, load_params
from sr_core.data import Pair, list_folder, named_pairs
from sr_core.evaluation import MEASURES, figure, sample_crops
from sr_core.files import atomic_write, write_bytes
from sr_core.images import write_png
from sr_core.inference import upscale

WORKSPACE = "workspace"  # the name of the working tree as a run


def in_current_keys(values: dict) -> dict:
    """Params of an earlier version of the project in today's keys: `train.bf16` and `inference.bf16`
    (true: bf16 where the GPU has it, else fp32) became `precision` (auto; false: fp32), and
    `train.compile` (a boolean) a mode (eager; true: default)."""
    values = {key: dict(value) if isinstance(value, dict) else value for key, value in values.items()}
    for section in ("train", "inference"):
        if "bf16" in values.get(section, {}):
            values[section]["precision"] = "auto" if values[section].pop("bf16") is True else "fp32"
    if isinstance(values.get("train", {}).get("compile"), bool):
        values["train"]["compile"] = "default" if values["train"]["compile"] else "eager"
    return values


def run_params(rev: str) -> Params:
    """The params of a run: params.yaml at `rev` (a git revision or experiment name), or the workspace's.
    A key that a run's params.yaml predates takes its default, and keys renamed since are read in
    today's names (`in_current_keys`), so runs from older commits compare too."""
    if rev == WORKSPACE:
        return load_params()
    try:
        shown = dvc.api.params_show(rev=rev)
    except RevError as error:
        raise ValueError(f"{rev}: not a git revision or experiment name (`git log` and `dvc exp show` list them)") \
            from error
    except DvcException as error:
        raise ValueError(f"params.yaml at {rev}: {error}") from error
    return build(Params, in_current_keys(shown), f"params.yaml at {rev}")


def read_bytes(path: str, rev: str, key: str) -> bytes:
    """A file of a run, from git or the DVC cache (or the disk, for the workspace); `key` is the
    param that names it, for the error."""
    if rev == WORKSPACE:
        if not Path(path).exists():
            raise ValueError(f"{path} ({key}) does not exist in the workspace; `dvc repro` or `dvc pull` makes it")
        return Path(path).read_bytes()
    try:
        return dvc.api.read(path, rev=rev, mode="rb")
    except (FileNotFoundError, PathMissingError) as error:
        raise ValueError(f"{path} ({key}) at {rev}: not in git or the local DVC cache; `dvc pull` "
                         "fetches it (an experiment's: `dvc exp pull REMOTE NAME`), or run the pipeline there") from error
    except DvcException as error:
        raise ValueError(f"{path} ({key}) at {rev}: {error}") from error


def per_image(rev: str, params: Params) -> pd.DataFrame:
    rows = pd.read_csv(io.BytesIO(read_bytes(params.paths.eval_images, rev, "paths.eval_images")))
    return rows.reindex(columns=[*rows.columns, *(m for m in MEASURES if m not in rows)])  # blank: a run before it


def join(a: pd.DataFrame, b: pd.DataFrame) -> pd.DataFrame:
    """One row per image scored in both runs, with each measure of A and B and its change (B - A).
    Images scored in one run only (another split, another benchmark) are counted, not compared."""
    keys = ["set", "name"]
    joined = a[keys + list(MEASURES)].merge(b[keys + list(MEASURES)], on=keys, suffixes=("_a", "_b"),
                                            validate="one_to_one")
    if len(joined) < max(len(a), len(b)):
        print(f"note: {len(a) - len(joined)} images scored only in A and {len(b) - len(joined)} only in B are not "
              f"compared, so per-set means differ from `dvc metrics diff` there\n")
    for measure in MEASURES:
        joined[f"{measure}_change"] = joined[f"{measure}_b"] - joined[f"{measure}_a"]
    return joined


def per_set(joined: pd.DataFrame) -> pd.DataFrame:
    """Per set: images, mean of each measure in A and B and its mean change, and how many images
    got better, worse or stayed in PSNR-Y."""
    change = joined["psnr_y_change"]
    table = joined.assign(better=change > 0, worse=change < 0, same=change == 0).groupby("set", sort=False).agg(
        images=("name", "size"), better=("better", "sum"), worse=("worse", "sum"), same=("same", "sum"),
        **{f"{m}_{side}": (f"{m}_{side}", "mean") for m in MEASURES for side in ("a", "b", "change")})
    return table.reset_index()


def most_changed(joined: pd.DataFrame, top: int) -> pd.DataFrame:
    return joined.reindex(joined["psnr_y_change"].abs().sort_values(ascending=False).index).head(top)


def image_pairs(params: Params, rows: pd.DataFrame) -> list[tuple[str, Pair]]:
    """The LR/HR files of (set, name) rows: `val` through the data folders, other sets through
    `evaluate.benchmarks`, as the evaluate stage found them."""
    data = params.data
    benchmarks = {Path(folder).name: {pair.name: pair for pair in list_folder(folder)[0]}
                  for folder in params.evaluate.benchmarks}
    found = []
    for set_name, name in zip(rows["set"], rows["name"]):
        if set_name == "val":
            [pair] = named_pairs([name], data.train_lr_dir, data.train_hr_dir, data.extra_train_dirs)
        else:
            pair = benchmarks[set_name][name]
        found.append((set_name, pair))
    return found


def compare(a: str, b: str, out: Path, top: int, crop: int, device: torch.device | None) -> pd.DataFrame:
    """Prints and writes the comparison of run `b` against run `a`; returns the per-set table. With a
    `device`, also the figure of the most changed images' crops, by running both runs' models."""
    params = {rev: run_params(rev) for rev in (a, b)}  # each a dvc.api call: once per run
    joined = join(per_image(a, params[a]), per_image(b, params[b]))
    sets, changed = per_set(joined), most_changed(joined, top)
    with pd.option_context("display.width", 200, "display.max_columns", 30, "display.precision", 4):
        print(f"{b} against {a}: mean change per set (B - A), and images better / worse in PSNR-Y\n")
        print(sets[["set", "images", "psnr_y_change", "ssim_change", "psnr_rgb_change", "competition_score_change",
                    "better", "worse", "same"]]
              .to_string(index=False))
        print(f"\nthe {len(changed)} images that changed most in PSNR-Y\n")
        print(changed[["set", "name", "psnr_y_a", "psnr_y_b", "psnr_y_change", "ssim_change"]].to_string(index=False))
    for name, table in (("images.csv", joined), ("sets.csv", sets)):
        with atomic_write(out / name, "w") as f:
            table.to_csv(f, index=False)
    if device is None:
        print(f"\nwrote {out / 'images.csv'} and {out / 'sets.csv'}; --crops adds a figure of these images, made by "
              f"running both models")
        return sets
    checkpoints = {side: read_bytes(params[rev].paths.model, rev, "paths.model") for side, rev in (("A", a), ("B", b))}
    with tempfile.TemporaryDirectory() as scratch:
        models = {}
        for side, data in checkpoints.items():  # each run's model, read from git / the DVC cache above
            checkpoint = Path(scratch) / f"{side}.pt"
            write_bytes(checkpoint, data)
            models[side] = load_model(checkpoint, device)
    upscalers = {name: (lambda lr_img, model=model: upscale(model, lr_img)) for name, model in models.items()}
    scale = next(iter(models.values())).config.scale
    samples = sample_crops(upscalers, image_pairs(params[b], changed), scale, crop)
    write_png(out / "crops.png", figure(samples, heading=f"A: {a}   B: {b}   (PSNR-Y of each crop under it)"))
    print(f"\nwrote {out / 'images.csv'}, {out / 'sets.csv'} and {out / 'crops.png'}")
    return sets
