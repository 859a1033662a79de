"""GPT-NeoX model: logits parity with transformers, to_hf/from_hf round trips, init, loss and configs."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from mixkit.errors import MixkitError
from trainer.hf import from_hf, to_hf
from trainer.model import MODEL_CONFIGS, GPTNeoX, ModelConfig, apply_rotary, chunked_cross_entropy, model_config

transformers = pytest.importorskip("transformers")


def hf_model(vocab, d, layers, heads, *, rotary_pct=0.25, parallel=True, seed=0, ffn=None):
    torch.manual_seed(seed)
    cfg = transformers.GPTNeoXConfig(
        vocab_size=vocab, hidden_size=d, num_hidden_layers=layers, num_attention_heads=heads,
        intermediate_size=ffn or 4 * d, rotary_pct=rotary_pct, use_parallel_residual=parallel,
        max_position_embeddings=256,
    )
    model = transformers.GPTNeoXForCausalLM(cfg).eval()
    # transformers' init leaves biases and LayerNorms at 0/1; randomise everything so no term hides.
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.2 if p.dim() == 1 else 0.05)
    return model


SHAPES = [
    # vocab, d, layers, heads, rotary_pct, parallel residual
    (97, 32, 1, 2, 0.25, True),
    (300, 64, 2, 4, 0.5, True),
    (211, 48, 3, 3, 1.0, False),
    (50_304, 128, 6, 4, 0.25, True),  # pythia-14m dims, random weights
]


@pytest.mark.parametrize("vocab,d,layers,heads,rotary_pct,parallel", SHAPES)
def test_logits_match_transformers(vocab, d, layers, heads, rotary_pct, parallel):
    hf = hf_model(vocab, d, layers, heads, rotary_pct=rotary_pct, parallel=parallel)
    ours = from_hf(hf).eval()
    assert ours.cfg.rotary_dims == int(d // heads * rotary_pct)
    idx = torch.randint(0, vocab, (2, 33), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = hf(idx).logits
        got = ours(idx)
    assert got.shape == expected.shape
    assert (got - expected).abs().max().item() <= 1e-4


def test_to_hf_round_trip_loads_in_transformers(tmp_path):
    torch.manual_seed(3)
    ours = GPTNeoX(model_config("tiny", vocab_size=130, n_layer=2)).eval()
    to_hf(ours, tmp_path / "hf")
    loaded = transformers.GPTNeoXForCausalLM.from_pretrained(tmp_path / "hf").eval()
    idx = torch.randint(0, 130, (3, 20))
    with torch.no_grad():
        assert (loaded(idx).logits - ours(idx)).abs().max().item() <= 1e-4
        back = from_hf(tmp_path / "hf")
        assert back.cfg == ours.cfg
        assert torch.equal(back(idx), ours(idx))


def test_from_hf_saved_directory(tmp_path):
    hf = hf_model(150, 32, 2, 4, seed=5)
    hf.save_pretrained(tmp_path / "saved")
    ours = from_hf(tmp_path / "saved").eval()
    idx = torch.randint(0, 150, (1, 17))
    with torch.no_grad():
        assert (ours(idx) - hf(idx).logits).abs().max().item() <= 1e-4


def test_from_hf_refuses_non_neox_dir(tmp_path):
    (tmp_path / "config.json").write_text('{"model_type": "llama", "hidden_size": 8}')
    with pytest.raises(MixkitError, match="not a GPT-NeoX"):
        from_hf(tmp_path)
    with pytest.raises(MixkitError, match="no config.json"):
        from_hf(tmp_path / "missing")


def reference_rotary(x, r, base=10_000.0):
    """Rotary as GPT-NeoX's paper form: pairs (i, i + r/2) rotated by t · base^(-2i/r)."""
    out = x.clone()
    t = torch.arange(x.shape[-2], dtype=torch.float64)[:, None]
    for i in range(r // 2):
        theta = t[:, 0] * base ** (-2 * i / r)
        a, b = x[..., i].double(), x[..., i + r // 2].double()
        out[..., i] = (a * theta.cos() - b * theta.sin()).to(x.dtype)
        out[..., i + r // 2] = (b * theta.cos() + a * theta.sin()).to(x.dtype)
    return out


def test_rotary_matches_reference():
    cfg = ModelConfig(n_layer=1, d_model=64, n_head=2, vocab_size=10)  # head_dim 32, 8 rotary dims
    from trainer.model import rotary_tables

    cos, sin = rotary_tables(cfg, 12)
    x = torch.randn(2, 3, 12, 32)
    assert torch.allclose(apply_rotary(x, cos, sin), reference_rotary(x, 8), atol=1e-5)


def test_chunked_loss_and_gradients_match_plain_cross_entropy():
    torch.manual_seed(0)
    h = torch.randn(50, 16, requires_grad=True)
    w = torch.randn(70, 16, requires_grad=True)
    y = torch.randint(0, 70, (50,))
    loss, per_token = chunked_cross_entropy(h, w, y, chunk_rows=7)
    (3.0 * loss).backward()
    gh, gw = h.grad.clone(), w.grad.clone()
    h.grad = w.grad = None
    ref_tok = F.cross_entropy(h @ w.t(), y, reduction="none")
    (3.0 * ref_tok.mean()).backward()
    assert torch.allclose(loss, ref_tok.mean(), atol=1e-5)
    assert torch.allclose(per_token, ref_tok.detach(), atol=1e-5)
    assert torch.allclose(gh, h.grad, atol=1e-5) and torch.allclose(gw, w.grad, atol=1e-5)


def test_gpt_neox_init_scales():
    cfg = model_config("pythia-14m", vocab_size=4000)
    torch.manual_seed(0)
    m = GPTNeoX(cfg)
    d, n_layer = cfg.d_model, cfg.n_layer
    small, wang = math.sqrt(2 / (5 * d)), 2 / (n_layer * math.sqrt(d))
    assert m.embed_in.weight.std().item() == pytest.approx(small, rel=0.05)
    assert m.layers[0].attention.query_key_value.weight.std().item() == pytest.approx(small, rel=0.05)
    assert m.layers[0].attention.dense.weight.std().item() == pytest.approx(wang, rel=0.05)
    assert m.layers[0].mlp.dense_4h_to_h.weight.std().item() == pytest.approx(wang, rel=0.05)
    assert torch.all(m.layers[0].attention.query_key_value.bias == 0)
    assert torch.all(m.final_layer_norm.weight == 1)


def test_named_pythia_configs_and_flops():
    assert [(c.n_layer, c.d_model, c.n_head) for n, c in MODEL_CONFIGS.items() if n != "tiny"] == [
        (6, 128, 4), (6, 256, 8), (6, 512, 8), (12, 768, 12), (24, 1024, 16)]
    assert all(c.vocab_size == 50_304 for n, c in MODEL_CONFIGS.items() if n != "tiny")
    m = GPTNeoX(model_config("tiny"), init=False)
    c = m.cfg
    n = sum(p.numel() for p in m.parameters()) - c.vocab_size * c.d_model
    assert m.flops_per_token(100) == 6 * n + 12 * c.n_layer * c.n_head * c.head_dim * 100


@pytest.mark.parametrize("bad,match", [
    ({"n_head": 5}, "divisible"),
    ({"n_layer": 0}, "model.n_layer"),
    ({"rotary_pct": 1.5}, "model.rotary_pct"),
    ({"vocab_size": "big"}, "model.vocab_size"),
    ({"widht": 3}, "model.widht"),
])
def test_bad_model_config_names_the_key(bad, match):
    with pytest.raises(MixkitError, match=match):
        model_config("tiny", **bad)


def test_unknown_model_name():
    with pytest.raises(MixkitError, match="unknown model 'pythia-7b'"):
        model_config("pythia-7b")


def test_sequence_longer_than_model_refused():
    m = GPTNeoX(model_config("tiny", max_seq_len=8))
    with pytest.raises(MixkitError, match="max_seq_len"):
        m(torch.zeros(1, 9, dtype=torch.long))


def test_eval_loss_path_equals_training_path():
    torch.manual_seed(1)
    m = GPTNeoX(model_config("tiny", vocab_size=100))
    m.loss_chunk_rows = 5
    idx, tgt = torch.randint(0, 100, (2, 9)), torch.randint(0, 100, (2, 9))
    train_loss, train_tok = m(idx, tgt)
    with torch.no_grad():
        eval_loss, eval_tok = m(idx, tgt)
        ref = F.cross_entropy(m(idx).view(-1, 100), tgt.view(-1), reduction="none").view(2, 9)
    assert torch.allclose(train_tok, ref, atol=1e-5) and torch.allclose(eval_tok, ref, atol=1e-5)
    assert torch.allclose(train_loss, eval_loss, atol=1e-6)
