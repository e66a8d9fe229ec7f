"""How the stages and commands start and stop: log lines to stderr, and an error a user can act on
(bad params, a bad file, a full disk) as one line naming the file or key instead of a traceback.

Set SR_DEBUG=1 to see the traceback too.
"""

import argparse
import logging
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path

from sr_core.config import Params, load_params
from sr_core.files import size_text
from sr_core.param_changes import describe_differences, param_differences, stage_params


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """`--help` shows the description as written (its example commands) and every option's default."""


def argument_parser(description: str, prog: str) -> argparse.ArgumentParser:
    """The parser every command uses: `prog` as the user types it (`sr-upscale`), so
    usage lines and errors name the command that was run, and defaults shown in `--help`."""
    return argparse.ArgumentParser(prog=prog, description=description, formatter_class=HelpFormatter)


STOPPED = ("stopped (Ctrl-C). Files are written whole, so none is left half-written; run the same command again "
           "(under dvc repro a training resumes after its last finished epoch)")


def run(main: Callable[[], object]) -> None:
    """Calls `main` with logging set up; a ValueError or OSError exits with status 1 and one line,
    and so does an allocation that fails (host or GPU), naming the settings that bound memory.
    Ctrl-C exits with status 130 and one line saying how to go on."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        main()
    except KeyboardInterrupt:
        if os.environ.get("SR_DEBUG"):
            raise
        print(STOPPED, file=sys.stderr)
        sys.exit(130)
    except (ValueError, OSError) as error:
        if os.environ.get("SR_DEBUG"):
            raise
        sys.exit(f"error: {error}\n(set SR_DEBUG=1 to see the traceback)")
    except (MemoryError, RuntimeError) as error:
        if os.environ.get("SR_DEBUG") or not out_of_memory(error):
            raise
        sys.exit(f"error: out of memory ({allocation(error)}): lower --tile (inference.tile) for images, or "
                 f"train.batch_size / train.patch_size for training\n(set SR_DEBUG=1 to see the traceback)")


def out_of_memory(error: BaseException) -> bool:
    """Whether `error` is an allocation that failed: Python's or numpy's MemoryError, PyTorch's
    CUDA out-of-memory error, or its CPU allocator's RuntimeError."""
    return isinstance(error, MemoryError) or type(error).__name__ == "OutOfMemoryError" or \
        "can't allocate memory" in str(error) or "not enough memory" in str(error)


def allocation(error: BaseException) -> str:
    """What the failed allocation asked for, from the error's message (`you tried to allocate N
    bytes`, `Tried to allocate 2.00 GiB`), or its first line."""
    found = re.search(r"tried to allocate ([\d.]+ ?\w+)", str(error), re.IGNORECASE)
    if found:
        amount = found.group(1)
        return f"{size_text(int(amount.split()[0]))} asked for" if amount.endswith("bytes") else f"{amount} asked for"
    return str(error).splitlines()[0] if str(error) else type(error).__name__


def run_stage(stage: Callable[[Params], object], script: str) -> None:
    """Runs the pipeline stage in `script` (stages/NAME.py, stage NAME of dvc.yaml) on params.yaml's
    params, as `run` does, then fails if params.yaml no longer holds the values it ran with for the
    keys dvc.yaml lists for it. DVC reads params.yaml when a stage ends
    and records those values in dvc.lock, so an edit made meanwhile (by hand, or by a `dvc exp run
    -S` that found the pipeline locked) would be recorded for outputs made with other values."""
    name = Path(script).stem

    def checked() -> None:
        params = load_params()
        stage(params)
        differences = param_differences(params.model_dump(), load_params().model_dump(), stage_params(name))
        if differences:
            changes = describe_differences(differences, "at its start", "now")
            raise ValueError(f"params.yaml changed while stage {name} ran ({changes}), so it fails and DVC records "
                             f"nothing: its outputs were made with the values at its start. Run dvc repro again to "
                             f"redo it with the new values, or restore the old ones first (a finished training is "
                             f"then reused, not redone)")

    run(checked)
