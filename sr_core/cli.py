"""How the stages and commands start and stop: log lines to stderr, and an error a user can act on
(bad params, a bad file, a full disk) as one line naming the file or key instead of a traceback.

Set SR_DEBUG=1 to see the traceback too.
"""

import argparse
import logging
import os
import sys
from collections.abc import Callable


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """`--help` shows the description as written (its example commands) and every option's default."""


def argument_parser(description: str, prog: str) -> argparse.ArgumentParser:
    """The parser every command uses: `prog` as the user types it (`python -m sr_core.upscale`), so
    usage lines and errors name the command that was run, and defaults shown in `--help`."""
    return argparse.ArgumentParser(prog=prog, description=description, formatter_class=HelpFormatter)


def run(main: Callable[[], object]) -> None:
    """Calls `main` with logging set up; a ValueError or OSError exits with status 1 and one line."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        main()
    except (ValueError, OSError) as error:
        if os.environ.get("SR_DEBUG"):
            raise
        sys.exit(f"error: {error}\n(set SR_DEBUG=1 to see the traceback)")
