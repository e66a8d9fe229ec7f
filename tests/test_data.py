import csv
import json
import itertools
import random

import numpy as np
import pytest
from PIL import Image

from conftest import save, stage_script, write_params
from sr_core.config import load_params
from sr_core.data import check_pairs, load_pair, read_split, split_names, write_split



def test_split_matches_the_seed_order_and_sizes():
    names = [f"{i:05d}.png" for i in range(4500)]
    train, val = split_names(list(reversed(names)), 0.15, 42)
    # the reference script's split: sorted names, random.seed(42), random.shuffle, first int(n * 0.85) for training
    expected = sorted(names)
    random.seed(42)
    random.shuffle(expected)
    assert (len(train), len(val)) == (3825, 675)
    assert train + val == expected


def test_split_changes_with_the_seed():
    names = [f"{i}.png" for i in range(100)]
    assert split_names(names, 0.15, 1) != split_names(names, 0.15, 2)


def test_split_file_round_trip(tmp_path):
    for folder, name in itertools.product(("lr", "hr"), ("a.png", "b.png")):
        save(tmp_path / folder / name, np.zeros((8, 8, 3), np.uint8))
    write_split(tmp_path / "split.json", ["b.png"], ["a.png"])
    train, val = read_split(tmp_path / "split.json", tmp_path / "lr", tmp_path / "hr")
    assert [p.name for p in train] == ["b.png"] and val[0].hr_path == tmp_path / "hr" / "a.png"
    (tmp_path / "lr" / "a.png").unlink()
    with pytest.raises(ValueError, match=r"split.json names 1 pairs the data folders no longer hold \(a.png\): "
                                         r"moved, renamed or removed since the split; run the split stage again"):
        read_split(tmp_path / "split.json", tmp_path / "lr", tmp_path / "hr")


def test_bad_pairs_are_reported_with_reasons(paired_folder, rng):
    lr_dir, hr_dir = paired_folder / "lr", paired_folder / "hr"
    save(lr_dir / "only_lr.png", rng.integers(0, 256, (12, 16, 3), dtype=np.uint8))
    save(hr_dir / "only_hr.png", rng.integers(0, 256, (48, 64, 3), dtype=np.uint8))
    save(lr_dir / "wrong_size.png", rng.integers(0, 256, (12, 16, 3), dtype=np.uint8))
    save(hr_dir / "wrong_size.png", rng.integers(0, 256, (48, 60, 3), dtype=np.uint8))
    (lr_dir / "corrupt.png").write_bytes(b"not a png")
    save(hr_dir / "corrupt.png", rng.integers(0, 256, (48, 64, 3), dtype=np.uint8))
    pairs, rejects = check_pairs(lr_dir, hr_dir, 4)
    assert [p.name for p in pairs] == [f"{i:03d}.png" for i in range(6)]
    reasons = {r.name: r.reason for r in rejects}
    assert set(reasons) == {"only_lr.png", "only_hr.png", "wrong_size.png", "corrupt.png"}
    assert "no HR file" in reasons["only_lr.png"] and "no LR file" in reasons["only_hr.png"]
    assert "HR is 60x48, expected 4x the LR 16x12 = 64x48" in reasons["wrong_size.png"]
    assert "corrupt.png: cannot decode" in reasons["corrupt.png"]


def test_rgba_and_greyscale_pairs_are_valid(tmp_path, rng):
    grey = rng.integers(0, 256, (8, 8), dtype=np.uint8)
    save(tmp_path / "lr" / "grey.png", grey)
    save(tmp_path / "hr" / "grey.png", np.kron(grey, np.ones((4, 4), np.uint8)))
    rgba = rng.integers(0, 256, (32, 32, 4), dtype=np.uint8)
    save(tmp_path / "lr" / "rgba.png", rgba[::4, ::4])
    save(tmp_path / "hr" / "rgba.png", rgba)
    pairs, rejects = check_pairs(tmp_path / "lr", tmp_path / "hr", 4)
    assert [p.name for p in pairs] == ["grey.png", "rgba.png"] and rejects == []


