"""formats_models.py — random-weight tiny models as Hugging Face folders and GGUF files, written
by the formats' specs (no safetensors or gguf package), and an independent forward written from
Hugging Face's equations (rotate_half RoPE on unpermuted weights, as in transformers'
modeling_llama / qwen2 / qwen3), in float64. tests/test_formats.c drives it.

usage: /usr/bin/python3 tests/formats_models.py batch FILE   the commands below, one a line
       /usr/bin/python3 tests/formats_models.py gen DIR
         writes DIR/CASE/{hf/, model.gguf, ids.txt, ref_logits.f32} for every case, and DIR/cases.txt
       /usr/bin/python3 tests/formats_models.py logits HFDIR IDS OUT   forward of a folder (f64 -> f32 file)
       /usr/bin/python3 tests/formats_models.py peft BASE ADAPTER IDS OUT   forward of BASE + a PEFT adapter
Exit code 77 when numpy / torch are not importable (the C test reports a skip).
"""
import json
import math
import os
import shutil
import struct
import sys

try:
    import numpy as np
    import torch
except ImportError:
    sys.exit(77)

# ----------------------------------------------------------------------------
# the cases: each architecture and feature (REAL_MODELS.md §A1), tiny

BASE = dict(dim=64, hidden=96, layers=2, heads=4, kv_heads=2, head_dim=16, vocab=261, theta=10000.0,
            eps=1e-5, tied=False, bias=False, qk_norm=False, llama3=None, arch="llama", max_pos=128)
CASES = {
    "llama_gqa_f32": dict(dtype="F32"),
    "llama_tied_bf16": dict(tied=True, dtype="BF16", theta=100000.0),
    "llama_f16": dict(dtype="F16"),
    "llama3_scaling_f32": dict(dtype="F32", theta=500000.0, llama3=dict(factor=8.0, low=1.0, high=4.0, orig=64)),
    "qwen2_bias_f32": dict(arch="qwen2", bias=True, tied=True, theta=1e6, eps=1e-6, dtype="F32"),
    "qwen3_qknorm_f32": dict(arch="qwen3", qk_norm=True, head_dim=32, theta=1e6, eps=1e-6, dtype="F32"),
    "llama_q8_0": dict(dtype="F32", gguf_dtype="Q8_0"),
}
N_IDS = 12


def case_config(name):
    c = dict(BASE)
    c.update(CASES[name])
    c.setdefault("gguf_dtype", c["dtype"])
    return c


def random_weights(c, seed):
    g = torch.Generator().manual_seed(seed)
    C, H, L, V, HS = c["dim"], c["hidden"], c["layers"], c["vocab"], c["head_dim"]
    QD, KVD = c["heads"] * HS, c["kv_heads"] * HS

    def n(*shape, std=0.02):
        return (torch.randn(*shape, generator=g, dtype=torch.float64) * std)

    def norm(k):
        return 1.0 + n(k, std=0.2)

    w = {"model.embed_tokens.weight": n(V, C), "model.norm.weight": norm(C)}
    for l in range(L):
        p = f"model.layers.{l}."
        w[p + "input_layernorm.weight"] = norm(C)
        w[p + "post_attention_layernorm.weight"] = norm(C)
        # larger q/k maps, so that attention (and RoPE) matters: a wrong row order must show
        w[p + "self_attn.q_proj.weight"] = n(QD, C, std=0.2)
        w[p + "self_attn.k_proj.weight"] = n(KVD, C, std=0.2)
        w[p + "self_attn.v_proj.weight"] = n(KVD, C, std=0.1)
        w[p + "self_attn.o_proj.weight"] = n(C, QD, std=0.1)
        if c["bias"]:
            w[p + "self_attn.q_proj.bias"] = n(QD, std=0.5)
            w[p + "self_attn.k_proj.bias"] = n(KVD, std=0.5)
            w[p + "self_attn.v_proj.bias"] = n(KVD, std=0.1)
        if c["qk_norm"]:
            w[p + "self_attn.q_norm.weight"] = norm(HS) + n(HS, std=0.5)
            w[p + "self_attn.k_norm.weight"] = norm(HS) + n(HS, std=0.5)
        w[p + "mlp.gate_proj.weight"] = n(H, C, std=0.1)
        w[p + "mlp.up_proj.weight"] = n(H, C, std=0.1)
        w[p + "mlp.down_proj.weight"] = n(C, H, std=0.1)
    if not c["tied"]:
        w["lm_head.weight"] = n(V, C, std=0.1)
    # the final norm scales the logits up a little: clearer greedy choices
    w["model.norm.weight"] *= 4.0
    return w


