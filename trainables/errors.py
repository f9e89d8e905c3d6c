"""The project's own errors: clear, one-line messages about a user's input, files or environment.

`xlamaml` prints any `XlamamlError` as one line (`XLAMAML_DEBUG=1` shows the traceback instead); every other
exception is a bug and keeps its traceback. Subclasses also derive from the builtin they refine
(`ValueError`, `FileNotFoundError`, ...) so callers that catch those keep working.
"""

from __future__ import annotations


class XlamamlError(Exception):
    """A problem the user can fix, told in one line: what was wrong, where, and what was expected."""


class InputError(XlamamlError, ValueError):
    """A bad value given to a command or function: an argument, a preset name, an assignment string."""


class MissingFileError(XlamamlError, FileNotFoundError):
    """A file or directory the user named (or a step needs) that is not there."""


class ExistingOutputError(XlamamlError, FileExistsError):
    """An output location that already holds something this command must not overwrite."""


class ConfigError(XlamamlError, ValueError):
    """A config key that does not exist, or a value that is not what the key expects (the key is named)."""


class NonFiniteLossError(XlamamlError, ArithmeticError):
    """A training loss that became NaN or infinite: the run stops there (naming the stage and step), caching nothing."""
