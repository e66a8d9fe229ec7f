import numpy as np
import pytest
import torch

from conftest import save
from sr_core.checkpoint import load_model, save_checkpoint
from sr_core.commands.upscale import main
from sr_core.images import read_rgb
from sr_core.inference import upscale, upscale_files
from sr_core.model import ModelConfig, SRResNet


@pytest.fixture
def checkpoint(tmp_path):
    torch.manual_seed(0)
    save_checkpoint(tmp_path / "model.pt", SRResNet(ModelConfig(num_blocks=1, num_features=8, bicubic_residual=True)))
    return tmp_path / "model.pt"


def test_files_and_folders_of_any_size(tmp_path, checkpoint, rng):
    save(tmp_path / "in" / "a.png", rng.integers(0, 256, (5, 7, 3), dtype=np.uint8))
    save(tmp_path / "in" / "b.jpg", rng.integers(0, 256, (40, 30), dtype=np.uint8))  # greyscale, tiled below
    save(tmp_path / "other" / "c.bmp", rng.integers(0, 256, (6, 6, 4), dtype=np.uint8))
    main([str(checkpoint), str(tmp_path / "in"), str(tmp_path / "other" / "c.bmp"), "--out", str(tmp_path / "out"),
          "--tile", "16", "--workers", "2"])
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.png", "b.png", "c.png"]
    model = load_model(checkpoint, torch.device("cpu"))
    for name, source in (("a", "in/a.png"), ("b", "in/b.jpg"), ("c", "other/c.bmp")):
        expected = upscale(model, read_rgb(tmp_path / source))
        assert np.abs(read_rgb(tmp_path / "out" / f"{name}.png").astype(int) - expected).max() <= 1


@pytest.mark.parametrize("out, message", [("in", "holds inputs"), ("in/sub/..", "holds inputs")])
def test_refuses_to_write_where_the_inputs_are(tmp_path, checkpoint, rng, out, message):
    save(tmp_path / "in" / "a.jpg", rng.integers(0, 256, (5, 7, 3), dtype=np.uint8))
    (tmp_path / "in" / "sub").mkdir()
    with pytest.raises(ValueError, match=message):
        main([str(checkpoint), str(tmp_path / "in" / "a.jpg"), "--out", str(tmp_path / out)])
    assert sorted(p.name for p in (tmp_path / "in").iterdir()) == ["a.jpg", "sub"]


def test_bad_inputs_are_refused_with_their_name(tmp_path, checkpoint):
    (tmp_path / "notes.txt").write_text("not an image")
    with pytest.raises(ValueError, match="notes.txt: not an image file"):
        main([str(checkpoint), str(tmp_path / "notes.txt"), "--out", str(tmp_path / "out")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no images in"):
        main([str(checkpoint), str(tmp_path / "empty"), "--out", str(tmp_path / "out")])
    with pytest.raises(ValueError, match="nothere.png does not exist"):
        main([str(checkpoint), str(tmp_path / "nothere.png"), "--out", str(tmp_path / "out")])


def test_two_inputs_with_one_output_name_are_refused(tmp_path, checkpoint, rng):
    save(tmp_path / "one" / "a.png", rng.integers(0, 256, (5, 7, 3), dtype=np.uint8))
    save(tmp_path / "two" / "a.jpg", rng.integers(0, 256, (5, 7, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match="a.png, .*a.jpg would all be written to"):
        main([str(checkpoint), str(tmp_path / "one"), str(tmp_path / "two"), "--out", str(tmp_path / "out")])


def test_a_folder_keeps_going_past_a_bad_file_and_names_it(tmp_path, command_line):
    """One undecodable file in a folder of good ones wrote nothing for the whole folder."""
    torch.manual_seed(0)
    save_checkpoint(tmp_path / "model.pt", SRResNet(ModelConfig(num_blocks=1, num_features=8)))
    for name in ("a.png", "c.png"):
        save(tmp_path / "in" / name, np.zeros((6, 5, 3), np.uint8))
    (tmp_path / "in" / "b.png").write_bytes(b"not a picture")
    result = command_line(main, tmp_path / "model.pt", tmp_path / "in", "--out", tmp_path / "out")
    assert result.status == 1
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.png", "c.png"]
    assert read_rgb(tmp_path / "out" / "c.png").shape == (24, 20, 3)
    assert "error: 1 of 3 images could not be read, and the other 2 were written to" in result.err
    assert "in/b.png" in result.err.splitlines()[-2]


@pytest.mark.parametrize("good", [1, 2])
def test_the_count_of_files_written_past_a_bad_one_is_in_the_right_number(tmp_path, good):
    """"the other 1 were written" read wrong."""
    torch.manual_seed(0)
    model = SRResNet(ModelConfig(num_blocks=1, num_features=8)).eval()
    paths = [tmp_path / "in" / f"{i}.png" for i in range(good)]
    for path in paths:
        save(path, np.zeros((6, 5, 3), np.uint8))
    (tmp_path / "in" / "bad.png").write_bytes(b"not a picture")
    verb = "was" if good == 1 else "were"
    with pytest.raises(ValueError, match=f"1 of {good + 1} images could not be read, and the other {good} {verb} written"):
        upscale_files(model, [*paths, tmp_path / "in" / "bad.png"], tmp_path / "out", keep_going=True)


@pytest.mark.parametrize("count", [1, 2])
def test_the_count_of_images_written_is_in_the_right_number(tmp_path, checkpoint, caplog, count):
    """"wrote 1 images" read wrong."""
    for i in range(count):
        save(tmp_path / "in" / f"{i}.png", np.zeros((6, 5, 3), np.uint8))
    caplog.set_level("INFO")
    main([str(checkpoint), str(tmp_path / "in"), "--out", str(tmp_path / "out")])
    assert f"wrote {count} image{'' if count == 1 else 's'} to {tmp_path / 'out'}" in caplog.messages
