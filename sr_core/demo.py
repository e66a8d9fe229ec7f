"""A small paired data set in the Kaggle layout, cut from the photographs scikit-image ships.

No download: every image comes from inside the scikit-image package. Training images are cut
into `tile_size` HR tiles (near-flat tiles are skipped: their PSNR is unbounded); HR tiles are
saved as opaque RGBA like the reference task's screenshots, LR tiles as RGB. Test images are
whole photographs, downscaled and saved in their own mode (greyscale stays greyscale).
"""

from pathlib import Path

import numpy as np
import skimage.data
from PIL import Image

from sr_core.config import DemoConfig
from sr_core.images import bicubic_downscale, to_rgb, write_png


def load_photo(name: str) -> np.ndarray:
    """A scikit-image sample image by its `skimage.data` function name, as HW or HWC uint8."""
    loader = getattr(skimage.data, name, None)
    if loader is None or name.startswith("_"):
        raise ValueError(f"{name!r} is not a scikit-image sample image; choose from skimage.data, "
                         f"e.g. astronaut, camera, chelsea, coffee, rocket")
    return np.asarray(loader())


def make_demo_data(config: DemoConfig, scale: int) -> dict[str, int]:
    """Writes train/hr, train/lr and test/lr under `config.out_dir`; returns the file counts."""
    out_dir = Path(config.out_dir)
    size = config.tile_size
    num_pairs = 0
    for name in config.train_images:
        photo = np.asarray(to_rgb(Image.fromarray(load_photo(name))))
        for row in range(photo.shape[0] // size):
            for col in range(photo.shape[1] // size):
                hr_img = photo[row * size:(row + 1) * size, col * size:(col + 1) * size]
                if hr_img.std() < config.min_tile_std:
                    continue
                tile_name = f"{name}_{row:02d}_{col:02d}.png"
                opaque = np.full(hr_img.shape[:2] + (1,), 255, np.uint8)
                write_png(out_dir / "train" / "hr" / tile_name, np.concatenate([hr_img, opaque], axis=2))
                write_png(out_dir / "train" / "lr" / tile_name, bicubic_downscale(hr_img, scale))
                num_pairs += 1
    for name in config.test_images:
        write_png(out_dir / "test" / "lr" / f"{name}.png", bicubic_downscale(load_photo(name), scale))
    return {"train_pairs": num_pairs, "test_images": len(config.test_images)}
