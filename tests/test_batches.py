import numpy as np
import pytest
import torch

from sr_core.batches import PatchBatcher, augment, decode_pairs
from sr_core.data import check_pairs

CPU = torch.device("cpu")


@pytest.fixture
def pairs(paired_folder):
    return check_pairs(paired_folder / "lr", paired_folder / "hr", 4)[0]


@pytest.mark.parametrize("patch_size", [0, 16, 32])
def test_batches_are_aligned_after_augmentation(pairs, patch_size):
    batcher = PatchBatcher(decode_pairs(pairs, 4), 4, patch_size, augment=True, device=CPU, seed=0)
    for _ in range(5):
        lr_batch, hr_batch = batcher.sample(3)
        assert lr_batch.dtype == torch.float32 and 0 <= lr_batch.min() and lr_batch.max() <= 1
        assert lr_batch.shape == (3, 3, *((patch_size // 4,) * 2 if patch_size else (12, 16)))
        assert hr_batch.shape[-2:] == (4 * lr_batch.shape[-2], 4 * lr_batch.shape[-1])
        # the HR is the LR with each pixel repeated 4x4, under any flip or rotation
        assert (hr_batch[..., ::4, ::4] == lr_batch).all()


def test_every_image_comes_once_before_any_repeats(pairs):
    batcher = PatchBatcher(decode_pairs(pairs, 4), 4, 0, augment=False, device=CPU, seed=0)
    lr_batch, _ = batcher.sample(6)
    assert len({lr_img.sum().item() for lr_img in lr_batch}) == 6


def test_state_round_trip_replays_the_same_batches(pairs):
    batcher = PatchBatcher(decode_pairs(pairs, 4), 4, 16, augment=True, device=CPU, seed=0)
    batcher.sample(4)
    state = batcher.state()
    expected = batcher.sample(4)
    resumed = PatchBatcher(decode_pairs(pairs, 4), 4, 16, augment=True, device=CPU, seed=99)
    resumed.set_state(state)
    for a, b in zip(expected, resumed.sample(4)):
        torch.testing.assert_close(a, b)


def test_disk_cache_memory_maps_the_same_arrays(pairs, tmp_path):
    in_memory = decode_pairs(pairs, 4)
    cached = decode_pairs(pairs, 4, tmp_path / "cache")
    again = decode_pairs(pairs, 4, tmp_path / "cache")  # read back, not decoded again
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 2 * len(pairs)
    for (lr_a, hr_a), (lr_b, hr_b), (lr_c, _) in zip(in_memory, cached, again):
        assert isinstance(lr_b, np.memmap)
        np.testing.assert_array_equal(lr_a, lr_c)
        np.testing.assert_array_equal(hr_a, hr_b)


def test_patch_larger_than_the_images_is_an_error(pairs):
    with pytest.raises(ValueError, match="patch_size 64 needs LR images of at least 16 px"):
        PatchBatcher(decode_pairs(pairs, 4), 4, 64, augment=True, device=CPU, seed=0)


def test_whole_images_of_several_sizes_are_an_error(pairs):
    decoded = decode_pairs(pairs, 4)
    decoded[0] = (decoded[0][0][:8], decoded[0][1][:32])
    with pytest.raises(ValueError, match="need images of one size"):
        PatchBatcher(decoded, 4, 0, augment=False, device=CPU, seed=0)


def test_non_square_images_only_turn_by_180_degrees():
    generator = torch.Generator().manual_seed(0)
    lr_img = torch.arange(6.0).reshape(1, 2, 3)
    for _ in range(20):
        turned, _ = augment(lr_img, lr_img, generator)
        assert turned.shape == lr_img.shape
