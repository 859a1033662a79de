"""Training-step throughput: our GPT-NeoX vs ``transformers``' ``GPTNeoXForCausalLM``.

Same config, same (random) weights, same batch, same precision, same optimizer (AdamW with
GPT-NeoX's decay groups, gradient clipping 1.0), in the same process. A step is forward +
backward + clip + optimizer step; ``transformers``' loss is the usual cross-entropy over its
logits. First the logits of both models are compared on the benchmark batch (forward only).

    python benchmarks/bench_train.py                         # CPU: pythia-14m and pythia-70m at 512
    python benchmarks/bench_train.py --device cuda           # pythia-70m/160m/410m at 2048 in bf16,
                                                             # each eager and compiled
    python benchmarks/bench_train.py --device cuda --json rows.json   # also the rows as JSON

Prints tokens/s of both, the ratio, and on CUDA the MFU of both (6N + 12·L·H·Q·T FLOPs per
token over the GPU's peak, ``trainer.metrics``); the last line, ``ratio: X``, is the smallest
ratio of the rows. ``--models NAME:SEQ[:PREC[:compile]]`` chooses rows by hand.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import torch
import torch.nn.functional as F

from trainer.config import OptimConfig
from trainer.hf import config_to_hf
from trainer.metrics import peak_flops
from trainer.model import GPTNeoX, model_config
from trainer.optim import make_optimizer


def hf_twin(ours: GPTNeoX):
    """A ``GPTNeoXForCausalLM`` with our weights (sdpa attention, transformers' default)."""
    import transformers

    hf_cfg = {k: v for k, v in config_to_hf(ours.cfg).items() if k not in ("architectures", "model_type", "torch_dtype")}
    model = transformers.GPTNeoXForCausalLM(transformers.GPTNeoXConfig(**hf_cfg))
    state = {(k if k == "embed_out.weight" else f"gpt_neox.{k}"): v for k, v in ours.state_dict().items()}
    state["lm_head.weight"] = state.pop("embed_out.weight")
    model.load_state_dict(state, strict=False)
    return model.to(next(ours.parameters()).device)


def time_interleaved(step_fns: dict, warmup: int, steps: int, device: torch.device) -> dict[str, float]:
    """Median seconds per step of each function, run alternately so machine noise hits both alike."""
    for fn in step_fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {k: [] for k in step_fns}
    for _ in range(steps):
        for label, fn in step_fns.items():
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            t0 = time.perf_counter()
            fn()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            times[label].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def make_step(model, optimizer, loss_fn, x, y, autocast):
    def step():
        with autocast:
            loss = loss_fn(model, x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def ours_loss(model, x, y):
    return model(x, y)[0]


def hf_loss(model, x, y):
    logits = model(input_ids=x).logits
    return F.cross_entropy(logits.float().view(-1, logits.shape[-1]), y.view(-1))


def bench(name: str, seq: int, batch: int, device: torch.device, precision: str, compile_: bool,
          warmup: int, steps: int) -> dict:
    torch.manual_seed(0)
    cfg = model_config(name, max_seq_len=max(seq, 2048))
    ours = GPTNeoX(cfg).to(device)
    hf = hf_twin(ours)
    x = torch.randint(0, cfg.vocab_size, (batch, seq), device=device)
    y = torch.randint(0, cfg.vocab_size, (batch, seq), device=device)
    with torch.no_grad():
        diff = (ours.eval()(x[:1]).float() - hf.eval()(input_ids=x[:1]).logits.float()).abs().max().item()
    ours.train()
    hf.train()
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")
    fns = {}
    for label, model, loss_fn in (("transformers", hf, hf_loss), ("ours", ours, ours_loss)):
        run = torch.compile(model) if compile_ else model
        fns[label] = make_step(run, make_optimizer(model, OptimConfig()), loss_fn, x, y, autocast)
    results = {k: batch * seq / sec for k, sec in time_interleaved(fns, warmup, steps, device).items()}
    flops = ours.flops_per_token(seq)
    peak = peak_flops(device, precision)
    row = {"model": name, "seq": seq, "batch": batch, "precision": precision, "compile": compile_,
           "max_logit_diff": diff, "hf_tok_s": results["transformers"], "ours_tok_s": results["ours"],
           "ratio": results["ours"] / results["transformers"]}
    if peak:
        row["ours_mfu"] = flops * results["ours"] / peak
        row["hf_mfu"] = flops * results["transformers"] / peak
    return row


def parse_row(text: str, compile_: bool) -> tuple[str, int, str, bool]:
    """``NAME:SEQ[:PREC[:compile]]`` → (name, seq, precision, compile); ``compile_`` when not given."""
    parts = text.split(":")
    if len(parts) < 2 or not parts[1].isdigit() or (len(parts) > 2 and parts[2] not in ("fp32", "bf16")):
        raise SystemExit(f"--models {text!r}: expected NAME:SEQ[:fp32|bf16[:compile]]")
    return parts[0], int(parts[1]), parts[2] if len(parts) > 2 else "fp32", (parts[3] == "compile") if len(parts) > 3 else compile_


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--models", nargs="*", default=None,
                    help="NAME:SEQ[:PREC[:compile]], e.g. pythia-14m:512 pythia-70m:2048:bf16:compile")
    ap.add_argument("--batch", type=int, default=0, help="rows per step (default: 4 on CPU, 8 on CUDA)")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: leave)")
    ap.add_argument("--compile", action="store_true", help="torch.compile both models (CPU runs too)")
    ap.add_argument("--json", default="", help="also write the rows to this JSON file")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    if args.models:
        plan = [parse_row(m, args.compile) for m in args.models]
    elif cuda:
        plan = [(m, 2048, "bf16", c) for m in ("pythia-70m", "pythia-160m", "pythia-410m") for c in (False, True)]
    else:
        plan = [("pythia-14m", 512, "fp32", args.compile), ("pythia-70m", 512, "fp32", args.compile)]
    where = torch.cuda.get_device_name(device) if cuda else f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    print(f"torch {torch.__version__}, {where}")
    print(f"{'model':<12} {'seq':>5} {'batch':>5} {'prec':>5} {'comp':>5} {'logit diff':>10} "
          f"{'hf tok/s':>10} {'ours tok/s':>10} {'ratio':>6} {'hf mfu':>6} {'mfu':>6}")
    ratios, rows = [], []
    for name, seq, precision, compile_ in plan:
        if cuda and precision == "bf16" and not args.batch:
            batch = 8
        else:
            batch = args.batch or (8 if cuda else 4)
        r = bench(name, seq, batch, device, precision, compile_, args.warmup, args.steps)
        mfu = f"{100 * r['ours_mfu']:.1f}%" if "ours_mfu" in r else "-"
        hf_mfu = f"{100 * r['hf_mfu']:.1f}%" if "hf_mfu" in r else "-"
        print(f"{name:<12} {seq:>5} {batch:>5} {precision:>5} {str(compile_):>5} {r['max_logit_diff']:>10.2e} "
              f"{r['hf_tok_s']:>10,.0f} {r['ours_tok_s']:>10,.0f} {r['ratio']:>5.2f}x {hf_mfu:>6} {mfu:>6}", flush=True)
        ratios.append(r["ratio"])
        rows.append({**r, "device": where, "torch": torch.__version__})
        if cuda:
            torch.cuda.empty_cache()
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    print(f"ratio: {min(ratios):.2f}")  # the smallest row: our tokens/s over transformers'


if __name__ == "__main__":
    main()
