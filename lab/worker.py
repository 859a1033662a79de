"""The worker entry point: train one run of a study, as a separate process.

``python -m lab.worker --config STUDY.toml --out OUT --run NAME`` is what ``StudyRunner``
starts for each run when ``jobs > 1``; the same command trains one run on any machine that
sees ``OUT`` (after the stores, mixes and, for a variant, its base run exist).
"""

from __future__ import annotations

import argparse
import sys

from lab.config import load_study
from lab.runner import StudyRunner
from mixkit.error_lines import debug_enabled, failure_line
from mixkit.errors import MixkitError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.worker", description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="the study's config file")
    parser.add_argument("--out", required=True, help="the study's output folder")
    parser.add_argument("--run", required=True, help="the run to train (see the plan)")
    args = parser.parse_args(argv)
    try:
        StudyRunner(load_study(args.config), args.out, log=lambda m: print(m, file=sys.stderr, flush=True),
                    config_path=args.config).run_one(args.run)
    except MixkitError as e:
        print(f"Error: {e.message}", file=sys.stderr)
        return 1
    except Exception as e:  # one line in the run's log, as the commands print (MIXKIT_DEBUG=1: the traceback)
        if debug_enabled():
            raise
        print(f"Error: {failure_line(e)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
