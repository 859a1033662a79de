"""mixkit tokenize end to end vs bare ``tokenizers`` encode_batch on texts already in memory.

Both sides use the same tokenizer file and the same number of Rust threads. Ours reads
the files (JSON parsing, decompression), encodes, and writes a finished store; the
anchor only encodes texts that are already in memory, in batches of the same size.
The tokenizer should be the only cost left, so the target is ratio >= 0.9.

    python benchmarks/bench_tokenize.py [FILES...] [--workers N]

Default corpus: ../shared/data web text (C4, Common Crawl) plus Wikipedia, about 28 MB of
text. Ours runs as one ``mixkit tokenize`` process (start-up and imports included).
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
DEFAULT = [SHARED / "web" / "c4_sample.jsonl", SHARED / "web" / "cc_en_head-0091.jsonl.gz",
           SHARED / "web" / "cc_en_head-0174.jsonl.gz", SHARED / "wiki" / "enwiki_wikiextractor.jsonl"]


def load_texts(paths: list[Path]) -> list[str]:
    from mixkit.readers import Record, read_records

    return [r.fields["text"] for p in paths for r in read_records(p) if isinstance(r, Record) and r.fields["text"].strip()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("files", nargs="*", type=Path)
    ap.add_argument("--workers", type=int, default=os.cpu_count())
    ap.add_argument("--batch-bytes", type=int, default=1 << 21)
    args = ap.parse_args()
    files = args.files or DEFAULT
    missing = [str(f) for f in files if not f.exists()]
    if missing:
        sys.exit(f"missing input files: {missing}")
    os.environ["RAYON_RS_NUM_CPUS"] = str(args.workers)
    from tokenizers import Tokenizer

    from mixkit.samples import DEFAULT_TOKENIZER

    texts = load_texts(files)
    nbytes = sum(len(t.encode()) for t in texts)
    print(f"corpus: {len(files)} files, {len(texts):,} documents, {nbytes / 1e6:.1f} MB of text; {args.workers} threads")

    tok = Tokenizer.from_file(str(DEFAULT_TOKENIZER))
    tok.encode_special_tokens = True
    batches, cur, size = [], [], 0
    for t in texts:
        cur.append(t)
        size += len(t.encode())
        if size >= args.batch_bytes:
            batches.append(cur)
            cur, size = [], 0
    batches.append(cur)
    tok.encode_batch(batches[0][:10], add_special_tokens=False)  # warm the thread pool
    t0 = time.perf_counter()
    ntok = 0
    for b in batches:
        ntok += sum(len(e.ids) for e in tok.encode_batch(b, add_special_tokens=False))
    anchor_s = time.perf_counter() - t0
    # For reference: the faster call without offsets, which mixkit uses.
    t0 = time.perf_counter()
    for b in batches:
        tok.encode_batch_fast(b, add_special_tokens=False)
    fast_s = time.perf_counter() - t0
    del texts, batches

    with tempfile.TemporaryDirectory() as d:
        cmd = [sys.executable, "-m", "cli.mixkit_cli", "tokenize", *map(str, files), "--name", "bench",
               "--data-dir", d, "--quiet", "--workers", str(args.workers)]
        t0 = time.perf_counter()
        r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        ours_s = time.perf_counter() - t0
        if r.returncode != 0:
            sys.exit(r.stderr)
        ours_tokens = json.loads(Path(d, "bench.json").read_text())["tokens"]
        peak_rss_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024

    print(f"anchor  tokenizers encode_batch (in memory): {anchor_s:7.2f} s  {nbytes / anchor_s / 1e6:6.2f} MB/s  {ntok / anchor_s / 1e6:6.2f} M tokens/s")
    print(f"(ref)   tokenizers encode_batch_fast (in memory): {fast_s:7.2f} s  {nbytes / fast_s / 1e6:6.2f} MB/s")
    print(f"mixkit  tokenize end to end (read+encode+write): {ours_s:7.2f} s  {nbytes / ours_s / 1e6:6.2f} MB/s  {ours_tokens / ours_s / 1e6:6.2f} M tokens/s (incl. EOS)")
    print(f"peak RSS of mixkit tokenize: {peak_rss_mb:.0f} MB")
    print(f"ratio: {anchor_s / ours_s:.2f}")


if __name__ == "__main__":
    main()
