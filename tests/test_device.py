"""How a device runs: precision by GPU generation, kernels for the card, loss scaling in fp16, the
backends' flags, the memory a step needs, and inference's own device. GPUs are faked where a CPU
cannot be one: capabilities and names through torch.cuda's queries (tests/hooks for a
subprocess), fp16 and bf16 through CPU autocast."""

import csv
import logging

import pytest
import torch
import torch.nn.functional as F

from conftest import preset, stage_script, write_params
from sr_core.checkpoint import load_checkpoint, save_train_state
from sr_core.config import ModelConfig, Params, TrainConfig
from sr_core.data import check_pairs, write_split
from sr_core.device import autocast, grad_scaler, has_kernels, resolve_precision, set_backends
from sr_core.model import SRResNet
from sr_core.training import decode_data, require_step_fits, train, training_step

GIB = 2**30
CUDA = torch.device("cuda")
CARDS = {(9, 0): "NVIDIA H100 80GB HBM3", (8, 0): "NVIDIA A100-SXM4-40GB", (7, 5): "Tesla T4",
         (7, 0): "Tesla V100-SXM2-16GB", (6, 1): "Tesla P40", (6, 0): "Tesla P100-PCIE-16GB", (5, 2): "Tesla M60"}


def fake_gpu(monkeypatch, capability: tuple[int, int]) -> None:
    """torch.cuda answers as on the card of `capability` (CARDS) for the queries the device logic makes."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: CARDS[capability])


@pytest.fixture(autouse=True)
def backends_restored():
    """Every test leaves the process's backend flags as it found them."""
    flags = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark,
             torch.backends.cudnn.deterministic, torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    yield
    torch.use_deterministic_algorithms(flags[0])
    torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = flags[1:3]
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = flags[3:]


@pytest.mark.parametrize("capability, expected", [((9, 0), "bf16"), ((8, 0), "bf16"), ((7, 5), "fp16"),
                                                  ((7, 0), "fp16"), ((6, 0), "fp16"), ((6, 1), "fp32"),
                                                  ((5, 2), "fp32")])
def test_auto_precision_follows_the_gpu_generation(monkeypatch, capability, expected):
    fake_gpu(monkeypatch, capability)
    precision, why = resolve_precision("auto", CUDA)
    assert precision == expected
    assert why.startswith(f"auto on {CARDS[capability]} (sm_{capability[0]}{capability[1]}): {expected}")
    assert resolve_precision("fp32", CUDA)[0] == "fp32"  # asked for: taken as it is
    assert resolve_precision("fp16", CUDA)[0] == "fp16"


def test_auto_is_fp32_on_the_cpu_where_bf16_and_fp16_are_taken_when_set():
    cpu = torch.device("cpu")
    assert resolve_precision("auto", cpu)[0] == "fp32" and not autocast(cpu, "fp32")._enabled
    for precision, dtype in (("bf16", torch.bfloat16), ("fp16", torch.float16)):
        assert resolve_precision(precision, cpu)[0] == precision
        with autocast(cpu, precision):
            assert torch.nn.Conv2d(3, 3, 3)(torch.rand(1, 3, 8, 8)).dtype == dtype


def test_bf16_on_a_gpu_without_it_is_refused_naming_the_card_and_what_runs_there(monkeypatch):
    fake_gpu(monkeypatch, (7, 5))
    with pytest.raises(ValueError, match=r"precision bf16: Tesla T4 \(sm_75\) has no bf16 units .* set auto "
                                         r"\(fp16 on this card\)"):
        resolve_precision("bf16", CUDA)


@pytest.mark.parametrize("capability, arch_list, runs", [
    ((7, 5), ["sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120"], True),
    ((6, 0), ["sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120"], False),  # a P100 on a CUDA 13 build
    ((7, 0), ["sm_75", "sm_80"], False),  # a V100: no binary for major 7 at or below minor 0
    ((8, 9), ["sm_80", "sm_86"], True),  # an L4 runs sm_86's binary
    ((9, 0), ["sm_80", "compute_80"], True),  # PTX, compiled by the driver
    ((10, 0), ["sm_80", "sm_90"], False),
    ((6, 0), ["sm_50", "sm_60", "sm_70", "sm_75", "sm_80", "sm_86", "sm_90"], True),  # a CUDA 12.6 build
])
def test_kernels_for_a_card_follow_cuda_binary_and_ptx_compatibility(capability, arch_list, runs):
    assert has_kernels(capability, arch_list) is runs


