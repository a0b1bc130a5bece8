"""Errors the user can fix. The CLI prints their message as one line and exits non-zero."""


class UserError(ValueError):
    """Bad input: a name, a file, a setting. The message says what is wrong and how to fix it."""
