"""The one exception users of mixkit can cause.

It subclasses ``click.ClickException`` so the command line prints its message as a
single line (no traceback), while Python callers catch it like any exception.
Bugs are not ``MixkitError``: they raise normally, with their traceback.
"""

from __future__ import annotations

import click


class MixkitError(click.ClickException):
    """Bad input, a missing file, a wrong combination: something the user can fix.

    Exit status 1, like every failure of a command; 2 is kept for usage errors (an unknown
    option, a missing argument: ``click.UsageError``), as click and POSIX tools do."""

    exit_code = 1


class OptionError(MixkitError):
    """A wrong combination of command-line options: a usage error, exit status 2 as for
    click's own (an unknown option, a missing argument)."""

    exit_code = 2
