"""The ``trainer`` command: train GPT-NeoX (Pythia) models on mixkit streams."""

from __future__ import annotations

import click

from cli.error_handler import OneLineErrorGroup

COMMANDS = {
    "train": "cli.train_cmds:train",
    "export": "cli.export_cmd:export",
    "report": "cli.report_cmd:report",
}


@click.group(cls=OneLineErrorGroup, lazy_commands=COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="mixkit")
def main() -> None:
    """trainer: pretrain, midtrain and finetune GPT-NeoX (Pythia) models on mixkit streams, and
    export them for transformers and lm-evaluation-harness.

    `trainer COMMAND --help` describes each command.
    """


if __name__ == "__main__":
    main()
