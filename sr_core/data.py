"""Paired LR/HR folders: listing and checking the pairs, and the reference script's train/val split.

A pair is one file name present in both lr/ and hr/, whose HR is exactly `scale` times the LR in
both sides. Pairs that fail are reported with the reason, never silently dropped. A folder with
hr/ alone (the standard benchmarks, HR-only training sets) gets its LR made on the fly by the
literature's bicubic downscaling of the HR cropped to a multiple of `scale`.
"""

import hashlib
import json
import logging
import random
import unicodedata
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from sr_core.files import write_json
from sr_core.images import (ImageError, bicubic_downscale, crop_to_multiple, image_size, list_images, name_key,
                            read_image)
from sr_core.parallel import num_workers

log = logging.getLogger(__name__)

# what reading a valid pair can drop or change, counted in the split's metrics (see `read_pair`)
NOTE_KINDS = ("alpha_not_opaque", "non_srgb_profile", "orientation_differs", "deeper_than_8_bits")


class SwappedPair(ImageError):
    """A pair whose LR is `scale` times its HR: the two files, or the two folders, are swapped."""


@dataclass(frozen=True)
class Pair:
    name: str
    lr_path: Path | None  # None: the LR is made from the HR by bicubic downscaling
    hr_path: Path
    pixels: str = field(default="", compare=False)  # a hash of the decoded pixels, where check_pairs read them


def read_pair(pair: Pair, scale: int) -> tuple[np.ndarray, np.ndarray, list[tuple[str, str]]]:
    """(lr_img, hr_img, notes) as `load_pair`, and what reading the files said (see
    `images.read_image`) as (kind, message naming the file), plus `orientation_differs` when the two
    files' EXIF orientations disagree (both are applied, as a viewer shows them)."""
    if pair.lr_path is None:
        hr = read_image(pair.hr_path)
        hr_img = crop_to_multiple(hr.rgb, scale)
        if not hr_img.size:
            raise ImageError(f"{pair.hr_path}: smaller than the scale {scale}")
        return bicubic_downscale(hr_img, scale), hr_img, [(k, f"{pair.hr_path}: {v}") for k, v in hr.notes.items()]
    lr, hr = read_image(pair.lr_path), read_image(pair.hr_path)
    (lr_h, lr_w), (hr_h, hr_w) = lr.rgb.shape[:2], hr.rgb.shape[:2]
    turned = " (EXIF orientations applied)" if lr.orientation != 1 or hr.orientation != 1 else ""
    if (lr_h, lr_w) == (scale * hr_h, scale * hr_w):
        raise SwappedPair(f"{pair.hr_path}: HR is {hr_w}x{hr_h}, 1/{scale} of the LR {lr_w}x{lr_h}: the LR and HR "
                          f"look swapped")
    if (hr_h, hr_w) != (scale * lr_h, scale * lr_w):
        raise ImageError(f"{pair.hr_path}: HR is {hr_w}x{hr_h}, expected {scale}x the LR {lr_w}x{lr_h} = "
                         f"{scale * lr_w}x{scale * lr_h}{turned}")
    notes = [(k, f"{path}: {v}") for decoded, path in ((lr, pair.lr_path), (hr, pair.hr_path))
             for k, v in decoded.notes.items()]
    if lr.orientation != hr.orientation:
        notes.append(("orientation_differs", f"{pair.name}: EXIF orientation {lr.orientation} in the LR, "
                                             f"{hr.orientation} in the HR; both are applied, as a viewer shows them"))
    return lr.rgb, hr.rgb, notes


def load_pair(pair: Pair, scale: int) -> tuple[np.ndarray, np.ndarray]:
    """(lr_img, hr_img) as HWC uint8 RGB, EXIF orientation applied; an HR-only pair's HR is cropped
    to a multiple of `scale`.

    Both files are decoded fully (a truncated file fails here); raises ImageError naming the file
    when one does not decode or the HR is not exactly `scale` times the LR. The split stage has
    reported what reading them drops (`read_pair`).
    """
    return read_pair(pair, scale)[:2]


