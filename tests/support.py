"""Helpers shared by the tests: synthetic and real-text stores, reference constructions, CLI runners.

- ``random_docs``: random documents ending with EOS, as ``mixkit tokenize`` writes them.
- ``encode_store`` / ``bundled_store``: token stores made from real text with the GPT-NeoX
  tokenizer (documents rendered like ``mixkit tokenize --preset`` renders them, EOS id 0),
  so the counts/distance tests measure what users measure.
- ``reference_blend`` / ``ReferenceStream`` / ``reference_rows``: slow, obviously-correct
  constructions of a mix, for checking the fast paths in ``mixkit.mix``.
- ``run_cli`` / ``run_cli_fail`` / ``write_jsonl`` / ``outputs``: the ``mixkit`` command in-process.
- ``FakeStream`` / ``tiny_stream`` / ``tiny_tokens``: in-memory mix streams for the trainer's tests
  (named as ``mix = "python:tests.support:tiny_stream"``).
- ``offline_hub_cache`` / ``HubCache``: local stand-ins for the Hugging Face hub (a temporary, offline
  ``HF_HOME`` with cached datasets and tokenizer repositories, laid out where ``datasets`` and
  ``huggingface_hub`` look for them).
- ``shortened_quickstart`` / ``toml_text`` / ``write_run``: study configs small enough for a test, and
  run folders as ``trainer train`` writes them, for the lab's tests.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import shutil
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from cli.mixkit_cli import main
from mixkit.mix.indices import epoch_seed
from mixkit.samples import DEFAULT_TOKENIZER, sample_path
from mixkit.store import TokenStore, write_store

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]


def random_docs(rng: np.random.Generator, n_docs: int, vocab: int, max_len: int = 200, eos: int | None = 0) -> list[np.ndarray]:
    """Random documents, each ending with ``eos`` when given (as tokenize writes them)."""
    docs = []
    for _ in range(n_docs):
        n = int(rng.integers(1, max_len + 1))
        d = rng.integers(1 if eos == 0 else 0, vocab, size=n)
        if eos is not None:
            d[-1] = eos
        docs.append(d)
    return docs


# -- stores of real text -------------------------------------------------------------------------

RENDER: dict[str, Callable[[dict], str]] = {
    "c4": lambda r: r["text"],
    "gsm8k_train": lambda r: f"Question: {r['question']}\nAnswer: {r['answer']}",
    "math": lambda r: f"Problem: {r['problem']}\nSolution: {r['solution']}",
    "math_mammoth": lambda r: f"Problem: {r['problem']}\nSolution: {r['solution']}",
    "code": lambda r: r["text"],
}
STORE_NAMES = {"c4": "c4", "gsm8k_train": "gsm8k", "math": "math", "math_mammoth": "math_mammoth", "code": "code"}


def tokenizer_description(path: Path = DEFAULT_TOKENIZER) -> dict:
    return {"file": path.name, "sha256": hashlib.sha256(path.read_bytes()).hexdigest(), "vocab_size": 50277}


def read_jsonl(path: Path) -> Iterable[dict]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield json.loads(line)


def encode_store(prefix: Path, texts: list[str], tokenizer_path: Path = DEFAULT_TOKENIZER) -> TokenStore:
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokenizer_path))
    docs = [np.append(np.asarray(e.ids, dtype=np.int64), 0) for e in tok.encode_batch(texts)]
    return write_store(prefix, docs, vocab_size=50277, tokenizer=tokenizer_description(tokenizer_path))


def bundled_store(data_dir: Path, sample: str) -> TokenStore:
    """The bundled ``sample`` rendered, tokenized and written as store ``STORE_NAMES[sample]``."""
    texts = [RENDER[sample](r) for r in read_jsonl(sample_path(sample))]
    return encode_store(data_dir / STORE_NAMES[sample], texts)


# -- reference constructions of a mix ---------------------------------------------------------------


def reference_blend(weights, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The blending rule as the issue states it, one sample at a time in plain Python floats."""
    counts = [0] * len(weights)
    ds = np.empty(size, dtype=np.int16)
    sn = np.empty(size, dtype=np.int64)
    for n in range(size):
        x = max(float(n), 1.0)
        errors = [float(w) * x - c for w, c in zip(weights, counts)]
        k = errors.index(max(errors))  # first maximum: ties to the lowest k
        ds[n], sn[n] = k, counts[k]
        counts[k] += 1
    return ds, sn


