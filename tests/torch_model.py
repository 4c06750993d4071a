"""torch_model.py — the reference for tests/test_model.c: the same Llama, written the ordinary
PyTorch way and run in float64, so the C engine's forward and hand-written backward can be
compared with autograd.

usage: /usr/bin/python3 tests/torch_model.py IN OUT [IN OUT ...]   (layouts: test_model.c, section 3)
Exit code 77 when torch is not importable (the C test reports a skip).
"""
import math
import struct
import sys

try:
    import numpy as np
    import torch
    import torch.nn.functional as F
except ImportError:
    sys.exit(77)


def read_case(path):
    with open(path, "rb") as f:
        buf = f.read()
    dim, hidden, n_layers, n_heads, n_kv, vocab, seq_len, shared, B, T = struct.unpack_from("<10i", buf, 0)
    hs, theta, eps, bias, qk_norm, scaling, factor, low, high, orig = struct.unpack_from("<i2f3i3fi", buf, 40)
    cfg = dict(dim=dim, hidden=hidden, n_layers=n_layers, n_heads=n_heads, n_kv=n_kv, vocab=vocab,
               seq_len=seq_len, shared=shared, B=B, T=T, hs=hs, theta=theta, eps=eps, bias=bias,
               qk_norm=qk_norm, llama3=dict(factor=factor, low=low, high=high, orig=orig) if scaling else None)
    qd, kvd = n_heads * hs, n_kv * hs
    L, C, H, V = n_layers, dim, hidden, vocab
    # the parameter block, in the order of a llama2.c v1 checkpoint, then the real-model tensors
    shapes = [("rms_att", (L, C)), ("rms_ffn", (L, C)), ("rms_final", (C,)), ("token_embedding", (V, C)),
              ("wq", (L, qd, C)), ("wk", (L, kvd, C)), ("wv", (L, kvd, C)), ("wo", (L, C, qd)),
              ("w1", (L, H, C)), ("w2", (L, C, H)), ("w3", (L, H, C))]
    if not shared:
        shapes.append(("wcls", (V, C)))
    if bias:
        shapes += [("bq", (L, qd)), ("bk", (L, kvd)), ("bv", (L, kvd))]
    if qk_norm:
        shapes += [("q_norm", (L, hs)), ("k_norm", (L, hs))]
    off = 80
    params = {}
    for name, shape in shapes:
        n = int(np.prod(shape))
        a = np.frombuffer(buf, dtype="<f4", count=n, offset=off).reshape(shape)
        params[name] = torch.tensor(a, dtype=torch.float64, requires_grad=True)
        off += 4 * n
    N = B * T
    inputs = np.frombuffer(buf, dtype="<i4", count=N, offset=off).reshape(B, T)
    off += 4 * N
    targets = np.frombuffer(buf, dtype="<i4", count=N, offset=off).reshape(B, T)
    off += 4 * N
    mask = np.frombuffer(buf, dtype="<f4", count=N, offset=off).reshape(B, T)
    off += 4 * N
    assert off == len(buf), f"{path}: {len(buf) - off} trailing bytes"
    return cfg, shapes, params, torch.tensor(inputs, dtype=torch.long), \
        torch.tensor(targets, dtype=torch.long), torch.tensor(mask)


def rmsnorm(x, w, eps=1e-5):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def rope_tables(T, hs, theta=10000.0, llama3=None):
    # angles computed in float32 as llama2.c's run.c (and Hugging Face) do, then used in float64
    i = torch.arange(0, hs, 2, dtype=torch.float32)
    freq = 1.0 / torch.pow(torch.tensor(theta, dtype=torch.float32), i / hs)
    if llama3:
        # Llama-3's rescaling of the frequencies, from its definition: long waves slowed by
        # `factor`, short ones kept, a linear blend in 1/wavelength between
        wavelen = 2 * math.pi / freq
        lo_wave, hi_wave = llama3["orig"] / llama3["low"], llama3["orig"] / llama3["high"]
        blend = (llama3["orig"] / wavelen - llama3["low"]) / (llama3["high"] - llama3["low"])
        mid = (1 - blend) * freq / llama3["factor"] + blend * freq
        freq = torch.where(wavelen < hi_wave, freq, torch.where(wavelen > lo_wave, freq / llama3["factor"], mid))
    angle = torch.arange(T, dtype=torch.float32)[:, None] * freq[None, :]  # (T, hs/2)
    return torch.cos(angle).double(), torch.sin(angle).double()


