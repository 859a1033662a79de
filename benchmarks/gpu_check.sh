#!/usr/bin/env bash
# The first run on a GPU machine, in one command (meant to take under 10 minutes on one
# H100/H200; each step's time is in the summary):
#
#   1. env     torch, CUDA, the GPUs, and the imports the steps need
#   2. parity  our GPT-NeoX's logits and bf16 loss against transformers' on CUDA
#              (tests/trainer/test_accelerated.py -k cuda)
#   3. bench   benchmarks/bench_train.py --device cuda: tokens/s and MFU of pythia-70m/160m/410m
#              at seq 2048 in bf16, eager and compiled, ours and transformers' GPTNeoX
#   4. ddp     two ranks of NCCL DDP against one process (benchmarks/ddp_check.py); only with 2+ GPUs
#   5. smoke   a pythia-70m `mixkit experiment` (experiments/pythia-70m-smoke.toml): the whole pipeline
#
# then one summary table (step, status, seconds, the figure or line that matters). Each step's
# output is in OUT/<step>.log; the exit status is 1 when a step failed.
#
#   benchmarks/gpu_check.sh [--out DIR] [--dry-run]
#
# --dry-run (no GPU needed): print the steps and their commands, and check the environment
# (the imports, the files, the smoke config) without running them.
# PYTHON and MIXKIT name the interpreter and the mixkit command (default: .venv's, else PATH's).
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

OUT="runs/gpu-check"
DRY_RUN=0
while [ $# -gt 0 ]; do
    case "$1" in
        --dry-run) DRY_RUN=1 ;;
        --out) [ $# -ge 2 ] || { echo "--out needs a folder" >&2; exit 2; }; OUT="$2"; shift ;;
        -h|--help) sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown option: $1 (usage: benchmarks/gpu_check.sh [--out DIR] [--dry-run])" >&2; exit 2 ;;
    esac
    shift
done

if [ -z "${PYTHON:-}" ]; then
    if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
if [ -z "${MIXKIT:-}" ]; then
    if [ -x .venv/bin/mixkit ]; then MIXKIT=.venv/bin/mixkit; else MIXKIT=mixkit; fi
fi
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"

SMOKE_CONFIG="experiments/pythia-70m-smoke.toml"
STEPS=(env parity bench ddp smoke)
declare -A COMMAND=(
    [env]="$PYTHON - (imports, files, smoke config, GPUs)"
    [parity]="$PYTHON -m pytest -q -p no:cacheprovider tests/trainer/test_accelerated.py -k cuda"
    [bench]="$PYTHON benchmarks/bench_train.py --device cuda --steps 5 --warmup 2 --json $OUT/bench.json"
    [ddp]="$PYTHON benchmarks/ddp_check.py --out $OUT/ddp"
    [smoke]="$MIXKIT experiment --config $SMOKE_CONFIG --out $OUT/smoke"
)

# The environment: what every step imports, the files they run, and the GPUs. Prints
# "gpus N" last; exits 1 (naming what is missing) when something the steps need is absent.
check_environment() {
    "$PYTHON" - "$DRY_RUN" "$SMOKE_CONFIG" <<'PY'
import importlib, os, sys
dry_run, smoke = sys.argv[1] == "1", sys.argv[2]
missing = []
for module in ("torch", "torch.distributed.run", "transformers", "pytest", "trainer.train", "trainer.distributed",
               "trainer.distributed_checkpoint", "lab.runner", "cli.trainer_cli"):
    try:
        importlib.import_module(module)
    except Exception as e:  # any failure to import is what this check reports
        missing.append(f"{module} ({type(e).__name__}: {e})")
for path in ("benchmarks/bench_train.py", "benchmarks/ddp_check.py", "tests/trainer/test_accelerated.py", smoke):
    if not os.path.isfile(path):
        missing.append(f"{path} (no such file)")
if missing:
    sys.exit("environment: cannot use " + "; ".join(missing))
from lab.config import load_study

load_study(smoke, kind="experiment")
import torch
import transformers

gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
names = ", ".join(torch.cuda.get_device_name(i) for i in range(gpus)) or "none"
print(f"python {sys.version.split()[0]}, torch {torch.__version__} (CUDA {torch.version.cuda}), "
      f"transformers {transformers.__version__}")
print(f"GPUs: {names}")
if gpus == 0 and not dry_run:
    sys.exit("environment: no CUDA device (torch.cuda.is_available() is False); --dry-run checks without one")
print(f"gpus {gpus}")
PY
}