class ReferenceStream:
    """A dataset's sample stream built the long way: shuffle documents, concatenate, cut, shuffle samples."""

    def __init__(self, store: TokenStore, seed: int, seq_len: int):
        self.store, self.seed, self.seq_len = store, seed, seq_len
        self.per_epoch = (store.num_tokens - 1) // seq_len
        self._epochs: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def _epoch(self, e: int) -> tuple[np.ndarray, np.ndarray]:
        if e not in self._epochs:
            rs = np.random.RandomState(epoch_seed(self.seed, self.store.name, e))
            order = np.arange(self.store.num_docs, dtype=np.int32)
            rs.shuffle(order)
            tokens = np.concatenate([np.asarray(self.store[int(d)], dtype=np.int64) for d in order])
            shuffle = np.arange(self.per_epoch, dtype=np.uint32)
            rs.shuffle(shuffle)
            self._epochs[e] = (tokens, shuffle)
        return self._epochs[e]

    def window(self, e: int, j: int) -> np.ndarray:
        """Unshuffled sample ``j`` of epoch ``e``: tokens ``[j*L, j*L + L + 1)``."""
        tokens, _ = self._epoch(e)
        return tokens[j * self.seq_len : j * self.seq_len + self.seq_len + 1]

    def sample(self, m: int) -> np.ndarray:
        e, i = divmod(m, self.per_epoch)
        _, shuffle = self._epoch(e)
        return self.window(e, int(shuffle[i]))


def reference_rows(stores: dict[str, TokenStore], phases, steps: int, global_batch: int, seq_len: int, seed: int):
    """``(sources, samples)`` of every global sample of a mix, from ``phases = [(start_step, {name: w})]``.

    Source names are numbered in order of first appearance with a positive weight.
    """
    names: list[str] = []
    for _, weights in phases:
        for k, w in weights.items():
            if w > 0 and k not in names:
                names.append(k)
    streams = {k: ReferenceStream(stores[k], seed, seq_len) for k in names}
    used = dict.fromkeys(names, 0)
    sources, samples = [], []
    bounds = [p[0] for p in phases] + [steps]
    for (start, weights), end in zip(phases, bounds[1:]):
        active = [k for k in weights if weights[k] > 0]
        w = np.array([weights[k] for k in active], dtype=np.float64)
        w = w / w.sum()
        ds, sn = reference_blend(w, (end - start) * global_batch)
        for d, s in zip(ds, sn):
            name = active[int(d)]
            sources.append(names.index(name))
            samples.append(streams[name].sample(used[name] + int(s)))
        for k in active:
            used[k] += int(np.sum(ds == active.index(k)))
    return names, np.array(sources), np.array(samples)


# -- the command line ----------------------------------------------------------------------------------


def run_cli(*args: str) -> str:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def run_cli_fail(*args: str) -> str:
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code != 0
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.output