def rope(x, cos, sin):
    # x (B, T, heads, hs): rotate each pair (2i, 2i+1) of dims within a head
    x0, x1 = x[..., 0::2], x[..., 1::2]
    c, s = cos[None, :, None, :], sin[None, :, None, :]
    return torch.stack([x0 * c - x1 * s, x0 * s + x1 * c], dim=-1).flatten(-2)


def forward(cfg, p, inputs):
    B, T, C = cfg["B"], cfg["T"], cfg["dim"]
    nh, nkv, hs, eps = cfg["n_heads"], cfg["n_kv"], cfg["hs"], cfg["eps"]
    cos, sin = rope_tables(T, hs, cfg["theta"], cfg["llama3"])
    causal = torch.ones(T, T, dtype=torch.bool).tril()
    x = p["token_embedding"][inputs]
    hidden = []
    for l in range(cfg["n_layers"]):
        xn = rmsnorm(x, p["rms_att"][l], eps)
        q, k, v = xn @ p["wq"][l].T, xn @ p["wk"][l].T, xn @ p["wv"][l].T
        if cfg["bias"]:  # Qwen2
            q, k, v = q + p["bq"][l], k + p["bk"][l], v + p["bv"][l]
        q, k, v = q.view(B, T, nh, hs), k.view(B, T, nkv, hs), v.view(B, T, nkv, hs)
        if cfg["qk_norm"]:  # Qwen3: each head normalised on its own, before RoPE
            q, k = rmsnorm(q, p["q_norm"][l], eps), rmsnorm(k, p["k_norm"][l], eps)
        q, k = rope(q, cos, sin), rope(k, cos, sin)
        # grouped-query attention: query head h reads kv head h // (nh / nkv)
        k = k.repeat_interleave(nh // nkv, dim=2)
        v = v.repeat_interleave(nh // nkv, dim=2)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # (B, nh, T, hs)
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(hs)
        att = torch.softmax(scores.masked_fill(~causal, float("-inf")), dim=-1)
        y = (att @ v).transpose(1, 2).reshape(B, T, nh * hs)
        x = x + y @ p["wo"][l].T
        xn = rmsnorm(x, p["rms_ffn"][l], eps)
        x = x + (F.silu(xn @ p["w1"][l].T) * (xn @ p["w3"][l].T)) @ p["w2"][l].T
        x.retain_grad()
        hidden.append(x)
    wcls = p["token_embedding"] if cfg["shared"] else p["wcls"]
    logits = rmsnorm(x, p["rms_final"], eps) @ wcls.T
    return logits, hidden


def run_case(in_path, out_path):
    cfg, shapes, params, inputs, targets, mask = read_case(in_path)
    logits, hidden = forward(cfg, params, inputs)
    keep = mask > 0
    loss = F.cross_entropy(logits[keep], targets[keep])
    loss.backward()
    out = [np.array([loss.item()], dtype="<f4"), logits.detach().numpy().astype("<f4").ravel()]
    out += [h.detach().numpy().astype("<f4").ravel() for h in hidden]
    out += [params[name].grad.numpy().astype("<f4").ravel() for name, _ in shapes]
    with open(out_path, "wb") as f:
        f.write(np.concatenate(out).tobytes())


def main():
    args = sys.argv[1:]
    if not args or len(args) % 2:
        sys.exit("usage: torch_model.py IN OUT [IN OUT ...]")
    for i in range(0, len(args), 2):
        run_case(args[i], args[i + 1])


if __name__ == "__main__":
    main()
