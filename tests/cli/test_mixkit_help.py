"""The `mixkit` help: whole first sentences in the command list, help for every option."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from cli.mixkit_cli import COMMANDS, main


def test_command_list_shows_whole_sentences():
    text = CliRunner().invoke(main, ["--help"]).output
    assert "..." not in text.split("Commands:")[1]
    assert "Build a deterministic mixed sample stream, readable at any" in text and "step in O(1)." in text


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_option_has_help(name):
    cmd = main.get_command(click.Context(main), name)
    missing = [p.name for p in cmd.params if isinstance(p, click.Option) and not p.hidden and not p.help]
    assert missing == [], f"{name}: options without help: {missing}"


def _commands():
    ctx = click.Context(main)
    return [(name, main.get_command(ctx, name)) for name in sorted(COMMANDS)]


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_help_texts_are_whole_sentences_with_defaults_shown_one_way(name):
    """Every command's short help and every option's help is a whole sentence; a default is shown by
    click's ``[default: ...]`` (``show_default``), never written into the help text."""
    cmd = dict(_commands())[name]
    short = cmd.get_short_help_str(limit=300)
    assert short.endswith("."), f"{name}: short help cut mid-sentence: {short!r}"
    for p in cmd.params:
        if not isinstance(p, click.Option) or p.hidden:
            continue
        text = (p.help or "").strip()
        assert text.endswith((".", ")")), f"{name} {p.opts[0]}: help {text!r} is not a whole sentence"
        assert not text.startswith("...") and not text.endswith("..."), f"{name} {p.opts[0]}: {text!r} is cut"
        assert "default" not in text.lower(), f"{name} {p.opts[0]}: {text!r} writes its default"
        has_default = p.default not in (None, "", ()) and not isinstance(p.default, bool) and \
            not p.multiple and "UNSET" not in repr(p.default)
        if has_default:
            assert p.show_default, f"{name} {p.opts[0]}: default {p.default!r} is not shown"
    out = CliRunner().invoke(main, [name, "--help"])
    assert out.exit_code == 0 and "(default" not in out.output


def test_the_walk_covers_every_command():
    names = {n for n, _ in _commands()}
    assert names == set(COMMANDS) and {"experiment", "sweep", "tokenize", "build-mix"} <= names
