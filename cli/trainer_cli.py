"""The ``trainer`` command: train GPT-NeoX (Pythia) models on mixkit streams."""

from __future__ import annotations

import click

from cli.lazy_group import LazyGroup

COMMANDS = {
    "train": "cli.train_cmds:train",
    "export": "cli.export_cmd:export",
    "report": "cli.report_cmd:report",
}


class TrainerGroup(LazyGroup):
    """Lists each command with its whole first sentence (click cuts it at the terminal's width)."""

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = []
        for name in self.list_commands(ctx):
            cmd = self.get_command(ctx, name)
            if cmd is not None and not cmd.hidden:
                rows.append((name, cmd.get_short_help_str(limit=1_000)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


@click.group(cls=TrainerGroup, lazy_commands=COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="mixkit")
def main() -> None:
    """trainer: pretrain, midtrain and finetune GPT-NeoX (Pythia) models on mixkit streams, and
    export them for transformers and lm-evaluation-harness.

    `trainer COMMAND --help` describes each command.
    """


if __name__ == "__main__":
    main()
