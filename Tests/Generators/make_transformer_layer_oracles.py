#!/usr/bin/env python3
"""PyTorch reference values for the transformer layers and the loss family (float64).

Writes Tests/SquisherLayersTests/Resources/transformer_oracles.safetensors with, per case, the inputs,
PyTorch's outputs and the gradients of sum(r * output) for a fixed random r (inputs and parameters):
  attention/*     torch.nn.functional.scaled_dot_product_attention on q | k | v split into heads
                  (causal, and bidirectional with a key padding mask)
  block/*         transformers' GPT2Block (pre-norm, gelu_new) and BertLayer (post-norm, gelu) on [N, T, D]
  loss_ce/*       torch.nn.functional.cross_entropy(reduction='sum', label_smoothing=0.1) per sample
  loss_token/*    cross_entropy per token with ignore_index=-100 after the causal shift (HF's loss, summed)
  loss_mse/*      torch.nn.functional.mse_loss(reduction='sum')
Run: /work/peers-venv/bin/python Tests/Generators/make_transformer_layer_oracles.py
Pinned: torch 2.13.0+cpu, transformers 5.24.0, safetensors 0.8.0.
"""
import os

import torch
import torch.nn.functional as F
import transformers
from safetensors.torch import save_file

OUT = os.path.join(os.path.dirname(__file__), "..", "SquisherLayersTests", "Resources", "transformer_oracles.safetensors")
torch.manual_seed(7)
torch.set_default_dtype(torch.float64)
tensors = {}


def put(prefix, **values):
    for key, value in values.items():
        tensors[f"{prefix}/{key}"] = value.detach().clone().contiguous()


def attention(prefix, causal, mask):
    n, t, d, heads = 2, 5, 6, 3
    x = (torch.randn(n, t, 3 * d) * 1.5).requires_grad_()
    q, k, v = x.split(d, dim=-1)
    split = lambda z: z.view(n, t, heads, d // heads).transpose(1, 2)
    attn_mask = None
    if mask is not None:
        attn_mask = mask.bool()[:, None, None, :].expand(n, heads, t, t)
        if causal:
            attn_mask = attn_mask & torch.ones(t, t, dtype=torch.bool).tril()
    y = F.scaled_dot_product_attention(split(q), split(k), split(v), attn_mask=attn_mask, is_causal=causal and mask is None)
    y = y.transpose(1, 2).reshape(n, t, d)
    r = torch.randn_like(y)
    (grad,) = torch.autograd.grad((r * y).sum(), x)
    put(prefix, input=x, output=y, r=r, input_grad=grad, **({"mask": mask.double()} if mask is not None else {}))


attention("attention_causal", True, None)
attention("attention_masked", False, torch.tensor([[1, 1, 1, 1, 0], [1, 1, 0, 0, 0]]))


def block(prefix, module, x, **kwargs):
    module = module.double().eval()
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.3 * torch.randn_like(p))
    x = x.requires_grad_()
    y = module(x, **kwargs)
    y = y[0] if isinstance(y, tuple) else y
    r = torch.randn_like(y)
    names = [name for name, _ in module.named_parameters()]
    params = [p for _, p in module.named_parameters()]
    grads = torch.autograd.grad((r * y).sum(), [x] + params)
    put(prefix, input=x, output=y, r=r, input_grad=grads[0])
    for name, p, g in zip(names, params, grads[1:]):
        put(prefix, **{f"param/{name}": p, f"grad/{name}": g})


gpt2 = transformers.GPT2Config(n_embd=6, n_head=2, n_layer=1, n_positions=8, vocab_size=5, activation_function="gelu_new",
                               resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
gpt2._attn_implementation = "eager"
# A block called alone gets its causal mask from the caller (GPT2Model builds it): additive, 0 or min.
causal = torch.full((4, 4), torch.finfo(torch.float64).min).triu(1)[None, None].expand(2, 1, 4, 4)
block("gpt2_block", transformers.models.gpt2.modeling_gpt2.GPT2Block(gpt2, layer_idx=0), torch.randn(2, 4, 6), attention_mask=causal)
bert = transformers.BertConfig(hidden_size=6, num_attention_heads=2, intermediate_size=10, hidden_act="gelu",
                               hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
bert._attn_implementation = "eager"
mask = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]])
extended = (1.0 - mask[:, None, None, :].double()) * torch.finfo(torch.float64).min
block("bert_layer", transformers.models.bert.modeling_bert.BertLayer(bert), torch.randn(2, 4, 6), attention_mask=extended)
tensors["bert_layer/mask"] = mask.double()

logits = torch.randn(5, 4, requires_grad=True)
labels = torch.tensor([3, 0, 1, 1, 2])
loss = F.cross_entropy(logits, labels, reduction="sum", label_smoothing=0.1)
put("loss_ce", logits=logits, labels=labels.double(), loss=loss.reshape(1), grad=torch.autograd.grad(loss, logits)[0])

logits = torch.randn(2, 4, 5, requires_grad=True)
labels = torch.tensor([[1, 4, 0, -100], [2, -100, -100, -100]])
shifted = F.cross_entropy(logits[:, :-1].reshape(-1, 5), labels[:, 1:].reshape(-1), reduction="sum", ignore_index=-100)
put("loss_token", logits=logits, labels=labels.double(), loss=shifted.reshape(1), grad=torch.autograd.grad(shifted, logits)[0])

prediction = torch.randn(3, 2, requires_grad=True)
target = torch.randn(3, 2)
loss = F.mse_loss(prediction, target, reduction="sum")
put("loss_mse", prediction=prediction, target=target, loss=loss.reshape(1), grad=torch.autograd.grad(loss, prediction)[0])

os.makedirs(os.path.dirname(OUT), exist_ok=True)
save_file(tensors, OUT, metadata={"torch": torch.__version__, "transformers": transformers.__version__, "dtype": "float64"})
print("wrote", os.path.abspath(OUT), len(tensors), "tensors")
