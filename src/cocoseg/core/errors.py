"""The one base class of errors caused by the user's data, parameters or network."""

from __future__ import annotations


class UserError(Exception):
    """Bad input, not a bug: the stage runner prints the message as one line and exits 1.

    Each package subclasses it (ConfigError, CocoFormatError, ExtractError, DownloadError, ...), so
    the runner needs to know no package but this one.
    """
