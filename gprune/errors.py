"""The one exception type the CLI turns into a one-line error and a non-zero exit."""


class GPruneError(Exception):
    """A problem with the user's input or environment, stated in one line."""
