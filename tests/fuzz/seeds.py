#!/usr/bin/env python3
# seeds.py — writes the seed corpora of the fuzz harnesses: tests/fuzz/<harness>/seeds/, a few
# valid and a few broken inputs each. Run from anywhere; the files are committed, so this only
# needs rerunning when a format changes.
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def put(harness, name, data):
    d = os.path.join(HERE, harness, "seeds")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def checkpoint(dim, hidden, layers, heads, kv, vocab, seq, shared, version):
    hs = dim // heads
    sizes = [layers * dim, layers * dim, dim, vocab * dim, layers * dim * dim, layers * kv * hs * dim,
             layers * kv * hs * dim, layers * dim * dim, layers * hidden * dim, layers * dim * hidden,
             layers * hidden * dim]
    floats = sum(sizes) + (0 if shared else vocab * dim)
    body = struct.pack("<%df" % floats, *[0.01 * ((i * 7) % 13 - 6) for i in range(floats)])
    if version == 1:
        head = struct.pack("<Ii7iB", 0x616B3432, 1, dim, hidden, layers, heads, kv, vocab, seq, shared)
        head += b"\0" * (256 - len(head))
    else:
        head = struct.pack("<7i", dim, hidden, layers, heads, kv, vocab if shared else -vocab, seq)
        body += b"\0" * (seq * (hs // 2) * 2 * 4)  # the two RoPE tables (cos, sin), skipped
    return head + body


# checkpoint: whole files
v1 = checkpoint(8, 16, 1, 2, 1, 16, 8, 0, 1)
v0 = checkpoint(8, 16, 2, 2, 2, 16, 4, 1, 0)
put("checkpoint", "v1_tiny.bin", v1)
put("checkpoint", "v1_shared.bin", checkpoint(4, 8, 1, 1, 1, 8, 4, 1, 1))
put("checkpoint", "v0_tiny.bin", v0)
put("checkpoint", "v0_unshared.bin", checkpoint(4, 8, 1, 2, 1, 8, 2, 0, 0))
put("checkpoint", "v1_truncated.bin", v1[:-5])
put("checkpoint", "v1_extra.bin", v1 + b"\0\0\0\0")
put("checkpoint", "v1_version2.bin", v1[:4] + struct.pack("<i", 2) + v1[8:])
put("checkpoint", "v1_nan.bin", v1[:256] + struct.pack("<f", float("nan")) + v1[260:])
put("checkpoint", "v0_bad_heads.bin", struct.pack("<7i", 8, 16, 1, 3, 1, 16, 8))
put("checkpoint", "empty.bin", b"")

# checkpoint_struct: flags, 7 field bytes, delta, body pattern
put("checkpoint_struct", "v1_small", bytes([1, 7, 15, 0, 1, 0, 15, 7, 0]) + struct.pack("<4f", 0.1, -0.2, 0.3, 0.0))
put("checkpoint_struct", "v0_shared", bytes([2, 7, 15, 1, 1, 0, 31, 3, 0]))
put("checkpoint_struct", "v1_off_by_4", bytes([5, 3, 7, 0, 0, 0, 9, 3, 4]))
put("checkpoint_struct", "v1_version7", bytes([0x71, 3, 7, 0, 0, 0, 9, 3, 0]))
put("checkpoint_struct", "v0_int_min", bytes([8, 3, 7, 0, 0, 0, 9, 3, 0]))
put("checkpoint_struct", "v1_zero_dim", bytes([1, 210, 7, 0, 0, 0, 9, 3, 0]))

# tokenizer: tokenizer.bin
def tokenizer(tokens, max_len=None):
    max_len = max(len(t) for _, t in tokens) if max_len is None else max_len
    out = struct.pack("<I", max_len)
    for score, t in tokens:
        out += struct.pack("<fi", score, len(t)) + t
    return out

base = [(0.0, b"<unk>"), (0.0, b"\n<s>\n"), (0.0, b"\n</s>\n")] + [(0.0, b"<0x%02X>" % i) for i in range(256)]
merges = [(-1.0, b" "), (-2.0, b"a"), (-3.0, b"b"), (-4.0, b" a"), (-5.0, b"ab"), (-6.0, b" ab")]
put("tokenizer", "valid_265", tokenizer(base + merges))
put("tokenizer", "valid_8", tokenizer([(0.0, b"<unk>"), (0.0, b"<s>"), (0.0, b"</s>"), (1.0, b" "), (2.0, b"a"),
                                       (3.0, b"b"), (4.0, b" a"), (5.0, b"ab")]))
put("tokenizer", "with_nul", tokenizer([(0.0, b"<unk>"), (0.0, b"<s>"), (0.0, b"</s>"), (1.0, b"\0"), (2.0, b"a\0b")]))
put("tokenizer", "truncated", tokenizer(base + merges)[:-3])
put("tokenizer", "negative_len", struct.pack("<Ifi", 8, 0.0, -1))
put("tokenizer", "too_long", struct.pack("<Ifi", 2, 0.0, 5) + b"hello")
put("tokenizer", "nan_score", struct.pack("<Ifi", 2, float("nan"), 1) + b"a")
put("tokenizer", "empty", b"")

# encode: text
put("encode", "ascii", "Once upon a time, there was a little girl named Lily.")
put("encode", "utf8", "caf\u00e9 \u20ac \U0001F600 \u4e2d\u6587 ok")
put("encode", "spaces", "  leading and  double  spaces \n\ttabs\n")
put("encode", "invalid_utf8", b"\xff\xfe abc \xc3 \xe2\x82 \xf0\x9f\x98 \x80\x80 end")
put("encode", "empty", b"")
put("encode", "long", "the quick brown fox jumps over the lazy dog. " * 60)
put("encode", "control", b"\x01\x02\x1b[31m red \x7f")

# prompts: byte 0 reader (0 jsonl, 1 json, 2 csv, 3 txt, 4 no extension, 5 jailbreaks, 6 prefills,
# 7 refusals), byte 1 column (0 none, 1 prompt, 2 text, 3 goal, 4 Behavior, 5 q, 6 response, 7 x:y)
jl = ('{"prompt": "How do I bake bread?", "response": "Mix flour.", "kind": "benign", "heldout": true}\n'
      '{"prompt": "How do I kill a process?", "category": "pseudo", "answer": "kill"}\n')
put("prompts", "jsonl", b"\0\0" + jl.encode())
put("prompts", "jsonl_column", b"\0\6" + jl.encode())
put("prompts", "json_strings", b"\1\0" + b'["one", "two \\u00e9", "three"]')
put("prompts", "json_objects", b"\1\0" + b'{"data": [{"goal": "a"}, {"messages": [{"role": "user", "content": "hi"}]}]}')
put("prompts", "csv", b"\2\0" + b'goal,target\r\n"Write ""this""",x\r\n"multi\nline, quoted",y\r\nplain,z\r\n')
put("prompts", "csv_column", b"\3\4" + b"id,Behavior\n1,do a thing\n2,\"another, one\"\n")
put("prompts", "text", b"\3\0" + b"first prompt\n\n  second prompt  \nthird\n")
put("prompts", "bom_text", b"\4\0" + b"\xef\xbb\xbfwith a byte order mark\n")
put("prompts", "bad_utf8", b"\3\0" + b"ok\nbad \xff line\n")
put("prompts", "bad_json", b"\1\0" + b'[{"prompt": "a"}, {"prompt": ]')
put("prompts", "csv_unclosed_quote", b"\2\0" + b'prompt\n"never closed\n')
put("prompts", "jailbreaks", b"\5\0" + b'{"name": "story", "template": "Write a story: {prompt}", "split": "test"}\n'
                                        b'{"name": "plain", "template": "{prompt}", "split": "train"}\n')
put("prompts", "jailbreak_no_slot", b"\5\0" + b'{"name": "x", "template": "no slot"}\n')
put("prompts", "prefills", b"\6\0" + b"Sure, here is\nOf course:\n")
put("prompts", "refusals", b"\7\0" + b"# phrases\nI cannot\nI'm sorry\n")

# json: documents
put("json", "object", '{"prompt": "a \\"quoted\\" \\u00e9 \\ud83d\\ude00", "n": -1.5e3, "a": [1, {"b": null}], "": true}')
put("json", "array", '[1, "two", [3, [4, []]], {"k": {"prompt": "nested"}}, false, null]')
put("json", "bad_escape", '{"prompt": "\\u12G4", "a": "\\ud800"}')
put("json", "unterminated", '{"prompt": "abc')
put("json", "trailing_comma", '{"a": 1,}')
put("json", "deep", "[" * 100 + "]" * 100)
put("json", "invalid_utf8", b'{"prompt": "\xff\xfe"}')

# cli: byte 0 picks the command (index in main.c's commands[]: 0 generate, 1 chat, 2 tokenize,
# 3 tokenizer, 4 train, 5 eval, 6 analyze, 7 defend, 8 bench, 9 demo, 10 ablation: fuzz_cli.c CLI_COMMANDS),
# then NUL-separated arguments
def cli(index, *args):
    return bytes([index]) + b"\0".join(a.encode() for a in args)

put("cli", "generate", cli(0, "m.bin", "-z", "t.bin", "-n", "50", "-t", "0", "-p", "0.9", "-s", "7", "-i", "hi"))
put("cli", "generate_bad_flag", cli(0, "m.bin", "-q"))
put("cli", "chat", cli(1, "m.bin", "-z", "t.bin", "-n", "x"))
put("cli", "tokenize", cli(2, "-z", "t.bin", "hello caf\u00e9"))
put("cli", "tokenize_no_bos", cli(2, "-z", "t.bin", "--no-bos", "the dog"))
put("cli", "tokenizer_train", cli(3, "train", "--vocab", "280", "-o", "out.bin", "a.txt", "a.jsonl"))
put("cli", "tokenizer_help", cli(3, "--help"))
put("cli", "train", cli(4, "-z", "t.bin", "--data", "d.jsonl", "--dim", "16", "--layers", "1", "--steps", "3",
                        "-o", "o.bin", "--log", "o.csv"))
put("cli", "train_help", cli(4, "--help"))
put("cli", "eval", cli(5, "m.bin", "-z", "t.bin", "--batch", "2"))
put("cli", "analyze", cli(6, "m.bin", "-z", "t.bin", "--layer", "1"))
put("cli", "defend", cli(7, "m.bin", "-z", "t.bin", "--method", "rr", "-o", "o.bin", "--targets", "0,1",
                         "--steps", "2", "--oalw-k", "3"))
put("cli", "defend_bad_method", cli(7, "--method", "xx"))
put("cli", "bench", cli(8, "--dim", "16", "--layers", "1", "--steps", "2"))
put("cli", "bench_help", cli(8, "--help"))
put("cli", "empty", b"\0")
put("cli", "demo", cli(9, "--quick", "--out", "o", "--steps", "2", "--eval-limit", "3"))
put("cli", "ablation", cli(10, "--seeds", "1", "--no-sweep", "--out", "o", "--model", "m.bin"))

# tokenizer_json: tokenizer.json files, small ones of each kind and broken ones
import json
byte_chars = []
for b in range(256):
    if 33 <= b <= 126 or 0xA1 <= b <= 0xAC or b >= 0xAE:
        byte_chars.append(chr(b))
    else:
        byte_chars.append(chr(0x100 + sum(1 for k in range(b) if not (33 <= k <= 126 or 0xA1 <= k <= 0xAC or k >= 0xAE))))
bl_vocab = {c: i for i, c in enumerate(byte_chars)}
bl_vocab.update({"\u0120a": 256, "ab": 257, "\u0120ab": 258})
bl = {"version": "1.0", "added_tokens": [{"id": 259, "content": "<|end|>", "special": True, "lstrip": False,
      "rstrip": False, "normalized": False, "single_word": False}], "normalizer": {"type": "NFC"},
      "pre_tokenizer": {"type": "Sequence", "pretokenizers": [{"type": "Split", "pattern": {"Regex":
      "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},
      "behavior": "Isolated", "invert": False}, {"type": "ByteLevel", "add_prefix_space": False, "use_regex": False}]},
      "post_processor": None, "decoder": {"type": "ByteLevel"},
      "model": {"type": "BPE", "ignore_merges": True, "vocab": bl_vocab, "merges": ["\u0120 a", ["a", "b"], "\u0120a b"]}}
put("tokenizer_json", "byte_level.json", json.dumps(bl))
smol = dict(bl, normalizer=None, pre_tokenizer={"type": "Sequence", "pretokenizers": [
    {"type": "Digits", "individual_digits": True}, {"type": "ByteLevel", "add_prefix_space": True, "use_regex": True}]})
put("tokenizer_json", "smollm.json", json.dumps(smol))
sp_vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, "\u2581": 3, "a": 4, "b": 5, "\u2581a": 6, "ab": 7, "\u2581ab": 8}
sp_vocab.update({"<0x%02X>" % b: 9 + b for b in range(256)})
sp = {"version": "1.0", "added_tokens": [{"id": i, "content": c, "special": True, "lstrip": i == 2, "rstrip": i == 2,
      "normalized": False, "single_word": False} for i, c in [(0, "<unk>"), (1, "<s>"), (2, "</s>")]],
      "normalizer": {"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": "\u2581"},
      {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}]}, "pre_tokenizer": None,
      "post_processor": {"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
      {"Sequence": {"id": "A", "type_id": 0}}], "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}},
      "decoder": None, "model": {"type": "BPE", "unk_token": "<unk>", "fuse_unk": True, "byte_fallback": True,
      "vocab": sp_vocab, "merges": ["\u2581 a", "a b", "\u2581a b"]}}
