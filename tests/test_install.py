"""Installing the project into an environment that has a supported torch keeps that torch."""

import json
import subprocess
import sys
from importlib.metadata import version

from conftest import REPO


def test_install_keeps_the_torch_already_there(tmp_path):
    """pip's own resolution (a dry run, nothing changed) of `pip install -e .` in this environment,
    whose torch and torchvision were installed before the project: only the project is installed."""
    report = tmp_path / "report.json"
    subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--no-build-isolation", "--quiet",
                    "--report", str(report), "-e", str(REPO)], check=True, capture_output=True)
    installed = [item["metadata"]["name"] for item in json.loads(report.read_text())["install"]]
    assert installed == ["sr-core"], f"pip would install {installed} besides the torch {version('torch')} already here"