if [ "$DRY_RUN" = 1 ]; then
    echo "gpu_check dry run: the steps it would run (outputs in $OUT/<step>.log)"
    i=1
    for step in "${STEPS[@]}"; do
        note=""
        [ "$step" = ddp ] && note="   [only with 2+ GPUs]"
        printf '  %d. %-7s %s%s\n' "$i" "$step" "${COMMAND[$step]}" "$note"
        i=$((i + 1))
    done
    echo "checking the environment:"
    if ! env_out="$(check_environment 2>&1)"; then
        echo "$env_out" | sed 's/^/  /'
        echo "dry run: the environment is NOT ready" >&2
        exit 1
    fi
    echo "$env_out" | grep -v '^gpus ' | sed 's/^/  /'
    gpus="$(echo "$env_out" | sed -n 's/^gpus //p')"
    [ "${gpus:-0}" = 0 ] && echo "  (no CUDA device here: a real run needs one)"
    echo "dry run: environment ready, ${#STEPS[@]} steps"
    exit 0
fi

mkdir -p "$OUT"
declare -A STATUS SECONDS_TAKEN DETAIL
failed=0

run_step() {  # run_step NAME COMMAND...: output to OUT/NAME.log and the terminal
    local name="$1"; shift
    local t0 t1 rc
    echo "== $name: $*"
    t0=$(date +%s)
    "$@" 2>&1 | tee "$OUT/$name.log"
    rc=${PIPESTATUS[0]}
    t1=$(date +%s)
    SECONDS_TAKEN[$name]=$((t1 - t0))
    if [ "$rc" = 0 ]; then STATUS[$name]=ok; else STATUS[$name]="FAILED ($rc)"; failed=1; fi
}

last_match() {  # last_match FILE PATTERN: the last line matching, trimmed
    grep -E "$2" "$1" 2>/dev/null | tail -n 1 | sed 's/^ *//' | cut -c1-90
}

run_step env check_environment
gpus="$(sed -n 's/^gpus //p' "$OUT/env.log")"
DETAIL[env]="$(grep '^GPUs:' "$OUT/env.log" | cut -c1-90)"
if [ "${STATUS[env]}" != ok ]; then
    DETAIL[env]="$(tail -n 1 "$OUT/env.log" | cut -c1-90)"
    for step in parity bench ddp smoke; do STATUS[$step]="not run"; SECONDS_TAKEN[$step]=0; DETAIL[$step]=""; done
else
    run_step parity $PYTHON -m pytest -q -p no:cacheprovider tests/trainer/test_accelerated.py -k cuda
    DETAIL[parity]="$(last_match "$OUT/parity.log" 'passed|failed|error')"
    run_step bench $PYTHON benchmarks/bench_train.py --device cuda --steps 5 --warmup 2 --json "$OUT/bench.json"
    DETAIL[bench]="$(last_match "$OUT/bench.log" '^ratio:') (ours/transformers tok/s; rows in $OUT/bench.log)"
    if [ "${gpus:-0}" -ge 2 ]; then
        run_step ddp $PYTHON benchmarks/ddp_check.py --out "$OUT/ddp"
        DETAIL[ddp]="$(last_match "$OUT/ddp.log" 'max relative difference')"
    else
        STATUS[ddp]="skipped"; SECONDS_TAKEN[ddp]=0; DETAIL[ddp]="needs 2 GPUs, found ${gpus:-0}"
    fi
    run_step smoke $MIXKIT experiment --config "$SMOKE_CONFIG" --out "$OUT/smoke"
    DETAIL[smoke]="$([ -f "$OUT/smoke/report.md" ] && echo "report: $OUT/smoke/report.md" || last_match "$OUT/smoke.log" '.')"
fi

echo
echo "gpu_check summary ($(date -u +%Y-%m-%dT%H:%M:%SZ))"
printf '%-7s %-12s %7s  %s\n' step status seconds detail
for step in "${STEPS[@]}"; do
    printf '%-7s %-12s %7s  %s\n' "$step" "${STATUS[$step]}" "${SECONDS_TAKEN[$step]}" "${DETAIL[$step]}"
done
total=0
for step in "${STEPS[@]}"; do total=$((total + SECONDS_TAKEN[$step])); done
echo "total: ${total} s"
exit "$failed"
