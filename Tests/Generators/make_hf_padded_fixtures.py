#!/usr/bin/env python3
"""Tiny Hugging Face GPT-2 / BERT folders **with padding** and float64 per-sample-loop Fisher answer keys.

Complements make_hf_model_fixtures.py (hf/: GPT-2 without padding, BERT with [CLS] and padding):
here GPT-2 has right padding (attention_mask 0, labels -100 there), BERT has padding, token types
and pad_token_id 0 inside real positions (nn.Embedding(padding_idx=0): that row gets no gradient).

Writes Tests/SquisherEstimatorsTests/Resources/hf-padded/{gpt2,bert}/:
  config.json, model.safetensors     save_pretrained of a seeded random model (float32, transformers' init)
  tokens.safetensors                 input_ids [N, T] int64, attention_mask [N, T] int64, token_type_ids (BERT),
                                     labels: GPT-2 [N, T] (input ids, -100 at padding; shifted inside the model),
                                             BERT [N] class ids
  fisher_empirical.safetensors       sum_n g_n^2, g_n the gradient of sample n's SUMMED loss at its labels
  fisher_true_exact.safetensors      sum_n sum_t sum_c p_t(c) (grad -log p_t(c))^2 (GPT-2: over predicted tokens t;
                                     BERT: one prediction per sample); the exact expectation over the model's labels
  fisher_joint.safetensors           (sum_n g_n)^2 over the whole data set as one batch
All answer keys are keyed by model.named_parameters() names (a tied lm_head.weight appears once, as
transformer.wte.weight) and computed in float64 (model.double()) by looping over single samples
through PyTorch autograd: no per-sample rule, no batching trick.

Run (CPU PyTorch venv, see ../shared/PEERS.md):
    /work/peers-venv/bin/python Tests/Generators/make_hf_padded_fixtures.py
Pinned: torch 2.13.0+cpu, transformers 5.24.0, safetensors 0.8.0 (see requirements.txt).
"""
import json
import os

import torch
import transformers
from safetensors.torch import save_file

ROOT = os.path.join(os.path.dirname(__file__), "..", "SquisherEstimatorsTests", "Resources", "hf-padded")


def per_sample_fisher(model, samples, loss_of):
    """Empirical, true exact and joint Fisher of a float64 model by a loop over single samples.

    samples: list of dicts of [1, ...] tensors; loss_of(model, sample, labels=None) returns
    (summed loss at the sample's labels, list of (log-probability rows [K, C]) for the true Fisher)."""
    names = [n for n, _ in model.named_parameters()]
    params = [p for _, p in model.named_parameters()]
    empirical = [torch.zeros_like(p) for p in params]
    true_exact = [torch.zeros_like(p) for p in params]
    joint = [torch.zeros_like(p) for p in params]
    for sample in samples:
        loss, log_probs = loss_of(model, sample)
        grads = torch.autograd.grad(loss, params, retain_graph=True)
        for i, g in enumerate(grads):
            empirical[i] += g * g
            joint[i] += g
        # True Fisher: each predicted token separately (the cross terms have zero mean), every class.
        for row in log_probs:
            probabilities = row.detach().exp()
            for c in range(row.shape[0]):
                grads = torch.autograd.grad(-row[c], params, retain_graph=True)
                for i, g in enumerate(grads):
                    true_exact[i] += probabilities[c] * g * g
    joint = [g * g for g in joint]
    pack = lambda tensors: {n: t.detach().contiguous() for n, t in zip(names, tensors)}
    return pack(empirical), pack(true_exact), pack(joint)


def save_folder(name, model, tokens, fishers, metadata):
    folder = os.path.join(ROOT, name)
    os.makedirs(folder, exist_ok=True)
    model.save_pretrained(folder, safe_serialization=True)
    for extra in ("generation_config.json",):
        path = os.path.join(folder, extra)
        if os.path.exists(path):
            os.remove(path)
    save_file({k: v.contiguous() for k, v in tokens.items()}, os.path.join(folder, "tokens.safetensors"))
    for key, values in zip(("fisher_empirical", "fisher_true_exact", "fisher_joint"), fishers):
        save_file(values, os.path.join(folder, key + ".safetensors"), metadata=metadata)


