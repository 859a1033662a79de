"""mixkit tokenize end to end vs bare ``tokenizers`` ``encode_batch_fast`` on texts in memory.

One run, the same texts, the same number of threads/processes (``--workers``, default
all cores):

* anchor: ``Tokenizer.encode_batch_fast(batch, add_special_tokens=False)`` with
  ``encode_special_tokens = True`` (special-token strings are plain text, as mixkit
  stores them), on texts already in memory, in batches of ``--batch-bytes``;
* bare ``tiktoken`` with the ranks mixkit derives from the same tokenizer file
  (``encode_ordinary_batch``, no NFC, no added-token split: the BPE alone);
* ``mixkit tokenize`` end to end, one command (start-up, imports, the encoder
  self-test, reading and parsing the JSONL, encoding, writing the store, fingerprinting),
  timed first while the benchmark process is still small (its peak RSS is reported).

The texts are first written to one JSONL file (``{"text": ...}`` per document, not timed)
so that every side sees exactly the same documents. After timing, the store's documents
are compared with the anchor's ids (plus EOS): the run fails if any differ. Bare
tiktoken's ids are only counted (without the NFC and added-token steps some differ).

    python benchmarks/bench_tokenize.py [FILES...] [--workers N] [--encoder auto|fast|hf]

Default corpus: ../shared/data C4 sample, Wikipedia, TheAlgorithms/Python, GSM8K train
(11,301 documents, 34 M characters). ``ratio: X`` = anchor time over ours (end to end).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
DEFAULT = [SHARED / "web" / "c4_sample.jsonl", SHARED / "wiki" / "enwiki_wikiextractor.jsonl",
           SHARED / "code" / "thealgorithms_python.jsonl", SHARED / "gsm8k" / "train.jsonl"]


def load_texts(paths: list[Path]) -> list[str]:
    """``text`` of each record, or ``question\\nanswer`` for GSM8K-style records; empty ones dropped."""
    from mixkit.readers import Record, read_records

    out = []
    for p in paths:
        for r in read_records(p):
            if not isinstance(r, Record):
                continue
            f = r.fields
            text = f["text"] if "text" in f else f"{f['question']}\n{f['answer']}"
            if text.strip():
                out.append(text)
    return out


def batches_of(texts: list[str], batch_bytes: int) -> list[list[str]]:
    out, cur, size = [], [], 0
    for t in texts:
        cur.append(t)
        size += len(t.encode())
        if size >= batch_bytes:
            out.append(cur)
            cur, size = [], 0
    if cur:
        out.append(cur)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("files", nargs="*", type=Path)
    ap.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)))
    ap.add_argument("--encoder", choices=["auto", "fast", "hf"], default="auto")
    ap.add_argument("--batch-bytes", type=int, default=1 << 21)
    args = ap.parse_args()
    files = args.files or DEFAULT
    missing = [str(f) for f in files if not f.exists()]
    if missing:
        sys.exit(f"missing input files: {missing}")
    os.environ["RAYON_RS_NUM_CPUS"] = str(args.workers)
    os.environ["RAYON_NUM_THREADS"] = str(args.workers)
    import numpy as np
    import tiktoken
    from tokenizers import Tokenizer

    from mixkit.encoders import GPT2_SPLIT, FastEncoder
    from mixkit.samples import DEFAULT_TOKENIZER
    from mixkit.store import TokenStore

    texts = load_texts(files)
    nbytes = sum(len(t.encode()) for t in texts)
    print(f"corpus: {len(files)} files, {len(texts):,} documents, {sum(map(len, texts)) / 1e6:.1f} M characters, "
          f"{nbytes / 1e6:.1f} MB of UTF-8; {args.workers} threads/processes; load average {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory() as d:
        corpus = Path(d, "corpus.jsonl")
        with open(corpus, "w", encoding="utf-8") as f:
            for t in texts:
                f.write(json.dumps({"text": t}, ensure_ascii=False) + "\n")
        # Ours first, while this process is small: a child's peak RSS counts the parent's
        # image it was forked from.
        del texts
        cmd = [sys.executable, "-m", "cli.mixkit_cli", "tokenize", str(corpus), "--name", "bench",
               "--data-dir", d, "--quiet", "--workers", str(args.workers), "--encoder", args.encoder,
               "--batch-bytes", str(args.batch_bytes)]
        t0 = time.perf_counter()
        r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        ours_s = time.perf_counter() - t0
        if r.returncode != 0:
            sys.exit(r.stderr)
        peak_rss_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        store = TokenStore.open(Path(d, "bench"))
        encoder = store.manifest["encoder"]
        eos = store.eos_id
        ours_tokens = store.num_tokens
        ours_docs = [np.array(store[i]) for i in range(len(store))]

    texts = load_texts(files)
    batches = batches_of(texts, args.batch_bytes)
    tok = Tokenizer.from_file(str(DEFAULT_TOKENIZER))
    tok.encode_special_tokens = True
    tok.encode_batch_fast(batches[0][:10], add_special_tokens=False)  # warm the thread pool
    t0 = time.perf_counter()
    anchor_ids = [e.ids for b in batches for e in tok.encode_batch_fast(b, add_special_tokens=False)]
    anchor_s = time.perf_counter() - t0
    ntok = sum(map(len, anchor_ids))

    spec = FastEncoder.from_file(DEFAULT_TOKENIZER).spec
    bare = tiktoken.Encoding("bench", pat_str=GPT2_SPLIT, mergeable_ranks=spec.ranks, special_tokens={})
    bare.encode_ordinary_batch(batches[0][:10], num_threads=args.workers)
    t0 = time.perf_counter()
    bare_ids = [ids for b in batches for ids in bare.encode_ordinary_batch(b, num_threads=args.workers)]
    bare_s = time.perf_counter() - t0
    bare_differ = sum(a != b for a, b in zip(bare_ids, anchor_ids))
    differ = sum(
        not np.array_equal(doc[:-1], ids) or doc[-1] != eos for doc, ids in zip(ours_docs, anchor_ids)
    ) + abs(len(ours_docs) - len(anchor_ids))

    print(f"anchor  tokenizers encode_batch_fast (in memory):   {anchor_s:7.2f} s  {nbytes / anchor_s / 1e6:6.2f} MB/s  {ntok / anchor_s / 1e6:6.2f} M tokens/s")
    print(f"bare    tiktoken, our ranks (in memory, BPE only):  {bare_s:7.2f} s  {nbytes / bare_s / 1e6:6.2f} MB/s  "
          f"({bare_differ:,} documents differ without NFC and the added-token split)")
    print(f"mixkit  tokenize end to end, encoder {encoder['name']:>4}:       {ours_s:7.2f} s  {nbytes / ours_s / 1e6:6.2f} MB/s  "
          f"{ours_tokens / ours_s / 1e6:6.2f} M tokens/s (incl. EOS)")
    print(f"ids: {len(anchor_ids) - differ:,} of {len(anchor_ids):,} documents identical to the anchor; "
          f"peak RSS of mixkit tokenize {peak_rss_mb:.0f} MB (largest process)")
    if differ:
        sys.exit(f"{differ} documents differ from tokenizers' ids")
    print(f"ratio: {anchor_s / ours_s:.2f}")


if __name__ == "__main__":
    main()
