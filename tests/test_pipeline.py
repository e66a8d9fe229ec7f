"""The whole pipeline through DVC, in a temporary copy of the repo with tiny params."""

import ast
import csv
import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import psutil
import pytest
import torch
import yaml
from PIL import Image

from conftest import REPO, deep_update, free_port, read_history, save, wait_for_epochs
from sr_core.checkpoint import load_model, save_checkpoint
from sr_core.commands.compare import main as compare_main
from sr_core.commands.upscale import main as upscale_main
from sr_core.competition import decode_cell
from sr_core.config import TrainConfig
from sr_core.submission import check_submission

pytestmark = pytest.mark.slow  # each test runs DVC in a copy of the repository

ALWAYS_RUN = {"check_data", "init_from"}  # they only look at folder names and hash train.init_from

# Every value the test relies on is set here, whatever the checkout's params.yaml holds (a user's
# `lr: 2e-4` there would make `dvc exp run -S lr=2e-4` change nothing).
TINY = {
    "lr": 5e-4,
    "demo": {"train_images": ["astronaut"], "test_images": ["cell", "colorwheel"], "tile_size": 64},
    "model": {"scale": 4, "num_blocks": 1, "num_features": 8},
    "train": {"epochs": 2, "batch_size": 8, "patch_size": 32, "patches_per_image": 1, "val_every": 1},
    "evaluate": {"benchmarks": [], "num_samples": 2, "sample_crop": 64},
}


def tiny_params(checkout_params: str) -> str:
    """The checkout's params.yaml text with TINY applied."""
    return yaml.safe_dump(deep_update(yaml.safe_load(checkout_params), TINY), sort_keys=False)


HOOKS = os.pathsep.join([str(REPO / "tests" / "hooks"), str(REPO)])  # tests/hooks/sitecustomize.py, this checkout's code

ENV = {
    **os.environ,
    "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",  # stages' `python`
    "DVC_NO_ANALYTICS": "1",
    "SHELL": "/bin/sh",  # DVC runs stages with $SHELL -c, else /bin/sh (a CI machine's case; dash here)
    "GIT_AUTHOR_NAME": "test", "GIT_AUTHOR_EMAIL": "test@example.invalid",
    "GIT_COMMITTER_NAME": "test", "GIT_COMMITTER_EMAIL": "test@example.invalid",
}


def runner(root: Path) -> Callable[..., str]:
    """A runner of commands in `root` that fails the test on a non-zero exit and returns stdout."""
    def run(*args: str) -> str:
        result = subprocess.run(args, cwd=root, env=ENV, capture_output=True, text=True)
        assert result.returncode == 0, f"{' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
        return result.stdout
    return run


def fresh_copy(root: Path, params_text: Callable[[str], str] = lambda text: text) -> Callable[..., str]:
    """The repo's tracked files (as in the working tree) in `root`, a fresh git repo, with params.yaml
    rewritten by `params_text` and committed, as a clone would be; returns a runner of commands there."""
    files = subprocess.run(["git", "ls-files", "--cached", "-z"],  # never a user's untracked data
                           cwd=REPO, check=True, capture_output=True, text=True).stdout.split("\0")
    for name in filter(None, files):
        if (REPO / name).is_file():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, root / name)
    (root / "params.yaml").write_text(params_text((root / "params.yaml").read_text()))
    run = runner(root)
    run("git", "init", "-q")
    run("git", "add", "-A")
    run("git", "commit", "-qm", "the checkout")
    return run


@pytest.fixture(scope="module")
def baseline(tmp_path_factory) -> Path:
    """A fresh copy of the repo with tiny params after one whole `dvc repro`, committed. Each test
    that needs a trained pipeline starts from a copy of it and pays only for what it runs itself."""
    root = tmp_path_factory.mktemp("baseline") / "repo"
    run = fresh_copy(root, tiny_params)
    run("dvc", "repro")
    run("git", "add", "-A")
    run("git", "commit", "-qm", "baseline")
    return root


def copy_of(baseline: Path, root: Path) -> Callable[..., str]:
    """A copy of the baseline repo (git history, DVC cache and outputs) at `root`; a runner there."""
    shutil.copytree(baseline, root, symlinks=True)
    return runner(root)