def write_jsonl(path: Path, records, opener=open) -> Path:
    with opener(path, "wt", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    return path


def outputs(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir()) if d.exists() else []


def shortened_quickstart(tmp_path: Path) -> Path:
    table = tomllib.loads((ROOT / "experiments" / "quickstart.toml").read_text())
    table.pop("variant_seeds", None)  # every variant with both seeds: the pairing is what is tested
    table["schedule"].update(steps=6, start_step=3, seq_len=32, global_batch=4)
    table["variants"] = {"baseline": "base", "base": "c4:1", "code20": "c4:0.8,code:0.2", "code100": "code:1"}
    table["corpora"] = {k: v for k, v in table["corpora"].items() if k in ("c4", "code", "gsm8k", "humaneval")}
    table["corpora"]["c4"]["holdout_docs"] = 10
    for task in table["tasks"].values():
        task.update(max_examples=8, val_size=4)
    table["train"].update(micro_batch=4, heldout_docs=4, eval_batch=8)
    table["sft"].update(seq_len=64, micro_batch=4, max_steps=2)
    table["model"].update(d_model=32, n_head=2, n_layer=1, max_seq_len=64)
    path = tmp_path / "short.toml"
    path.write_text(toml_text(table))
    return path


def toml_text(table: dict, prefix: str = "") -> str:
    """A tiny TOML writer for the config's shapes (scalars, lists, inline tables, tables)."""
    def value(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return json.dumps(v)
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        if isinstance(v, dict):
            return "{ " + ", ".join(f"{k} = {value(x)}" for k, x in v.items()) + " }"
        return repr(v)

    lines, tables = [], []
    for k, v in table.items():
        if isinstance(v, dict) and (prefix or k in ("schedule", "variants", "model", "optim", "train", "sft", "corpora")):
            tables.append((k, v))
        elif isinstance(v, dict) and k == "tasks":
            for tk, tv in v.items():
                tables.append((f"tasks.{tk}", tv))
        else:
            lines.append(f"{k} = {value(v)}")
    out = "\n".join(lines) + "\n"
    for k, v in tables:
        out += f"\n[{k}]\n" + "".join(f"{kk} = {value(vv)}\n" for kk, vv in v.items())
    return out


def write_run(root: Path, name: str, losses: dict[str, tuple[float, float]], branched: bool = True,
              pre_heldout: float = 3.4) -> None:
    """A run directory as `trainer train` with stages writes it: results.json plus metrics.jsonl per stage
    (``pre_heldout``: the held-out C4 loss after the last stage, before SFT)."""
    d = root / "runs" / name
    stages = [] if branched else [{"name": "pretrain", "kind": "pretrain", "dir": "pretrain", "start_step": 0,
                                   "end_step": 6, "final_loss": 5.0}]
    stages.append({"name": "midtrain", "kind": "midtrain", "dir": "midtrain", "start_step": 6, "end_step": 10,
                   "final_loss": 4.0})
    if branched:  # relative to the run folder, as the stage runner records it
        stages[-1]["branched_from"] = "../pretrain-s1234/pretrain/checkpoints/step_00000006"
    sft = {}
    for task, (val, held) in losses.items():
        sft[task] = {"val_loss": val, "heldout_loss": held, "steps": 4, "dir": f"sft-{task}", "train_examples": 9,
                     "val_examples": 3, "truncated": {"train_prompt": 0, "train_answer": 0, "val_prompt": 0,
                                                       "val_answer": 0}}
        lines = [{"stage": f"sft:{task}", "step": s, "loss": val + 1.0 / (s + 1), "lr": 1e-4} for s in range(4)]
        lines.append({"stage": f"sft:{task}", "step": 4, "eval_val_loss": val, "eval_heldout_loss": held})
        (d / f"sft-{task}").mkdir(parents=True)
        (d / f"sft-{task}" / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    for s in stages:
        (d / s["dir"]).mkdir(parents=True)
        lines = [{"step": k, "loss": 6.0 - 0.1 * k, "lr": 1e-3} for k in range(s["start_step"], s["end_step"])]
        lines.append({"step": s["end_step"], "eval_loss": 4.5})
        (d / s["dir"] / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines) + '{"step": 9, "lo')
    results = {"run": name, "stages": stages, "heldout": {"store": "c4-holdout", "documents": 10},
               "evals": {"midtrain": {"heldout_loss": pre_heldout, "task_loss": {"gsm8k": 2.9}}}, "sft": sft}
    (d / "results.json").write_text(json.dumps(results))

class FakeStream:
    def __init__(self, tokens: np.ndarray, *, seq_len: int, global_batch: int, num_steps: int, vocab_size: int,
                 source_names: tuple[str, ...] = ("web", "math"), seed: int = 0, delay_s: float = 0.0):
        self.tokens = np.asarray(tokens, dtype=np.int64)
        self.seq_len, self.global_batch, self.num_steps = seq_len, global_batch, num_steps
        self.vocab_size, self.seed, self.delay_s = vocab_size, seed, delay_s
        self.source_names = list(source_names)
        self.n_rows = (self.tokens.size - 1) // seq_len
        self.tokenizer_sha256 = hashlib.sha256(f"synthetic-vocab-{vocab_size}".encode()).hexdigest()
        self.eos_id = 0
        h = hashlib.sha256(self.tokens.tobytes())
        h.update(f"{seq_len}/{global_batch}/{num_steps}/{source_names}".encode())
        self.fingerprint = h.hexdigest()
        self.manifest = {"format": "fake-mix", "seq_len": seq_len, "global_batch": global_batch,
                         "num_steps": num_steps, "sources": self.source_names, "fingerprint": self.fingerprint}

    def _rows(self, step: int, rank: int, world_size: int) -> np.ndarray:
        local = self.global_batch // world_size
        return step * self.global_batch + rank * local + np.arange(local)

    def batch(self, step: int, rank: int = 0, world_size: int = 1) -> np.ndarray:
        if self.delay_s:
            time.sleep(self.delay_s)
        starts = (self._rows(step, rank, world_size) % self.n_rows) * self.seq_len
        return np.stack([self.tokens[o : o + self.seq_len + 1] for o in starts]).astype(np.int64)

    def sources(self, step: int, rank: int = 0, world_size: int = 1) -> np.ndarray:
        return self._rows(step, rank, world_size) % len(self.source_names)

    def tokens_seen(self, step: int) -> int:
        return step * self.global_batch * self.seq_len


def tiny_tokens(n: int, vocab: int, seed: int = 0) -> np.ndarray:
    """Learnable synthetic text: a noisy repeating pattern (so the loss can fall)."""
    rng = np.random.default_rng(seed)
    pattern = rng.integers(1, vocab, size=37)
    toks = np.resize(pattern, n)
    noise = rng.random(n) < 0.1
    toks[noise] = rng.integers(1, vocab, size=int(noise.sum()))
    return toks


def tiny_stream() -> FakeStream:
    """For the ``tiny`` model (vocab 512): seq 16, global batch 4, 400 steps."""
    return FakeStream(tiny_tokens(4000, 512), seq_len=16, global_batch=4, num_steps=400, vocab_size=512)


def slow_tiny_stream() -> FakeStream:
    """``tiny_stream`` taking 20 ms per batch read, so a test can kill a run in the middle."""
    s = tiny_stream()
    s.delay_s = 0.02
    return s


COMMIT = "0123456789abcdef0123456789abcdef01234567"


@dataclass
class HubCache:
    home: Path

    @property
    def hub(self) -> Path:
        return self.home / "hub"

    @property
    def datasets(self) -> Path:
        return self.home / "datasets"

    def add_dataset(self, repo_id: str, splits: dict[str, list[dict]]) -> None:
        """Cache ``repo_id`` with these splits (one JSON-lines file each)."""
        import datasets

        owner, name = repo_id.split("/")
        src = self.home / "sources" / name
        (src / "data").mkdir(parents=True)
        for split, rows in splits.items():
            with open(src / "data" / f"{split}.jsonl", "w", encoding="utf-8") as f:
                for row in rows:
                    f.write(json.dumps(row, ensure_ascii=False) + "\n")
        datasets.load_dataset(str(src), cache_dir=str(self.datasets))
        (self.datasets / name).rename(self.datasets / f"{owner}___{name}")
        shutil.rmtree(src)

    def add_model_files(self, repo_id: str, files: dict[str, bytes], commit: str = COMMIT) -> Path:
        """Cache the files of a model repository at ``commit`` (also its ``main``); returns the snapshot."""
        repo = self.hub / f"models--{repo_id.replace('/', '--')}"
        snapshot = repo / "snapshots" / commit
        snapshot.mkdir(parents=True)
        for name, data in files.items():
            (snapshot / name).write_bytes(data)
        (repo / "refs").mkdir(exist_ok=True)
        (repo / "refs" / "main").write_text(commit)
        return snapshot


def offline_hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> HubCache:
    """An empty HF_HOME, offline, for this process (the libraries' constants) and its children (the env)."""
    import datasets
    import huggingface_hub.constants as hub_constants

    from mixkit import readers

    home = tmp_path / "hf_home"
    home.mkdir()
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(home / "hub"))
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", home / "datasets")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(readers, "_HUB_BUILDERS", {})
    datasets.disable_progress_bars()
    return HubCache(home)


# -- a fake Slurm ------------------------------------------------------------------------------------

FAKE_SLURM = r'''#!PYTHON
"""A fake sbatch/squeue/scancel: records every submission in STATE and runs each job at once, in order.

sbatch: options on the command line and in the script's #SBATCH lines (the command line
wins); a job array runs every task with SLURM_ARRAY_JOB_ID/SLURM_ARRAY_TASK_ID set; a
dependency (afterok/afterany on jobs or array tasks) must name jobs submitted before, and
an unmet afterok cancels the job (--kill-on-invalid-dep). FAKE_SLURM_HOLD names jobs (by
--job-name) that stay PENDING instead of running; FAKE_SLURM_FAIL names jobs or array
task runs (`NAME` or `NAME[i]`) that exit 1 without running.
"""
import json, os, re, subprocess, sys
from pathlib import Path

STATE = Path(__file__).with_name("slurm_state.json")
tool = Path(sys.argv[0]).name


def load():
    return json.loads(STATE.read_text()) if STATE.exists() else {"next": 1000, "jobs": []}


def options(tokens):
    opts, rest = {}, []
    i = 0
    while i < len(tokens):
        t = tokens[i]
        if t.startswith("--") and "=" in t:
            k, v = t[2:].split("=", 1)
            opts[k] = v
        elif t in ("--parsable", "--requeue"):
            opts[t[2:]] = True
        elif t.startswith("--") and i + 1 < len(tokens) - 1:
            opts[t[2:]] = tokens[i + 1]
            i += 1
        else:
            rest.append(t)
        i += 1
    return opts, rest


def indices(spec):
    out = []
    for part in spec.split("%")[0].split(","):
        lo, _, hi = part.partition("-")
        out += list(range(int(lo), int(hi or lo) + 1))
    return out


def state_of(jobs, ref):
    job_id, _, task = ref.partition("_")
    job = next(j for j in jobs if j["id"] == job_id)
    return job["tasks"][task] if task else job["state"]


if tool == "sbatch":
    state = load()
    cli, rest = options(sys.argv[1:])
    script = Path(rest[-1])
    header = [l[len("#SBATCH "):].strip() for l in script.read_text().splitlines() if l.startswith("#SBATCH ")]
    opts = {**options(header + ["script"])[0], **cli}
    job_id = str(state["next"])
    state["next"] += 1
    deps = []
    for clause in filter(None, opts.get("dependency", "").split(",")):
        kind, *refs = clause.split(":")
        deps += [(kind, r) for r in refs]
    job = {"id": job_id, "name": opts.get("job-name", script.name), "args": sys.argv[1:], "options": opts,
           "script": script.read_text(), "dependencies": deps, "tasks": {}, "state": "PENDING"}
    state["jobs"].append(job)
    hold = set(filter(None, os.environ.get("FAKE_SLURM_HOLD", "").split(",")))
    fail = set(filter(None, os.environ.get("FAKE_SLURM_FAIL", "").split(",")))
    tasks = indices(opts["array"]) if "array" in opts else [None]
    if job["name"] in hold:
        job["tasks"] = {str(t): "PENDING" for t in tasks if t is not None}
    elif any(kind == "afterok" and state_of(state["jobs"], ref) != "COMPLETED" for kind, ref in deps):
        job["state"] = "CANCELLED"
        job["tasks"] = {str(t): "CANCELLED" for t in tasks if t is not None}
    else:
        for t in tasks:
            env = dict(os.environ, SLURM_JOB_ID=job_id, SLURM_JOB_NAME=job["name"])
            out = opts.get("output", "slurm-%j.out")
            if t is not None:
                env.update(SLURM_ARRAY_JOB_ID=job_id, SLURM_ARRAY_TASK_ID=str(t), SLURM_ARRAY_TASK_COUNT=str(len(tasks)))
                out = out.replace("%A", job_id).replace("%a", str(t))
            out = out.replace("%j", job_id).replace("%x", job["name"])
            cwd = opts.get("chdir", os.getcwd())
            task_name = job["name"] if t is None else f"{job['name']}[{t}]"
            if job["name"] in fail or task_name in fail:
                rc = 1
            else:
                STATE.write_text(json.dumps(state))  # a job may itself call squeue
                with open(Path(cwd) / out, "ab") as fh:
                    rc = subprocess.run(["bash", str(script)], cwd=cwd, env=env, stdout=fh, stderr=subprocess.STDOUT).returncode
            if t is not None:
                job["tasks"][str(t)] = "COMPLETED" if rc == 0 else "FAILED"
            job["state"] = "COMPLETED" if rc == 0 and job["state"] != "FAILED" else "FAILED"
    STATE.write_text(json.dumps(state))
    print(job_id if opts.get("parsable") else f"Submitted batch job {job_id}")
elif tool == "squeue":
    for job in load()["jobs"]:
        if job["state"] in ("PENDING", "RUNNING"):
            print("\n".join(f"{job['id']}_{t}" for t in job["tasks"]) if job["tasks"] else job["id"])
elif tool == "scancel":
    state = load()
    for job in state["jobs"]:
        if job["id"] in sys.argv[1:]:
            job["state"] = "CANCELLED"
    STATE.write_text(json.dumps(state))
'''


@dataclass
class FakeSlurm:
    """``sbatch``/``squeue``/``scancel`` stand-ins in ``bin`` (put it first on PATH): see ``FAKE_SLURM``."""

    bin: Path

    @property
    def jobs(self) -> list[dict]:
        state = self.bin / "slurm_state.json"
        return json.loads(state.read_text())["jobs"] if state.exists() else []


def fake_slurm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeSlurm:
    """Install the fake Slurm commands in ``tmp_path/slurm-bin`` and put them first on PATH."""
    import os

    bin_dir = tmp_path / "slurm-bin"
    bin_dir.mkdir()
    for tool in ("sbatch", "squeue", "scancel"):
        path = bin_dir / tool
        path.write_text(FAKE_SLURM.replace("PYTHON", sys.executable, 1))
        path.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return FakeSlurm(bin_dir)


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny models run fastest on one thread (and the subprocesses use one too); imported by the
    test modules that train (an autouse fixture there)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
