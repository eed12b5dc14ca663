"""The one exception type a user sees: printed as a single line, exit code 2."""


class LimitError(Exception):
    """Bad input or an unrecoverable condition the user can fix. Never a traceback."""