def test_a_gpu_this_torch_has_no_kernels_for_is_refused_in_one_line_before_any_pair_is_decoded(
        paired_folder, monkeypatch, command_line):
    names = sorted(p.name for p in (paired_folder / "lr").iterdir())
    write_split(paired_folder / "data" / "split.json", names[:5], names[5:])
    write_params(paired_folder, {"data": {"train_lr_dir": "lr", "train_hr_dir": "hr"},
                                 "model": {"num_blocks": 1, "num_features": 8}, "train": {"device": "auto"}})
    fake_gpu(monkeypatch, (6, 0))
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr("sr_core.checkpoint.hold_train_state", lambda path: None)  # held by this process to its end
    monkeypatch.chdir(paired_folder)
    ran = command_line(stage_script("train"))
    assert ran.status == 1
    error, hint = ran.err.strip().splitlines()
    assert error.startswith("error: Tesla P100-PCIE-16GB (sm_60) is not among the GPUs this torch")
    assert f"has kernels for ({', '.join(torch.cuda.get_arch_list())})" in error
    assert "--index-url https://download.pytorch.org/whl/cu126" in error
    assert hint == "(set SR_DEBUG=1 to see the traceback)"
    assert not (paired_folder / ".cache").exists() and not (paired_folder / "models" / "last.pt").exists()


def test_fp16_skips_a_step_whose_gradients_overflow_and_lowers_the_scale():
    torch.manual_seed(0)
    model = SRResNet(ModelConfig(num_blocks=1, num_features=8, batch_norm=False))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
    scaler = grad_scaler(torch.device("cpu"), "fp16")
    lr_img, hr_img = torch.rand(2, 3, 8, 8), torch.rand(2, 3, 32, 32)
    before = [p.detach().clone() for p in model.parameters()]

    def overflowing(sr_img, hr_img):  # finite, but its gradients, scaled by 65,536, are not
        return F.l1_loss(sr_img, hr_img) * 1e35

    training_step(model, lr_img, hr_img, overflowing, optimizer, scaler, "fp16")
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))  # skipped
    assert scaler.get_scale() == 65536 / 2
    loss = training_step(model, lr_img, hr_img, F.l1_loss, optimizer, scaler, "fp16")
    assert torch.isfinite(loss) and not all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


