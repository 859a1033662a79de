"""The worker entry point: one run of a study (or its preparation, or its report) as a separate process.

``python -m lab.worker --config STUDY.toml --out OUT --run NAME`` is what ``StudyRunner``
starts for each run when ``jobs > 1``; the same command trains one run on any machine that
sees ``OUT`` (after the stores, mixes and, for a variant, its base run exist). The Slurm
jobs of ``lab.launcher`` run it too: ``--prepare`` (stores, distances, ``experiment.json``,
mixes), ``--run NAME --mark-done`` (and record that the run finished) and ``--report``
(``report.md`` from what finished; exit 1 naming the runs that did not).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lab.config import load_study
from lab.launcher import finished_runs, mark_done
from lab.plan import plan_study
from lab.report import write_report
from lab.runner import StudyRunner
from mixkit.error_lines import debug_enabled, failure_line
from mixkit.errors import MixkitError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.worker", description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="the study's config file")
    parser.add_argument("--out", required=True, help="the study's output folder")
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--run", help="the run to train (see the plan)")
    what.add_argument("--prepare", action="store_true", help="tokenize, measure, write experiment.json, build the mixes")
    what.add_argument("--report", action="store_true", help="write report.md from the runs that finished")
    parser.add_argument("--mark-done", action="store_true", help="with --run: record the run as finished (lab.launcher)")
    parser.add_argument("--command", default="", help="with --prepare: the command to record in experiment.json")
    args = parser.parse_args(argv)
    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    try:
        cfg = load_study(args.config)
        if args.report:
            report = write_report(Path(args.out))
            log(f"report: {report}")
            missing = sorted({r.name for r in plan_study(cfg).runs} - set(finished_runs(cfg, Path(args.out), args.config)))
            if missing:
                raise MixkitError(f"{len(missing)} run(s) did not finish: {', '.join(missing)} (see {args.out}/logs/slurm); "
                                  f"the report holds what finished; launch again to resubmit them")
            return 0
        runner = StudyRunner(cfg, args.out, log=log, config_path=args.config, command=args.command)
        if args.prepare:
            runner.prepare()
            return 0
        runner.run_one(args.run)
        if args.mark_done:
            mark_done(Path(args.out), args.run, args.config)
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
