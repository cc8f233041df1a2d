"""The one exception type users see: a message naming the problem and the fix, exit code 2."""


class CurateError(Exception):
    """Bad input or state that the user can fix; the CLI prints the message and exits with 2."""

    exit_code = 2