put("tokenizer_json", "sentencepiece.json", json.dumps(sp))
meta = dict(sp, normalizer=None, pre_tokenizer={"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "first", "split": True})
put("tokenizer_json", "metaspace.json", json.dumps(meta))
put("tokenizer_json", "no_model.json", '{"version": "1.0"}')
put("tokenizer_json", "truncated.json", json.dumps(bl)[:300])
put("tokenizer_json", "unknown_pre.json", json.dumps(dict(bl, pre_tokenizer={"type": "BertPreTokenizer"})))
put("tokenizer_json", "huge_id.json", json.dumps(dict(sp, added_tokens=[{"id": 2 ** 40, "content": "x"}])))

# safetensors: the tied Llama of fuzz_safetensors.c (dim 8, hidden 16, 1 layer, 2 heads, 1 KV head,
# vocabulary 4), laid out as mosr writes it
import json as _json


def safetensors(tensors):
    names = sorted(tensors)
    header, off, body = {"__metadata__": {"format": "pt"}}, 0, b""
    for k in names:
        dtype, shape, data = tensors[k]
        header[k] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + len(data)]}
        off += len(data)
        body += data
    h = _json.dumps(header, separators=(",", ":"))
    h += " " * ((8 - len(h) % 8) % 8)
    return struct.pack("<Q", len(h)) + h.encode() + body


