"""``--no-verify``: the one switch that lets a command use stores and mixes without their content check.

Opening a store or a mix checks its manifest and structure always, and its content
(checksums) on first use (``mixkit.integrity``). ``--no-verify`` turns the content check
off for the command it is given to, and says so on stderr, so a log shows that the data
was used unchecked.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from mixkit import integrity

NOTE = "--no-verify: stores and mixes are used without checking their content against their checksums"


def _switch_off(ctx: click.Context, _param: click.Parameter, value: bool) -> bool:
    if value:
        integrity.set_content_checks(False)
        ctx.call_on_close(lambda: integrity.set_content_checks(None))
        click.echo(NOTE, err=True)
    return value


def no_verify_option(f: Callable[..., Any]) -> Callable[..., Any]:
    """Add ``--no-verify`` to a command (not passed to it: it sets ``integrity.set_content_checks``)."""
    return click.option(
        "--no-verify", is_flag=True, expose_value=False, callback=_switch_off,
        help="Skip the content check (checksums) of stores and mixes on first use (the structure is still checked).",
    )(f)
