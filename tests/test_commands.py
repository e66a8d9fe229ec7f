"""One command-line style: `prog` as typed, defaults in `--help`, `--out` for results, and every
expected failure as one `error:` line."""

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import REPO, save
from sr_core import cli
from sr_core.commands.compare import main as compare_main
from sr_core.commands.datasets import BENCHMARKS
from sr_core.commands.datasets import main as datasets_main
from sr_core.commands.upscale import main as upscale_main
from sr_core.evaluation import load_sets
from sr_core.images import list_images

COMMANDS = {  # how a user runs it: the usage line it must show
    **{f"sr_core.commands.{name}": f"sr-{name}"
       for name in ("upscale", "benchmark", "compare", "preset", "datasets", "export", "score")},
    "benchmarks/gpu_check.py": "python benchmarks/gpu_check.py",
    "benchmarks/real_scale.py": "python benchmarks/real_scale.py",
    "benchmarks/resources.py": "python benchmarks/resources.py",
    "benchmarks/train_throughput.py": "python benchmarks/train_throughput.py",
    "benchmarks/upsampler_collapse.py": "python benchmarks/upsampler_collapse.py",
}


@pytest.mark.parametrize("command", COMMANDS)
def test_help_shows_the_command_as_typed_and_every_default(command, monkeypatch, capsys):
    """In this process (each command's `main` with `--help`), as a subprocess would print it."""
    if command.startswith("sr_core"):
        main = importlib.import_module(command).main
    else:
        monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
        main = importlib.import_module(Path(command).stem).main
    monkeypatch.setattr(sys, "argv", [command, "--help"])
    with pytest.raises(SystemExit) as exit_code:
        main()
    assert exit_code.value.code == 0
    out = capsys.readouterr().out
    text = " ".join(out.split())
    assert text.startswith(f"usage: {COMMANDS[command]} ")
    options = [line.split()[0] for line in out.splitlines() if line.startswith("  -") and "--help" not in line]
    assert text.count("(default: ") >= len(options) > 0
    assert "--out-dir" not in text


def test_each_command_runs_as_a_module_too():
    """`python -m sr_core.commands.NAME`, the console script's other form: each module ends by
    calling its `command`, and one runs so here (sr-preset's, which starts without torch)."""
    for module in (name for name in COMMANDS if name.startswith("sr_core")):
        last = ast.parse((REPO / (module.replace(".", "/") + ".py")).read_text()).body[-1]
        assert ast.unparse(last) == "if __name__ == '__main__':\n    command()", module
    result = subprocess.run([sys.executable, "-m", "sr_core.commands.preset", "--help"], cwd=REPO, capture_output=True,
                            text=True)
    assert result.returncode == 0 and result.stdout.startswith("usage: sr-preset ")


def test_a_missing_input_does_not_exist(tmp_path, command_line):
    result = command_line(upscale_main, REPO / "models/best.pt", tmp_path / "nothere.png", "--out", tmp_path / "out")
    assert result.status == 1
    assert [line for line in result.err.splitlines() if "error" in line.lower()] == [
        f"error: {tmp_path / 'nothere.png'} does not exist"]


@pytest.fixture(scope="module")
def fresh_clone(tmp_path_factory):
    """A clone of the repository: git only, its DVC outputs in no cache."""
    clone = tmp_path_factory.mktemp("clone") / "repo"
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
    return clone


def compare_error(*args: str) -> str:
    """What `sr-compare ARGS` stops with (in this process: it runs in the current folder)."""
    with pytest.raises(SystemExit) as stopped:
        cli.run(lambda: compare_main(list(args)))
    return str(stopped.value.code)


def test_compare_in_a_fresh_clone_needs_no_model_and_says_what_to_fetch_for_crops(fresh_clone, monkeypatch, capsys):
    monkeypatch.chdir(fresh_clone)
    compare_main(["--out", "compared"])
    assert "mean change per set" in capsys.readouterr().out  # the per-image tables are in git
    assert (fresh_clone / "compared" / "sets.csv").exists()
    assert compare_error("--crops").startswith("error: models/best.pt (paths.model) at HEAD: not in git or the "
                                               "local DVC cache; `dvc pull`")


def test_compare_with_an_unknown_revision_names_it(fresh_clone, monkeypatch):
    monkeypatch.chdir(fresh_clone)
    assert compare_error("HEAD", "nosuchexp").startswith(
        "error: nosuchexp: not a git revision or experiment name (`git log` and `dvc exp show` list them)\n")


def test_datasets_lays_out_the_published_copies_as_the_pipeline_reads_them(tmp_path):
    """The sets' public downloads, as their repositories hold them, become the layout presets and
    benchmarks name; a source with the wrong count of files is refused by name."""
    selfexsr = tmp_path / "SelfExSR-master" / "data"
    for name, count in BENCHMARKS.items():
        for i in range(1, count + 1):
            for kind, side in (("HR", 16), ("LR", 4)):
                save(selfexsr / name / "image_SRF_4" / f"img_{i:03d}_SRF_4_{kind}.png", np.zeros((side, side, 3), np.uint8))
    train = tmp_path / "SRCNN-Tensorflow-master" / "Train"
    for i in range(91):
        train.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(train / f"t{i}.bmp")
    out = tmp_path / "data"
    datasets_main(["benchmarks", str(selfexsr.parent), "--out", str(out / "benchmarks")])
    datasets_main(["t91", str(train), "--out", str(out / "datasets")])
    sets = load_sets([out / "benchmarks" / "x4" / name for name in BENCHMARKS])
    assert {name: len(pairs) for name, pairs in sets.items()} == BENCHMARKS
    assert (out / "benchmarks/x4/Set5/hr/img_001.png").read_bytes() == \
        (selfexsr / "Set5/image_SRF_4/img_001_SRF_4_HR.png").read_bytes()
    assert len(list_images(out / "datasets" / "T91" / "hr")) == 91
    (train / "t0.bmp").unlink()
    with pytest.raises(ValueError, match=r"Train: 90 files \*.bmp, where T91 has 91"):
        datasets_main(["t91", str(train), "--out", str(out / "again")])


def test_the_batch_path_benchmark_makes_the_cache_folder_it_is_given(tmp_path, monkeypatch, capsys):
    """docs/scale-and-gpus.md shows `--cache-dir DIR`; a DIR not yet made gave a traceback."""
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    import batch_path
    folder = tmp_path / "not" / "made"
    monkeypatch.setattr(sys, "argv", ["batch_path.py", "--width", "64", "--height", "48", "--batch-size", "2",
                                      "--patch-size", "16", "--pairs", "2", "--disk-pairs", "2", "--batches", "2",
                                      "--previous-batches", "2", "--cache-dir", str(folder)])
    batch_path.main()
    assert folder.is_dir() and "Decoded pairs on disk" in capsys.readouterr().out


def test_ctrl_c_is_one_line_saying_how_to_go_on(capsys, monkeypatch):
    """Ctrl-C during `dvc repro` showed the stage's traceback ending in KeyboardInterrupt."""
    def interrupted() -> None:
        raise KeyboardInterrupt

    monkeypatch.delenv("SR_DEBUG", raising=False)
    with pytest.raises(SystemExit) as stopped:
        cli.run(interrupted)
    assert stopped.value.code == 130
    assert capsys.readouterr().err.splitlines() == [
        "stopped (Ctrl-C). Files are written whole, so none is left half-written; run the same command again "
        "(under dvc repro a training resumes after its last finished epoch)"]