# ----------------------------------------------------------------------------
# dtypes

def to_dtype(t, dtype):
    """the bytes of tensor t (f64) in dtype, and t as it reads back (f64)"""
    if dtype == "F32":
        a = t.to(torch.float32)
        return a.numpy().tobytes(), a.to(torch.float64)
    if dtype == "F16":
        a = t.to(torch.float16)
        return a.numpy().tobytes(), a.to(torch.float64)
    if dtype == "BF16":
        a = t.to(torch.bfloat16)
        return a.view(torch.int16).numpy().tobytes(), a.to(torch.float64)
    if dtype == "Q8_0":
        x = t.to(torch.float32).numpy().reshape(-1, 32)
        amax = np.abs(x).max(axis=1)
        d = (amax / np.float32(127.0)).astype(np.float32)
        inv = np.where(d != 0, np.float32(1.0) / np.where(d != 0, d, 1), 0).astype(np.float32)
        v = x * inv[:, None]
        q = (np.sign(v) * np.floor(np.abs(v) + np.float32(0.5))).astype(np.int8)  # roundf: ties away from 0
        dh = d.astype(np.float16)
        out = bytearray()
        for b in range(x.shape[0]):
            out += dh[b].tobytes() + q[b].tobytes()
        back = (q.astype(np.float64) * dh.astype(np.float64)[:, None]).reshape(t.shape)
        return bytes(out), torch.tensor(back)
    raise ValueError(dtype)


DTYPE_BYTES = {"F32": 4, "F16": 2, "BF16": 2}


# ----------------------------------------------------------------------------
# safetensors (REAL_MODELS.md §A2), laid out as mosr's writer lays it out (sorted by alignment,
# then name; compact JSON; spaces to a multiple of 8), so that round trips can be byte-compared

def write_safetensors(path, tensors):
    """tensors: name -> (dtype, shape, bytes)"""
    names = sorted(tensors, key=lambda k: (-DTYPE_BYTES[tensors[k][0]], k))
    header = '{"__metadata__":{"format":"pt"}'
    off = 0
    for k in names:
        dt, shape, b = tensors[k]
        header += ',"%s":{"dtype":"%s","shape":[%s],"data_offsets":[%d,%d]}' % (
            k, dt, ",".join(str(s) for s in shape), off, off + len(b))
        off += len(b)
    header += "}"
    header += " " * ((8 - len(header) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(header)))
        f.write(header.encode())
        for k in names:
            f.write(tensors[k][2])


def read_safetensors(path):
    with open(path, "rb") as f:
        buf = f.read()
    (n,) = struct.unpack_from("<Q", buf, 0)
    header = json.loads(buf[8:8 + n])
    out = {}
    for k, v in header.items():
        if k == "__metadata__":
            continue
        b, e = v["data_offsets"]
        raw = buf[8 + n + b:8 + n + e]
        if v["dtype"] == "F32":
            a = torch.tensor(np.frombuffer(raw, dtype="<f4").copy())
        elif v["dtype"] == "F16":
            a = torch.tensor(np.frombuffer(raw, dtype="<f2").copy())
        elif v["dtype"] == "BF16":
            a = torch.tensor(np.frombuffer(raw, dtype="<i2").copy()).view(torch.bfloat16)
        else:
            raise ValueError(v["dtype"])
        out[k] = a.to(torch.float64).reshape(v["shape"])
    return out


