"""benchmarks/gpu_check.py at tiny sizes on the CPU (--smoke): every part runs and is recorded, so
the command is known to work before it first runs on a GPU."""

import json
import os
import subprocess
import sys

import pytest
import torch

from conftest import REPO

PARTS = ["environment", "train_stage", "throughput", "host_overhead", "step_memory", "batch_path", "real_scale",
         "general", "precision", "onnx_fp16"]


def run_check(out, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_check.py"), "--out", str(out), *args],
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})


@pytest.mark.slow
def test_smoke_run_measures_every_part(tmp_path):
    result = run_check(tmp_path, "--smoke")
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    parts = {part["part"]: part for part in report["parts"]}
    assert list(parts) == PARTS
    assert {name: part["status"] for name, part in parts.items()} == dict.fromkeys(PARTS, "ok")
    [stage] = parts["train_stage"]["rows"]
    assert stage["device"] == "1 x cpu" and stage["epochs"] == 2 and stage["torchrun"] is False
    throughput = parts["throughput"]["rows"]
    assert [row["setting"] for row in throughput] == [
        "reference script loop: fp32, PIL per item, whole images", "engine: whole images, fp32",
        "engine: 96 px patches, fp32", "engine: 96 px patches, fp32 with TF32",
        "engine: 96 px patches, fp32, compiled (default)", "engine: 96 px patches, fp32, compiled (reduce-overhead)"]
    assert all(row["hr_mpix_per_s"] > 0 for row in throughput[:4])
    assert all(row["status"].startswith("skipped: compiling for a CPU") for row in throughput[4:])
    overhead = parts["host_overhead"]["rows"]
    assert [row["status"] for row in overhead[:2]] == ["ok", "ok"] and overhead[1]["vs_previous"] > 0
    memory = {row["precision"]: row for row in parts["step_memory"]["rows"]}
    assert set(memory) == {"fp32", "fp16"} and memory["fp16"]["step_gb"] < memory["fp32"]["step_gb"]
    assert memory["fp32"]["how"].startswith("arithmetic")  # no GPU: labelled as such
    gpu, ram = parts["batch_path"]["rows"]  # on the CPU both stores are the host's
    assert (gpu["pairs_in"], ram["pairs_in"]) == ("gpu", "ram") and gpu["steps_per_s"] > 0 and ram["ratio"] > 0
    assert gpu["operations_a_batch"] <= 40
    assert [row["full_images"] for row in parts["real_scale"]["rows"]] == [675, 675, 500, 500]
    training, *sets = parts["general"]["rows"]
    assert training["epochs"] >= 1 and training["steps"] >= 1
    assert [row["set"] for row in sets] == ["Set5", "Set14", "BSD100"]
    assert all(row["psnr_y"] > 10 and row["bicubic_psnr_y"] > 10 for row in sets)
    assert parts["precision"]["rows"][0]["difference_db"] == 0.0  # auto is fp32 on the CPU
    assert (tmp_path / "general" / "best.pt").is_file()
    torch_row, onnx_row = parts["onnx_fp16"]["rows"]  # on the CPU: fp32 torch against onnxruntime's CPU provider
    assert torch_row["path"] == "torch fp32"
    assert onnx_row["path"] == "onnxruntime fp16 (CPUExecutionProvider)" and onnx_row["seconds"] > 0
    assert torch_row["vs torch"] == 1.0 and onnx_row["export_max_abs"] < 5e-3
    for name in PARTS:
        assert f"## {name} (ok" in result.stdout


def test_parts_that_do_not_fit_the_time_box_are_recorded_as_skipped(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    import gpu_check

    monkeypatch.setattr(sys, "argv", ["gpu_check.py", "--out", str(tmp_path), "--smoke", "--minutes", "0"])
    gpu_check.main()  # in this process: no part runs
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert [part["part"] for part in report["parts"]] == PARTS
    assert all(part["status"].startswith("skipped:") for part in report["parts"][1:])


def test_onnx_part_is_skipped_with_its_reason_where_the_packages_are_missing(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    import gpu_check

    monkeypatch.setitem(sys.modules, "onnxscript", None)  # what an import finds where it is not installed
    with pytest.raises(gpu_check.Skipped, match="onnxscript is not installed here"):
        gpu_check.onnx_fp16(torch.device("cpu"), gpu_check.sizes(smoke=True), tmp_path, tmp_path)


def test_a_setting_that_fails_keeps_its_error_beside_the_rows_that_worked(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    import gpu_check

    engine = gpu_check.engine

    def tf32_breaks(*args, **kwargs):
        if args[-1] is True:  # the TF32 setting
            raise RuntimeError("no TF32 today")
        return engine(*args, **kwargs)

    monkeypatch.setattr(gpu_check, "engine", tf32_breaks)
    monkeypatch.setattr(sys, "argv", ["gpu_check.py", "--smoke", "--parts", "throughput", "--out", str(tmp_path)])
    gpu_check.main()
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert [part["part"] for part in report["parts"]] == ["environment", "throughput"]
    rows = {row["setting"]: row for row in report["parts"][1]["rows"]}
    broken = rows.pop("engine: 96 px patches, fp32 with TF32")
    assert broken["status"] == "failed: RuntimeError: no TF32 today" and "tf32_breaks" in broken["traceback"]
    assert report["parts"][1]["status"] == "ok, but failed: engine: 96 px patches, fp32 with TF32"
    measured = [row for row in rows.values() if row["status"] == "ok"]
    assert len(measured) == 3 and all(row["hr_mpix_per_s"] > 0 for row in measured)


def test_compiled_settings_are_skipped_with_the_reason_where_no_c_compiler_is_found(monkeypatch):
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    import gpu_check

    assert gpu_check.c_compiler() is not None  # this machine has one
    monkeypatch.setattr(gpu_check.shutil, "which", lambda name: None)
    assert gpu_check.compiled_skip(torch.device("cuda")) == ("no C compiler (cc, gcc or clang) on the PATH, which "
                                                            "torch.compile needs")
