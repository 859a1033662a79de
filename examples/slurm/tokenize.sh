#!/bin/bash
# Tokenize one corpus across a Slurm cluster: an array of NUM_SHARDS shard jobs, then a merge.
#
#   NAME=c4 SOURCES='data/c4/*.jsonl.zst' PRESET=c4 NUM_SHARDS=16 DATA_DIR=data/stores \
#     examples/slurm/tokenize.sh [extra sbatch options, e.g. --partition cpu --account proj]
#
# Environment: NAME, SOURCES (space-separated files/globs/folders), NUM_SHARDS; optional
# PRESET, DATA_DIR (else $MIXKIT_DATA_DIR, else ./mixkit-data), TOKENIZE_ARGS (more `mixkit
# tokenize` options, e.g. "--tokenizer EleutherAI/pythia-160m"), HOLDOUT_DOCS, OVERWRITE=1,
# KEEP_SHARDS=1 (keep the shard stores after the merge), MIXKIT (the command, default mixkit).
# Prints the two job ids. The merge runs only if every shard succeeded (afterok); a failed
# shard can be resubmitted alone (sbatch --array=I ...) and resumes where it stopped.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
: "${NAME:?set NAME}" "${SOURCES:?set SOURCES}" "${NUM_SHARDS:?set NUM_SHARDS}"
export NAME SOURCES NUM_SHARDS
array=$(sbatch --parsable "$@" --array="0-$((NUM_SHARDS - 1))" "$here/tokenize_array.sbatch")
merge=$(sbatch --parsable "$@" --dependency="afterok:${array%%;*}" --kill-on-invalid-dep=yes "$here/merge.sbatch")
echo "tokenize array: job ${array%%;*} ($NUM_SHARDS shards); merge: job ${merge%%;*} → store $NAME"