def gpt2():
    torch.manual_seed(1)
    config = transformers.GPT2Config(
        vocab_size=11, n_positions=8, n_embd=8, n_layer=2, n_head=2, activation_function="gelu_new",
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, tie_word_embeddings=True)
    model = transformers.GPT2LMHeadModel(config).eval()
    # Larger than the 0.02 init so that the Fisher is not dominated by a few entries.
    with torch.no_grad():
        for _, p in model.named_parameters():
            p.add_(0.3 * torch.randn_like(p))
    n, t = 6, 6
    input_ids = torch.randint(0, config.vocab_size, (n, t))
    attention_mask = torch.ones(n, t, dtype=torch.int64)
    attention_mask[1, 4:] = 0  # right padding
    attention_mask[4, 3:] = 0
    labels = input_ids.masked_fill(attention_mask == 0, -100)
    tokens = {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}
    reference = transformers.GPT2LMHeadModel(config).eval()
    reference.load_state_dict(model.state_dict())
    reference = reference.double()

    def loss_of(m, s):
        logits = m(input_ids=s["input_ids"], attention_mask=s["attention_mask"]).logits[0]
        shifted, targets = logits[:-1], s["labels"][0, 1:]
        log_probs = torch.log_softmax(shifted, dim=-1)
        keep = targets != -100
        loss = -log_probs[keep].gather(1, targets[keep][:, None]).sum()
        return loss, [log_probs[i] for i in range(len(targets)) if keep[i]]

    samples = [{k: v[i:i + 1] for k, v in tokens.items()} for i in range(n)]
    fishers = per_sample_fisher(reference, samples, loss_of)
    metadata = {"reduction": "sum over samples", "sample_loss": "sum over predicted tokens (shifted, -100 ignored)",
                "joint_batch_size": str(n), "dtype": "float64", "transformers": transformers.__version__, "torch": torch.__version__}
    save_folder("gpt2", model, tokens, fishers, metadata)


def bert():
    torch.manual_seed(2)
    config = transformers.BertConfig(
        vocab_size=13, hidden_size=8, num_hidden_layers=2, num_attention_heads=2, intermediate_size=12,
        max_position_embeddings=10, type_vocab_size=2, hidden_act="gelu", hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0, num_labels=3)
    model = transformers.BertForSequenceClassification(config).eval()
    with torch.no_grad():
        for _, p in model.named_parameters():
            p.add_(0.3 * torch.randn_like(p))
    n, t = 7, 5
    input_ids = torch.randint(0, config.vocab_size, (n, t))
    attention_mask = torch.ones(n, t, dtype=torch.int64)
    attention_mask[2, 3:] = 0
    attention_mask[5, 2:] = 0
    token_type_ids = torch.zeros(n, t, dtype=torch.int64)
    token_type_ids[:, 3:] = 1
    labels = torch.randint(0, config.num_labels, (n,))
    tokens = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids, "labels": labels}
    reference = transformers.BertForSequenceClassification(config).eval()
    reference.load_state_dict(model.state_dict())
    reference = reference.double()

    def loss_of(m, s):
        logits = m(input_ids=s["input_ids"], attention_mask=s["attention_mask"], token_type_ids=s["token_type_ids"]).logits[0]
        log_probs = torch.log_softmax(logits, dim=-1)
        return -log_probs[s["labels"][0]], [log_probs]

    samples = [{k: v[i:i + 1] for k, v in tokens.items()} for i in range(n)]
    fishers = per_sample_fisher(reference, samples, loss_of)
    metadata = {"reduction": "sum over samples", "sample_loss": "cross-entropy of the sequence's label",
                "joint_batch_size": str(n), "dtype": "float64", "transformers": transformers.__version__, "torch": torch.__version__}
    save_folder("bert", model, tokens, fishers, metadata)


if __name__ == "__main__":
    torch.set_num_threads(1)
    gpt2()
    bert()
    print("wrote", os.path.abspath(ROOT))