def pair_files(pairs: list[Pair]) -> list[Path]:
    """The files the pairs are read from: LR and HR, or HR alone where the LR is made from it."""
    return [path for pair in pairs for path in (pair.lr_path, pair.hr_path) if path is not None]


def cache_key(pair: Pair, *layout) -> str:
    """A name for files decoded from `pair`: a hash of its files' paths, sizes and modification
    times and of `layout`, so an edited image, or another layout, is decoded again."""
    sources = [(str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns) for p in pair_files([pair])]
    return hashlib.sha256(repr((sources, *layout)).encode()).hexdigest()[:32]


def lr_shape(pair: Pair, scale: int) -> tuple[int, int]:
    """(height, width) of the pair's LR as `load_pair` gives it, read from a file's header only."""
    width, height = image_size(pair.lr_path or pair.hr_path)
    return (height, width) if pair.lr_path else (height // scale, width // scale)


@dataclass(frozen=True)
class Reject:
    name: str
    reason: str


def list_pairs(lr_dir: str | Path | None, hr_dir: str | Path) -> tuple[list[Pair], list[Reject]]:
    """The pairs by file name, sorted, without decoding, and a Reject for every file without its
    partner. With `lr_dir` None every HR file is a pair whose LR is made from it (see load_pair).

    Names are matched Unicode-normalised (NFC): macOS writes names decomposed (NFD), most other
    systems composed, and files copied between them keep either form; a pair's name is the NFC
    one. A reject whose partner differs only in case says so."""
    hr_files = _by_name(hr_dir)
    if lr_dir is None:
        return [Pair(n, None, hr_files[n]) for n in sorted(hr_files)], []
    lr_files = _by_name(lr_dir)
    lr_keys, hr_keys = ({name_key(n): n for n in files} for files in (lr_files, hr_files))
    lr_only, hr_only = sorted(lr_files.keys() - hr_files.keys()), sorted(hr_files.keys() - lr_files.keys())
    hr_stems = {Path(n).stem: n for n in hr_only}
    other_suffix = {n: hr_stems[Path(n).stem] for n in lr_only  # LR name -> HR name of another format
                    if Path(n).suffix.lower() != Path(hr_stems.get(Path(n).stem, n)).suffix.lower()}
    rejects = [Reject(n, f"the LR {n} and the HR {other_suffix[n]} differ only in their extension: a pair needs one "
                         f"name; rename one side (images are read by their content, so a JPEG named .png reads as "
                         f"the JPEG it is)") for n in other_suffix]
    rejects += [Reject(n, f"no HR file in {hr_dir}{_case_hint(n, hr_keys)}") for n in lr_only if n not in other_suffix]
    rejects += [Reject(n, f"no LR file in {lr_dir}{_case_hint(n, lr_keys)}") for n in hr_only
                if n not in other_suffix.values()]
    return [Pair(n, lr_files[n], hr_files[n]) for n in sorted(lr_files.keys() & hr_files.keys())], rejects


def _by_name(folder: str | Path) -> dict[str, Path]:
    """The images of `folder` by their NFC name (see `list_pairs`)."""
    return {unicodedata.normalize("NFC", path.name): path for path in list_images(folder)}


def _case_hint(name: str, others: dict[str, str]) -> str:
    """What to tell about a name without a partner when the other folder's names (by `name_key`)
    hold one that differs only in case."""
    partner = others.get(name_key(name))
    return f" ({ascii(partner)} there differs only in case: a pair needs one name)" if partner else ""


def list_folder(folder: str | Path) -> tuple[list[Pair], list[Reject]]:
    """`list_pairs` of a folder holding hr/ and, optionally, lr/ (the benchmark layout)."""
    folder = Path(folder)
    return list_pairs(_lr_dir_of(folder), folder / "hr")


def _lr_dir_of(folder: Path) -> Path | None:
    return folder / "lr" if (folder / "lr").is_dir() else None


def _prefixes(extra_dirs: tuple[str | Path, ...] | list[str | Path]) -> dict[str, Path]:
    """Each extra training folder by its name, which prefixes its pairs' names (`T91/t1.png`)."""
    folders = {}
    for folder in map(Path, extra_dirs):
        if folder.name in folders:
            raise ValueError(f"{folder}: another training folder is also named {folder.name!r}")
        folders[folder.name] = folder
    return folders


def training_pairs(lr_dir: str | Path | None, hr_dir: str | Path, extra_dirs: tuple[str | Path, ...] = ()
                   ) -> tuple[list[Pair], list[Reject]]:
    """`list_pairs` of the paired folders, plus the pairs of each folder in `extra_dirs` (see
    `list_folder`) named `FOLDER/FILE`: names stay unique, and without extra folders they are the
    plain file names the reference script's split sorts."""
    pairs, rejects = list_pairs(lr_dir, hr_dir)
    for prefix, folder in _prefixes(extra_dirs).items():
        found, unpaired = list_folder(folder)
        pairs += [Pair(f"{prefix}/{pair.name}", pair.lr_path, pair.hr_path) for pair in found]
        rejects += [Reject(f"{prefix}/{reject.name}", reject.reason) for reject in unpaired]
    return pairs, rejects


def check_pairs(lr_dir: str | Path | None, hr_dir: str | Path, scale: int, workers: int = 0, min_hr_side: int = 0,
                one_size: bool = False, extra_dirs: tuple[str | Path, ...] = (),
                notes: list[tuple[str, str]] | None = None) -> tuple[list[Pair], list[Reject]]:
    """Valid pairs sorted by name, and a Reject for every file that cannot be used, from the paired
    folders and `extra_dirs` (see `training_pairs`).

    Each pair is decoded fully, in `workers` threads (0: one per core), and dropped from memory at
    once. A pair whose HR has a side under `min_hr_side` is rejected, and with `one_size` (training
    on whole images, which batches them) so is every pair whose HR size is not the most common one.
    What reading a valid pair drops (`read_pair`) is logged as a warning naming the file and, when
    `notes` is given, appended to it as (kind, message).
    """
    candidates, rejects = training_pairs(lr_dir, hr_dir, extra_dirs)

    def hr_size(pair: Pair) -> tuple[tuple[int, int], list[tuple[str, str]], str] | ImageError:
        try:
            lr_img, hr_img, pair_notes = read_pair(pair, scale)
        except ImageError as error:
            return error
        pixels = hashlib.blake2b(lr_img.tobytes(), digest_size=16)
        pixels.update(hr_img.tobytes())  # hashlib releases the GIL: the threads hash in parallel
        return (hr_img.shape[1], hr_img.shape[0]), pair_notes, pixels.hexdigest()

    with ThreadPoolExecutor(num_workers(workers)) as pool:
        checked = list(tqdm(pool.map(hr_size, candidates), total=len(candidates), desc="checking pairs", unit="pair"))
    sizes = [item if isinstance(item, ImageError) else item[0] for item in checked]
    if sizes and all(isinstance(size, SwappedPair) for size in sizes):
        raise ValueError(f"{lr_dir} and {hr_dir} look swapped: in all {len(sizes)} pairs the HR is 1/{scale} of its "
                         f"LR; swap data.train_lr_dir and data.train_hr_dir")
    common = Counter(size for size in sizes if isinstance(size, tuple)).most_common(1)
    pairs = []
    for pair, size, item in zip(candidates, sizes, checked):
        if isinstance(size, ImageError):
            rejects.append(Reject(pair.name, str(size)))
        elif min(size) < min_hr_side:
            rejects.append(Reject(pair.name, f"{pair.hr_path}: HR is {size[0]}x{size[1]}, under the {min_hr_side} px "
                                             f"a side needed to train and score on it (train.patch_size; "
                                             f"scoring needs 2 x model.scale + 11)"))
        elif one_size and size != common[0][0]:
            rejects.append(Reject(pair.name, f"{pair.hr_path}: HR is {size[0]}x{size[1]}; whole-image training "
                                             f"(train.patch_size: 0) needs one size, and most pairs are {common[0][0][0]}x{common[0][0][1]}"))
        else:
            pairs.append(replace(pair, pixels=item[2]))
    valid = {pair.name for pair in pairs}
    for pair, item in zip(candidates, checked):
        if pair.name in valid:
            for kind, message in item[1]:
                log.warning("%s", message)
                if notes is not None:
                    notes.append((kind, message))
    return pairs, sorted(rejects, key=lambda r: r.name)


def split_names(names: list[str], val_split: float, seed: int, method: str = "reference"
                ) -> tuple[list[str], list[str]]:
    """(train, val) names. `reference`: the reference script's split, sort, random.seed(seed) +
    random.shuffle, first int(n * (1 - val_split)) train; adding or removing one pair reshuffles
    the rest. `stable`: a name is val when a hash of the seed and the name falls in the first
    `val_split` of its range, so one pair added or removed moves no other (the val share is then
    `val_split` on average, not exactly)."""
    if method == "stable":
        val = {name for name in names
               if int(hashlib.sha256(f"{seed}/{name}".encode()).hexdigest()[:16], 16) < val_split * 2**64}
        return sorted(set(names) - val), sorted(val)
    shuffled = sorted(names)
    random.Random(seed).shuffle(shuffled)  # the same stream as random.seed(seed); random.shuffle
    num_train = int(len(shuffled) * (1 - val_split))
    return shuffled[:num_train], shuffled[num_train:]


def pixels_digest(pairs: list[Pair]) -> str:
    """One hash of the pairs' names and decoded pixels (as check_pairs read them): a resume state
    made on other pixels under the same names is told apart by it without reading the images again."""
    digest = hashlib.sha256()
    for pair in sorted(pairs, key=lambda p: p.name):
        digest.update(f"{pair.name}\0{pair.pixels}\0".encode())
    return digest.hexdigest()[:32]


def write_split(path: str | Path, train_names: list[str], val_names: list[str], pixels: str = "") -> None:
    """The split's names, and `pixels_digest` of its pairs ("" where unknown)."""
    write_json(path, {"train": train_names, "val": val_names, "pixels": pixels})


def split_pixels(path: str | Path) -> str:
    """The split's `pixels_digest`, "" for a split written before it was recorded."""
    return json.loads(Path(path).read_text()).get("pixels", "")


def read_split(path: str | Path, lr_dir: str | Path, hr_dir: str | Path, extra_dirs: tuple[str | Path, ...] = ()
               ) -> tuple[list[Pair], list[Pair]]:
    """The train and val pairs that `split` wrote, as paths under the given folders."""
    split = json.loads(Path(path).read_text())
    return tuple(named_pairs(split[part], lr_dir, hr_dir, extra_dirs, shown_as=path) for part in ("train", "val"))


def named_pairs(names: list[str], lr_dir: str | Path, hr_dir: str | Path, extra_dirs: tuple[str | Path, ...] = (),
                shown_as: str | Path = "the split") -> list[Pair]:
    """The pairs of training-pair names (see `training_pairs`) as the folders hold them now."""
    folders = _prefixes(extra_dirs)
    for name in names:
        prefix = name.rpartition("/")[0]
        if prefix and prefix not in folders:
            raise ValueError(f"{shown_as} names {name}, but no folder of data.extra_train_dirs is named {prefix!r}; "
                             f"run the split stage again")
    pairs = {pair.name: pair for pair in training_pairs(lr_dir, hr_dir, extra_dirs)[0]}
    missing = [name for name in names if name not in pairs]
    if missing:
        raise ValueError(f"{shown_as} names {len(missing)} pairs the data folders no longer hold "
                         f"({', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''}): moved, renamed or removed "
                         f"since the split; run the split stage again (dvc repro)")
    return [pairs[name] for name in names]