def floats(n, dtype="F32", v=0.05):
    if dtype == "F32":
        return struct.pack("<%df" % n, *[v * ((i % 7) - 3) for i in range(n)])
    return struct.pack("<%dH" % n, *[0x3c00 if dtype == "F16" else 0x3f80] * n)  # 1.0


def tiny_llama(dtype="F32"):
    t = {"model.embed_tokens.weight": (dtype, [4, 8], floats(32, dtype)), "model.norm.weight": (dtype, [8], floats(8, dtype, 1))}
    p = "model.layers.0."
    for name, shape in [("input_layernorm.weight", [8]), ("post_attention_layernorm.weight", [8]),
                        ("self_attn.q_proj.weight", [8, 8]), ("self_attn.k_proj.weight", [4, 8]),
                        ("self_attn.v_proj.weight", [4, 8]), ("self_attn.o_proj.weight", [8, 8]),
                        ("mlp.gate_proj.weight", [16, 8]), ("mlp.up_proj.weight", [16, 8]),
                        ("mlp.down_proj.weight", [8, 16])]:
        n = 1
        for s in shape:
            n *= s
        t[p + name] = (dtype, shape, floats(n, dtype))
    return t


st = safetensors(tiny_llama())
put("safetensors", "tiny_f32.safetensors", st)
put("safetensors", "tiny_bf16.safetensors", safetensors(tiny_llama("BF16")))
put("safetensors", "tiny_f16.safetensors", safetensors(tiny_llama("F16")))
put("safetensors", "truncated.safetensors", st[:-9])
put("safetensors", "header_only.safetensors", st[:200])
put("safetensors", "huge_length.safetensors", struct.pack("<Q", 1 << 60) + st[8:])


