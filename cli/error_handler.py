"""The command groups' top-level handler: every failure ends as one ``Error: ...`` line.

click already prints a ``ClickException`` (``MixkitError`` included) as one line, with exit
status 1 for a failure and 2 for a usage error. Any other exception escaping a command is turned into one line here
(``mixkit.error_lines``: an ``OSError`` in plain English naming the path, anything else as an
internal error) with exit status 1. ``MIXKIT_DEBUG=1`` lets it through with its traceback.
"""

from __future__ import annotations

import errno

import click

from cli.lazy_group import LazyGroup


class CommandFailed(click.ClickException):
    """A failure that is not the user's input (a full disk, a read-only folder, a bug): exit status 1."""

    exit_code = 1


class OneLineErrorGroup(LazyGroup):
    """A ``LazyGroup`` whose commands fail with one line, never a traceback (module docstring)."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except Exception as e:
            # imported here: `mixkit --help` should not pay for importing the mixkit package
            from mixkit.error_lines import debug_enabled, failure_line

            if debug_enabled() or (isinstance(e, OSError) and e.errno == errno.EPIPE):  # click quiets a closed pipe
                raise
            raise CommandFailed(failure_line(e)) from e