@pytest.fixture
def split_stage(command_line, monkeypatch):
    """`python stages/split.py` in a folder, with params pointing at the given folders."""
    def run(folder, lr_dir, hr_dir):
        write_params(folder, {"data": {"train_lr_dir": str(lr_dir), "train_hr_dir": str(hr_dir)},
                              "train": {"patch_size": 32}})
        monkeypatch.chdir(folder)
        return command_line(stage_script("split"))
    return run


def test_split_stage_reports_rejects_in_files(paired_folder, split_stage):
    (paired_folder / "lr" / "005.png").write_bytes(b"truncated")
    hr = np.asarray(Image.open(paired_folder / "hr" / "000.png"))
    alpha = np.full(hr.shape[:2], 255, np.uint8)
    alpha[:2] = 0  # two transparent rows: the pair is valid, what was dropped is said and counted
    save(paired_folder / "hr" / "000.png", np.dstack([hr, alpha]))
    result = split_stage(paired_folder, paired_folder / "lr", paired_folder / "hr")
    assert result.status == 0, result.err
    assert "rejected 005.png" in result.err
    assert f"hr/000.png: alpha is not opaque in {2 * hr.shape[1]:,} of {alpha.size:,} pixels" in result.err
    with open(paired_folder / "data" / "rejects.csv", newline="") as f:
        assert [row["name"] for row in csv.DictReader(f)] == ["005.png"]
    counts = json.loads((paired_folder / "metrics" / "split.json").read_text())
    assert counts == {"valid_pairs": 5, "rejected": 1, "train": 4, "val": 1, "alpha_not_opaque": 1, "non_srgb_profile": 0,
                      "orientation_differs": 0, "deeper_than_8_bits": 0}


def test_split_stage_fails_when_no_pair_is_valid(tmp_path, rng, split_stage):
    save(tmp_path / "lr" / "a.png", rng.integers(0, 256, (4, 4, 3), dtype=np.uint8))
    save(tmp_path / "hr" / "a.png", rng.integers(0, 256, (4, 4, 3), dtype=np.uint8))
    result = split_stage(tmp_path, tmp_path / "lr", tmp_path / "hr")
    assert result.status == 1
    assert "0 valid training pairs (1 rejected" in result.err


def test_decoding_in_threads_keeps_the_order_and_the_pixels(paired_folder):
    from sr_core.stores import decode_pairs
    pairs, _ = check_pairs(paired_folder / "lr", paired_folder / "hr", 4)
    serial = [load_pair(pair, 4) for pair in pairs]
    for workers, cache in ((1, None), (3, None), (3, paired_folder / "cache")):
        decoded = decode_pairs(pairs, 4, cache, workers)
        assert len(decoded) == len(serial)
        for (lr_img, hr_img), (lr_ref, hr_ref) in zip(decoded, serial):
            np.testing.assert_array_equal(lr_img, lr_ref)
            np.testing.assert_array_equal(hr_img, hr_ref)


def test_load_pair_names_the_file_whose_size_is_wrong(paired_folder, rng):
    from sr_core.data import Pair
    from sr_core.images import ImageError
    save(paired_folder / "hr" / "000.png", rng.integers(0, 256, (48, 60, 3), dtype=np.uint8))
    pair = Pair("000.png", paired_folder / "lr" / "000.png", paired_folder / "hr" / "000.png")
    with pytest.raises(ImageError, match=r"hr/000.png: HR is 60x48, expected 4x the LR 16x12 = 64x48"):
        load_pair(pair, 4)


