#!/usr/bin/env bash
# The README's worked example: every stage on the bundled samples with a tiny model (CPU, minutes).
# Run from the repository root after `make setup` (or with mixkit installed).
set -euo pipefail
export MIXKIT_DATA_DIR=runs/example/data
PATH="$PWD/.venv/bin:$PATH"

mixkit tokenize mixkit/samples/c4.jsonl.gz --name c4 --preset c4 --holdout-docs 50 --overwrite --quiet
mixkit tokenize mixkit/samples/code.jsonl.gz --name code --preset code --overwrite --quiet
mixkit tokenize mixkit/samples/gsm8k_train.jsonl.gz --name gsm8k --preset gsm8k --overwrite --quiet
mixkit distance c4 gsm8k --quiet
mixkit proximity --pretrain c4 --mix "c4:0.8,code:0.2" --target gsm8k --target code --quiet
mixkit build-mix --base c4 --name base --steps 40 --seq-len 64 --global-batch 8 --overwrite
mixkit build-mix --base c4 --add code --ratio 0.2 --start-step 20 --steps 40 --seq-len 64 --global-batch 8 --name code20 --overwrite
mixkit inspect code20
trainer train --config examples/base.toml
trainer train --config examples/code20.toml --from runs/example/base/pretrain/checkpoints/step_00000020
trainer report runs/example/base runs/example/code20 --baseline base --out runs/example