# GGUF: the same model as arch llama, every metadata type (a nested array too), alignment 32
def gstr(s):
    b = s.encode()
    return struct.pack("<Q", len(b)) + b


def gguf(tensors, extra_kv=b"", n_extra=0):
    kv = b""
    kvs = [("general.architecture", 8, gstr("llama")), ("llama.embedding_length", 4, struct.pack("<I", 8)),
           ("llama.block_count", 4, struct.pack("<I", 1)), ("llama.feed_forward_length", 4, struct.pack("<I", 16)),
           ("llama.attention.head_count", 4, struct.pack("<I", 2)), ("llama.attention.head_count_kv", 4, struct.pack("<I", 1)),
           ("llama.context_length", 10, struct.pack("<Q", 8)), ("llama.rope.freq_base", 6, struct.pack("<f", 10000.0)),
           ("llama.attention.layer_norm_rms_epsilon", 12, struct.pack("<d", 1e-5)),
           ("a.u8", 0, b"\x01"), ("a.i8", 1, b"\xff"), ("a.u16", 2, b"\x01\x00"), ("a.i16", 3, b"\xff\xff"),
           ("a.i32", 5, struct.pack("<i", -3)), ("a.bool", 7, b"\x01"), ("a.i64", 11, struct.pack("<q", -5)),
           ("tokenizer.ggml.tokens", 9, struct.pack("<IQ", 8, 4) + b"".join(gstr(s) for s in ["a", "b", "c", "d"])),
           ("a.nested", 9, struct.pack("<IQ", 9, 2) + struct.pack("<IQ", 4, 2) + struct.pack("<II", 1, 2)
            + struct.pack("<IQ", 8, 1) + gstr("x"))]
    for k, t, v in kvs:
        kv += gstr(k) + struct.pack("<I", t) + v
    infos, data, off = b"", b"", 0
    for name, typ, ne, raw in tensors:
        infos += gstr(name) + struct.pack("<I", len(ne)) + b"".join(struct.pack("<Q", x) for x in ne) + struct.pack("<IQ", typ, off)
        pad = (32 - len(raw) % 32) % 32
        data += raw + b"\0" * pad
        off += len(raw) + pad
    head = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(kvs) + n_extra) + kv + extra_kv + infos
    head += b"\0" * ((32 - len(head) % 32) % 32)
    return head + data