def test_extra_folders_add_named_pairs_paired_or_hr_only(paired_folder, rng, tmp_path_factory):
    extra = tmp_path_factory.mktemp("extra")
    hr_img = rng.integers(0, 256, (42, 50, 3), dtype=np.uint8)  # not a multiple of 4: cropped to 40x48
    save(extra / "T91" / "hr" / "t1.png", hr_img)
    save(extra / "paired" / "lr" / "p.png", rng.integers(0, 256, (8, 8, 3), dtype=np.uint8))
    save(extra / "paired" / "hr" / "p.png", rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
    save(extra / "paired" / "hr" / "alone.png", rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
    extra_dirs = (extra / "T91", extra / "paired")
    pairs, rejects = check_pairs(paired_folder / "lr", paired_folder / "hr", 4, extra_dirs=extra_dirs)
    names = [p.name for p in pairs]
    assert names == [f"{i:03d}.png" for i in range(6)] + ["T91/t1.png", "paired/p.png"]
    assert [(r.name, r.reason) for r in rejects] == [("paired/alone.png", f"no LR file in {extra / 'paired' / 'lr'}")]
    lr_img, hr_crop = load_pair(pairs[6], 4)
    assert hr_crop.shape == (40, 48, 3) and lr_img.shape == (10, 12, 3)

    write_split(paired_folder / "split.json", names[:7], names[7:])
    train, val = read_split(paired_folder / "split.json", paired_folder / "lr", paired_folder / "hr", extra_dirs)
    assert train[6] == pairs[6] and val == [pairs[7]]
    with pytest.raises(ValueError, match="names T91/t1.png, but no folder of data.extra_train_dirs is named 'T91'"):
        read_split(paired_folder / "split.json", paired_folder / "lr", paired_folder / "hr")
    with pytest.raises(ValueError, match="another training folder is also named 'T91'"):
        check_pairs(paired_folder / "lr", paired_folder / "hr", 4, extra_dirs=(extra / "T91", extra / "T91"))


def test_a_stable_split_moves_no_other_pair_when_one_is_fixed():
    names = [f"{i:05d}.png" for i in range(200)]
    fixed = names[:17] + names[18:]  # one bad pair taken out
    train, val = split_names(names, 0.15, 42, "stable")
    train_fixed, val_fixed = split_names(fixed, 0.15, 42, "stable")
    assert set(train) | set(val) == set(names) and not set(train) & set(val)
    assert set(val_fixed) == set(val) - {names[17]} and set(train_fixed) == set(train) - {names[17]}
    assert 0.08 < len(val) / len(names) < 0.22  # val_split on average
    assert split_names(names, 0.15, 1, "stable") != (train, val)  # the seed still chooses
    moved = (set(split_names(names, 0.15, 42)[1]) ^ set(split_names(fixed, 0.15, 42)[1])) - {names[17]}
    assert len(moved) > 5  # what the reference split does: most of val changes


def test_split_method_is_a_param_with_its_choices(tmp_path):
    assert load_params(write_params(tmp_path, {"split": {"method": "stable"}})).split.method == "stable"
    with pytest.raises(ValueError, match="split.method"):
        load_params(write_params(tmp_path, {"split": {"method": "random"}}))


def test_lr_and_hr_that_differ_only_in_extension_are_one_reject_saying_so(tmp_path, rng):
    """LR as .jpg and HR as .png were each rejected twice: "no HR file", "no LR file"."""
    lr_img = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    save(tmp_path / "lr" / "a.jpg", lr_img)
    save(tmp_path / "hr" / "a.png", np.kron(lr_img, np.ones((4, 4, 1), np.uint8)))
    pairs, rejects = check_pairs(tmp_path / "lr", tmp_path / "hr", 4)
    assert pairs == [] and [(r.name, r.reason.split(":")[0]) for r in rejects] == [
        ("a.jpg", "the LR a.jpg and the HR a.png differ only in their extension")]


def test_swapped_lr_and_hr_folders_are_one_line_saying_so(paired_folder):
    """Every pair was rejected with "HR is 4x12, expected 4x the LR", and the split had no pairs."""
    with pytest.raises(ValueError, match=f"{paired_folder / 'hr'} and {paired_folder / 'lr'} look swapped: in all 6 "
                                         f"pairs the HR is 1/4 of its LR; swap data.train_lr_dir and data.train_hr_dir"):
        check_pairs(paired_folder / "hr", paired_folder / "lr", 4)
