"""The ``mixkit`` command: (train a tokenizer →) tokenize → measure → mix (→ experiment)."""

from __future__ import annotations

import click

from cli.error_handler import OneLineErrorGroup

COMMANDS = {
    "tokenize": "cli.tokenize_cmds:tokenize",
    "merge": "cli.tokenize_cmds:merge",
    "info": "cli.tokenize_cmds:info",
    "list": "cli.tokenize_cmds:list_cmd",
    "train-tokenizer": "cli.tokenizer_cmds:train_tokenizer",
    "count": "cli.distance_cmds:count",
    "distance": "cli.distance_cmds:distance",
    "proximity": "cli.distance_cmds:proximity",
    "build-mix": "cli.mix_cmds:build_mix",
    "inspect": "cli.mix_cmds:inspect",
    "experiment": "cli.experiment_cmd:experiment",
    "sweep": "cli.sweep_cmd:sweep",
    "report": "cli.study_report_cmd:report",
}


@click.group(cls=OneLineErrorGroup, lazy_commands=COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="mixkit")
def main() -> None:
    """mixkit: build, measure and mix midtraining data for GPT-NeoX (Pythia) models."""


if __name__ == "__main__":
    main()