def q8_0(n):
    blocks = b""
    for b in range(n // 32):
        blocks += struct.pack("<H", 0x2000) + bytes((i * 7) % 256 for i in range(32))
    return blocks


names = [("token_embd.weight", "model.embed_tokens.weight"), ("output_norm.weight", "model.norm.weight"),
         ("blk.0.attn_norm.weight", "model.layers.0.input_layernorm.weight"),
         ("blk.0.ffn_norm.weight", "model.layers.0.post_attention_layernorm.weight"),
         ("blk.0.attn_q.weight", "model.layers.0.self_attn.q_proj.weight"),
         ("blk.0.attn_k.weight", "model.layers.0.self_attn.k_proj.weight"),
         ("blk.0.attn_v.weight", "model.layers.0.self_attn.v_proj.weight"),
         ("blk.0.attn_output.weight", "model.layers.0.self_attn.o_proj.weight"),
         ("blk.0.ffn_gate.weight", "model.layers.0.mlp.gate_proj.weight"),
         ("blk.0.ffn_up.weight", "model.layers.0.mlp.up_proj.weight"),
         ("blk.0.ffn_down.weight", "model.layers.0.mlp.down_proj.weight")]
tl = tiny_llama()
gt = [(g, 0, list(reversed(tl[h][1])), tl[h][2]) for g, h in names]
g = gguf(gt)
put("gguf", "tiny_f32.gguf", g)
put("gguf", "truncated.gguf", g[:-7])
put("gguf", "header_cut.gguf", g[:300])
gq = [(n, 8, ne, q8_0(ne[0] * ne[1])) if n == "blk.0.ffn_down.weight" else (n, t, ne, r) for n, t, ne, r in gt]
put("gguf", "q8_0.gguf", gguf(gq))
put("gguf", "huge_count.gguf", b"GGUF" + struct.pack("<IQQ", 3, 1 << 60, 1 << 60) + g[24:])
