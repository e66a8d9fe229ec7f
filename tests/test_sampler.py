import numpy as np
import pytest
import torch
from torch.profiler import ProfilerActivity, profile

from sr_core.data import Pair, check_pairs
from sr_core.files import write_bytes
from sr_core.sampler import PatchBatcher, transform_coordinates
from sr_core.stores import ImageStore, StripStore, strips

from conftest import save

CPU = torch.device("cpu")


@pytest.fixture
def pairs(paired_folder):
    return check_pairs(paired_folder / "lr", paired_folder / "hr", 4)[0]


@pytest.fixture
def mixed(tmp_path, rng) -> tuple[list[Pair], list[tuple[np.ndarray, np.ndarray]]]:
    """Pairs of several sizes, square and not, with unrelated random LR and HR (so a misaligned cut shows)."""
    pairs, decoded = [], []
    for i, (height, width) in enumerate([(30, 41), (25, 50), (40, 40), (24, 33), (26, 97)]):
        lr_img, hr_img = (rng.integers(0, 256, (k * height, k * width, 3), dtype=np.uint8) for k in (1, 4))
        pair = Pair(f"{i}.png", tmp_path / "lr" / f"{i}.png", tmp_path / "hr" / f"{i}.png")
        save(pair.lr_path, lr_img)
        save(pair.hr_path, hr_img)
        pairs.append(pair)
        decoded.append((lr_img, hr_img))
    return pairs, decoded


