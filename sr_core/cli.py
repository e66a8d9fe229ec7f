"""How the stages and commands start and stop: log lines to stderr, and an error a user can act on
(bad params, a bad file, a full disk) as one line naming the file or key instead of a traceback.

Set SR_DEBUG=1 to see the traceback too.
"""

import logging
import os
import sys
from collections.abc import Callable


def run(main: Callable[[], object]) -> None:
    """Calls `main` with logging set up; a ValueError or OSError exits with status 1 and one line."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        main()
    except (ValueError, OSError) as error:
        if os.environ.get("SR_DEBUG"):
            raise
        sys.exit(f"error: {error}\n(set SR_DEBUG=1 to see the traceback)")
