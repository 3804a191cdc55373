"""User-facing errors: the CLI prints the message (no traceback) and exits with code 2."""


class TruthscopeError(Exception):
    """A problem with the user's input or environment, explained in one message."""


class DataError(TruthscopeError):
    """A data file is missing, unreadable or malformed; the message names the file and row."""
