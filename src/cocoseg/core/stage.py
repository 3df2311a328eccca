"""The stage runner: logging set-up and clean failure on bad user input, for every stage script."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable

from cocoseg.core.errors import UserError

# Errors caused by the user's data, parameters or network: one clear line, no traceback.
USER_ERRORS: tuple[type[BaseException], ...] = (UserError, FileNotFoundError)


def setup_logging(level: int = logging.INFO) -> None:
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)


def drop_library_handlers() -> None:
    """Leave every log line to the root handler ``setup_logging`` installed, so each prints once.

    Lightning, dvclive and torchmetrics attach a console handler of their own when imported, yet also
    pass their records on to the root logger: every line of theirs was printed twice, in two formats.
    Call after those imports; loggers that do not pass records on keep their handlers.
    """
    root = logging.getLogger()
    if not root.handlers:
        return
    for logger in list(logging.Logger.manager.loggerDict.values()):
        if isinstance(logger, logging.Logger) and logger.propagate:
            for handler in list(logger.handlers):
                if type(handler) is logging.StreamHandler:
                    logger.removeHandler(handler)


def run_stage(main: Callable[[], None]) -> None:
    """Run a stage's main(); user errors exit 1 with one line, bugs keep their traceback."""
    setup_logging()
    try:
        main()
    except USER_ERRORS as err:
        logging.getLogger("cocoseg").error("%s", err)
        sys.exit(1)
    except KeyboardInterrupt:
        logging.getLogger("cocoseg").error("interrupted; finished files are intact, nothing half-written")
        sys.exit(130)
