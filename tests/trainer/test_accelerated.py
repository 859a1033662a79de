"""The GPU paths, exercised where they can be: bf16 autocast and ``torch.compile`` on the CPU
(slow: compiling takes a while), and on a CUDA device, when there is one, the parity of our
logits with ``transformers``' (what ``benchmarks/gpu_check.sh`` runs first)."""

from __future__ import annotations

import math

import pytest
import torch

from tests.support import FakeStream, tiny_tokens
from trainer.model import GPTNeoX, model_config
from trainer.run_dir import read_metrics
from trainer.train import train

from .test_model import SHAPES, hf_model
from .test_train import losses, make_cfg

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def repeated_batch_stream() -> FakeStream:
    """The same 4 rows every step: losses fall fast, so precision paths can be compared on a trend."""
    return FakeStream(tiny_tokens(4 * 16 + 1, 512, seed=3), seq_len=16, global_batch=4, num_steps=40, vocab_size=512)


@pytest.mark.slow
def test_bf16_autocast_training_follows_fp32_on_cpu(tmp_path):
    """precision = bf16 on the CPU runs the autocast path: finite, falling losses close to fp32's."""
    common = {"steps": 12, "micro_batch": 4, "checkpoint_interval": 12, "device": "cpu", "logging.tensorboard": False}
    train(make_cfg(tmp_path / "fp32", precision="fp32", **common), stream=repeated_batch_stream())
    train(make_cfg(tmp_path / "bf16", precision="bf16", **common), stream=repeated_batch_stream())
    full, half = losses(tmp_path / "fp32"), losses(tmp_path / "bf16")
    assert all(math.isfinite(x) for x in half)
    assert half[-1] < half[0] - 1.0
    assert half[0] == pytest.approx(full[0], rel=1e-2)  # same weights, same batch: bf16 rounding only
    assert half == pytest.approx(full, rel=5e-2)
    # the loss head stays in float32 under autocast: the per-source losses are float32 numbers
    assert all(isinstance(v, float) for r in read_metrics(tmp_path / "bf16" / "metrics.jsonl") for v in r["source_loss"].values())


@pytest.mark.slow
def test_compiled_training_equals_eager_on_cpu(tmp_path):
    """compile = true (inductor on the CPU) trains to eager's losses."""
    common = {"steps": 3, "micro_batch": 2, "checkpoint_interval": 3, "device": "cpu", "precision": "fp32",
              "logging.tensorboard": False}
    train(make_cfg(tmp_path / "eager", **common))
    train(make_cfg(tmp_path / "compiled", compile=True, **common))
    assert losses(tmp_path / "compiled") == pytest.approx(losses(tmp_path / "eager"), rel=1e-4)


@cuda
@pytest.mark.parametrize("vocab,d,layers,heads,rotary_pct,parallel", SHAPES)
def test_logits_match_transformers_on_cuda(vocab, d, layers, heads, rotary_pct, parallel):
    """fp32 on the GPU (TF32 off): our logits are transformers' (SDPA kernels differ from the CPU's)."""
    torch.backends.cuda.matmul.allow_tf32 = False
    device = torch.device("cuda")
    hf = hf_model(vocab, d, layers, heads, rotary_pct=rotary_pct, parallel=parallel)
    from trainer.hf import from_hf

    ours = from_hf(hf).eval().to(device)
    hf = hf.to(device)
    idx = torch.randint(0, vocab, (2, 33), generator=torch.Generator().manual_seed(1)).to(device)
    with torch.no_grad():
        expected = hf(idx).logits
        got = ours(idx)
    assert (got - expected).abs().max().item() <= 1e-3


@cuda
def test_bf16_loss_matches_transformers_on_cuda():
    """pythia-70m's shape in bf16 autocast at seq 2048: our training loss is transformers'
    cross-entropy of its logits, within bf16's rounding."""
    import torch.nn.functional as F

    from benchmarks.bench_train import hf_twin

    device = torch.device("cuda")
    torch.manual_seed(0)
    ours = GPTNeoX(model_config("pythia-70m")).to(device)
    hf = hf_twin(ours)
    x = torch.randint(0, ours.cfg.vocab_size, (2, 2048), device=device)
    y = torch.randint(0, ours.cfg.vocab_size, (2, 2048), device=device)
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        loss = ours(x, y)[0].float().item()
        logits = hf(input_ids=x).logits.float()
        expected = F.cross_entropy(logits.view(-1, logits.shape[-1]), y.view(-1)).item()
    assert loss == pytest.approx(expected, rel=1e-2)
