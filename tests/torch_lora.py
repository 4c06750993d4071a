"""torch_lora.py — the reference for the LoRA adapters of tests/test_model.c: the model of
torch_model.py with y = x W^T + (alpha / rank) (x A^T) B^T on the adapted maps, in float64, so the
C engine's adapter forward and backward can be compared with autograd.

usage: /usr/bin/python3 tests/torch_lora.py IN LORA OUT [IN LORA OUT ...]
  IN    a case file of torch_model.py (config, parameters, inputs, targets, mask)
  LORA  int32 rank, layer_begin, layer_end, targets (bit k: map k of wq wk wv wo w1 w2 w3),
        float32 alpha, then the adapter block of model.h's LoRA: per adapted map in that order,
        A (layers, rank, in) then B (layers, out, rank)
  OUT   float32 loss; logits (B*T*V); the adapters' gradients, in the block's layout
Exit code 77 when torch is not importable (the C test reports a skip).
"""
import math
import os
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
try:
    import numpy as np
    import torch
    import torch.nn.functional as F
    from torch_model import read_case, rmsnorm, rope_tables, rope
except ImportError:
    sys.exit(77)

MAPS = ["wq", "wk", "wv", "wo", "w1", "w2", "w3"]


def read_lora(path, cfg):
    with open(path, "rb") as f:
        buf = f.read()
    rank, begin, end, targets = struct.unpack_from("<4i", buf, 0)
    (alpha,) = struct.unpack_from("<f", buf, 16)
    C, H = cfg["dim"], cfg["hidden"]
    kvd = cfg["n_kv"] * (C // cfg["n_heads"])
    dims = {"wq": (C, C), "wk": (C, kvd), "wv": (C, kvd), "wo": (C, C), "w1": (C, H), "w2": (H, C), "w3": (C, H)}
    off, n_layers = 20, end - begin
    adapters, order = {}, []
    for k, name in enumerate(MAPS):
        if not targets & (1 << k):
            continue
        fan_in, fan_out = dims[name]
        for part, shape in (("A", (n_layers, rank, fan_in)), ("B", (n_layers, fan_out, rank))):
            n = int(np.prod(shape))
            a = np.frombuffer(buf, dtype="<f4", count=n, offset=off).reshape(shape)
            adapters[name + part] = torch.tensor(a, dtype=torch.float64, requires_grad=True)
            order.append(name + part)
            off += 4 * n
    assert off == len(buf), f"{path}: {len(buf) - off} trailing bytes"
    return dict(rank=rank, begin=begin, end=end, scale=alpha / rank, adapters=adapters, order=order)


def forward(cfg, p, lora, inputs):
    B, T, C = cfg["B"], cfg["T"], cfg["dim"]
    nh, nkv = cfg["n_heads"], cfg["n_kv"]
    hs = C // nh
    cos, sin = rope_tables(T, hs)
    causal = torch.ones(T, T, dtype=torch.bool).tril()
    ad = lora["adapters"]

    def linear(name, x, l):
        y = x @ p[name][l].T
        if name + "A" in ad and lora["begin"] <= l < lora["end"]:
            j = l - lora["begin"]
            y = y + lora["scale"] * (x @ ad[name + "A"][j].T) @ ad[name + "B"][j].T
        return y

    x = p["token_embedding"][inputs]
    for l in range(cfg["n_layers"]):
        xn = rmsnorm(x, p["rms_att"][l])
        q = linear("wq", xn, l).view(B, T, nh, hs)
        k = linear("wk", xn, l).view(B, T, nkv, hs)
        v = linear("wv", xn, l).view(B, T, nkv, hs)
        q, k = rope(q, cos, sin), rope(k, cos, sin)
        k = k.repeat_interleave(nh // nkv, dim=2)
        v = v.repeat_interleave(nh // nkv, dim=2)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(hs)
        att = torch.softmax(scores.masked_fill(~causal, float("-inf")), dim=-1)
        y = (att @ v).transpose(1, 2).reshape(B, T, C)
        x = x + linear("wo", y, l)
        xn = rmsnorm(x, p["rms_ffn"][l])
        x = x + linear("w2", F.silu(linear("w1", xn, l)) * linear("w3", xn, l), l)
    wcls = p["token_embedding"] if cfg["shared"] else p["wcls"]
    return rmsnorm(x, p["rms_final"]) @ wcls.T


def run_case(in_path, lora_path, out_path):
    cfg, _, params, inputs, targets, mask = read_case(in_path)
    lora = read_lora(lora_path, cfg)
    logits = forward(cfg, params, lora, inputs)
    keep = mask > 0
    loss = F.cross_entropy(logits[keep], targets[keep])
    loss.backward()
    out = [np.array([loss.item()], dtype="<f4"), logits.detach().numpy().astype("<f4").ravel()]
    out += [lora["adapters"][name].grad.numpy().astype("<f4").ravel() for name in lora["order"]]
    with open(out_path, "wb") as f:
        f.write(np.concatenate(out).tobytes())


def main():
    args = sys.argv[1:]
    if not args or len(args) % 3:
        sys.exit("usage: torch_lora.py IN LORA OUT [IN LORA OUT ...]")
    for i in range(0, len(args), 3):
        run_case(args[i], args[i + 1], args[i + 2])


if __name__ == "__main__":
    main()
