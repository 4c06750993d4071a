"""llamacpp_models.py — the random-weight GGUF files of bench/bench_llamacpp.sh, in the shapes of
SmolLM2-135M and Qwen2.5-0.5B (their config.json values, ../shared/REAL_MODELS.md), one set of
N(0, 0.02) weights per shape written in F32, F16 and BF16 by tests/formats_models.py's GGUF writer.
The vocabulary is the tests' byte-level one (256 bytes, 2 merges, 3 special tokens) padded with
plain tokens to the real size; the benchmark feeds token ids, so only its size matters.

usage: /usr/bin/python3 bench/llamacpp_models.py DIR SHAPE [TYPE ...]
  SHAPE: smollm2-135m or qwen2.5-0.5b; TYPE: F32, F16, BF16 (default all three)
  writes DIR/SHAPE-TYPE.gguf (skipped when present) and DIR/SHAPE.prompt{8,512}.txt: the ids of
  the short prompt (decode) and of the long one (prefill), space-separated, no special tokens.
Exit code 77 when numpy / torch are not importable.
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
import formats_models as fm  # exits 77 without numpy / torch

import torch

# context 1024 (not the real 8192 / 32768): both runtimes size their KV cache from it, and the
# benchmark needs 512 + 1 positions at most
SHAPES = {
    "smollm2-135m": dict(arch="llama", dim=576, layers=30, heads=9, kv_heads=3, head_dim=64, hidden=1536,
                         vocab=49152, tied=True, bias=False, theta=100000.0, eps=1e-5),
    "qwen2.5-0.5b": dict(arch="qwen2", dim=896, layers=24, heads=14, kv_heads=2, head_dim=64, hidden=4864,
                         vocab=151936, tied=True, bias=True, theta=1000000.0, eps=1e-6),
    # tests/test_memory.sh: a 67 MB F16 file (untied) and a tiny one for the process's baseline
    "memtest": dict(arch="llama", dim=512, layers=8, heads=8, kv_heads=4, head_dim=64, hidden=1536,
                    vocab=8192, tied=False, bias=False, theta=10000.0, eps=1e-5),
    "memtest-tiny": dict(arch="llama", dim=64, layers=1, heads=4, kv_heads=4, head_dim=16, hidden=128,
                         vocab=512, tied=False, bias=False, theta=10000.0, eps=1e-5),
}
MAX_POS = 1024
STD = 0.02


def padded_vocab(n):
    """the tests' tiny vocabulary, then plain tokens " tok261", " tok262", ... up to n (all made of
    the byte alphabet's characters, all distinct)"""
    tokens, types, merges = fm.tiny_vocab()
    first = len(tokens)
    tokens = tokens + ["Ġtok%d" % i for i in range(first, n)]
    types = types + [1] * (n - first)
    return tokens, types, merges


def random_weights(c, seed):
    """Hugging Face names -> float32 tensors: matrices and biases N(0, STD), norms 1 + N(0, STD)"""
    g = torch.Generator().manual_seed(seed)
    C, H, V, HS = c["dim"], c["hidden"], c["vocab"], c["head_dim"]
    QD, KVD = c["heads"] * HS, c["kv_heads"] * HS

    def n(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float32) * STD

    w = {"model.embed_tokens.weight": n(V, C), "model.norm.weight": 1 + n(C)}
    for l in range(c["layers"]):
        p = f"model.layers.{l}."
        w[p + "input_layernorm.weight"] = 1 + n(C)
        w[p + "post_attention_layernorm.weight"] = 1 + n(C)
        w[p + "self_attn.q_proj.weight"] = n(QD, C)
        w[p + "self_attn.k_proj.weight"] = n(KVD, C)
        w[p + "self_attn.v_proj.weight"] = n(KVD, C)
        w[p + "self_attn.o_proj.weight"] = n(C, QD)
        if c["bias"]:
            w[p + "self_attn.q_proj.bias"] = n(QD)
            w[p + "self_attn.k_proj.bias"] = n(KVD)
            w[p + "self_attn.v_proj.bias"] = n(KVD)
        w[p + "mlp.gate_proj.weight"] = n(H, C)
        w[p + "mlp.up_proj.weight"] = n(H, C)
        w[p + "mlp.down_proj.weight"] = n(C, H)
    return w


def write_prompt(path, ids):
    with open(path + ".tmp", "w") as f:
        f.write(" ".join(str(t) for t in ids) + "\n")
    os.replace(path + ".tmp", path)


def main(argv):
    if len(argv) < 3 or argv[2] not in SHAPES:
        sys.exit("usage: llamacpp_models.py DIR {%s} [F32|F16|BF16 ...]" % "|".join(SHAPES))
    root, shape = argv[1], argv[2]
    types = argv[3:] or ["F32", "F16", "BF16"]
    for t in types:
        if t not in ("F32", "F16", "BF16"):
            sys.exit("llamacpp_models.py: unknown type %s (F32, F16, BF16)" % t)
    os.makedirs(root, exist_ok=True)
    c = dict(fm.BASE)
    c.update(SHAPES[shape], max_pos=MAX_POS, qk_norm=False, llama3=None)
    # prompts: ids past the special tokens (258..260 in the tests' vocabulary)
    g = torch.Generator().manual_seed(18)
    for n in (8, 512):
        write_prompt(os.path.join(root, "%s.prompt%d.txt" % (shape, n)),
                     torch.randint(261, c["vocab"], (n,), generator=g).tolist())
    todo = [t for t in types if not os.path.exists(os.path.join(root, "%s-%s.gguf" % (shape, t)))]
    if not todo:
        return
    w = random_weights(c, 135 if shape.startswith("smollm2") else 500)
    vocab = padded_vocab(c["vocab"])
    for t in todo:
        path = os.path.join(root, "%s-%s.gguf" % (shape, t))
        fm.write_gguf(path + ".tmp", c, w, t, vocab=vocab, keep_stored=False)
        os.replace(path + ".tmp", path)
        print("wrote %s (%.0f MB)" % (path, os.path.getsize(path) / 1e6))


if __name__ == "__main__":
    main(sys.argv)
