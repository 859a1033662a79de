"""`trainer export`: the folder loads in transformers (tokenizer round trip, equal logits) and in
lm-evaluation-harness's HFLM (equal log-likelihoods); what is exported; failure paths."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from cli.export_cmd import export as export_cmd
from mixkit.errors import MixkitError
from mixkit.mix import MixPlan, Phase, build_mix
from mixkit.presets import TextSpec
from mixkit.samples import DEFAULT_TOKENIZER, sample_path
from mixkit.tokenize import TokenizeConfig, load_tokenizer, tokenize
from trainer import checkpoint as ckpt
from trainer.evaluate import task_loss
from trainer.export import export, export_source, load_source_model
from trainer.run_dir import read_results
from trainer.stage_runner import StageRunner, run_stages
from trainer.stages import run_config_from_dict

transformers = pytest.importorskip("transformers")

MODEL = {"name": "tiny", "vocab_size": 50304, "max_seq_len": 64, "d_model": 32, "n_head": 2}
TEXT = "Natalia sold clips to 48 of her friends in April.\n    def f(x):  return x ** 2  # ünïcode ✓"


def run_table(data, out, stages, **extra):
    tasks = {"gsm8k": {"train": str(sample_path("gsm8k_train")), "val": str(sample_path("gsm8k_test")),
                       "max_examples": 8, "val_size": 4}}
    return {"name": out.name, "out_dir": str(out), "data_dir": str(data), "model": dict(MODEL), "seed": 3,
            "micro_batch": 2, "optim": {"lr": 3e-3, "warmup": 2}, "checkpoint_interval": 2, "stages": stages,
            "eval_batch": 4, "tasks": tasks, **extra}


SFT = {"kind": "sft", "name": "sft", "tasks": ["gsm8k"], "lr": 1e-3, "seq_len": 48, "micro_batch": 4, "max_steps": 2}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """pretrain to step 4 → midtrain to 8 → SFT on GSM8K, on stores of the bundled tokenizer."""
    d = tmp_path_factory.mktemp("data")
    tokenize(TokenizeConfig([str(sample_path("c4"))], "c4", TextSpec(preset="c4"), data_dir=str(d), quiet=True))
    build_mix(MixPlan([Phase(0, {"c4": 1.0})], steps=8, seq_len=32, global_batch=4, seed=7), "base", d)
    out = tmp_path_factory.mktemp("runs") / "run"
    stages = [{"kind": "pretrain", "name": "pretrain", "mix": "base", "until": 4},
              {"kind": "midtrain", "name": "midtrain", "mix": "base"}, SFT]
    cfg = run_config_from_dict(run_table(d, out, stages))
    run_stages(cfg, log=lambda *_: None)
    return out, cfg


def test_export_loads_in_transformers_with_equal_logits_and_tokenizer(run, tmp_path):
    out, _ = run
    result = export(out, tmp_path / "hf")
    assert result.source.weights == out / "midtrain" / "checkpoints" / "step_00000008"
    assert sorted(p.name for p in (tmp_path / "hf").iterdir()) == [
        "config.json", "generation_config.json", "model.safetensors", "special_tokens_map.json",
        "tokenizer.json", "tokenizer_config.json"]
    tok = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf")
    ours, info = load_tokenizer(None)
    ids = tok(TEXT)["input_ids"]
    assert ids == ours.encode(TEXT).ids and len(ids) > 10
    assert tok.decode(ids) == TEXT
    assert tok.eos_token == "<|endoftext|>" and tok.eos_token_id == info.eos_id == 0
    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf").eval()
    assert hf.generation_config.eos_token_id == 0
    model = load_source_model(result.source).eval()
    x = torch.tensor([ids])
    with torch.no_grad():
        assert (hf(x).logits - model(x)).abs().max().item() <= 1e-4
    # the same source exported twice gives the same bytes
    export(out, tmp_path / "again")
    for f in (tmp_path / "hf").iterdir():
        assert f.read_bytes() == (tmp_path / "again" / f.name).read_bytes(), f.name


def test_stage_and_checkpoint_sources(run, tmp_path):
    out, _ = run
    pre = out / "pretrain" / "checkpoints" / "step_00000004"
    assert export_source(out, stage="pretrain").weights == pre
    assert export_source(pre).weights == pre
    assert export_source(out / "midtrain").weights == out / "midtrain" / "checkpoints" / "step_00000008"
    export(out, tmp_path / "pre", stage="pretrain")
    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "pre")
    state = ckpt.load_state(pre, torch.device("cpu"))["model"]
    assert torch.equal(hf.state_dict()["gpt_neox.embed_in.weight"], state["embed_in.weight"])


def test_sft_weights_are_the_finetuned_model(run, tmp_path):
    """The exported SFT model has exactly the validation loss results.json recorded for the task."""
    out, cfg = run
    export(out, tmp_path / "sft", sft="gsm8k")
    hf_state = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "sft").state_dict()
    model = load_source_model(export_source(out, sft="gsm8k")).eval()
    assert torch.equal(hf_state["embed_out.weight"] if "embed_out.weight" in hf_state else hf_state["lm_head.weight"],
                       model.embed_out.weight)
    _, val = StageRunner(cfg, log=lambda *_: None).task_data("gsm8k", SFT["seq_len"])
    recorded = read_results(out)["sft"]["gsm8k"]["val_loss"]
    assert task_loss(model, val, cfg.stages[-1].sft.eval_batch, torch.device("cpu")) == pytest.approx(recorded, rel=1e-6)
    midtrain = load_source_model(export_source(out))
    assert not torch.equal(midtrain.embed_out.weight, model.embed_out.weight)


def test_saving_sft_weights_changes_no_result(run, tmp_path):
    out, cfg = run
    start = str(out / "midtrain" / "checkpoints" / "step_00000008")
    entries = {}
    for save in (True, False):
        table = run_table(cfg.data_dir, tmp_path / f"save-{save}", [{**SFT, "init": start, "save_weights": save}])
        results = run_stages(run_config_from_dict(table), log=lambda *_: None)
        entries[save] = {k: v for k, v in results["sft"]["gsm8k"].items() if k != "weights"}
        assert (tmp_path / f"save-{save}" / "sft-gsm8k" / "model.safetensors").is_file() == save
    assert entries[True] == entries[False]
    with pytest.raises(MixkitError, match="save_weights = false"):
        export(tmp_path / "save-False", tmp_path / "x", sft="gsm8k")


def test_refusals(run, tmp_path):
    out, _ = run
    with pytest.raises(MixkitError, match="no stage 'nope'.*pretrain, midtrain"):
        export(out, tmp_path / "x", stage="nope")
    with pytest.raises(MixkitError, match="the run's SFT tasks: gsm8k"):
        export(out, tmp_path / "x", sft="code")
    with pytest.raises(MixkitError, match="not both"):
        export(out, tmp_path / "x", stage="pretrain", sft="gsm8k")
    with pytest.raises(MixkitError, match="not a run folder"):
        export(tmp_path, tmp_path / "x")
    other = tmp_path / "other-tokenizer.json"
    other.write_text(DEFAULT_TOKENIZER.read_text() + "\n")
    with pytest.raises(MixkitError, match=r"tokenized with gpt-neox-20b.json .*pass --tokenizer"):
        export(out, tmp_path / "x", tokenizer=other)
    assert not (tmp_path / "x").exists()
    (tmp_path / "taken").mkdir()
    with pytest.raises(MixkitError, match="--overwrite"):
        export(out, tmp_path / "taken")


def test_cli(run, tmp_path):
    out, _ = run
    r = CliRunner().invoke(export_cmd, [str(out), "--out", str(tmp_path / "hf"), "--sft", "gsm8k"])
    assert r.exit_code == 0, r.output
    assert "SFT task gsm8k" in r.output and (tmp_path / "hf" / "tokenizer.json").is_file()
    r = CliRunner().invoke(export_cmd, [str(out), "--out", str(tmp_path / "hf2"), "--stage", "nope"])
    assert r.exit_code == 1 and "Error: " in r.output and "no stage 'nope'" in r.output


def test_lm_evaluation_harness_scores_the_export(run, tmp_path):
    """lm-eval's HFLM on the export: a log-likelihood request equals our model's sum of log-probs."""
    huggingface = pytest.importorskip("lm_eval.models.huggingface")
    from lm_eval.api.instance import Instance

    out, _ = run
    result = export(out, tmp_path / "hf")
    lm = huggingface.HFLM(pretrained=str(tmp_path / "hf"), device="cpu", batch_size=1)
    context, continuation = "Natalia sold clips to", " 48 of her friends"
    request = Instance(request_type="loglikelihood", doc={}, arguments=(context, continuation), idx=0)
    [(loglik, _greedy)] = lm.loglikelihood([request])
    tok, _ = load_tokenizer(None)
    ctx, cont = tok.encode(context).ids, tok.encode(continuation).ids
    model = load_source_model(result.source).eval()
    with torch.no_grad():
        logp = torch.log_softmax(model(torch.tensor([ctx + cont])).double(), dim=-1)[0]
    expected = sum(logp[len(ctx) - 1 + i, t].item() for i, t in enumerate(cont))
    assert loglik == pytest.approx(expected, abs=1e-3)
    assert json.loads((tmp_path / "hf" / "config.json").read_text())["eos_token_id"] == 0
