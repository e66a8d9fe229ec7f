"""For tests: a Python started with this folder on PYTHONPATH changes a module once it is imported,
as an environment variable asks (nothing is imported here: processes that never use the module,
such as dvc, stay as fast as ever).

- SR_FAKE_CUDA=MAJOR,MINOR: torch reports one CUDA GPU of that compute capability (named by
  SR_FAKE_CUDA_NAME), which is not there: the device logic runs as it would on that GPU until
  something touches the GPU itself.
- SR_COPY_WHILE_PREDICTING=SOURCE:TARGET: sr_core.inference copies SOURCE to TARGET once the
  predictions are written, before predict looks at its test folder again: a file added while
  predict runs.
"""

import importlib.abc
import importlib.machinery
import os
import shutil
import sys


def fake_cuda(torch) -> None:
    capability = tuple(int(part) for part in os.environ["SR_FAKE_CUDA"].split(","))
    torch.cuda.is_available = lambda: True
    torch.cuda.device_count = lambda: 1
    torch.cuda.get_device_capability = lambda device=None: capability
    torch.cuda.get_device_name = lambda device=None: os.environ.get("SR_FAKE_CUDA_NAME", "Fake GPU")


def copy_while_predicting(inference) -> None:
    source, target = os.environ["SR_COPY_WHILE_PREDICTING"].split(":")
    upscale_files = inference.upscale_files

    def upscale_then_copy(*args, **kwargs):
        written = upscale_files(*args, **kwargs)
        shutil.copy(source, target)
        return written

    inference.upscale_files = upscale_then_copy


class PatchOnImport(importlib.abc.MetaPathFinder):
    """Lets module `name` import as usual, then calls `patch` with it."""

    def __init__(self, name: str, patch) -> None:
        self.name, self.patch = name, patch

    def find_spec(self, name, path, target=None):
        if name != self.name:
            return None
        sys.meta_path.remove(self)
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        load = spec.loader.exec_module

        def exec_module(module) -> None:
            load(module)
            self.patch(module)

        spec.loader.exec_module = exec_module
        return spec


if os.environ.get("SR_FAKE_CUDA"):
    sys.meta_path.insert(0, PatchOnImport("torch", fake_cuda))
if os.environ.get("SR_COPY_WHILE_PREDICTING"):
    sys.meta_path.insert(0, PatchOnImport("sr_core.inference", copy_while_predicting))
