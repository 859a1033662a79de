"""`trainer --help` and each command's help: whole sentences, every option described, defaults one way."""

from __future__ import annotations

import re

import pytest
from click.testing import CliRunner

from cli.trainer_cli import COMMANDS, main


def test_top_level_lists_every_command_with_a_whole_sentence():
    r = CliRunner().invoke(main, ["--help"])
    assert r.exit_code == 0
    commands = r.output.split("Commands:")[1]
    assert "..." not in commands
    for name in COMMANDS:
        assert re.search(rf"^  {name} ", commands, re.M), name


@pytest.mark.parametrize("name", ["train", "export"])
def test_every_option_has_help_and_defaults_are_shown_one_way(name):
    command = main.get_command(None, name)
    for param in command.params:
        if param.param_type_name == "option":
            assert param.help and param.help.rstrip().endswith((".", "]", ")")), (name, param.name)
            assert "(default" not in param.help.lower(), (name, param.name)
    r = CliRunner().invoke(main, [name, "--help"])
    assert r.exit_code == 0 and "Options:" in r.output and "[default: " in r.output