def test_repro_an_onnx_experiment_into_the_competitions_file_and_what_starting_weights_rerun(baseline, tmp_path):
    """The baseline's outputs; an experiment that reruns only predict and submit (the ONNX export on a
    GPU machine without onnxruntime-gpu, into the SRGD competition's file); training reruns when the
    starting weights change, not their file's name. (An experiment that trains again, with `dvc exp
    show`, `dvc metrics diff` and sr-compare over it: the README's path, below.)"""
    root = tmp_path / "repo"
    run = copy_of(baseline, root)
    for path in ("models/best.pt", "metrics/eval.json", "metrics/history.csv", "metrics/eval_samples.png"):
        assert (root / path).is_file(), path
    assert check_submission(root / "submission.csv", root / "data/demo/test/lr", 4) == 2
    split = json.loads((root / "metrics/split.json").read_text())
    assert split["rejected"] == 0 and split["train"] + split["val"] == split["valid_pairs"] > 0
    history = (root / "metrics/history.csv").read_text().splitlines()
    assert history[0].startswith("epoch,train_loss,val_loss,val_psnr_rgb,val_psnr_y") and len(history) == 3
    baseline_eval = json.loads((root / "metrics/eval.json").read_text())["val"]
    assert set(baseline_eval) == {"num_images", "model", "bicubic", "gain_over_bicubic"}
    assert {"competition_score", "psnr_y"} <= set(baseline_eval["model"])
    assert "competition_score" in baseline_eval["bicubic"]  # the competition's score beside PSNR
    assert changed_stages(run("dvc", "status")) == ALWAYS_RUN

    # the ONNX export on a machine with a GPU (reported by torch, faked) but no onnxruntime-gpu, into
    # the SRGD competition's file in the rows and ids of a sample submission: predict runs the export
    # on onnxruntime's CPU provider with a warning, submit writes the rle file, nothing is trained again
    test_names = sorted(path.name for path in (root / "data/demo/test/lr").iterdir())
    (root / "sample.csv").write_text("id,filename,rle\n" + "".join(f"{10 + i},{name},b''\n"
                                                                  for i, name in enumerate(reversed(test_names))))
    fake_gpu = ENV | {"PYTHONPATH": HOOKS, "SR_FAKE_CUDA": "7,5"}
    ran = subprocess.run(["dvc", "exp", "run", "-n", "onnx-rle-on-a-gpu", "-S", "predict.model=models/best.onnx",
                          "-S", "submit.format=rle", "-S", "data.sample_submission=sample.csv"],
                         cwd=root, env=fake_gpu, capture_output=True, text=True)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    for stage, reran in (("train", False), ("evaluate", False), ("predict", True), ("submit", True)):
        assert (f"Running stage '{stage}'" in ran.stdout) is reran, stage
    assert "has no CUDA provider, so the ONNX model runs on the CPU" in ran.stdout + ran.stderr
    rows = [line.split(",") for line in (root / "submission.csv").read_text().splitlines()]  # no commas in these names
    assert rows[0] == ["id", "filename", "rle"]
    assert [row[:2] for row in rows[1:]] == [[str(10 + i), name] for i, name in enumerate(reversed(test_names))]
    for _, name, cell in rows[1:]:
        prediction = np.asarray(Image.open(root / "data/predictions" / f"{Path(name).stem}.png").convert("RGB"))
        np.testing.assert_array_equal(decode_cell(cell, name), prediction[..., ::-1].reshape(-1))
    run("git", "checkout", "--", "params.yaml", "dvc.lock")
    (root / "sample.csv").unlink()
    run("dvc", "repro", "check_data")  # its records (not cached) back to the baseline's
    run("dvc", "checkout")
    assert changed_stages(run("dvc", "status")) == ALWAYS_RUN

    # training reruns when the starting weights change, not when their file is renamed: DVC tracks them
    # by the init_from stage's hash of them (`dvc commit` records the hash as a training from them would)
    def start_from(path: str) -> None:
        params = yaml.safe_load((root / "params.yaml").read_text())
        params["train"]["init_from"] = path
        (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        run("dvc", "repro", "init_from")

    (root / "models" / "init").mkdir()
    shutil.copy(root / "models" / "best.pt", root / "models" / "init" / "general.pt")
    start_from("models/init/general.pt")
    assert "train" in changed_stages(run("dvc", "status", "train"))  # not the weights its lock was trained from
    run("dvc", "commit", "-f", "train")
    assert "train" not in changed_stages(run("dvc", "status", "train"))
    (root / "models" / "init" / "general.pt").rename(root / "models" / "init" / "renamed.pt")
    start_from("models/init/renamed.pt")
    assert "train" not in changed_stages(run("dvc", "status", "train"))
    other = load_model(root / "models" / "best.pt", torch.device("cpu"))
    with torch.no_grad():
        next(other.parameters()).add_(0.01)
    save_checkpoint(root / "models" / "init" / "renamed.pt", other)  # other weights, same name
    run("dvc", "repro", "init_from")
    assert "train" in changed_stages(run("dvc", "status", "train"))


def test_failed_stages_record_nothing_and_a_plain_repro_then_submits_every_file(baseline, tmp_path):
    """A stage that fails under `dvc repro` has its outputs removed by DVC and `dvc checkout` brings
    them back; a file copied into the test folder while predict ran (once recorded by DVC with no
    prediction, after which submit's advice `dvc repro` skipped predict) fails predict, and a plain
    `dvc repro` then submits every file."""
    root = tmp_path / "repo"
    run = copy_of(baseline, root)
    submitted = (root / "submission.csv").read_bytes()
    prediction = sorted((root / "data/predictions").glob("*.png"))[0]
    prediction.write_bytes(sorted((root / "data/predictions").glob("*.png"))[1].read_bytes())  # overwritten
    failed = subprocess.run(["dvc", "repro", "-s", "submit"], cwd=root, env=ENV, capture_output=True, text=True)
    assert failed.returncode != 0 and f"{prediction.relative_to(root)}: not the file the predict stage wrote" in failed.stderr
    assert not (root / "submission.csv").exists()
    run("dvc", "checkout")
    assert (root / "submission.csv").read_bytes() == submitted
    assert changed_stages(run("dvc", "status")) == ALWAYS_RUN

    shutil.copytree(root / "data/demo/test/lr", root / "my_test")
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["data"]["test_lr_dir"] = "my_test"
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    added = root / "my_test" / "added.png"
    while_predicting = ENV | {"PYTHONPATH": HOOKS,
                              "SR_COPY_WHILE_PREDICTING": f"{root / 'my_test' / 'cell.png'}:{added}"}
    failed = subprocess.run(["dvc", "repro"], cwd=root, env=while_predicting, capture_output=True, text=True)
    assert failed.returncode != 0 and added.exists()
    assert (f"error: my_test changed while predict ran (added {Path('my_test') / 'added.png'}): the predictions are "
            f"of the folder as it was at the start, so the stage fails and DVC records nothing") in failed.stderr
    run("dvc", "repro")  # plain: predict runs again, on the folder as it is now
    assert check_submission(root / "submission.csv", root / "my_test", 4) == 3
    run("dvc", "repro", "-f", "-s", "predict")  # submit's advice, which works whatever DVC recorded
    run("dvc", "repro")
    assert check_submission(root / "submission.csv", root / "my_test", 4) == 3
    assert changed_stages(run("dvc", "status")) == ALWAYS_RUN


def readme_own_data_commands(block: int) -> list[str]:
    """The command lines of the README's bash block number `block` (0, 1) under "Train on your own data"."""
    section = (REPO / "README.md").read_text().split("## Train on your own data", 1)[1].split("\n## ", 1)[0]
    text = section.split("```bash\n")[block + 1].split("```", 1)[0]
    return [line for line in text.splitlines() if line.strip()]


# tiny settings laid over the preset, so that its network trains in seconds on a CPU
TINY_OVER_PRESET = ("-S model.num_blocks=1 -S model.num_features=8 -S train.epochs=1 -S train.batch_size=4 "
                    "-S train.patch_size=32 -S train.patches_per_image=1 -S evaluate.num_samples=1")


def test_the_readme_path_for_your_own_data_works_on_a_fresh_copy(tmp_path, monkeypatch, capsys):
    """The README's own-data commands, as written, on a fake data set in its folder tree (only the
    preset line gets tiny settings added): a named experiment that trains again, with `dvc exp
    show`, `dvc metrics diff` and sr-compare over it."""
    root = tmp_path / "repo"
    run = fresh_copy(root)
    rng = np.random.default_rng(0)
    for i in range(10):  # the reference task's kind: opaque RGBA HR, RGB LR a quarter of its sides
        hr_img = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
        save(root / "data/kaggle/train/hr" / f"{i:05d}.png", np.dstack([hr_img, np.full((64, 64), 255, np.uint8)]))
        save(root / "data/kaggle/train/lr" / f"{i:05d}.png", np.array(Image.fromarray(hr_img).resize((16, 16))))
    for name in ("00029.png", "00030.png"):
        save(root / "data/kaggle/test/lr" / name, rng.integers(0, 256, (16, 12, 3), dtype=np.uint8))
    commands = readme_own_data_commands(0)
    assert [line.split()[:2] for line in commands] == [["dvc", "add"], ["git", "add"], ["sr-preset", "presets/gpu.yaml"],
                                                       ["git", "commit"], ["dvc", "repro"]]
    for line in commands:
        run("bash", "-c", f"{line} {TINY_OVER_PRESET}" if "sr-preset" in line else line)
    assert check_submission(root / "submission.csv", root / "data/kaggle/test/lr", 4) == 2
    with open(root / "submission.csv", newline="") as f:
        assert [row["id"] for row in csv.DictReader(f)] == ["00029.png", "00030.png"]
    assert json.loads((root / "metrics/split.json").read_text())["valid_pairs"] == 10
    params = yaml.safe_load((root / "params.yaml").read_text())
    assert params["data"]["train_hr_dir"] == "data/kaggle/train/hr" and params["model"]["batch_norm"] is False
    assert params["lr"] == 1e-3 and params["train"]["time_limit_minutes"] == 480  # the GPU preset's
    assert changed_stages(run("dvc", "status")) == ALWAYS_RUN  # everything else up to date

    # the baseline committed, a named experiment, and the comparisons, as the README writes them
    commands = readme_own_data_commands(1)
    assert [line.split()[:3] for line in commands] == [["git", "add", "dvc.lock"], ["dvc", "exp", "run"],
                                                       ["dvc", "exp", "show"], ["dvc", "metrics", "diff"],
                                                       ["sr-compare", "HEAD", "lr-2e-4"]]
    outputs = [run("bash", "-c", line) for line in commands[:-1]]
    ran = set(re.findall(r"Running stage '(\w+)'", outputs[1]))
    assert {"train", "evaluate", "predict", "submit"} <= ran and not ran & {"demo_data", "split"}
    [experiment] = [line.split() for line in outputs[2].splitlines() if "lr-2e-4" in line]
    assert "0.0002" in experiment and "0.001" in outputs[2].split()  # beside the preset's lr
    assert "val.model.psnr_y" in outputs[3]  # the README's `dvc metrics diff`, as it prints
    baseline = json.loads(run("git", "show", "HEAD:metrics/eval.json"))["val"]["model"]["psnr_y"]
    diff = json.loads(run("dvc", "metrics", "diff", "--json"))["metrics/eval.json"]["val.model.psnr_y"]
    assert diff["old"] == pytest.approx(baseline)  # against the own-data baseline, not the demo's val tiles
    assert diff["new"] != diff["old"]
    val_images = json.loads((root / "metrics/eval.json").read_text())["val"]["num_images"]

    # per image: sr-compare's function in this process, against the experiment by name with the crops
    # (its models run) and against the workspace (the default); then the README's line, with no model
    monkeypatch.chdir(root)
    for args, out in ((("HEAD", "lr-2e-4", "--crops"), "by_name"), ((), "default")):
        compare_main([*args, "--out", out, "--top", "2"])
        printed = capsys.readouterr().out
        assert "mean change per set" in printed and "changed most" in printed
        assert (root / out / "crops.png").exists() == ("--crops" in args)  # the models run only when asked
    shutil.rmtree(root / ".dvc" / "cache")  # no model needed: the per-image scores are in git
    run("bash", "-c", commands[-1])
    for out in ("by_name", "default", "compare"):
        with open(root / out / "sets.csv", newline="") as f:
            [val] = [row for row in csv.DictReader(f) if row["set"] == "val"]
        assert float(val["psnr_y_change"]) == pytest.approx(diff["new"] - diff["old"], abs=1e-6)
        assert int(val["better"]) + int(val["worse"]) + int(val["same"]) == int(val["images"]) == val_images


def queue_status(root: Path) -> str:
    """`dvc queue status` while the queue runs; a status that failed reads as still running (DVC can
    read a task's info file before its worker has written it: "Expecting value: line 1 column 1")."""
    result = subprocess.run(["dvc", "queue", "status"], cwd=root, env=ENV, capture_output=True, text=True)
    return result.stdout if result.returncode == 0 else "Running"


def changed_stages(status: str) -> set[str]:
    """The stages `dvc status` lists (each on a line of its own, ending in a colon)."""
    return {line[:-1] for line in status.splitlines() if line.endswith(":") and not line.startswith((" ", "\t"))}


def imported_modules(path: Path, seen: set[str]) -> set[str]:
    """The sr_core module files `path` imports, directly or through other sr_core modules."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("sr_core."):
            module = node.module.replace(".", "/") + ".py"
            if module not in seen:
                seen.add(module)
                imported_modules(REPO / module, seen)
    return seen


def test_stage_deps_list_the_code_they_run():
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    for name, stage in stages.items():
        script = f"stages/{name}.py"
        assert stage["cmd"].removeprefix("exec ") == f"python {script}", "stage name = script name"
        untracked = {"sr_core/config.py", "sr_core/files.py", "sr_core/cli.py", "sr_core/param_changes.py"}
        expected = {script} | imported_modules(REPO / script, set()) - untracked
        assert expected <= set(stage["deps"]), f"{name} is missing deps {expected - set(stage['deps'])}"
    assert stages["train"]["cmd"].startswith("exec "), "no shell between dvc and the training (see dvc.yaml)"


def test_train_stage_tracks_every_train_param_but_the_starting_weights_name():
    train = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]["train"]
    listed = {key.removeprefix("train.") for key in train["params"] if key.startswith("train.")}
    assert listed == set(TrainConfig.model_fields) - {"init_from"}
    assert "${paths.init_from_hash}" in train["deps"]  # the starting weights by content instead


def test_team_workflow_remote_and_queued_experiments(baseline, tmp_path, tmp_path_factory):
    """Shared storage (a local DVC remote, a bare git remote) and a queued grid run two at a time,
    as README "Working as a team" types them; `dvc gc` as docs/experiments.md gives it keeps them."""
    root = tmp_path / "repo"
    run = copy_of(baseline, root)
    storage, origin = tmp_path_factory.mktemp("storage"), tmp_path_factory.mktemp("origin") / "repo.git"
    run("git", "init", "-q", "--bare", str(origin))
    run("git", "remote", "add", "origin", str(origin))
    run("dvc", "remote", "add", "-d", "storage", str(storage))
    run("git", "commit", "-qam", "shared storage")
    run("git", "push", "-q", "origin", "HEAD:main")
    run("dvc", "push")

    # queued experiments: a grid of two, run at once; neither resumes the other's state
    run("dvc", "exp", "run", "--queue", "-S", "lr=1e-4,1e-3")
    # not through pipes: the workers' launcher outlives this command, and a worker that missed the
    # queue's shutdown (a race seen in DVC's celery workers) would hold them open for good
    subprocess.run(["dvc", "queue", "start", "-j", "2"], cwd=root, env=ENV, check=True, stdin=subprocess.DEVNULL,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline and any(word in queue_status(root) for word in ("Queued", "Running")):
        time.sleep(2)
    for process in psutil.process_iter(["cmdline", "cwd"]):  # such a worker idles on after its tasks
        if "queue-worker" in " ".join(process.info["cmdline"] or []) and process.info["cwd"] == str(root):
            process.kill()
    status = run("dvc", "queue", "status")
    assert status.count("Success") == 2, status
    run("dvc", "gc", "-w", "--all-experiments", "-f")  # as docs/experiments.md gives it: every experiment kept
    shown = run("dvc", "exp", "show", "--csv", "--no-pager", "--sort-by", "metrics/eval.json:val.model.psnr_y",
                "--sort-order", "desc")
    header, *rows = [line.split(",") for line in shown.strip().splitlines()]
    experiments = [row for row in rows if row[header.index("Experiment")] and row[header.index("lr")] in
                   ("0.0001", "0.001")]
    assert {row[header.index("lr")] for row in experiments} == {"0.0001", "0.001"}
    psnr = [float(row[header.index("val.model.psnr_y")]) for row in experiments]
    assert psnr == sorted(psnr, reverse=True)
    for row in experiments:
        name = row[header.index("Experiment")]
        log = run("dvc", "queue", "logs", name)
        assert "resuming" not in log, f"{name} resumed another run's state"
    best = experiments[0][header.index("Experiment")]
    # the README's comparison, at 80 columns: each run, the param that changed and val PSNR-Y, nothing hidden
    [show] = [line for line in (REPO / "README.md").read_text().splitlines() if line.startswith("dvc exp show ")]
    table = subprocess.run([*shlex.split(show, comments=True), "--no-pager"], cwd=root, env=ENV | {"COLUMNS": "80"},
                           capture_output=True, text=True, check=True).stdout
    assert max(map(len, table.splitlines())) <= 80 and "…" not in table, table
    assert [line.split() for line in table.splitlines() if "Experiment" in line] == [["Experiment", "val.model.psnr_y",
                                                                                      "lr"]], table
    for row in experiments:
        assert re.search(rf"\[{row[header.index('Experiment')]}\]\s+\d+\.\d+\s+{row[header.index('lr')]}\s", table), table
    # both experiments' curves on one plot, and both sample figures
    names = [row[header.index("Experiment")] for row in experiments[:2]]
    run("dvc", "plots", "diff", *names, "-o", "plots_diff")
    page = (root / "plots_diff" / "index.html").read_text()
    assert all(name in page for name in names) and "val_psnr_y" in page
    # docs/experiments.md's crops-only page: each run's figure, under its name, as a file beside the page
    run("dvc", "plots", "diff", *names, "--targets", "metrics/eval_samples.png", "-o", "crops")
    page = (root / "crops" / "index.html").read_text()
    figures = [root / "crops" / "static" / f"{name}_metrics_eval_samples.png" for name in names]
    assert all(f'<p>{name}</p>' in page and f'<img src="static/{figure.name}">' in page
               for name, figure in zip(names, figures)) and "val_psnr_y" not in page, page
    assert figures[0].read_bytes() != figures[1].read_bytes()  # two runs, two sets of crops
    run("dvc", "exp", "branch", best, "best-lr")
    assert "best-lr" in run("git", "branch")
    run("dvc", "exp", "apply", best)  # its outputs from the cache, after the gc above
    assert changed_stages(run("dvc", "status")) == ALWAYS_RUN
    applied = yaml.safe_load((root / "params.yaml").read_text())["lr"]
    assert str(applied) in ("0.0001", "0.001") or applied in (1e-4, 1e-3)

    # a teammate: clone, pull, nothing to run, and the pulled model upscales
    run("dvc", "exp", "push", "origin", best)
    teammate = tmp_path_factory.mktemp("teammate") / "repo"
    run("git", "clone", "-q", "-b", "main", str(origin), str(teammate))

    def mate(*args: str) -> str:
        result = subprocess.run(args, cwd=teammate, env=os.environ | {"DVC_NO_ANALYTICS": "1"}, capture_output=True,
                                text=True)
        assert result.returncode == 0, f"{' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
        return result.stdout

    mate("dvc", "pull")
    for path in ("models/best.pt", "submission.csv", "data/predictions", "metrics/eval.json"):
        assert (teammate / path).exists(), path
    ran = mate("dvc", "repro")  # everything pulled: nothing to run but the demo's data (kept out of the cache,
    # made again in seconds, the same bytes) and the hash of train.init_from
    assert set(re.findall(r"Running stage '(\w+)'", ran)) == {"demo_data"} | ALWAYS_RUN
    assert changed_stages(mate("dvc", "status")) == ALWAYS_RUN
    upscale_main([str(teammate / "models/best.pt"), str(teammate / "data/demo/test/lr"), "--out",
                  str(teammate / "upscaled")])  # sr-upscale's function, in this process
    assert len(list((teammate / "upscaled").iterdir())) == 2
    mate("dvc", "exp", "pull", "origin", best)
    assert best in mate("dvc", "exp", "show", "--csv", "--no-pager")


EPOCHS = 6  # enough epochs that a kill lands after one and before the last


def same_run(rows: list[dict], expected: list[dict]) -> bool:
    """The same epochs with the same losses, val PSNR and learning rates (times differ)."""
    columns = ("epoch", "train_loss", "val_psnr_rgb", "lr")
    return [[row[c] for c in columns] for row in rows] == [[row[c] for c in columns] for row in expected]


def run_in(root: Path, *args: str, **variables: str) -> str:
    """`args` run in `root` with `variables` added to the environment; stdout and stderr together."""
    result = subprocess.run(args, cwd=root, env=ENV | variables, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"{' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout + result.stderr


def processes_in(root: Path) -> list[psutil.Process]:
    """The live processes whose working directory is `root` (the stage's, torchrun's, its workers')."""
    found = []
    for process in psutil.process_iter():
        try:
            if process.status() != psutil.STATUS_ZOMBIE and Path(process.cwd()) == root:
                found.append(process)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def test_two_processes_as_an_experiment_resumed_after_a_kill_and_on_two_machines(baseline, tmp_path):
    """`dvc exp run -S train.processes=2` on the CPU (gloo) is an experiment like any other (of the
    train stage here: the stages after it read its model whatever trained it; fine-tuned from the
    baseline's model by train.init_from, which it records) and the same run as torchrun started by
    hand; a SIGKILL to the whole group leaves no worker behind and `dvc repro` resumes it; and two checkouts joined by torchrun's PET_* variables, one process each (two
    machines, here on one host), train the same run again."""
    root = tmp_path / "repo"
    run = copy_of(baseline, root)
    (root / "models" / "init").mkdir()
    shutil.copy(root / "models" / "best.pt", root / "models" / "init" / "general.pt")
    output = run("dvc", "exp", "run", "-n", "two", "-S", "train.processes=2", "-S", f"train.epochs={EPOCHS}",
                 "-S", "train.patches_per_image=8", "-S", "train.init_from=models/init/general.pt", "train")
    assert "Running stage 'train'" in output and "Running stage 'split'" not in output
    recorded = json.loads((root / "metrics" / "train.json").read_text())
    assert recorded["init_from"] == "models/init/general.pt"
    assert recorded["init_from_sha256"] == hashlib.sha256((root / "models/init/general.pt").read_bytes()).hexdigest()
    shown = csv.DictReader(run("dvc", "exp", "show", "--csv", "--no-pager").splitlines())
    [two] = [row for row in shown if row["Experiment"] == "two"]
    assert two["train.processes"] == "2" and two["train.epochs"] == str(EPOCHS)
    assert recorded["device"] == "2 x cpu"
    model = load_model(root / "models/best.pt", torch.device("cpu"))
    assert model(torch.rand(1, 3, 6, 6)).shape == (1, 3, 24, 24)
    experiment = read_history(root)
    assert len(experiment) == EPOCHS

    (root / "models/last.pt").unlink()  # else the finished run is reused, not trained again
    by_hand = run_in(root, sys.executable, "-m", "torch.distributed.run", "--nproc-per-node=2", "stages/train.py")
    assert "on 2 x cpu" in by_hand
    assert same_run(read_history(root), experiment)

    for finished in ("metrics/history.csv", "models/last.pt"):  # polled below: only the new run's count
        (root / finished).unlink()
    with open(tmp_path / "killed.log", "w") as log:
        stage = subprocess.Popen(["dvc", "repro", "-f", "-s", "train"], cwd=root, env=ENV, stdout=log,
                                 stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.time() + 240
        while time.time() < deadline and stage.poll() is None:
            if (root / "models/last.pt").exists():  # written whole after an epoch, the history before it
                break
            time.sleep(0.02)
        assert stage.poll() is None, "training ended before it could be killed"
        os.killpg(stage.pid, signal.SIGKILL)  # as a killed terminal or job scheduler does
        stage.wait()
    assert "starting 2 training processes" in (tmp_path / "killed.log").read_text()
    deadline = time.time() + 3  # torchrun's workers, in sessions of their own, die with it
    while processes_in(root) and time.time() < deadline:
        time.sleep(0.1)
    assert not processes_in(root), "workers outlived the killed stage"
    killed_at = torch.load(root / "models/last.pt", weights_only=True)["epoch"]
    assert 1 <= killed_at < EPOCHS
    resumed = run_in(root, "dvc", "repro", "train")
    assert f"resuming after epoch {killed_at} of {EPOCHS}" in resumed
    assert same_run(read_history(root), experiment)

    # two machines: the same checkout, params and data on each; machine 0 runs DVC, machine 1 the stage
    other = tmp_path / "other-machine"
    (root / "models/last.pt").unlink()  # else the finished run is reused, not trained again
    shutil.copytree(root, other, symlinks=True)
    for checkout in (root, other):
        params = yaml.safe_load((checkout / "params.yaml").read_text())
        params["train"]["processes"] = 1  # per machine
        (checkout / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    rendezvous = {"PET_NNODES": "2", "PET_MASTER_ADDR": "127.0.0.1", "PET_MASTER_PORT": str(free_port()),
                  "OMP_NUM_THREADS": "1"}  # one thread each, as torchrun sets it for two processes on one machine
    machine_1 = subprocess.Popen([sys.executable, "stages/train.py"], cwd=other, env=ENV | rendezvous | {
        "PET_NODE_RANK": "1"}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    machine_0 = run_in(root, "dvc", "repro", "train", **rendezvous, PET_NODE_RANK="0")
    assert machine_1.wait(timeout=120) == 0, machine_1.stderr.read()
    assert "on 2 x cpu" in machine_0
    assert same_run(read_history(root), experiment)


def test_dvc_records_only_what_ran_and_a_killed_dvc_leaves_no_training(baseline, tmp_path):
    """params.yaml edited while `dvc repro` trains: the stage fails naming the key, DVC records
    nothing, and with params.yaml restored the finished run is reused; SIGTERM to `dvc` alone (a
    scheduler's stop) takes its training with it; a file put in the demo's folder survives `dvc
    repro` and `dvc exp run`."""
    root = tmp_path / "repo"
    epochs = 15  # enough that the edit after epoch 1, and the kill below, land before the last
    run = copy_of(baseline, root)
    (root / "params.yaml").write_text((root / "params.yaml").read_text().replace("epochs: 2", f"epochs: {epochs}"))
    run("git", "commit", "-qam", f"{epochs} epochs")
    for finished in ("models/last.pt", "metrics/history.csv"):  # polled below: only the new run's count
        (root / finished).unlink()
    with open(tmp_path / "edited.log", "w") as log:
        stage = subprocess.Popen(["dvc", "repro", "train"], cwd=root, env=ENV, stdout=log, stderr=subprocess.STDOUT)
        edited_at = wait_for_epochs(root, stage, 1)
        (root / "params.yaml").write_text((root / "params.yaml").read_text().replace("lr: 0.0005", "lr: 0.001"))
        assert stage.wait(timeout=300) != 0 and edited_at < epochs
    assert ("error: params.yaml changed while stage train ran (lr 0.0005 at its start, 0.001 now), so it fails and "
            "DVC records nothing") in (tmp_path / "edited.log").read_text()
    status = run("dvc", "status", "train")
    assert "train:" in status and "modified:           lr" in status
    trained = read_history(root)
    assert len(trained) == epochs

    run("git", "checkout", "params.yaml")
    reused = run_in(root, "dvc", "repro", "train")
    assert "of these params, code and data: its model, history and metrics are written again" in reused
    assert read_history(root) == trained and "train:" not in run("dvc", "status", "train")

    for finished in ("models/last.pt", "metrics/history.csv"):
        (root / finished).unlink()
    stage = subprocess.Popen(["dvc", "repro", "-f", "-s", "train"], cwd=root, env=ENV, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    wait_for_epochs(root, stage, 1)
    (trainer,) = psutil.Process(stage.pid).children()
    stage.terminate()  # SIGTERM to dvc alone, not its process group
    stage.wait()
    trainer.wait(timeout=30)  # gone with it, not training on alone
    assert len(read_history(root)) < epochs

    # a file a user put in the demo's folder: neither DVC nor the stage deletes it
    mine = root / "data/demo/train/hr/mine.png"
    mine.write_bytes(b"a user's file")
    for command in (["dvc", "repro"], ["dvc", "exp", "run", "-S", "train.seed=1"]):  # exp run restores outputs first
        refused = subprocess.run(command, cwd=root, env=ENV, capture_output=True, text=True)
        assert refused.returncode != 0 and "data/demo is the demo stage's folder" in refused.stderr
        assert mine.read_bytes() == b"a user's file"



def test_a_data_folder_typo_or_a_name_dvc_cannot_hash_is_named_before_any_stage_reads_a_folder(tmp_path):
    """A typo in data.train_lr_dir got DVC's bare `[Errno 2]`; one in data.test_lr_dir showed only at
    predict, after training; a file name that is not UTF-8 got DVC's codec error naming no file."""
    root = tmp_path / "repo"
    fresh_copy(root, tiny_params)
    committed = (root / "params.yaml").read_text()
    for key, typo in (("train_lr_dir", "data/demo/train/lrx"), ("test_lr_dir", "data/demo/tset/lr")):
        params = yaml.safe_load(committed)
        params["data"][key] = typo
        (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        result = subprocess.run(["dvc", "repro"], cwd=root, env=ENV, capture_output=True, text=True)
        assert result.returncode != 0
        assert f"error: data.{key}: {typo} does not exist; set data.{key} in params.yaml to your folder" in result.stderr
        assert "Errno" not in result.stdout + result.stderr and "Running stage 'split'" not in result.stdout
    mine = root / "my_test"  # a test folder of one's own, one of whose names is Latin-1, not UTF-8
    save(mine / "ok.png", np.zeros((4, 4, 3), np.uint8))
    shutil.copy(mine / "ok.png", os.path.join(os.fsencode(mine), b"caf\xe9.png"))
    params = yaml.safe_load(committed)
    params["data"]["test_lr_dir"] = "my_test"
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    result = subprocess.run(["dvc", "repro"], cwd=root, env=ENV, capture_output=True, text=True)
    assert result.returncode != 0 and "codec" not in result.stdout + result.stderr
    assert ("error: data.test_lr_dir: 'my_test/caf\\udce9.png': the file name is not UTF-8 (its bytes are "
            "b'caf\\xe9.png'), and DVC cannot hash a folder holding it; rename it in UTF-8 (as Latin-1 it would "
            "read 'café.png')") in result.stderr


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file under `folder` by its path, with its size and modification time."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*") if p.is_file()}


def test_the_kaggle_layout_resumes_in_a_second_clone(tmp_path):
    """docs/kaggle.md on a CPU: read-only pairs outside the clone, decoded pairs on scratch disk
    outside it, a run stopped mid-training and resumed in a second clone from the carried state
    (its epochs so far carried with it, and trained on to the last; the SIGKILL tests prove a
    resumed run is the uninterrupted one)."""
    data, scratch = tmp_path / "input", tmp_path / "scratch"
    rng = np.random.default_rng(1)
    for i in range(12):
        hr_img = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
        save(data / "train/hr" / f"{i:05d}.png", np.dstack([hr_img, np.full((64, 64), 255, np.uint8)]))
        save(data / "train/lr" / f"{i:05d}.png", np.array(Image.fromarray(hr_img).resize((16, 16))))
    save(data / "test/lr/00029.png", rng.integers(0, 256, (16, 12, 3), dtype=np.uint8))
    for path in [*data.rglob("*"), data]:
        path.chmod(0o555 if path.is_dir() else 0o444)
    before = snapshot(data)
    settings = {"data": {"train_lr_dir": str(data / "train/lr"), "train_hr_dir": str(data / "train/hr"),
                         "test_lr_dir": str(data / "test/lr")},
                "train": {"epochs": 8, "decode_cache": "disk", "patches_per_image": 4},
                "paths": {"decode_cache": str(scratch / "decoded")}}

    def kaggle_params(text: str) -> str:
        return yaml.safe_dump(deep_update(yaml.safe_load(tiny_params(text)), settings), sort_keys=False)

    first = tmp_path / "session-1"
    fresh_copy(first, kaggle_params)
    (first / "metrics/history.csv").unlink()  # the checkout's: polled below, only the new run's count
    stage = subprocess.Popen(["dvc", "repro", "train"], cwd=first, env=ENV, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    wait_for_epochs(first, stage, 2)
    stage.terminate()  # the session ends
    stage.wait()
    carried = tmp_path / "notebook-output" / "last.pt"
    carried.parent.mkdir()
    shutil.copy(first / "models/last.pt", carried)
    stopped_at = torch.load(carried, weights_only=True)["epoch"]
    assert 1 <= stopped_at < 8  # its history may be an epoch ahead of its state when stopped

    second = tmp_path / "session-2"
    fresh_copy(second, kaggle_params)
    (second / "models").mkdir(exist_ok=True)
    shutil.copy(carried, second / "models/last.pt")
    resumed = run_in(second, "dvc", "repro", "submit")  # the stages the submission needs (no export)
    assert f"resuming after epoch {stopped_at} of 8" in resumed
    history = read_history(second)  # that a resumed run is the uninterrupted one: the SIGKILL tests
    assert [int(row["epoch"]) for row in history] == list(range(1, 9))
    assert same_run(history[:stopped_at], read_history(first)[:stopped_at])  # the first session's, carried
    assert check_submission(second / "submission.csv", data / "test/lr", 4) == 1
    assert snapshot(data) == before  # read in place, never written
    assert list((scratch / "decoded").glob("*.strips"))  # the decoded pairs went to scratch disk,
    assert not [p for p in second.rglob("*.strips")]  # not into the clone



def test_the_readmes_account_of_how_the_data_are_stored_holds(tmp_path):
    """`dvc add` of symbolic links made copies without a word; the README now says how the data are
    stored and how to keep one copy: its command is run here, and what it says is checked."""
    readme = (REPO / "README.md").read_text()
    bullet = readme[readme.index("**How the data are stored**"):].split("\n- **")[0]
    [link_command] = re.findall(r"`(dvc config cache\.type [^`]+)`", bullet)
    root, real = tmp_path / "repo", tmp_path / "elsewhere"
    save(real / "a.png", np.zeros((8, 8, 3), np.uint8))
    for folder in ("copied", "linked"):
        (root / folder).mkdir(parents=True)
        (root / folder / "a.png").symlink_to(real / "a.png")
    run_in(root, "git", "init", "-q")
    run_in(root, "dvc", "init", "-q")
    run_in(root, "dvc", "add", "copied")
    copied = root / "copied" / "a.png"
    cached = [path for path in (root / ".dvc" / "cache").rglob("*") if path.is_file() and path.suffix != ".dir"]
    assert not copied.is_symlink() and [path.read_bytes() for path in cached] == [(real / "a.png").read_bytes()]
    assert copied.stat().st_nlink == 1  # a copy of its own beside the cache's: twice the disk
    run_in(root, *link_command.split())
    run_in(root, "dvc", "add", "linked")
    linked = (root / "linked" / "a.png").stat()
    assert linked.st_nlink == 2 and not linked.st_mode & 0o222  # one copy, read-only: `dvc unprotect` to edit
