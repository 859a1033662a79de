"""Helpers shared by the tests: hand-written study folders and shortened study configs."""

from __future__ import annotations

import json
import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]


def shortened_quickstart(tmp_path: Path) -> Path:
    table = tomllib.loads((ROOT / "experiments" / "quickstart.toml").read_text())
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


def write_run(root: Path, name: str, losses: dict[str, tuple[float, float]], branched: bool = True) -> None:
    """A run directory as `trainer train` with stages writes it: results.json plus metrics.jsonl per stage."""
    d = root / "runs" / name
    stages = [] if branched else [{"name": "pretrain", "kind": "pretrain", "dir": "pretrain", "start_step": 0,
                                   "end_step": 6, "final_loss": 5.0}]
    stages.append({"name": "midtrain", "kind": "midtrain", "dir": "midtrain", "start_step": 6, "end_step": 10,
                   "final_loss": 4.0})
    if branched:  # as written from the directory the experiment was started in
        stages[-1]["branched_from"] = "out/unit/runs/pretrain-s1234/pretrain/checkpoints/step_00000006"
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
               "evals": {"midtrain": {"heldout_loss": 3.4, "task_loss": {"gsm8k": 2.9}}}, "sft": sft}
    (d / "results.json").write_text(json.dumps(results))

