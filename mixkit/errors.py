"""The one exception users of mixkit can cause.

It subclasses ``click.ClickException`` so the command line prints its message as a
single line (no traceback), while Python callers catch it like any exception.
Bugs are not ``MixkitError``: they raise normally, with their traceback.
"""

from __future__ import annotations

import click


class MixkitError(click.ClickException):
    """Bad input, a missing file, a wrong combination: something the user can fix."""

    exit_code = 2