def hf_config(c):
    arch = {"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM", "qwen3": "Qwen3ForCausalLM"}[c["arch"]]
    cfg = {"architectures": [arch], "model_type": c["arch"], "hidden_size": c["dim"],
           "intermediate_size": c["hidden"], "num_hidden_layers": c["layers"],
           "num_attention_heads": c["heads"], "num_key_value_heads": c["kv_heads"],
           "vocab_size": c["vocab"], "max_position_embeddings": c["max_pos"], "rope_theta": c["theta"],
           "rms_norm_eps": c["eps"], "tie_word_embeddings": c["tied"], "hidden_act": "silu",
           "torch_dtype": {"F32": "float32", "F16": "float16", "BF16": "bfloat16"}[c["dtype"]]}
    if c["head_dim"] != c["dim"] // c["heads"]:
        cfg["head_dim"] = c["head_dim"]
    if c["llama3"]:
        s = c["llama3"]
        cfg["rope_scaling"] = {"rope_type": "llama3", "factor": s["factor"], "low_freq_factor": s["low"],
                               "high_freq_factor": s["high"], "original_max_position_embeddings": s["orig"]}
    return cfg


def config_from_hf(cfg):
    c = dict(BASE)
    c.update(arch=cfg["model_type"], dim=cfg["hidden_size"], hidden=cfg["intermediate_size"],
             layers=cfg["num_hidden_layers"], heads=cfg["num_attention_heads"],
             kv_heads=cfg.get("num_key_value_heads", cfg["num_attention_heads"]), vocab=cfg["vocab_size"],
             theta=cfg.get("rope_theta", 10000.0), eps=cfg.get("rms_norm_eps", 1e-6),
             tied=cfg.get("tie_word_embeddings", False))
    c["head_dim"] = cfg.get("head_dim") or c["dim"] // c["heads"]
    c["bias"] = c["arch"] == "qwen2"
    c["qk_norm"] = c["arch"] == "qwen3"
    rs = cfg.get("rope_scaling")
    c["llama3"] = None
    if rs and rs.get("rope_type", rs.get("type")) == "llama3":
        c["llama3"] = dict(factor=rs["factor"], low=rs["low_freq_factor"], high=rs["high_freq_factor"],
                           orig=rs["original_max_position_embeddings"])
    return c


# ----------------------------------------------------------------------------
# GGUF v3 (REAL_MODELS.md §A3; ggml docs/gguf.md)

GGUF_U32, GGUF_I32, GGUF_F32, GGUF_BOOL, GGUF_STRING, GGUF_ARRAY = 4, 5, 6, 7, 8, 9
GGML = {"F32": 0, "F16": 1, "Q8_0": 8, "BF16": 30}


def gguf_str(s):
    b = s.encode()
    return struct.pack("<Q", len(b)) + b


def gguf_kv(key, typ, value):
    out = gguf_str(key) + struct.pack("<I", typ)
    if typ == GGUF_U32:
        out += struct.pack("<I", value)
    elif typ == GGUF_I32:
        out += struct.pack("<i", value)
    elif typ == GGUF_F32:
        out += struct.pack("<f", value)
    elif typ == GGUF_BOOL:
        out += struct.pack("<B", 1 if value else 0)
    elif typ == GGUF_STRING:
        out += gguf_str(value)
    elif typ == GGUF_ARRAY:
        et, items = value
        out += struct.pack("<IQ", et, len(items))
        for it in items:
            if et == GGUF_STRING:
                out += gguf_str(it)
            elif et == GGUF_I32:
                out += struct.pack("<i", it)
            elif et == GGUF_F32:
                out += struct.pack("<f", it)
    return out


