#!/usr/bin/python3
# gguf_vocab.py — writes a GGUF file holding only a tokenizer (no tensors), from a Hugging Face
# tokenizer.json, the way llama.cpp's converter lays out the keys (REAL_MODELS.md §A3, §A7):
# tokenizer.ggml.{model, pre, tokens, token_type, merges, bos_token_id, eos_token_id, add_bos_token}.
#   gguf_vocab.py TOKENIZER.json PRE OUT.gguf      (PRE: llama-bpe, qwen2, ...; byte-level files only)
import json, struct, sys

src, pre, out = sys.argv[1:4]
j = json.load(open(src))
vocab = dict(j["model"]["vocab"])
types = {}
for a in j["added_tokens"]:
    vocab[a["content"]] = a["id"]
    types[a["id"]] = 3 if a["special"] else 4
n = max(vocab.values()) + 1
tokens = [f"[PAD{i}]" for i in range(n)]
for t, i in vocab.items(): tokens[i] = t
merges = [m if isinstance(m, str) else " ".join(m) for m in j["model"]["merges"]]

def s(x):
    b = x.encode("utf-8")
    return struct.pack("<Q", len(b)) + b

kv = []
def put(key, typ, payload): kv.append(s(key) + struct.pack("<I", typ) + payload)
put("general.architecture", 8, s("llama"))
put("tokenizer.ggml.model", 8, s("gpt2"))
put("tokenizer.ggml.pre", 8, s(pre))
put("tokenizer.ggml.tokens", 9, struct.pack("<IQ", 8, n) + b"".join(s(t) for t in tokens))
put("tokenizer.ggml.token_type", 9, struct.pack("<IQ", 5, n) + b"".join(struct.pack("<i", types.get(i, 1)) for i in range(n)))
put("tokenizer.ggml.merges", 9, struct.pack("<IQ", 8, len(merges)) + b"".join(s(m) for m in merges))
put("tokenizer.ggml.add_bos_token", 7, b"\0")
with open(out, "wb") as f:
    f.write(b"GGUF" + struct.pack("<IQQ", 3, 0, len(kv)) + b"".join(kv))
