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
