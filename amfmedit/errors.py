"""The one exception type users see.

A :class:`UserError` carries a single line that names the file, column, key or value at fault
and says what to do. The CLI prints it without a traceback and exits non-zero; library callers
can catch it like any exception.
"""

import difflib


class UserError(Exception):
    """Bad input or a missing prerequisite, explained in one line."""

    exit_code = 2

    def __init__(self, message: str) -> None:
        if "\n" in message:
            raise ValueError("UserError messages are one line")
        super().__init__(message)


def close_matches(word: str, choices, n: int = 3) -> str:
    """', '.join of the closest choices (for 'did you mean …' hints); '' when none are close."""
    return ", ".join(difflib.get_close_matches(word, list(choices), n=n, cutoff=0.6))
