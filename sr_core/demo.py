"""A small paired data set in the Kaggle layout, cut from the photographs scikit-image ships.

No download: every image comes from inside the scikit-image package. Training images are cut
into `tile_size` HR tiles (near-flat tiles are skipped: their PSNR is unbounded); HR tiles are
saved as opaque RGBA like the reference task's screenshots, LR tiles as RGB. Test images are
whole photographs, downscaled and saved in their own mode (greyscale stays greyscale).
The folder belongs to the demo (see `make_demo_data`): users' data go in folders of their own.
"""

import hashlib
import json
from pathlib import Path

import numpy as np
import skimage.data
from PIL import Image

from sr_core.config import DemoConfig
from sr_core.files import sha256_of, write_bytes, write_json
from sr_core.images import bicubic_downscale, encode_png, to_rgb


def load_photo(name: str) -> np.ndarray:
    """A scikit-image sample image by its `skimage.data` function name, as HW or HWC uint8."""
    loader = getattr(skimage.data, name, None)
    if loader is None or name.startswith("_"):
        raise ValueError(f"{name!r} is not a scikit-image sample image; choose from skimage.data, "
                         f"e.g. astronaut, camera, chelsea, coffee, rocket")
    return np.asarray(loader())


MANIFEST = "demo-files.json"  # in demo.out_dir: each file the demo stage wrote there, by SHA-256


def demo_files(config: DemoConfig, scale: int) -> dict[str, bytes]:
    """The demo's files as PNG bytes by their path under `config.out_dir`: train/hr, train/lr, test/lr."""
    size = config.tile_size
    files = {}
    for name in config.train_images:
        photo = np.asarray(to_rgb(Image.fromarray(load_photo(name))))
        for row in range(photo.shape[0] // size):
            for col in range(photo.shape[1] // size):
                hr_img = photo[row * size:(row + 1) * size, col * size:(col + 1) * size]
                if hr_img.std() < config.min_tile_std:
                    continue
                tile_name = f"{name}_{row:02d}_{col:02d}.png"
                opaque = np.full(hr_img.shape[:2] + (1,), 255, np.uint8)
                files[f"train/hr/{tile_name}"] = encode_png(np.concatenate([hr_img, opaque], axis=2))
                files[f"train/lr/{tile_name}"] = encode_png(bicubic_downscale(hr_img, scale))
    for name in config.test_images:
        files[f"test/lr/{name}.png"] = encode_png(bicubic_downscale(load_photo(name), scale))
    return files


def make_demo_data(config: DemoConfig, scale: int) -> dict[str, int]:
    """Writes the demo's files under `config.out_dir` and removes those an earlier run wrote that
    it no longer makes; returns the file counts.

    The folder is the demo's: a file in it that the demo did not write (or that was edited since)
    stops the run with one line naming it, before anything is written or removed, so a user's
    file put there is never deleted. What the demo wrote is recorded in `MANIFEST`, by content.
    """
    out_dir = Path(config.out_dir)
    made = demo_files(config, scale)
    files = {path: hashlib.sha256(content).hexdigest() for path, content in made.items()}
    manifest = out_dir / MANIFEST
    written = json.loads(manifest.read_text()) if manifest.is_file() else {}
    found = {path.relative_to(out_dir).as_posix(): path for path in sorted(out_dir.rglob("*"))
             if (path.is_file() or path.is_symlink()) and path != manifest and not path.name.endswith(".tmp")}
    foreign = [name for name, path in found.items()
               if path.is_symlink() or sha256_of(path) not in (written.get(name), files.get(name))]
    if foreign:
        raise ValueError(f"{out_dir} is the demo stage's folder (demo.out_dir), and holds files the stage did not "
                         f"write or that were changed since: {', '.join(foreign[:5])}"
                         f"{f', ... ({len(foreign)} in all)' if len(foreign) > 5 else ''}; nothing was deleted. Move "
                         f"them to a folder of your own and point data.* at it (README: Train on your own data), "
                         f"then run again")
    write_json(manifest, written | files)  # first, so that a killed run still knows what it wrote
    for name, content in made.items():
        write_bytes(out_dir / name, content)
    for name in found.keys() - files.keys():
        found[name].unlink()
    write_json(manifest, files)
    train_pairs = sum(name.startswith("train/hr/") for name in files)
    return {"train_pairs": train_pairs, "test_images": len(config.test_images)}
