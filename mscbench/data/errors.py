"""The one error type of the data layer: its message is a single line naming the problem and the fix."""

from __future__ import annotations

from mscbench.errors import UserError


class DataError(UserError):
    """A dataset cannot be prepared or found (a `UserError`, so also a `ValueError`)."""
