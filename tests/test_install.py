"""Installing the project into an environment that has a supported torch keeps that torch."""

import json
import os
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from conftest import REPO

pytestmark = pytest.mark.slow  # pip resolves and installs


def test_install_keeps_the_torch_already_there(tmp_path):
    """pip's own resolution (a dry run, nothing changed) of `pip install -e .` in this environment,
    whose torch and torchvision were installed before the project: only the project is installed."""
    report = tmp_path / "report.json"
    subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--no-build-isolation", "--quiet",
                    "--report", str(report), "-e", str(REPO)], check=True, capture_output=True)
    installed = [item["metadata"]["name"] for item in json.loads(report.read_text())["install"]]
    assert installed == ["sr-core"], f"pip would install {installed} besides the torch {version('torch')} already here"



@pytest.mark.parametrize("local_suffix", ["", "+cu121"])
def test_the_notebook_install_cell_pins_torch_as_pip_knows_it(tmp_path, local_suffix):
    """The cell wrote `torch.__version__` (2.14.1+cu130 here) as the constraint, while pip knows the
    installed distribution as 2.14.1: `ResolutionImpossible`. Its line is run as the page gives it,
    with this torch (no local suffix in its distribution's version) and with a distribution that
    has one, as a build from PyTorch's own index has."""
    env = os.environ | {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}  # its pip, python
    if local_suffix:  # a torch distribution of the same version with a local suffix, found first
        info = tmp_path / "site" / f"torch-{version('torch')}{local_suffix}.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: torch\nVersion: {version('torch')}{local_suffix}\n")
        env["PYTHONPATH"] = str(tmp_path / "site")
    [line] = [line for line in (REPO / "docs" / "kaggle.md").read_text().splitlines() if "> /tmp/keep-torch.txt" in line]
    result = subprocess.run(line.replace("/tmp/keep-torch.txt", str(tmp_path / "keep.txt")), shell=True,
                            capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    pins = [Requirement(text) for text in (tmp_path / "keep.txt").read_text().split()]
    installed = json.loads(subprocess.run(
        [sys.executable, "-c", "import json; from importlib.metadata import version; "
                               "print(json.dumps({n: version(n) for n in ('torch', 'torchvision')}))"],
        capture_output=True, text=True, env=env, check=True).stdout)
    assert installed["torch"].endswith(local_suffix) and sorted(pin.name.lower() for pin in pins) == list(installed)
    for pin in pins:
        assert pin.specifier.contains(installed[pin.name.lower()], prereleases=True), (pin, installed)
