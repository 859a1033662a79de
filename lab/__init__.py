"""lab: the study layer above the toolkit (``mixkit``) and the trainer (``trainer``).

config (a study: experiment or sweep, checked whole at load) → plan (runs, branch points,
mixes, cost) → runner (tokenize, measure, mix, train in process or as worker processes)
→ report: results (load) → statistics → analysis → findings → markdown → plots.
``run_report`` is ``trainer report``'s table over run directories.
"""
