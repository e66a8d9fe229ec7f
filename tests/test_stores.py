import numpy as np
import pytest
import torch

from conftest import preset
from sr_core.data import check_pairs
from sr_core.model import inference_bytes
from sr_core.stores import GPU_RESERVE, decode_pairs, residency
from sr_core.validation import ImageBatches, validation_bytes

GB = 10**9
REAL_JOB = 29_700_000_000  # 4,500 pairs of 1080p HR and 270p LR, decoded


@pytest.fixture
def pairs(paired_folder):
    return check_pairs(paired_folder / "lr", paired_folder / "hr", 4)[0]


def test_disk_cache_memory_maps_the_same_arrays(pairs, tmp_path):
    in_memory = decode_pairs(pairs, 4)
    cached = decode_pairs(pairs, 4, tmp_path / "cache")
    again = decode_pairs(pairs, 4, tmp_path / "cache")  # read back, not decoded again
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 2 * len(pairs)
    for (lr_a, hr_a), (lr_b, hr_b), (lr_c, _) in zip(in_memory, cached, again):
        assert isinstance(lr_b, np.memmap)
        np.testing.assert_array_equal(lr_a, lr_c)
        np.testing.assert_array_equal(hr_a, hr_b)


def test_validation_of_the_real_job_takes_two_1080p_images_at_a_time():
    """675 val images of 480x270 LR, tiles of 512: batches of two whole images (259,200 LR pixels),
    the 16 x 64 network's activations on them and their HR and SR images."""
    val_bytes = validation_bytes([(270, 480)] * 675, preset("gpu").model, tile=512)
    assert val_bytes == inference_bytes(preset("gpu").model, 2 * 270 * 480) + 2 * 2 * 3 * 1080 * 1920
    assert 3.0 * GB < val_bytes < 3.1 * GB
    assert validation_bytes([(270, 480)] * 3, preset("gpu").model, tile=0) < val_bytes  # one at a time
    # a tile of 128 cuts each image into pieces of at most 128 + 2 x the receptive radius (40) a side
    assert validation_bytes([(270, 480)], preset("gpu").model, tile=128) == (
        inference_bytes(preset("gpu").model, 208 * 208) + 2 * 3 * 1080 * 1920)


def test_the_real_job_stays_on_an_80_gb_gpu_beside_its_training_step_and_validation():
    where, why = residency(REAL_JOB, "auto", ram_available=200 * GB, processes=1, gpu_free=79 * GB,
                           step_peak=2 * GB, val_peak=3 * GB)
    assert where == "gpu"
    assert why == ("29.7 GB decoded + 1.5 x 2.0 GB for a training step + 3.0 GB for validation + 1.1 GB fit in "
                   "the 79.0 GB free on the GPU")


def test_what_does_not_fit_beside_the_step_goes_to_ram_or_disk():
    # a 16 GB notebook GPU with 29 GB of RAM: neither holds the real job
    where, why = residency(REAL_JOB, "auto", ram_available=29 * GB, processes=1, gpu_free=15 * GB, step_peak=GB)
    assert where == "disk" and "exceed the 15.0 GB free on the GPU" in why and "exceed half the 29.0 GB" in why
    # fits beside nothing else: the step's margin and the reserve count
    needed = 10 * GB + 1.5 * 4 * GB + 3 * GB + GPU_RESERVE
    assert residency(10 * GB, "auto", 100 * GB, 1, gpu_free=int(needed), step_peak=4 * GB, val_peak=3 * GB)[0] == "gpu"
    assert residency(10 * GB, "auto", 100 * GB, 1, gpu_free=int(needed) - 1, step_peak=4 * GB,
                     val_peak=3 * GB)[0] == "ram"  # one validation pass would not fit beside them
    # each process of the node holds its own copy in RAM
    assert residency(10 * GB, "auto", 100 * GB, 4)[0] == "ram"
    assert residency(10 * GB, "auto", 100 * GB, 5)[0] == "disk"


def test_decode_cache_forces_its_choice():
    assert residency(GB, "disk", 100 * GB, 1, 79 * GB, GB) == ("disk", "train.decode_cache is disk")
    where, why = residency(REAL_JOB, "memory", 29 * GB, 1)
    assert where == "ram" and why.endswith("train.decode_cache is memory")


def test_val_batches_are_whole_images_of_one_size(pairs):
    batches = list(ImageBatches(decode_pairs(pairs, 4), 0, torch.device("cpu")))
    assert sum(len(lr) for lr, _ in batches) == len(pairs)
    assert all(lr.shape[1:] == (12, 16, 3) and hr.shape[1:] == (48, 64, 3) for lr, hr in batches)
