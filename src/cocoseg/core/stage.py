"""The stage runner: logging set-up and clean failure on bad user input, for every stage script."""

from __future__ import annotations

import errno
import logging
import sys
from collections.abc import Callable

from cocoseg.core.errors import UserError

# Errors caused by the user's data, parameters or network: one clear line, no traceback.
USER_ERRORS: tuple[type[BaseException], ...] = (UserError, FileNotFoundError)
# What the machine refuses, whichever file it was: one line that says so, not a traceback.
USER_ERRNOS = {
    errno.ENOSPC: "disk full",
    errno.EDQUOT: "disk quota exceeded",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.EROFS: "read-only file system",
    errno.ENAMETOOLONG: "name too long",
}


def machine_refusal(err: BaseException, with_file: bool = True) -> str | None:
    """One line for an OSError the machine raised about a file (disk full, permission, ...), else None."""
    if not isinstance(err, OSError) or err.errno not in USER_ERRNOS:
        return None
    where = f": {err.filename}" if err.filename is not None and with_file else ""
    return f"{USER_ERRNOS[err.errno]}{where} ({err.strerror or err})"


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
    except OSError as err:
        line = machine_refusal(err)
        if line is None:
            raise
        logging.getLogger("cocoseg").error("%s; partial files were removed, finished ones are intact", line)
        sys.exit(1)
    except KeyboardInterrupt:
        logging.getLogger("cocoseg").error("interrupted; finished files are intact, nothing half-written")
        sys.exit(130)