def history(path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def fp16_params(epochs: int, model: ModelConfig = ModelConfig(num_blocks=1, num_features=8, bicubic_residual=True)
                ) -> Params:
    return Params(lr=2e-3, model=model, train=TrainConfig(epochs=epochs, batch_size=4, patch_size=32,
                                                          patches_per_image=8, schedule="cosine", device="cpu",
                                                          precision="fp16"))


def test_fp16_with_loss_scaling_trains_the_demo_network_as_fp32_does_and_records_its_precision(photo_tiles, tmp_path):
    """The demo's network on photographs' tiles, in fp16 (CPU autocast, loss scaling) and in fp32
    from the same start: the loss falls, the val PSNR-Y follows fp32's, and the runs differ."""
    histories = {}
    for precision in ("fp32", "fp16"):
        files = [tmp_path / precision / name for name in ("best.pt", "history.csv", "last.pt", "cache")]
        params = Params(lr=2e-3, model=preset("demo").model,
                        train=TrainConfig(epochs=3, batch_size=16, patch_size=32, patches_per_image=1, schedule="cosine",
                                          warmup_epochs=1, device="cpu", precision=precision))
        summary = train(params, photo_tiles[:32], photo_tiles[-8:], *files)
        histories[precision] = history(files[1])
        assert (summary["precision"], summary["tf32"], summary["deterministic"], summary["gpu"]) == (
            precision, False, False, None)
        assert load_checkpoint(files[0])["run"]["precision"] == precision
    losses = [float(row["train_loss"]) for row in histories["fp16"]]
    assert losses[-1] < 0.9 * losses[0]
    for fp16, fp32 in zip(histories["fp16"], histories["fp32"]):
        assert float(fp16["val_psnr_y"]) == pytest.approx(float(fp32["val_psnr_y"]), abs=0.1)
    assert [row["train_loss"] for row in histories["fp16"]] != [row["train_loss"] for row in histories["fp32"]]


def test_an_fp16_run_killed_and_resumed_has_the_history_of_one_uninterrupted(paired_folder, monkeypatch):
    """The loss scale is part of the resume state: a scaler that grows every step (and so keeps
    overflowing and backing off) makes the skipped steps, and so the history, depend on it."""
    monkeypatch.setattr("sr_core.training.grad_scaler", lambda device, precision: torch.amp.GradScaler(
        device.type, growth_interval=1, enabled=precision == "fp16"))
    pairs, _ = check_pairs(paired_folder / "lr", paired_folder / "hr", 4)

    def files(name):
        return [paired_folder / name / file for file in ("best.pt", "history.csv", "last.pt", "cache")]

    train(fp16_params(4), pairs[:5], pairs[5:], *files("whole"))

    def killed_after_epoch_2(path, state):
        save_train_state(path, state)
        if state["epoch"] == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr("sr_core.training.save_train_state", killed_after_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        train(fp16_params(4), pairs[:5], pairs[5:], *files("resumed"))
    monkeypatch.setattr("sr_core.training.save_train_state", save_train_state)
    train(fp16_params(4), pairs[:5], pairs[5:], *files("resumed"))
    whole, resumed = (history(files(name)[1]) for name in ("whole", "resumed"))
    drop = ("steps_per_second", "seconds")
    assert [{k: v for k, v in row.items() if k not in drop} for row in resumed] == \
           [{k: v for k, v in row.items() if k not in drop} for row in whole]
    scales = [load_checkpoint(files(name)[2])["scaler"]["scale"] for name in ("whole", "resumed")]
    assert scales[0] == scales[1] != 65536.0  # the scale moved, and the resumed run carried it on


def test_deterministic_algorithms_are_asked_for_and_tf32_is_stated_as_it_runs():
    cpu = torch.device("cpu")
    assert set_backends(cpu, tf32=True, deterministic=True) == {"tf32": False, "deterministic": True}  # no TF32 here
    assert torch.are_deterministic_algorithms_enabled() and not torch.backends.cudnn.benchmark
    assert torch.backends.cudnn.conv.fp32_precision == torch.backends.cuda.matmul.fp32_precision == "tf32"
    assert set_backends(cpu, tf32=False, deterministic=False) == {"tf32": False, "deterministic": False}
    assert not torch.are_deterministic_algorithms_enabled() and not torch.backends.cudnn.allow_tf32
    assert not torch.backends.cuda.matmul.allow_tf32 and torch.get_float32_matmul_precision() == "highest"


def test_a_setting_that_does_not_fit_names_by_how_much_and_the_params_that_lower_it():
    reference = preset("reference").train  # batch 8 of whole images, fp32
    with pytest.raises(ValueError) as refused:
        require_step_fits(22 * GIB, 3 * GIB, 15 * GIB, "Tesla T4 (sm_75)", reference, "fp32", "fp16")
    assert str(refused.value) == (
        "a training step of 8 whole images in fp32 needs about 23.6 GB of GPU memory and validation about 3.2 GB: "
        "with 1.1 GB of reserve, 8.6 GB more than the 16.1 GB free on Tesla T4 (sm_75). To fit: lower "
        "train.batch_size (8); train on patches (train.patch_size, 0 for whole images now); set train.precision to "
        "auto (fp16 on this card: about half the memory)")
    require_step_fits(11 * GIB, 3 * GIB, 15 * GIB, "Tesla T4 (sm_75)", reference, "fp16", "fp16")  # fits
    with pytest.raises(ValueError, match=r"To fit: lower inference.tile for validation$"):
        require_step_fits(2 * GIB, 15 * GIB, 15 * GIB, "Tesla T4 (sm_75)", reference, "fp16", "fp16")


def test_the_step_is_checked_on_the_gpu_before_any_pair_is_decoded(paired_folder, monkeypatch):
    fake_gpu(monkeypatch, (7, 5))
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (15 * GIB, 16 * GIB))
    monkeypatch.setattr("sr_core.training.step_memory", lambda *args: 22 * GIB)

    def decoded(*args, **kwargs):
        raise AssertionError("pairs decoded before the step was checked")

    monkeypatch.setattr("sr_core.training.ImageStore.decode", decoded)
    monkeypatch.setattr("sr_core.training.StripStore.decode", decoded)
    pairs, _ = check_pairs(paired_folder / "lr", paired_folder / "hr", 4)
    params = preset("reference")
    with pytest.raises(ValueError, match=r"needs about 23.6 GB .* on Tesla T4 \(sm_75\)"):
        decode_data(params, pairs[:5], pairs[5:], paired_folder / "cache", CUDA, SRResNet(params.model), 8, "fp32",
                    log_choice=True)


@pytest.mark.parametrize("exported", ["demo"], indirect=True)
def test_an_onnx_model_runs_on_onnxruntimes_cpu_where_it_has_no_gpu_provider(exported, monkeypatch, caplog):
    from sr_core.config import InferenceConfig
    from sr_core.inference import inference_model
    from sr_core.onnx_model import OnnxModel

    onnx_path = exported.onnx
    fake_gpu(monkeypatch, (7, 5))
    monkeypatch.setattr("sr_core.inference.onnxruntime_has_cuda", lambda: False)
    with caplog.at_level(logging.INFO):
        model = inference_model(onnx_path, InferenceConfig(device="auto"))
    assert isinstance(model, OnnxModel) and model.device.type == "cpu"
    assert "has no CUDA provider, so the ONNX model runs on the CPU (pip install onnxruntime-gpu" in caplog.text
    with pytest.raises(ValueError, match="install onnxruntime-gpu, or run on the CPU"):  # a GPU asked for by name
        inference_model(onnx_path, InferenceConfig(device="cuda"))
