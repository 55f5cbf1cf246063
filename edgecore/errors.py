"""The one exception type the CLI turns into a one-line error and a non-zero exit, and the
one-line note for what a run does differently from what its input said."""

import sys


class GPruneError(Exception):
    """A problem with the user's input or environment, stated in one line."""


def first_line(error: BaseException) -> str:
    """The first line of an exception's message (library errors often run over many lines)."""
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


def note(message: str) -> None:
    """Tell the user, in one line on stderr, about something the run handled for them (an old
    config's field converted or dropped)."""
    print(f"note: {message}", file=sys.stderr)
