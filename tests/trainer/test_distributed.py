"""Ranks under torchrun (gloo on CPU): derived micro-batches, sharded evaluations, data-parallel SFT,
the stage example on 2 ranks equal to 1, FSDP equal to DDP, sharded checkpoints at another world size."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from cli.train_cmds import train as train_cmd
from mixkit.errors import MixkitError
from mixkit.mix import MixPlan, Phase, build_mix
from mixkit.presets import TextSpec
from mixkit.samples import sample_path
from mixkit.tokenize import TokenizeConfig, tokenize
from tests.support import tiny_stream
from trainer.checkpoint import is_checkpoint, latest_checkpoint, list_checkpoints, load_weights, read_meta
from trainer.data import micro_batches, plan_accumulation
from trainer.distributed_checkpoint import is_dcp_checkpoint
from trainer.export import export_source, load_source_model
from trainer.hf import from_hf
from trainer.model import GPTNeoX, ModelConfig, model_config
from trainer.run_dir import read_metrics
from trainer.train import train

from .test_train import env_for_subprocess, losses, make_cfg

REPO = Path(__file__).resolve().parents[2]


def torchrun(*args: str, nproc: int = 2, timeout: int = 600) -> subprocess.CompletedProcess:
    """``torchrun --standalone --nproc_per_node nproc -m cli.trainer_cli ARGS`` from the repository root."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
           "-m", "cli.trainer_cli", *args]
    proc = subprocess.run(cmd, cwd=REPO, env=env_for_subprocess(), capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


def sets(table: dict) -> list[str]:
    return [a for k, v in table.items() for a in ("--set", f"{k}={json.dumps(v)}")]


# -- micro-batches from the global batch and the world size -----------------------------------------


@pytest.mark.parametrize("global_batch,world,micro,expected", [
    (8, 1, 8, 1), (8, 2, 8, 1), (8, 4, 8, 1), (8, 1, 3, 4), (12, 2, 4, 2), (12, 1, 5, 3), (7, 1, 4, 7), (16, 2, 1, 8),
])
def test_derived_accumulation_covers_the_global_batch(global_batch, world, micro, expected):
    accum = plan_accumulation(global_batch, world, micro, 0)
    assert accum == expected
    local = global_batch // world
    assert local % accum == 0 and local // accum <= micro
    # no larger micro-batch within the bound would divide the rank's rows
    assert all(local % m for m in range(local // accum + 1, min(micro, local) + 1))


@given(st.integers(1, 8), st.integers(1, 32), st.integers(1, 40))
def test_derived_micro_batch_is_the_largest_fitting_divisor(world, per_rank, micro):
    """Property: accum × micro = the rank's rows, micro <= micro_batch, and no larger divisor fits."""
    accum = plan_accumulation(world * per_rank, world, micro, 0)
    size = per_rank // accum
    assert size * accum == per_rank and size <= micro
    assert size == max(d for d in range(1, per_rank + 1) if per_rank % d == 0 and d <= micro)
    # the explicit form of the same plan is accepted
    assert plan_accumulation(world * per_rank, world, size, accum) == accum


def test_the_example_batch_splits_over_two_ranks_without_lowering_micro_batch():
    """examples/base.toml: global batch 8, micro_batch 8. Two ranks take 4 rows each, one pass."""
    assert plan_accumulation(8, 2, 8, 0) == 1
    stream = tiny_stream()  # global batch 4
    rows = [micro_batches(stream, 3, r, 2, plan_accumulation(4, 2, 8, 0), torch.device("cpu")) for r in range(2)]
    together = torch.cat([mb.inputs for rank in rows for mb in rank])
    assert torch.equal(together, torch.from_numpy(stream.batch(3))[:, :-1])


@pytest.mark.parametrize("args,match", [
    ((8, 3, 8, 0), r"global batch 8 does not split over 3 processes \(8 / 3 = 2.66667 rows each\)"),
    ((8, 2, 8, 2), r"micro_batch 8 × grad_accum 2 × world size 2 = 32, but the mix's global batch is 8 "
                   r"\(set grad_accum = 0 to derive it: 4 rows per process\)"),
])
def test_impossible_batch_arithmetic_is_stated(args, match):
    with pytest.raises(MixkitError, match=match):
        plan_accumulation(*args)


# -- the stage example on 2 ranks equals 1 rank --------------------------------------------------------


@pytest.fixture(scope="module")
def example_data(tmp_path_factory):
    """The stores and mix examples/base.toml reads, shrunk: c4 (+ c4-holdout) and a base mix of 8 steps."""
    d = tmp_path_factory.mktemp("data")
    tokenize(TokenizeConfig([str(sample_path("c4"))], "c4", TextSpec(preset="c4"), data_dir=str(d), holdout_docs=10,
                            quiet=True))
    build_mix(MixPlan([Phase(0, {"c4": 1.0})], steps=8, seq_len=32, global_batch=8, seed=7), "base", d)
    return d


def example_overrides(data: Path, out: Path, **extra) -> list[str]:
    """examples/base.toml shrunk to seconds through --set, stage and task keys included."""
    table = {"data_dir": str(data), "out_dir": str(out), "model.d_model": 32, "model.n_head": 2, "model.max_seq_len": 64,
             "heldout_docs": 6, "eval_batch": 3, "keep_steps": [4], "checkpoint_interval": 4,
             "stages.pretrain.until": 4, "stages.sft.seq_len": 64, "stages.sft.max_steps": 0, "stages.sft.eval_batch": 4,
             "tasks.gsm8k.max_examples": 21, "tasks.gsm8k.val_size": 10, "logging.tensorboard": False,
             "device": "cpu", **extra}
    return sets(table)


def checkpoint_weights(path: Path) -> dict[str, torch.Tensor]:
    model = GPTNeoX(ModelConfig(**read_meta(path)["model_config"]), init=False)
    load_weights(model, path)
    return model.state_dict()


def assert_same_update(a: dict, b: dict, start: dict) -> None:
    """Weights ``a`` and ``b`` trained from ``start`` moved alike: within 1% of the update's norm.
    (AdamW turns a float-order sign flip of a near-zero gradient into a step of ±lr, so
    equal training is not elementwise-close weights.)"""
    update = torch.cat([(a[k] - start[k]).reshape(-1) for k in a])
    apart = torch.cat([(a[k] - b[k]).reshape(-1) for k in a])
    assert apart.norm() < 1e-2 * update.norm(), (apart.norm(), update.norm())


def run_results(out: Path) -> dict:
    return json.loads((out / "results.json").read_text())


@pytest.mark.slow
@pytest.mark.parametrize("parallelism", ["ddp", "fsdp"])
def test_two_rank_stage_example_equals_one_rank(example_data, tmp_path, parallelism):
    """pretrain → midtrain → SFT → evaluations of examples/base.toml (with an evaluation during
    pretraining): 2 gloo ranks give 1 rank's numbers, with DDP and with FSDP."""
    one, two = tmp_path / "one", tmp_path / "two"
    extra = {"stages.pretrain.eval_interval": 2}
    r = CliRunner().invoke(train_cmd, ["--config", str(REPO / "examples" / "base.toml"),
                                       *example_overrides(example_data, one, **extra)])
    assert r.exit_code == 0, r.output
    proc = torchrun("train", "--config", "examples/base.toml",
                    *example_overrides(example_data, two, parallelism=parallelism, **extra))

    a, b = run_results(one), run_results(two)
    for stage in ("pretrain", "midtrain"):
        assert losses(two / stage / "metrics.jsonl") == pytest.approx(losses(one / stage / "metrics.jsonl"), rel=1e-5)
        ea, eb = a["evals"][stage], b["evals"][stage]
        assert eb["heldout_loss"] == pytest.approx(ea["heldout_loss"], rel=1e-5)
        assert eb["task_loss"] == pytest.approx(ea["task_loss"], rel=1e-5)
    during = [[r for r in read_metrics(d / "pretrain" / "metrics.jsonl") if "eval_heldout_loss" in r] for d in (one, two)]
    assert [r["step"] for r in during[1]] == [r["step"] for r in during[0]] == [1]
    assert during[1][0]["eval_heldout_loss"] == pytest.approx(during[0][0]["eval_heldout_loss"], rel=1e-5)
    assert during[1][0]["eval_task_loss"] == pytest.approx(during[0][0]["eval_task_loss"], rel=1e-5)
    sft_a = read_metrics(one / "sft-gsm8k" / "metrics.jsonl")
    sft_b = read_metrics(two / "sft-gsm8k" / "metrics.jsonl")
    assert [r["step"] for r in sft_b] == [r["step"] for r in sft_a] == [0, 1, 2, 3]  # 21 examples: 8, 8, 5 a step
    assert [r.get("answer_tokens") for r in sft_b] == [r.get("answer_tokens") for r in sft_a]
    assert losses(two / "sft-gsm8k" / "metrics.jsonl") == pytest.approx(losses(one / "sft-gsm8k" / "metrics.jsonl"), rel=1e-5)
    assert sft_b[-1]["eval_val_loss"] == pytest.approx(sft_a[-1]["eval_val_loss"], rel=1e-5)
    for key in ("val_loss", "heldout_loss"):
        assert b["sft"]["gsm8k"][key] == pytest.approx(a["sft"]["gsm8k"][key], rel=1e-5)
    assert b["sft"]["gsm8k"]["steps"] == 3
    # the SFT weights rank 0 kept moved as one process's did
    wa, wb = from_hf(one / "sft-gsm8k").state_dict(), from_hf(two / "sft-gsm8k").state_dict()
    assert_same_update(wa, wb, checkpoint_weights(latest_checkpoint(one / "midtrain")))
    # rank 0 alone prints: every message once
    assert proc.stderr.count("[base] stage pretrain (pretrain) on mix base") == 1
    assert proc.stderr.count("[base] sft gsm8k: validation loss") == 1
    assert proc.stdout.count("gsm8k: SFT validation loss") == 1
    final = latest_checkpoint(two / "midtrain")
    assert read_meta(final)["world_size"] == 2 and is_dcp_checkpoint(final) == (parallelism == "fsdp")


# -- sharded evaluations ------------------------------------------------------------------------------


def _evaluations_worker(rank: int, world: int, init: str, out: str) -> None:
    import torch.distributed as dist

    from tests.trainer.test_distributed import evaluation_inputs
    from trainer.evaluate import heldout_loss, task_loss

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    try:
        model, val, store = evaluation_inputs()
        numbers = [task_loss(model, val, 3, torch.device("cpu")), heldout_loss(model, store, 16, 2, torch.device("cpu"))]
        if rank == 0:
            Path(out).write_text(json.dumps(numbers))
    finally:
        dist.destroy_process_group()


def evaluation_inputs():
    """A seeded tiny model, 7 answer-masked examples and 5 held-out documents (uneven shares on 2 ranks)."""
    from trainer.sft_data import SFTSet

    torch.manual_seed(0)
    model = GPTNeoX(model_config("tiny", vocab_size=256, max_seq_len=64))
    rng = np.random.default_rng(1)
    tokens = [rng.integers(1, 256, int(rng.integers(4, 20))) for _ in range(7)]
    val = SFTSet(tokens, np.array([int(rng.integers(1, len(t) - 1)) for t in tokens]))
    store = [rng.integers(1, 256, int(rng.integers(5, 40))) for _ in range(5)]  # held-out documents
    return model, val, store


@pytest.mark.slow
@pytest.mark.parametrize("world", [2, 3])
def test_sharded_evaluations_equal_one_process(tmp_path, world):
    from trainer.evaluate import heldout_loss, task_loss

    model, val, store = evaluation_inputs()
    expected = [task_loss(model, val, 3, torch.device("cpu")), heldout_loss(model, store, 16, 2, torch.device("cpu"))]
    out = tmp_path / "numbers.json"
    torch.multiprocessing.spawn(_evaluations_worker, args=(world, f"file://{tmp_path / 'rendezvous'}", str(out)),
                                nprocs=world, join=True)
    assert json.loads(out.read_text()) == pytest.approx(expected, rel=1e-12)


# -- FSDP ----------------------------------------------------------------------------------------------


def single_mix_args(out: Path, **extra) -> list[str]:
    table = {"mix": "python:tests.support:tiny_stream", "out_dir": str(out), "steps": 6, "micro_batch": 2,
             "model.name": "tiny", "optim.lr": 3e-3, "checkpoint_interval": 3, "logging.tensorboard": False,
             "device": "cpu", **extra}
    return sets(table)


@pytest.mark.slow
def test_fsdp_equals_ddp_and_its_checkpoint_resumes_on_one_rank_and_exports(tmp_path):
    """2 gloo ranks: FSDP2's losses are DDP's; its sharded checkpoint at step 3 continues in one
    process to the same losses; its final weights export to a Hugging Face folder."""
    ddp, fsdp = tmp_path / "ddp", tmp_path / "fsdp"
    torchrun("train", *single_mix_args(ddp))
    # micro_batch 1: two micro-batches a rank, the gradients reduce-scattered on the second only
    torchrun("train", *single_mix_args(fsdp, parallelism="fsdp", stop_step=3, micro_batch=1))
    torchrun("train", "--resume", *single_mix_args(fsdp, parallelism="fsdp", micro_batch=1))
    assert losses(fsdp) == pytest.approx(losses(ddp), rel=1e-5)
    final = latest_checkpoint(fsdp)
    assert is_dcp_checkpoint(final) and is_checkpoint(final) and read_meta(final)["weights_only"]
    assert sorted(p.name for p in (final / "dcp").glob("*.distcp")) == ["__0_0.distcp", "__1_0.distcp"]

    # the step-3 checkpoint of a 2-rank FSDP run, continued in one process
    half = tmp_path / "half"
    torchrun("train", *single_mix_args(half, parallelism="fsdp", stop_step=3))
    assert [p.name for p in list_checkpoints(half)] == ["step_00000003"] and not read_meta(latest_checkpoint(half))["weights_only"]
    cfg = make_cfg(half, device="cpu", steps=6, micro_batch=2, checkpoint_interval=3, parallelism="fsdp", **{"logging.tensorboard": False})
    result = train(cfg, resume=True)
    assert result.start_step == 3
    assert losses(half)[3:] == pytest.approx(losses(ddp)[3:], rel=1e-5)

    # export reads the sharded weights-only checkpoint in one process: the DDP run's weights
    source = export_source(fsdp)
    assert source.weights == final
    torch.manual_seed(1234)  # the run's seed: its initial weights
    start = GPTNeoX(model_config("tiny")).state_dict()
    assert_same_update(load_source_model(source).state_dict(), checkpoint_weights(latest_checkpoint(ddp)), start)


@pytest.mark.slow
def test_fsdp_continues_a_ddp_checkpoint(tmp_path):
    """A state.pt checkpoint (DDP or one process) loads into FSDP shards, optimizer state included."""
    one = tmp_path / "one"
    train(make_cfg(one, device="cpu", steps=6, checkpoint_interval=3, stop_step=3, **{"logging.tensorboard": False}))
    reference = tmp_path / "reference"
    train(make_cfg(reference, device="cpu", steps=6, checkpoint_interval=3, **{"logging.tensorboard": False}))
    torchrun("train", "--resume", *single_mix_args(one, parallelism="fsdp"))
    assert losses(one) == pytest.approx(losses(reference), rel=1e-5)


def test_single_process_fsdp_writes_a_dcp_checkpoint_that_resumes_exactly(tmp_path):
    """World size 1 with parallelism = fsdp: nothing to shard, but the checkpoints are DCP ones."""
    out, reference = tmp_path / "run", tmp_path / "reference"
    quiet = {"logging.tensorboard": False}
    train(make_cfg(out, device="cpu", steps=6, checkpoint_interval=3, stop_step=3, parallelism="fsdp", **quiet))
    assert is_dcp_checkpoint(latest_checkpoint(out))
    train(make_cfg(out, device="cpu", steps=6, checkpoint_interval=3, parallelism="fsdp", **quiet), resume=True)
    train(make_cfg(reference, device="cpu", steps=6, checkpoint_interval=3, **quiet))
    assert losses(out) == losses(reference)


def test_damaged_sharded_checkpoint_is_a_clear_error(tmp_path):
    """Every shard file's sha256 is in meta.json: an emptied shard is named before DCP reads it."""
    out = tmp_path / "run"
    train(make_cfg(out, device="cpu", steps=6, checkpoint_interval=3, stop_step=3, parallelism="fsdp", **{"logging.tensorboard": False}))
    for shard in (latest_checkpoint(out) / "dcp").glob("*.distcp"):
        shard.write_bytes(b"")
    with pytest.raises(MixkitError, match=r"dcp/__0_0\.distcp: damaged \(its sha256 differs"):
        train(make_cfg(out, device="cpu", steps=6, checkpoint_interval=3, parallelism="fsdp"), resume=True)


def test_parallelism_is_checked(tmp_path):
    with pytest.raises(MixkitError, match="parallelism"):
        make_cfg(tmp_path, device="cpu", parallelism="tp")
    assert os.environ.get("WORLD_SIZE") is None