def stores(pairs, decoded, patch_size, tmp_path):
    """The same pairs in RAM and on disk."""
    return [ImageStore.from_arrays(decoded, 4, CPU), StripStore.decode(pairs, 4, patch_size // 4, tmp_path / "cache")]


def as_float(images: list[np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255


@pytest.mark.parametrize("augment", [True, False])
@pytest.mark.parametrize("patch_size", [16, 96])
def test_each_patch_is_the_drawn_crop_flipped_or_turned_as_drawn(mixed, tmp_path, patch_size, augment):
    pairs, decoded = mixed
    for store in stores(pairs, decoded, patch_size, tmp_path):
        batcher = PatchBatcher(store, patch_size, augment, CPU, seed=0, batch_size=7)
        for _ in range(4):
            draw = batcher.draw()
            lr, hr = (view.float() / 255 for view in batcher.views(batcher.cut(draw)))
            p = patch_size // 4
            expected_lr, expected_hr = [], []
            for image, y, x, kind in zip(draw.images, draw.y, draw.x, draw.transforms):
                lr_img, hr_img = decoded[image]
                lr_crop, hr_crop = lr_img[y:y + p, x:x + p], hr_img[4 * y:4 * (y + p), 4 * x:4 * (x + p)]
                expected_lr.append(lr_crop[transform_coordinates(p, p, kind)])
                expected_hr.append(hr_crop[transform_coordinates(4 * p, 4 * p, kind)])
            assert torch.equal(lr, as_float(expected_lr)) and torch.equal(hr, as_float(expected_hr))
        store.close()


@pytest.mark.parametrize("patch_size", [0, 16, 32])
def test_batches_are_aligned_after_augmentation(pairs, tmp_path, patch_size):
    for store in (ImageStore.decode(pairs, 4, CPU), StripStore.decode(pairs, 4, patch_size // 4, tmp_path / "c")):
        batcher = PatchBatcher(store, patch_size, augment=True, device=CPU, seed=0, batch_size=3)
        for _ in range(5):
            lr_batch, hr_batch = batcher.sample()
            assert lr_batch.dtype == torch.float32 and 0 <= lr_batch.min() and lr_batch.max() <= 1
            assert lr_batch.shape == (3, 3, *((patch_size // 4,) * 2 if patch_size else (12, 16)))
            assert hr_batch.shape[-2:] == (4 * lr_batch.shape[-2], 4 * lr_batch.shape[-1])
            # the HR is the LR with each pixel repeated 4x4, under any flip or rotation
            assert (hr_batch[..., ::4, ::4] == lr_batch).all()
        batcher.close()
        store.close()


@pytest.mark.parametrize("patch_size", [0, 16])
def test_disk_and_ram_give_the_same_batches_and_resume_to_them(mixed, tmp_path, patch_size):
    pairs, decoded = mixed
    if not patch_size:  # whole images need one size
        pairs, decoded = pairs[2:3] * 3, decoded[2:3] * 3
    in_ram, on_disk = stores(pairs, decoded, patch_size, tmp_path)
    expected = PatchBatcher(in_ram, patch_size, True, CPU, seed=5, batch_size=4)
    batches = [expected.sample() for _ in range(8)]
    disk = PatchBatcher(on_disk, patch_size, True, CPU, seed=5, batch_size=4)
    assert disk.prefetch and not expected.prefetch
    for batch in batches[:3]:
        assert all(torch.equal(a, b) for a, b in zip(disk.sample(), batch))
    state = disk.state()  # while the background thread has drawn batches ahead
    for batch in batches[3:5]:
        assert all(torch.equal(a, b) for a, b in zip(disk.sample(), batch))
    disk.close()
    resumed = PatchBatcher(on_disk, patch_size, True, CPU, seed=99, batch_size=4)
    resumed.set_state(state)
    for batch in batches[3:]:
        assert all(torch.equal(a, b) for a, b in zip(resumed.sample(), batch))
    resumed.close()
    on_disk.close()


def test_every_image_comes_once_before_any_repeats(mixed):
    _, decoded = mixed
    batcher = PatchBatcher(ImageStore.from_arrays(decoded, 4, CPU), 16, True, CPU, seed=0, batch_size=3)
    images = np.concatenate([batcher.draw().images for _ in range(10)])  # 30 draws: 6 rounds of the 5 images
    for start in range(0, 30, 5):
        assert sorted(images[start:start + 5]) == [0, 1, 2, 3, 4]


def test_positions_are_uniform_and_all_flips_and_turns_come(mixed):
    _, decoded = mixed
    batcher = PatchBatcher(ImageStore.from_arrays(decoded, 4, CPU), 16, True, CPU, seed=0, batch_size=50)
    draws = [batcher.draw() for _ in range(200)]
    images, y, kinds = (np.concatenate([getattr(d, key) for d in draws]) for key in ("images", "y", "transforms"))
    assert np.bincount(kinds).tolist() == pytest.approx([len(kinds) / 8] * 8, rel=0.1)
    first = y[images == 2]  # a 40x40 LR image: 37 positions for a 4 px patch
    assert np.bincount(first, minlength=37).min() > 0 and first.max() == 36
    assert abs(first.mean() - 18) < 1  # 4 standard errors


def test_patches_that_are_not_square_only_turn_by_180_degrees(mixed):
    _, decoded = mixed
    whole = PatchBatcher(ImageStore.from_arrays(decoded[:1] * 2, 4, CPU), 0, True, CPU, seed=0, batch_size=2)
    assert sorted(set(np.concatenate([whole.draw().transforms for _ in range(50)]))) == [0, 1, 2, 3]
    lr, hr = whole.sample()
    assert lr.shape == (2, 3, 30, 41) and hr.shape == (2, 3, 120, 164)


@pytest.mark.parametrize("on_disk", [False, True])
def test_a_batch_takes_a_constant_handful_of_tensor_operations(mixed, tmp_path, on_disk):
    """aten operations of every thread, nested ones included: those of the thread that returns the
    batches per batch returned, those of the background thread (on disk) per batch it prepared."""
    pairs, decoded = mixed
    counts = []
    for batch_size in (16, 64):  # a count that does not grow with the batch: any two sizes show it
        store = stores(pairs, decoded, 96, tmp_path)[on_disk]
        batcher = PatchBatcher(store, 96, True, CPU, seed=0, batch_size=batch_size)
        batcher.sample()
        batcher.close()  # the background thread starts again inside the profile, every batch it prepares counted
        prepared, prepare = [0], batcher.prepared

        def counted():
            prepared[0] += 1
            return prepare()
        batcher.prepared = counted
        config = torch._C._profiler._ExperimentalConfig(profile_all_threads=True)
        with profile(activities=[ProfilerActivity.CPU], experimental_config=config) as prof:
            for _ in range(20):
                batcher.sample()
            batcher.close()
        events = [event for event in prof.events() if event.name.startswith("aten::")]
        consumer = {event.thread for event in events if event.name == "aten::div_"}  # only `sample` divides
        here = sum(event.thread in consumer for event in events)
        counts.append(here / 20 + (len(events) - here) / max(prepared[0], 1))
        assert prepared[0] >= 20 if on_disk else prepared[0] == 20
        store.close()
    assert max(counts) <= 40 and counts[0] == pytest.approx(counts[1], abs=0.5), counts


def test_an_error_in_the_background_thread_reaches_the_training_loop(pairs, tmp_path):
    store = StripStore.decode(pairs, 4, 4, tmp_path / "cache")
    batcher = PatchBatcher(store, 16, True, CPU, seed=0, batch_size=2)
    batcher.sample()
    for path in store.files:
        path.unlink()
    with pytest.raises(FileNotFoundError, match=r"\.strips"):
        for _ in range(20):
            batcher.sample()
    store.close()


def test_a_disk_file_of_the_wrong_size_is_named(pairs, tmp_path):
    store = StripStore.decode(pairs, 4, 4, tmp_path / "cache")
    write_bytes(store.files[1], b"\0" * 10)
    with pytest.raises(ValueError, match=f"{store.files[1].name}: 10 bytes where its layout needs"):
        StripStore(store.files, store.lr_shapes.tolist(), 4, 4)
    store.close()


def test_a_strip_holds_each_lr_row_after_its_hr_rows(rng):
    lr_img, hr_img = rng.integers(0, 256, (5, 20, 3), dtype=np.uint8), rng.integers(0, 256, (10, 40, 3), dtype=np.uint8)
    laid = np.frombuffer(strips(lr_img, hr_img, 2, 3), np.uint8)
    # 12 LR px wide strips, overlapping by 3: at x = 0 and x = 8 (the last, flush right)
    records = laid.reshape(2, 5, -1)
    assert records.shape[-1] == 3 * 12 * 5
    np.testing.assert_array_equal(records[1, 2, :3 * 24], hr_img[4, 16:40].ravel())
    np.testing.assert_array_equal(records[1, 2, 3 * 48:], lr_img[2, 8:20].ravel())


def test_patch_larger_than_the_images_is_an_error(pairs):
    with pytest.raises(ValueError, match="patch_size 64 needs LR images of at least 16 px"):
        PatchBatcher(ImageStore.decode(pairs, 4, CPU), 64, augment=True, device=CPU, seed=0, batch_size=2)


def test_whole_images_of_several_sizes_are_an_error(mixed):
    with pytest.raises(ValueError, match="need images of one size"):
        PatchBatcher(ImageStore.from_arrays(mixed[1], 4, CPU), 0, augment=False, device=CPU, seed=0, batch_size=2)
