"""GPT-NeoX as Pythia uses it, in one readable file.

Per layer, with pre-LayerNorm (eps 1e-5) and the parallel residual of GPT-NeoX::

    x = x + attn(ln1(x)) + mlp(ln2(x))          (parallel_residual = True, Pythia)
    x = x + attn(ln1(x)); x = x + mlp(ln2(x))    (parallel_residual = False)

* token embedding ``embed_in`` (vocab × d), untied output head ``embed_out`` (d → vocab);
* attention: one fused ``query_key_value`` projection d → 3d whose output, per head, is laid
  out ``[q | k | v]`` (GPT-NeoX's layout: view as (heads, 3·head_dim), then split), rotary
  position embedding on the first ``rotary_pct`` of each head's dimensions (rotate-half form,
  base 10000), causal ``scaled_dot_product_attention`` (flash / memory-efficient on CUDA);
* MLP: d → 4d, exact (erf) GELU, 4d → d; all linear layers carry biases.

Initialisation follows GPT-NeoX: ``small_init`` N(0, sqrt(2 / (5d))) for embeddings and most
weights, ``wang_init`` N(0, 2 / (L·sqrt(d))) for the two output projections of each layer
(attention ``dense`` and ``dense_4h_to_h``), zero biases, unit LayerNorm scales.

Parameter names match Hugging Face's ``GPTNeoXForCausalLM`` minus its ``gpt_neox.`` prefix
(``trainer.hf`` does the renaming), so checkpoints interchange without reshaping.

Training loss: ``model(idx, targets)`` never materialises the full (tokens × vocab) logits;
``chunked_cross_entropy`` computes the head, the log-softmax and its gradient a chunk of rows
at a time (the vocabulary head dominates small Pythia models, and on CPU it is bound by
memory traffic, so skipping the full logits tensor and its gradient is the main saving).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mixkit.config import Invalid, invalid
from mixkit.errors import MixkitError

PYTHIA_VOCAB = 50_304  # 50,277 tokenizer ids padded to a multiple of 128


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of a GPT-NeoX model; ``d_ff = 0`` means 4 × ``d_model``."""

    n_layer: int = 6
    d_model: int = 512
    n_head: int = 8
    vocab_size: int = PYTHIA_VOCAB
    d_ff: int = 0
    rotary_pct: float = 0.25
    rotary_base: float = 10_000.0
    layer_norm_eps: float = 1e-5
    parallel_residual: bool = True
    max_seq_len: int = 2048

    def __post_init__(self) -> None:
        for name in ("n_layer", "d_model", "n_head", "vocab_size", "max_seq_len"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise invalid(name, f"must be a positive integer, got {value!r}")
        if not isinstance(self.d_ff, int) or self.d_ff < 0:
            raise invalid("d_ff", f"must be a non-negative integer (0 = 4 × d_model), got {self.d_ff!r}")
        if self.d_model % self.n_head:
            raise invalid("d_model", f"{self.d_model} must be divisible by n_head ({self.n_head})")
        if not 0.0 <= float(self.rotary_pct) <= 1.0:
            raise invalid("rotary_pct", f"must be in [0, 1], got {self.rotary_pct!r}")
        if self.rotary_dims % 2:
            raise invalid("rotary_pct", f"gives {self.rotary_dims} rotary dims per head; it must be even")
        if not float(self.rotary_base) > 0:
            raise invalid("rotary_base", f"must be positive, got {self.rotary_base!r}")
        if not float(self.layer_norm_eps) > 0:
            raise invalid("layer_norm_eps", f"must be positive, got {self.layer_norm_eps!r}")
        if not isinstance(self.parallel_residual, bool):
            raise invalid("parallel_residual", f"must be true or false, got {self.parallel_residual!r}")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_head

    @property
    def ffn_dim(self) -> int:
        return self.d_ff or 4 * self.d_model

    @property
    def rotary_dims(self) -> int:
        return int(self.head_dim * float(self.rotary_pct))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


MODEL_CONFIGS: dict[str, ModelConfig] = {
    "tiny": ModelConfig(n_layer=2, d_model=64, n_head=4, vocab_size=512, max_seq_len=256),
    "pythia-14m": ModelConfig(n_layer=6, d_model=128, n_head=4),
    "pythia-31m": ModelConfig(n_layer=6, d_model=256, n_head=8),
    "pythia-70m": ModelConfig(n_layer=6, d_model=512, n_head=8),
    "pythia-160m": ModelConfig(n_layer=12, d_model=768, n_head=12),
    "pythia-410m": ModelConfig(n_layer=24, d_model=1024, n_head=16),
}


@dataclass(frozen=True)
class ModelSpec:
    """The ``[model]`` table of a config: a named architecture with any of its fields replaced.

    ``name`` picks one of ``MODEL_CONFIGS``; every other key is a ``ModelConfig`` field that
    replaces the named one's (``None``: keep it). ``build()`` gives the ``ModelConfig``; the
    spec is checked whole when it is made, so a bad model fails at load.
    """

    name: str = "pythia-70m"
    n_layer: int | None = None
    d_model: int | None = None
    n_head: int | None = None
    vocab_size: int | None = None
    d_ff: int | None = None
    rotary_pct: float | None = None
    rotary_base: float | None = None
    layer_norm_eps: float | None = None
    parallel_residual: bool | None = None
    max_seq_len: int | None = None

    def __post_init__(self) -> None:
        if self.name not in MODEL_CONFIGS:
            raise invalid("name", f"unknown model {self.name!r} (known: {', '.join(MODEL_CONFIGS)})")
        self.build()

    def overrides(self) -> dict[str, Any]:
        """The fields this spec replaces in the named config."""
        return {f.name: getattr(self, f.name) for f in fields(ModelConfig) if getattr(self, f.name) is not None}

    def build(self) -> ModelConfig:
        return replace(MODEL_CONFIGS[self.name], **self.overrides())


def model_config(name: str, **overrides: Any) -> ModelConfig:
    """The named config with any field replaced, e.g. ``model_config("tiny", vocab_size=1000)``."""
    if name not in MODEL_CONFIGS:
        raise MixkitError(f"unknown model '{name}' (known: {', '.join(MODEL_CONFIGS)})")
    known = {f.name for f in fields(ModelConfig)}
    for key in overrides:
        if key not in known:
            raise MixkitError(f"unknown model config key 'model.{key}' (known: {', '.join(sorted(known))})")
    try:
        return replace(MODEL_CONFIGS[name], **overrides)
    except Invalid as e:
        raise MixkitError(f"model.{e}") from None


# -- rotary position embedding --------------------------------------------------------------------


def rotary_tables(cfg: ModelConfig, seq_len: int, device: torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin of shape (seq_len, rotary_dims): angle[t, i] = t · base^(-2(i mod r/2)/r)."""
    r = cfg.rotary_dims
    inv_freq = 1.0 / (float(cfg.rotary_base) ** (torch.arange(0, r, 2, dtype=torch.float32, device=device) / r))
    angles = torch.outer(torch.arange(seq_len, dtype=torch.float32, device=device), inv_freq)
    emb = torch.cat((angles, angles), dim=-1)
    return emb.cos(), emb.sin()


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate-half RoPE on the first ``r = cos.shape[-1]`` dims of x (…, T, head_dim); the rest pass."""
    r = cos.shape[-1]
    if r == 0:
        return x
    x_rot, x_pass = x[..., :r], x[..., r:]
    x1, x2 = x_rot[..., : r // 2], x_rot[..., r // 2 :]
    rotated = torch.cat((-x2, x1), dim=-1)
    return torch.cat((x_rot * cos + rotated * sin, x_pass), dim=-1)


# -- layers ------------------------------------------------------------------------------------------


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.n_head, self.head_dim = cfg.n_head, cfg.head_dim
        self.query_key_value = nn.Linear(cfg.d_model, 3 * cfg.d_model)
        self.dense = nn.Linear(cfg.d_model, cfg.d_model)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        qkv = self.query_key_value(x).view(b, t, self.n_head, 3 * self.head_dim).transpose(1, 2)
        q, k, v = qkv.split(self.head_dim, dim=-1)  # per-head [q | k | v]
        q, k = apply_rotary(q, cos.to(q.dtype), sin.to(q.dtype)), apply_rotary(k, cos.to(k.dtype), sin.to(k.dtype))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.dense(y.transpose(1, 2).reshape(b, t, d))


class MLP(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.dense_h_to_4h = nn.Linear(cfg.d_model, cfg.ffn_dim)
        self.dense_4h_to_h = nn.Linear(cfg.ffn_dim, cfg.d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dense_4h_to_h(F.gelu(self.dense_h_to_4h(x)))


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.parallel = cfg.parallel_residual
        self.input_layernorm = nn.LayerNorm(cfg.d_model, eps=cfg.layer_norm_eps)
        self.post_attention_layernorm = nn.LayerNorm(cfg.d_model, eps=cfg.layer_norm_eps)
        self.attention = Attention(cfg)
        self.mlp = MLP(cfg)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        a = self.attention(self.input_layernorm(x), cos, sin)
        if self.parallel:
            return x + a + self.mlp(self.post_attention_layernorm(x))
        x = x + a
        return x + self.mlp(self.post_attention_layernorm(x))


# -- the training loss ------------------------------------------------------------------------------


class _ChunkedLinearCrossEntropy(torch.autograd.Function):
    """mean_i CE(h_i · Wᵀ, y_i) without the full logits; gradients are made in the forward pass.

    Per chunk of rows: z = h Wᵀ, p = softmax(z), loss_i = logsumexp(z_i) − z_i[y_i],
    g = (p − onehot(y)) / N, then dh = g W and dW += gᵀ h; the softmax is computed in place
    in the chunk's logits buffer (max, subtract, exp, sum, scale), so each chunk costs three
    matmuls and a few passes over a buffer small enough to stay in cache. Backward only scales them by the
    incoming scalar gradient. Matmuls run in ``compute_dtype`` (bf16 under autocast), the
    softmax in fp32.
    """

    @staticmethod
    def forward(ctx, h, weight, targets, chunk_rows, compute_dtype):
        n = h.shape[0]
        hc, wc = h.to(compute_dtype), weight.to(compute_dtype)
        grad_h = torch.empty_like(h)
        grad_w = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device)
        losses = torch.empty(n, dtype=torch.float32, device=h.device)
        for start in range(0, n, chunk_rows):
            stop = min(start + chunk_rows, n)
            rows, y = hc[start:stop], targets[start:stop]
            z = (rows @ wc.t()).float()
            target_logit = z.gather(1, y[:, None]).squeeze(1)
            zmax = z.amax(dim=1)
            z.sub_(zmax[:, None]).exp_()  # one exp pass serves both the loss and the gradient
            total = z.sum(dim=1)
            losses[start:stop] = zmax + total.log() - target_logit
            z.mul_((1.0 / (total * n))[:, None])  # softmax / N
            z[torch.arange(stop - start, device=z.device), y] -= 1.0 / n
            g = z.to(compute_dtype)
            grad_h[start:stop] = (g @ wc).to(h.dtype)
            if compute_dtype == torch.float32:
                grad_w.addmm_(g.t(), rows)
            else:
                grad_w.add_((g.t() @ rows).float())
        ctx.save_for_backward(grad_h, grad_w.to(weight.dtype))
        ctx.mark_non_differentiable(losses)
        return losses.mean(), losses

    @staticmethod
    def backward(ctx, grad_loss, _grad_losses):
        grad_h, grad_w = ctx.saved_tensors
        return grad_h * grad_loss, grad_w * grad_loss, None, None, None


def chunked_cross_entropy(
    h: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, chunk_rows: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean loss, per-token losses) of the head ``weight`` over hidden states h (N, d), targets (N,).

    ``chunk_rows = 0`` picks about 2^25 logits (128 MiB of fp32) per chunk.
    """
    if torch.is_autocast_enabled(h.device.type):
        compute_dtype = torch.get_autocast_dtype(h.device.type)
    else:
        compute_dtype = h.dtype
    rows = chunk_rows or max(1, (1 << 25) // weight.shape[0])
    with torch.autocast(h.device.type, enabled=False):
        if torch.is_grad_enabled() and (h.requires_grad or weight.requires_grad):
            return _ChunkedLinearCrossEntropy.apply(h, weight, targets, rows, compute_dtype)
        losses = torch.cat([  # evaluation: no gradients to precompute
            torch.logsumexp(z := (h[i : i + rows].to(compute_dtype) @ weight.to(compute_dtype).t()).float(), dim=-1)
            - z.gather(1, targets[i : i + rows, None]).squeeze(1)
            for i in range(0, h.shape[0], rows)
        ])
        return losses.mean(), losses


# -- the model ---------------------------------------------------------------------------------------


class GPTNeoX(nn.Module):
    """``model(idx)`` → logits (B, T, vocab); ``model(idx, targets)`` → (mean loss, per-token losses (B, T))."""

    def __init__(self, cfg: ModelConfig, init: bool = True):
        super().__init__()
        self.cfg = cfg
        self.embed_in = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.layers = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.final_layer_norm = nn.LayerNorm(cfg.d_model, eps=cfg.layer_norm_eps)
        self.embed_out = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        cos, sin = rotary_tables(cfg, cfg.max_seq_len)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        self.loss_chunk_rows = 0
        if init:
            self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """GPT-NeoX init: small_init everywhere, wang_init on the per-layer output projections."""
        d, n_layer = self.cfg.d_model, self.cfg.n_layer
        small = math.sqrt(2.0 / (5.0 * d))
        wang = 2.0 / (n_layer * math.sqrt(d))
        for name, p in self.named_parameters():
            if "layernorm" in name or "layer_norm" in name:
                p.fill_(1.0 if name.endswith("weight") else 0.0)
            elif name.endswith("bias"):
                p.zero_()
            elif name.endswith(("attention.dense.weight", "dense_4h_to_h.weight")):
                p.normal_(0.0, wang)
            else:
                p.normal_(0.0, small)

    def hidden(self, idx: torch.Tensor) -> torch.Tensor:
        t = idx.shape[1]
        if t > self.cfg.max_seq_len:
            raise MixkitError(f"sequence of {t} tokens exceeds model.max_seq_len = {self.cfg.max_seq_len}")
        cos, sin = self.rope_cos[:t], self.rope_sin[:t]
        x = self.embed_in(idx)
        for layer in self.layers:
            x = layer(x, cos, sin)
        return self.final_layer_norm(x)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None):
        x = self.hidden(idx)
        if targets is None:
            return self.embed_out(x)
        b, t, d = x.shape
        loss, per_token = chunked_cross_entropy(x.reshape(b * t, d), self.embed_out.weight, targets.reshape(-1), self.loss_chunk_rows)
        return loss, per_token.view(b, t)

    # -- sizes ---------------------------------------------------------------------------------------

    def num_params(self, non_embedding: bool = True) -> int:
        """Parameters; ``non_embedding`` leaves out the input embedding (a lookup, no FLOPs)."""
        n = sum(p.numel() for p in self.parameters())
        return n - self.embed_in.weight.numel() if non_embedding else n

    def flops_per_token(self, seq_len: int) -> int:
        """Training FLOPs per token: 6N + 12·L·H·Q·T (N non-embedding params, Q head dim, T seq len)."""
        c = self.cfg
        return 6 * self.num_params() + 12 * c.n_layer * c.n_head * c.head_dim * seq_len
