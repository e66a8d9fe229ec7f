"""For tests: a Python started with this folder on PYTHONPATH and SR_FAKE_CUDA=MAJOR,MINOR finds
torch reporting one CUDA GPU of that compute capability (named by SR_FAKE_CUDA_NAME), which is not
there: the device logic runs as it would on that GPU until something touches the GPU itself."""

import importlib.abc
import importlib.machinery
import os
import sys


def fake_cuda(torch) -> None:
    capability = tuple(int(part) for part in os.environ["SR_FAKE_CUDA"].split(","))
    torch.cuda.is_available = lambda: True
    torch.cuda.device_count = lambda: 1
    torch.cuda.get_device_capability = lambda device=None: capability
    torch.cuda.get_device_name = lambda device=None: os.environ.get("SR_FAKE_CUDA_NAME", "Fake GPU")


class PatchTorchOnImport(importlib.abc.MetaPathFinder):
    """Lets torch import as usual, then fakes its CUDA queries (torch itself is not imported here:
    processes that never use it, such as dvc, stay as fast as ever)."""

    def find_spec(self, name, path, target=None):
        if name != "torch":
            return None
        sys.meta_path.remove(self)
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        load = spec.loader.exec_module

        def exec_module(module) -> None:
            load(module)
            fake_cuda(module)

        spec.loader.exec_module = exec_module
        return spec


if os.environ.get("SR_FAKE_CUDA"):
    sys.meta_path.insert(0, PatchTorchOnImport())
