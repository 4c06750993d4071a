"""torch_bench.py — the PyTorch peer of `mosr bench`: the same Llama (RMSNorm, RoPE, grouped-query
causal attention, SwiGLU, untied classifier), the same sizes, random tokens, AdamW, on the same
number of threads. Prints tokens/s of forward + backward + optimizer step.

usage: /usr/bin/python3 bench/torch_bench.py --dim 256 --layers 6 --heads 8 --kv-heads 4 \
           --hidden 768 --vocab 2048 --seq 256 --batch 8 --steps 5 [--threads 2]
The attention is F.scaled_dot_product_attention when this torch has it (the fast path PyTorch
users get), else the plain softmax(q k^T) v.
"""
import argparse
import math
import sys
import time

try:
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
except ImportError:
    print("torch_bench: torch is not importable", file=sys.stderr)
    sys.exit(77)


class RMSNorm(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5) * self.weight


def rope(x, cos, sin):
    # x (B, T, heads, hs): rotate each pair (2i, 2i+1) within a head, as llama2.c
    x0, x1 = x[..., 0::2], x[..., 1::2]
    return torch.stack([x0 * cos - x1 * sin, x0 * sin + x1 * cos], dim=-1).flatten(-2)


class Block(nn.Module):
    def __init__(self, a):
        super().__init__()
        self.nh, self.nkv, self.hs = a.heads, a.kv_heads, a.dim // a.heads
        self.attn_norm, self.ffn_norm = RMSNorm(a.dim), RMSNorm(a.dim)
        self.wq = nn.Linear(a.dim, a.dim, bias=False)
        self.wk = nn.Linear(a.dim, self.nkv * self.hs, bias=False)
        self.wv = nn.Linear(a.dim, self.nkv * self.hs, bias=False)
        self.wo = nn.Linear(a.dim, a.dim, bias=False)
        self.w1 = nn.Linear(a.dim, a.hidden, bias=False)
        self.w2 = nn.Linear(a.hidden, a.dim, bias=False)
        self.w3 = nn.Linear(a.dim, a.hidden, bias=False)

    def forward(self, x, cos, sin):
        B, T, C = x.shape
        h = self.attn_norm(x)
        q = rope(self.wq(h).view(B, T, self.nh, self.hs), cos, sin).transpose(1, 2)
        k = rope(self.wk(h).view(B, T, self.nkv, self.hs), cos, sin).transpose(1, 2)
        v = self.wv(h).view(B, T, self.nkv, self.hs).transpose(1, 2)
        k = k.repeat_interleave(self.nh // self.nkv, dim=1)
        v = v.repeat_interleave(self.nh // self.nkv, dim=1)
        if hasattr(F, "scaled_dot_product_attention"):
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            s = (q @ k.transpose(-1, -2)) / math.sqrt(self.hs)
            mask = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()
            y = torch.softmax(s.masked_fill(~mask, float("-inf")), dim=-1) @ v
        x = x + self.wo(y.transpose(1, 2).reshape(B, T, C))
        h = self.ffn_norm(x)
        return x + self.w2(F.silu(self.w1(h)) * self.w3(h))


class Llama(nn.Module):
    def __init__(self, a):
        super().__init__()
        self.embed = nn.Embedding(a.vocab, a.dim)
        self.blocks = nn.ModuleList([Block(a) for _ in range(a.layers)])
        self.norm = RMSNorm(a.dim)
        self.cls = nn.Linear(a.dim, a.vocab, bias=False)
        hs = a.dim // a.heads
        i = torch.arange(0, hs, 2, dtype=torch.float32)
        angle = torch.arange(a.seq, dtype=torch.float32)[:, None] / torch.pow(10000.0, i / hs)[None, :]
        self.register_buffer("cos", torch.cos(angle)[None, :, None, :])  # (1, T, 1, hs/2)
        self.register_buffer("sin", torch.sin(angle)[None, :, None, :])

    def forward(self, idx, targets):
        T = idx.shape[1]
        x = self.embed(idx)
        cos, sin = self.cos[:, :T], self.sin[:, :T]
        for blk in self.blocks:
            x = blk(x, cos, sin)
        logits = self.cls(self.norm(x))
        return F.cross_entropy(logits.view(-1, logits.shape[-1]), targets.reshape(-1))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    for name, default in [("dim", 256), ("layers", 6), ("heads", 8), ("kv-heads", 4), ("hidden", 768),
                          ("vocab", 2048), ("seq", 256), ("batch", 8), ("steps", 5), ("threads", 2)]:
        p.add_argument("--" + name, type=int, default=default)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    model = Llama(a)
    n_params = sum(t.numel() for t in model.parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.95), weight_decay=0.1)
    data = torch.randint(0, a.vocab, (a.batch, a.seq + 1))
    x, y = data[:, :-1], data[:, 1:]
    print(f"torch_bench: torch {torch.__version__}, {n_params} params, B {a.batch}, T {a.seq}, "
          f"{torch.get_num_threads()} threads")
    elapsed = 0.0
    for step in range(a.steps + 1):  # step 0 warms up
        t0 = time.perf_counter()
        loss = model(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        dt = time.perf_counter() - t0
        if step > 0:
            elapsed += dt
        print(f"step {step} loss {loss.item():.4f}  {dt * 1e3:.0f} ms")
    print(f"train tok/s: {a.batch * a.seq * a.steps / elapsed:.0f}")


if __name__ == "__main__":
    main()