def byte_alphabet():
    # GPT-2's bytes_to_unicode (REAL_MODELS.md §A4)
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    m = dict(zip(bs, cs))
    return [chr(m[b]) for b in range(256)]


def tiny_vocab():
    """a byte-level BPE vocabulary of 261 tokens: 256 bytes, 2 merges, 3 special tokens"""
    tokens = byte_alphabet() + ["Ġt", "he", "<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    types = [1] * 258 + [3, 3, 3]
    merges = ["Ġ t", "h e"]
    return tokens, types, merges


def permute_to_pairs(w, n_head):
    # llama.cpp's converter for arch llama: rows of each head from halves to interleaved pairs
    shape = w.shape
    return w.reshape(n_head, 2, shape[0] // n_head // 2, *shape[1:]).transpose(1, 2).reshape(shape)


def llama3_divisors(c):
    s = c["llama3"]
    half = c["head_dim"] // 2
    out = []
    lo_wave, hi_wave = s["orig"] / s["low"], s["orig"] / s["high"]
    for i in range(half):
        inv = c["theta"] ** (-2.0 * i / c["head_dim"])
        wave = 2 * math.pi / inv
        if wave < hi_wave:
            out.append(1.0)
        elif wave > lo_wave:
            out.append(s["factor"])
        else:
            sm = (s["orig"] / wave - s["low"]) / (s["high"] - s["low"])
            out.append(1.0 / ((1 - sm) / s["factor"] + sm))
    return out


GGUF_NAMES = [("input_layernorm.weight", "attn_norm.weight"), ("self_attn.q_proj.weight", "attn_q.weight"),
              ("self_attn.k_proj.weight", "attn_k.weight"), ("self_attn.v_proj.weight", "attn_v.weight"),
              ("self_attn.q_proj.bias", "attn_q.bias"), ("self_attn.k_proj.bias", "attn_k.bias"),
              ("self_attn.v_proj.bias", "attn_v.bias"), ("self_attn.q_norm.weight", "attn_q_norm.weight"),
              ("self_attn.k_norm.weight", "attn_k_norm.weight"), ("self_attn.o_proj.weight", "attn_output.weight"),
              ("post_attention_layernorm.weight", "ffn_norm.weight"), ("mlp.gate_proj.weight", "ffn_gate.weight"),
              ("mlp.up_proj.weight", "ffn_up.weight"), ("mlp.down_proj.weight", "ffn_down.weight")]


def write_gguf(path, c, w, dtype, permute_qk=None, vocab=None, keep_stored=True):
    """w: HF name -> f64 tensor; 2-D weights in dtype, vectors F32. Returns the weights as stored
    (dequantized, HF order) for the reference forward. permute_qk: None = by arch (llama: yes).
    vocab: (tokens, types, merges) instead of tiny_vocab() (ids 259 and 260 stay BOS and EOS);
    keep_stored=False returns {} and keeps no f64 copy (large models: bench/llamacpp_models.py)."""
    arch = c["arch"]
    if permute_qk is None:
        permute_qk = arch == "llama"
    tokens, types, merges = vocab if vocab else tiny_vocab()
    kvs = [("general.architecture", GGUF_STRING, arch), ("general.name", GGUF_STRING, "tiny"),
           ("general.alignment", GGUF_U32, 32),
           (arch + ".context_length", GGUF_U32, c["max_pos"]), (arch + ".embedding_length", GGUF_U32, c["dim"]),
           (arch + ".block_count", GGUF_U32, c["layers"]), (arch + ".feed_forward_length", GGUF_U32, c["hidden"]),
           (arch + ".attention.head_count", GGUF_U32, c["heads"]),
           (arch + ".attention.head_count_kv", GGUF_U32, c["kv_heads"]),
           (arch + ".attention.key_length", GGUF_U32, c["head_dim"]),
           (arch + ".attention.value_length", GGUF_U32, c["head_dim"]),
           (arch + ".rope.dimension_count", GGUF_U32, c["head_dim"]),
           (arch + ".rope.freq_base", GGUF_F32, c["theta"]),
           (arch + ".attention.layer_norm_rms_epsilon", GGUF_F32, c["eps"]),
           (arch + ".vocab_size", GGUF_U32, c["vocab"]),
           ("tokenizer.ggml.model", GGUF_STRING, "gpt2"), ("tokenizer.ggml.pre", GGUF_STRING, "gpt-2"),
           ("tokenizer.ggml.tokens", GGUF_ARRAY, (GGUF_STRING, tokens)),
           ("tokenizer.ggml.token_type", GGUF_ARRAY, (GGUF_I32, types)),
           ("tokenizer.ggml.merges", GGUF_ARRAY, (GGUF_STRING, merges)),
           ("tokenizer.ggml.bos_token_id", GGUF_U32, 259), ("tokenizer.ggml.eos_token_id", GGUF_U32, 260),
           ("tokenizer.ggml.add_bos_token", GGUF_BOOL, False),
           ("tokenizer.chat_template", GGUF_STRING,
            "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
            "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")]
    stored = {}
    tensors = []  # (name, ggml type, ne, bytes)

    def add(gname, hname, t, as_dtype, heads=0):
        data = t
        if heads and permute_qk:
            data = permute_to_pairs(t, heads)
        b, back = to_dtype(data, as_dtype)
        tensors.append((gname, GGML[as_dtype], list(reversed(t.shape)), b))
        if not keep_stored:
            return
        if heads and permute_qk:  # back to HF order for the reference
            n = back.shape[0] // heads // 2
            back = back.reshape(heads, n, 2, *back.shape[1:]).transpose(1, 2).reshape(back.shape)
        stored[hname] = back

    add("token_embd.weight", "model.embed_tokens.weight", w["model.embed_tokens.weight"], dtype)
    for l in range(c["layers"]):
        for hn, gn in GGUF_NAMES:
            full = f"model.layers.{l}.{hn}"
            if full not in w:
                continue
            t = w[full]
            heads = 0
            if "q_proj" in hn:
                heads = c["heads"]
            elif "k_proj" in hn:
                heads = c["kv_heads"]
            add(f"blk.{l}.{gn}", full, t, dtype if t.dim() == 2 else "F32", heads)
    add("output_norm.weight", "model.norm.weight", w["model.norm.weight"], "F32")
    if "lm_head.weight" in w:
        add("output.weight", "lm_head.weight", w["lm_head.weight"], dtype)
    if c["llama3"]:
        d = torch.tensor(llama3_divisors(c), dtype=torch.float64)
        b, _ = to_dtype(d, "F32")
        tensors.append(("rope_freqs.weight", 0, [len(d)], b))
    out = struct.pack("<IIQQ", 0x46554747, 3, len(tensors), len(kvs))
    for k, t, v in kvs:
        out += gguf_kv(k, t, v)
    off = 0
    offsets = []
    for name, typ, ne, b in tensors:
        offsets.append(off)
        off = (off + len(b) + 31) // 32 * 32
    for (name, typ, ne, b), o in zip(tensors, offsets):
        out += gguf_str(name) + struct.pack("<I", len(ne)) + b"".join(struct.pack("<Q", x) for x in ne)
        out += struct.pack("<IQ", typ, o)
    out += b"\0" * ((32 - len(out) % 32) % 32)
    data = bytearray()
    for (name, typ, ne, b), o in zip(tensors, offsets):
        data += b"\0" * (o - len(data))
        data += b
    with open(path, "wb") as f:  # two writes: no third copy of a large model's bytes
        f.write(out)
        f.write(data)
    if c["tied"] and keep_stored:
        stored["lm_head.weight"] = stored["model.embed_tokens.weight"]
    return stored


# ----------------------------------------------------------------------------
# the reference forward, from Hugging Face's equations

def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


def inv_freqs(c):
    hs = c["head_dim"]
    inv = 1.0 / (c["theta"] ** (torch.arange(0, hs, 2, dtype=torch.float64) / hs))
    if c["llama3"]:  # transformers' _compute_llama3_parameters
        s = c["llama3"]
        lo_wave, hi_wave = s["orig"] / s["low"], s["orig"] / s["high"]
        wave = 2 * math.pi / inv
        scaled = torch.where(wave > lo_wave, inv / s["factor"], inv)
        smooth = (s["orig"] / wave - s["low"]) / (s["high"] - s["low"])
        smoothed = (1 - smooth) * scaled / s["factor"] + smooth * scaled
        medium = (wave >= hi_wave) & (wave <= lo_wave)
        inv = torch.where(medium, smoothed, scaled)
    return inv


def rmsnorm(x, w, eps):
    return x * torch.rsqrt((x * x).mean(-1, keepdim=True) + eps) * w


def forward(c, w, ids):
    T = len(ids)
    NH, NKV, HS = c["heads"], c["kv_heads"], c["head_dim"]
    x = w["model.embed_tokens.weight"][torch.tensor(ids)]
    pos = torch.arange(T, dtype=torch.float64)
    freqs = torch.outer(pos, inv_freqs(c))
    emb = torch.cat((freqs, freqs), dim=-1)
    cos, sin = emb.cos(), emb.sin()
    mask = torch.full((T, T), float("-inf"), dtype=torch.float64).triu(1)
    for l in range(c["layers"]):
        p = f"model.layers.{l}."
        h = rmsnorm(x, w[p + "input_layernorm.weight"], c["eps"])
        q = h @ w[p + "self_attn.q_proj.weight"].T
        k = h @ w[p + "self_attn.k_proj.weight"].T
        v = h @ w[p + "self_attn.v_proj.weight"].T
        if p + "self_attn.q_proj.bias" in w:
            q = q + w[p + "self_attn.q_proj.bias"]
            k = k + w[p + "self_attn.k_proj.bias"]
            v = v + w[p + "self_attn.v_proj.bias"]
        q = q.view(T, NH, HS).transpose(0, 1)
        k = k.view(T, NKV, HS).transpose(0, 1)
        v = v.view(T, NKV, HS).transpose(0, 1)
        if p + "self_attn.q_norm.weight" in w:
            q = rmsnorm(q, w[p + "self_attn.q_norm.weight"], c["eps"])
            k = rmsnorm(k, w[p + "self_attn.k_norm.weight"], c["eps"])
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k = k.repeat_interleave(NH // NKV, dim=0)
        v = v.repeat_interleave(NH // NKV, dim=0)
        att = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(HS) + mask, dim=-1)
        y = (att @ v).transpose(0, 1).reshape(T, NH * HS)
        x = x + y @ w[p + "self_attn.o_proj.weight"].T
        h = rmsnorm(x, w[p + "post_attention_layernorm.weight"], c["eps"])
        g = h @ w[p + "mlp.gate_proj.weight"].T
        u = h @ w[p + "mlp.up_proj.weight"].T
        x = x + (torch.nn.functional.silu(g) * u) @ w[p + "mlp.down_proj.weight"].T
    x = rmsnorm(x, w["model.norm.weight"], c["eps"])
    head = w.get("lm_head.weight", w["model.embed_tokens.weight"])
    return x @ head.T


def load_hf(d):
    with open(os.path.join(d, "config.json")) as f:
        c = config_from_hf(json.load(f))
    w = read_safetensors(os.path.join(d, "model.safetensors"))
    return c, w


def read_ids(path):
    with open(path) as f:
        return [int(t) for t in f.read().split()]


def write_f32(path, t):
    with open(path, "wb") as f:
        f.write(t.to(torch.float32).numpy().tobytes())


def gen(root):
    names = []
    for i, name in enumerate(CASES):
        c = case_config(name)
        d = os.path.join(root, name)
        os.makedirs(os.path.join(d, "hf"), exist_ok=True)
        w = random_weights(c, 1000 + i)
        # the folder: every tensor in the case's dtype; the reference reads what was stored
        tensors, stored = {}, {}
        for k, t in w.items():
            b, back = to_dtype(t, c["dtype"])
            tensors[k] = (c["dtype"], list(t.shape), b)
            stored[k] = back
        write_safetensors(os.path.join(d, "hf", "model.safetensors"), tensors)
        with open(os.path.join(d, "hf", "config.json"), "w") as f:
            json.dump(hf_config(c), f, indent=2)
        g_stored = write_gguf(os.path.join(d, "model.gguf"), c, stored, c["gguf_dtype"])
        g = torch.Generator().manual_seed(7 + i)
        ids = torch.randint(0, c["vocab"], (N_IDS,), generator=g).tolist()
        with open(os.path.join(d, "ids.txt"), "w") as f:
            f.write(" ".join(str(t) for t in ids) + "\n")
        write_f32(os.path.join(d, "ref_logits.f32"), forward(c, stored, ids))
        write_f32(os.path.join(d, "ref_logits_gguf.f32"), forward(c, g_stored, ids))
        names.append(name)
    with open(os.path.join(root, "cases.txt"), "w") as f:
        f.write("\n".join(names) + "\n")


def peft(base, adapter, ids, out):
    c, w = load_hf(base)
    with open(os.path.join(adapter, "adapter_config.json")) as f:
        cfg = json.load(f)
    a = read_safetensors(os.path.join(adapter, "adapter_model.safetensors"))
    scale = cfg["lora_alpha"] / cfg["r"]
    for l in cfg["layers_to_transform"]:
        for m in cfg["target_modules"]:
            parent = "self_attn" if m in ("q_proj", "k_proj", "v_proj", "o_proj") else "mlp"
            stem = f"base_model.model.model.layers.{l}.{parent}.{m}."
            W = f"model.layers.{l}.{parent}.{m}.weight"
            w[W] = w[W] + scale * (a[stem + "lora_B.weight"] @ a[stem + "lora_A.weight"])
    write_f32(out, forward(c, w, read_ids(ids)))


def folder(out, name, vocab, tokenizer_dir):
    """a random model of case `name` with `vocab` tokens as a Hugging Face folder, with the real
    tokenizer.json and tokenizer_config.json of tokenizer_dir (for the command-line tests)"""
    c = case_config(name)
    c["vocab"] = vocab
    os.makedirs(out, exist_ok=True)
    w = random_weights(c, 77)
    tensors = {}
    for k, t in w.items():
        b, _ = to_dtype(t, c["dtype"])
        tensors[k] = (c["dtype"], list(t.shape), b)
    write_safetensors(os.path.join(out, "model.safetensors"), tensors)
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(hf_config(c), f, indent=2)
    for fn in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copyfile(os.path.join(tokenizer_dir, fn), os.path.join(out, fn))


def run(argv):
    cmd = argv[0]
    if cmd == "folder":
        folder(argv[1], argv[2], int(argv[3]), argv[4])
    elif cmd == "gen":
        gen(argv[1])
    elif cmd == "logits":
        c, w = load_hf(argv[1])
        write_f32(argv[3], forward(c, w, read_ids(argv[2])))
    elif cmd == "peft":
        peft(argv[1], argv[2], argv[3], argv[4])
    else:
        sys.exit("unknown command " + cmd)


if __name__ == "__main__":
    if sys.argv[1] == "batch":  # one command a line: one Python start for many
        with open(sys.argv[2]) as f:
            for line in f:
                if line.strip():
                    run(line.split())
        sys.exit(0)
    run(sys.argv[1:])
