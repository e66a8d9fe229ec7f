
import numpy as np
import pytest
from PIL import Image

from sr_core.config import DemoConfig
from sr_core.data import check_pairs
from sr_core.demo import make_demo_data


def test_demo_data_is_in_the_kaggle_layout(tmp_path):
    config = DemoConfig(out_dir=str(tmp_path), train_images=("astronaut",), test_images=("camera",),
                        tile_size=128, min_tile_std=20.0)
    counts = make_demo_data(config, 4)
    pairs, rejects = check_pairs(tmp_path / "train" / "lr", tmp_path / "train" / "hr", 4)
    assert rejects == [] and len(pairs) == counts["train_pairs"]
    assert 0 < counts["train_pairs"] <= 16  # 512x512 in 128 px tiles, flat ones skipped
    with Image.open(pairs[0].hr_path) as hr, Image.open(pairs[0].lr_path) as lr:
        assert (hr.mode, hr.size, lr.mode, lr.size) == ("RGBA", (128, 128), "RGB", (32, 32))
        assert np.all(np.asarray(hr)[..., 3] == 255)
    with Image.open(tmp_path / "test" / "lr" / "camera.png") as test:
        assert (test.mode, test.size) == ("L", (128, 128))


def test_unknown_image_name_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="'mona_lisa' is not a scikit-image sample image"):
        make_demo_data(DemoConfig(out_dir=str(tmp_path), train_images=("mona_lisa",)), 4)


def test_the_demo_stage_never_deletes_what_a_user_put_in_its_folder(tmp_path):
    """`dvc repro` put the demo's output back over files a user added or edited under data/demo."""
    out = tmp_path / "demo"
    config = DemoConfig(out_dir=str(out), train_images=("astronaut", "camera"), test_images=("camera",),
                        tile_size=128, min_tile_std=20.0)
    make_demo_data(config, 4)
    tiles = sorted((out / "train" / "hr").glob("camera_*.png"))
    mine = out / "train" / "hr" / "mine.png"
    mine.write_bytes(b"a user's file")
    tiles[0].write_bytes(b"edited")
    with pytest.raises(ValueError, match=rf"{out} is the demo stage's folder \(demo.out_dir\), and holds files the stage did "
                                         rf"not write or that were changed since: train/hr/{tiles[0].name}, "
                                         rf"train/hr/mine.png; nothing was deleted"):
        make_demo_data(config, 4)
    assert mine.read_bytes() == b"a user's file" and tiles[0].read_bytes() == b"edited"

    mine.unlink()
    tiles[0].unlink()
    counts = make_demo_data(config.model_copy(update=dict(train_images=("astronaut",))), 4)  # fewer images
    assert not any(out.rglob("camera_*.png"))  # what the demo wrote earlier and no longer makes
    assert len(list((out / "train" / "hr").iterdir())) == counts["train_pairs"]
