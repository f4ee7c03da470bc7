"""Errors a user can act on. The CLI prints them without a traceback and exits with code 2."""


class PreftuneError(Exception):
    """Base class: the message says what is wrong and what to do about it."""

    exit_code = 2


class ConfigError(PreftuneError):
    """A config key, value or file is wrong; the message names the key and what is allowed."""


class DataError(PreftuneError):
    """A data row is unusable; the message names the file, the line (or row) and the field."""

    def __init__(self, message: str, *, source: str | None = None, field: str | None = None):
        self.source = source
        self.field = field
        where = ", ".join(part for part in (source, f"field '{field}'" if field else None) if part)
        super().__init__(f"{where}: {message}" if where else message)


class MethodDataError(PreftuneError):
    """A method was given data it cannot use (no scores, no labels, too few responses...)."""


class TrainingError(PreftuneError):
    """Training cannot go on (a non-finite loss, a broken checkpoint...)."""
