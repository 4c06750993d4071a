#!/usr/bin/python3
"""Writes the tables of RESULTS.md and README.md from the files under results/.

Each table in those files sits between a line `<!-- table NAME -->` and a line `<!-- end table -->`;
this script rewrites what is between them from the JSON named in the table's first line, and leaves
every other line (the text) alone. `make results-md` runs it.

    results/render.py            rewrite the tables in place
    results/render.py --check    exit 1, naming the tables, when a table differs from its files
    results/render.py --root D   read D/results/ and D/*.md instead of the repository's
"""
import json
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = ["README.md", "RESULTS.md"]


def load(path):
    with open(os.path.join(ROOT, path)) as f:
        return json.load(f)


def f3(x):
    return "–" if x is None else "%.3f" % x


def ci(lo_hi):
    return "[%.3f, %.3f]" % tuple(lo_hi)


def rate(m, key):
    """A rate of a demo or ablation run with its Wilson interval: '0.085 [0.061, 0.116]'."""
    return "%s %s" % (f3(m[key]), ci(m[key + "_ci"]))


def wilson(k, n, z=1.959964):
    """The Wilson 95 % interval of k in n, as util.c's wilson_interval."""
    if n == 0:
        return (0.0, 1.0)
    p = k / n
    den = 1 + z * z / n
    mid = (p + z * z / (2 * n)) / den
    half = z * ((p * (1 - p) / n + z * z / (4 * n * n)) ** 0.5) / den
    return (max(0.0, mid - half), min(1.0, mid + half))


def split_counts(r):
    """A run's over-refusal on the seen-word and the held-out-word pseudo prompts, as (k, n) each: from
    its over_refusal_seen counts when it has them, else the whole minus the held-out part (the two
    parts are the whole's items, so this is exact)."""
    c = r["counts"]
    held = tuple(c["over_refusal_heldout"])
    seen = tuple(c["over_refusal_seen"]) if "over_refusal_seen" in c else \
        (c["over_refusal"][0] - held[0], c["over_refusal"][1] - held[1])
    return seen, held


def kn_rate(kn):
    """'0.187 [0.148, 0.234]' of a (k, n) pair."""
    k, n = kn
    return "%.3f %s" % (k / n, ci(wilson(k, n))) if n else "–"


def mean_sd(s, key):
    v = s[key]
    return "%.3f ± %.3f" % (v["mean"], v["std"])


def table(header, rows, right=None):
    """A Markdown table; `right` = the columns to right-align (numbers without intervals)."""
    right = right or set()
    out = ["| " + " | ".join(header) + " |",
           "|" + "|".join("---:" if i in right else "---" for i in range(len(header))) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out


def source(files, command, note=""):
    return ["From %s (`%s`%s)." % (", ".join("`%s`" % f for f in files), command, note), ""]


NAMES = {"base": "base", "rr": "RR", "mosr": "MOSR", "rr+oalw": "RR + OALW", "rr+caa": "RR + CAA"}

# ----------------------------------------------------------------------------
# the demo (results/demo*/results.json: mosr demo)


def demo_headline(path="results/demo/results.json", command="make demo"):
    d = load(path)
    rows = []
    for m in ("base", "rr", "mosr"):
        r = d[m]
        seen, held = split_counts(r)
        rows.append([NAMES[m], rate(r, "asr_direct"), rate(r, "asr_jailbreak"), rate(r, "asr_prefill"),
                     rate(r, "over_refusal"), "%s (%s)" % (f3(r["pseudo_refusal"]), f3(r["pseudo_late_refusal"])),
                     f3(r["pseudo_broken"]), kn_rate(seen), kn_rate(held), rate(r, "benign_accuracy"),
                     "%.2f" % r["val_perplexity"]])
    return source([path], command) + table(
        ["model", "ASR direct", "ASR jailbreak", "ASR prefill", "over-refusal", "of it: refusal (late)", "broken",
         "over-refusal: seen words", "held-out words", "benign accuracy", "val ppl"], rows, right={5, 6, 10})


def demo_paired(path="results/demo/results.json", command="make demo"):
    d = load(path)["paired_tests"]
    rows = []
    for a, b in (("base", "rr"), ("base", "mosr"), ("rr", "mosr")):
        t = d["%s_vs_%s" % (a, b)]
        cells = ["%s vs %s" % (NAMES[a], NAMES[b])]
        for k in ("over_refusal", "asr_direct", "asr_jailbreak", "asr_prefill"):
            c = t[k]
            cells.append("p %.2g (%d vs %d)" % (c["p_value"], c["only_" + a], c["only_" + b]))
        rows.append(cells)
    return source([path], command) + table(["", "over-refusal", "ASR direct", "ASR jailbreak", "ASR prefill"], rows)


def demo_probe(path="results/demo/results.json", command="make demo"):
    d = load(path)
    rows = []
    for m in ("base", "rr", "mosr"):
        r = d[m]
        p, c = r["probe_mean"], r["cos_to_base"]
        rows.append([NAMES[m], "%.3f" % r["probe_test_accuracy"]] + ["%.3f" % p[k] for k in ("benign", "malicious", "pseudo")]
                    + ["%.3f" % c[k] for k in ("benign", "malicious", "pseudo")])
    return source([path], command) + table(
        ["model", "probe test accuracy", "P(malicious): benign", "malicious", "pseudo", "cos to base: benign", "malicious",
         "pseudo"], rows, right=set(range(1, 8)))


def base_sets():
    """The base model per prompt set and attack: the demo's base evaluation (= make eval-base's sets)."""
    path = "results/demo/results.json"
    r = load(path)["base"]
    n = r["counts"]
    rows = []
    for attack, key in (("direct", "direct"), ("jailbreak (5 wrappers)", "jailbreak"), ("prefill", "prefill")):
        rows.append(["test_malicious", attack, str(n["asr_" + key][1]), rate(r, "asr_" + key),
                     f3(r["compliance_" + key]), "–", "–", "–", "–"])
    rows.append(["test_pseudo", "direct", str(n["over_refusal"][1]), "–", "–", rate(r, "over_refusal"),
                 "%s (%s)" % (f3(r["pseudo_refusal"]), f3(r["pseudo_late_refusal"])), f3(r["pseudo_broken"]), "–"])
    rows.append(["test_benign", "direct", str(n["benign_refused"][1]), "–", "–", rate(r, "benign_refused"), "–", "–",
                 f3(r["benign_accuracy"])])
    return source([path], "make demo", "; `make eval-base` evaluates the same sets") + table(
        ["set", "attack", "n", "ASR (harmful)", "compliance", "over-refusal", "refusal (late)", "broken", "correct"],
        rows, right={2, 4, 6, 7, 8})


def criteria(base, rr, mosr, n_seeds):
    """The MOSR issue's success criteria on three rows of means (a demo's runs or an ablation's means)."""
    def pts(x):
        return ("%+.1f" % (100 * x)).replace("-", "−")
    rows = [
        ["base → RR: worst harmful rate at most half the base's", "%.3f → %.3f" % (base["asr_worst"], rr["asr_worst"]),
         "yes" if rr["asr_worst"] <= base["asr_worst"] / 2 else "no"],
        ["over-refusal MOSR adds ≤ half of what RR adds",
         "MOSR adds %.3f, RR adds %.3f" % (mosr["over_refusal"] - base["over_refusal"], rr["over_refusal"] - base["over_refusal"]),
         "yes" if mosr["over_refusal"] - base["over_refusal"] <= (rr["over_refusal"] - base["over_refusal"]) / 2 else "no"],
        ["MOSR's worst harmful rate ≤ RR's + 2 points",
         "%.3f vs %.3f (%s)" % (mosr["asr_worst"], rr["asr_worst"], pts(mosr["asr_worst"] - rr["asr_worst"])),
         "yes" if mosr["asr_worst"] <= rr["asr_worst"] + 0.02 + 1e-9 else "no"],
        ["benign accuracy within 2 points of the base",
         "MOSR %.3f, RR %.3f, base %.3f" % (mosr["benign_accuracy"], rr["benign_accuracy"], base["benign_accuracy"]),
         "yes" if abs(mosr["benign_accuracy"] - base["benign_accuracy"]) <= 0.02 + 1e-9
         else "no (%s)" % pts(mosr["benign_accuracy"] - base["benign_accuracy"])],
    ]
    return table(["criterion (%s)" % n_seeds, "measured", "met?"], rows)


def demo_criteria():
    path = "results/demo/results.json"
    d = load(path)
    return source([path], "make demo") + criteria(d["base"], d["rr"], d["mosr"], "one seed")


def ablation_criteria():
    path = "results/ablation/ablation.json"
    d = load(path)
    means = {k: {m: v["mean"] for m, v in s.items() if isinstance(v, dict)} for k, s in d["summary"].items()}
    out = source([path], "make ablation") + criteria(d["base"], means["rr"], means["mosr"], "%d seeds" % d["seeds"])
    # and the OALW criterion: RR + OALW's over-refusal below RR's mean - sd
    for p, retain in ((path, "default retain"), ("results/ablation_borderline/ablation.json", "borderline retain")):
        s = load(p)["summary"]
        bar = s["rr"]["over_refusal"]["mean"] - s["rr"]["over_refusal"]["std"]
        o = s["rr+oalw"]["over_refusal"]["mean"]
        out.append("| OALW alone: over-refusal below RR's mean − sd (%s) | %.3f vs %.3f | %s |"
                   % (retain, o, bar, "yes" if o < bar else "no"))
    return out


# ----------------------------------------------------------------------------
# the public prompt sets (results/public/*.json: make eval-public)

PUBLIC = [("harmful_behaviors", "AdvBench"), ("harmbench_behaviors_text_test", "HarmBench"),
          ("harmful-behaviors", "JBB harmful"), ("benign-behaviors", "JBB benign"),
          ("ORbench_test_300_xboundary", "OR-Bench-hard"), ("PHtest_300_xboundary", "PHTest"), ("OKTest", "OKTest")]


def public_sets():
    files = ["results/public/%s.json" % m for m in ("base", "rr", "mosr")]
    header, rows = ["model"], []
    for name, label in PUBLIC:
        refuse = name in ("harmful_behaviors", "harmbench_behaviors_text_test", "harmful-behaviors")
        header.append("%s %s" % (label, "compliance" if refuse else "over-refusal"))
    header += ["%s refusal" % label for name, label in PUBLIC[:3]]
    for m, path in zip(("base", "rr", "mosr"), files):
        sets = {s["name"]: s for s in load(path)["sets"]}
        cells = [NAMES[m]]
        for name, label in PUBLIC:
            s = sets[name]
            cells.append(f3(s["compliance"] if s["expect"] == "refuse" else s["over_refusal"]))
        cells += [f3(sets[name]["refusal"]) for name, label in PUBLIC[:3]]
        rows.append(cells)
    ns = {s["name"]: s["n"] for s in load(files[0])["sets"]}
    out = source(files, "make demo && make eval-public") + table(header, rows, right=set(range(1, len(header))))
    return out + ["", "n: " + ", ".join("%s %d" % (label, ns[name]) for name, label in PUBLIC) + "."]


# ----------------------------------------------------------------------------
# the ablation (results/*/ablation.json: mosr ablation)


def summarize(runs):
    """Mean and sample standard deviation over runs, as mosr ablation's summary has them."""
    out = {"n": len(runs)}
    for k in ("asr_worst", "over_refusal", "pseudo_late_refusal", "pseudo_broken", "benign_accuracy"):
        x = [r[k] for r in runs]
        mean = sum(x) / len(x) if x else 0.0
        std = (sum((v - mean) ** 2 for v in x) / (len(x) - 1)) ** 0.5 if len(x) > 1 else 0.0
        out[k] = {"mean": mean, "std": std}
    return out


def split_parts(runs):
    """The seen-word and held-out-word over-refusal of runs: {"seen": {mean, std}, "held": ...}."""
    parts = [split_counts(r) for r in runs]
    out = {}
    for i, name in enumerate(("seen", "held")):
        x = [p[i][0] / p[i][1] for p in parts]
        mean = sum(x) / len(x) if x else 0.0
        std = (sum((v - mean) ** 2 for v in x) / (len(x) - 1)) ** 0.5 if len(x) > 1 else 0.0
        out[name] = {"mean": mean, "std": std}
    return out


def variant_runs(d, v):
    """The ablation runs of variant v (not the sweep's, not the trade-off's)."""
    return [r for r in d["runs"] if r["variant"] == v and not r["sweep"] and not r["tradeoff"]]


def ablation(path, command):
    d = load(path)
    b = d["base"]
    bseen, bheld = split_counts(b)
    rows = [["base"] + [f3(b[k]) for k in ("asr_direct", "asr_jailbreak", "asr_prefill", "asr_worst", "over_refusal")]
            + [f3(bseen[0] / bseen[1]), f3(bheld[0] / bheld[1])]
            + [f3(b[k]) for k in ("pseudo_late_refusal", "pseudo_broken", "benign_accuracy")]
            + ["%.3f" % b["val_perplexity"]]]
    for v, s in d["summary"].items():
        if s["n"] == 0:
            continue
        sp = split_parts(variant_runs(d, v))
        rows.append(["%s (n=%d)" % (NAMES[v], s["n"])]
                    + [mean_sd(s, k) for k in ("asr_direct", "asr_jailbreak", "asr_prefill", "asr_worst", "over_refusal")]
                    + [mean_sd(sp, "seen"), mean_sd(sp, "held")]
                    + [mean_sd(s, k) for k in ("pseudo_late_refusal", "pseudo_broken", "benign_accuracy",
                                               "val_perplexity")])
    return source([path], command) + table(
        ["variant", "ASR direct", "ASR jailbreak", "ASR prefill", "worst ASR", "over-refusal",
         "over-refusal: seen words", "held-out words", "late refusal", "broken", "benign accuracy", "val ppl"],
        rows, right=set(range(1, 12)))


def ablation_default():
    return ablation("results/ablation/ablation.json", "make ablation")


def ablation_borderline():
    return ablation("results/ablation_borderline/ablation.json", "make ablation-borderline")


def alpha_probe():
    files = ["results/alpha_probe/default.json", "results/alpha_probe/borderline.json"]
    rows = []
    for path, retain in zip(files, ("default", "borderline")):
        for r in load(path)["runs"]:
            rows.append([retain, "%g" % r["alpha"], str(r["seed"]), f3(r["over_refusal"]), f3(r["asr_worst"]),
                         f3(r["benign_accuracy"])])
    return source(files, "mosr ablation --tradeoff alpha=2,5,10 --tradeoff-only --seeds 2 --threads 1 [--retain-borderline]: its RR runs") + table(
        ["retain set", "α", "seed", "over-refusal", "worst ASR", "benign accuracy"], rows, right={1, 2, 3, 4, 5})


def tradeoff():
    out_rows, files = [], []
    for retain, d in (("default retain", "results/tradeoff"), ("borderline retain", "results/tradeoff_borderline")):
        runs = {}
        for part in ("part1", "part2"):
            path = "%s/%s/ablation.json" % (d, part)
            files.append(path)
            for r in load(path)["runs"]:
                runs[(r["variant"], r["steps"])] = r
        out_rows.append(["*%s*" % retain, "", "", "", "", "", "", "", ""])
        for steps in sorted({s for v, s in runs}):
            cells = [str(steps)]
            for v in ("rr", "mosr"):
                r = runs[(v, steps)]
                cells += [rate(r, "asr_worst"), rate(r, "over_refusal"), kn_rate(split_counts(r)[0]),
                          f3(r["benign_accuracy"])]
            out_rows.append(cells)
    return source(files, "make tradeoff") + table(
        ["steps", "RR: worst harm", "RR: over-refusal", "RR: seen words", "RR: benign acc.", "MOSR: worst harm",
         "MOSR: over-refusal", "MOSR: seen words", "MOSR: benign acc."], out_rows, right={0, 4, 8})


def distinct():
    parts = [("all tokens", "default", "results/ablation/ablation.json"),
             ("distinct", "default", "results/ablation_distinct/ablation.json"),
             ("all tokens", "borderline", "results/ablation_borderline/ablation.json"),
             ("distinct", "borderline", "results/distinct_borderline/ablation.json")]
    rows = []
    for erasure, retain, path in parts:
        d = load(path)
        for v, s in d["summary"].items():
            if s["n"] == 0:  # a --tradeoff-only run: its summary is empty, the runs are all there
                s = summarize([r for r in d["runs"] if r["variant"] == v])
            # the all-token rows: the two methods the distinct rows are read against
            if s["n"] == 0 or v == "rr+oalw" or (erasure == "all tokens" and v == "rr+caa"):
                continue
            rows.append([erasure, retain, NAMES[v], mean_sd(s, "asr_worst"), mean_sd(s, "over_refusal"),
                         f3(s["pseudo_late_refusal"]["mean"]), f3(s["pseudo_broken"]["mean"]), mean_sd(s, "benign_accuracy")])
    return source([p for e, r, p in parts], "make ablation, make ablation-borderline; mosr ablation --no-sweep "
                  "--erase-tokens distinct; mosr ablation --tradeoff steps=150 --tradeoff-only --seeds 3 "
                  "--retain-borderline --erase-tokens distinct") + table(
        ["erasure", "retain set", "variant", "worst ASR", "over-refusal", "late refusal", "broken", "benign accuracy"],
        rows, right={3, 4, 5, 6, 7})


def over_refusal_split():
    """Over-refusal on the seen-word and held-out-word pseudo prompts for every committed demo and
    ablation; an ablation's variant pools its seeds' answers (the interval is the pooled answers')."""
    demos = [("demo", "results/demo/results.json"), ("demo, --caa-prefix tokens", "results/demo_tokens_caa/results.json"),
             ("demo, larger base", "results/demo_large/results.json")]
    ablations = [("ablation, default retain", "results/ablation/ablation.json"),
                 ("ablation, borderline retain", "results/ablation_borderline/ablation.json"),
                 ("ablation, borderline, token OALW", "results/ablation_borderline_token/ablation.json"),
                 ("distinct erasure, default retain", "results/ablation_distinct/ablation.json"),
                 ("distinct erasure, borderline retain", "results/distinct_borderline/ablation.json")]
    rows = []

    def row(where, name, runs, base_seen):
        seen = tuple(map(sum, zip(*[split_counts(r)[0] for r in runs])))
        held = tuple(map(sum, zip(*[split_counts(r)[1] for r in runs])))
        whole = tuple(map(sum, zip(*[r["counts"]["over_refusal"] for r in runs])))
        added = "–" if base_seen is None else ("%+.3f" % (seen[0] / seen[1] - base_seen)).replace("-", "−")
        rows.append([where, name, str(len(runs)), kn_rate(whole), kn_rate(seen), kn_rate(held), added])

    for where, path in demos:
        d = load(path)
        b = split_counts(d["base"])[0]
        for m in ("base", "rr", "mosr"):
            row(where, NAMES[m], [d[m]], None if m == "base" else b[0] / b[1])
    for where, path in ablations:
        d = load(path)
        b = split_counts(d["base"])[0]
        row(where, "base", [d["base"]], None)
        for v in ("rr", "rr+oalw", "rr+caa", "mosr"):
            runs = variant_runs(d, v) or [r for r in d["runs"] if r["variant"] == v and r["tradeoff"]]
            if runs:
                row(where, NAMES[v], runs, b[0] / b[1])
    return source([p for w, p in demos + ablations], "make demo, make ablation, make ablation-borderline and the commands of the sections above") + table(
        ["results", "model", "runs", "over-refusal", "seen words", "held-out words", "added on seen words"],
        rows, right={2, 6})


KNOB_PARTS = ["results/knob_borderline/%s/ablation.json" % p
              for p in ("rr_a", "rr_b", "rr_c", "mosr_token", "mosr_token2", "mosr_token_s2", "rr_s2", "mosr_token_s3", "rr_s3")]


def knob_borderline():
    """RR and MOSR (token-level OALW) along the erase/retain ratio, borderline retain: every trade-off
    run of the parts that exist (with the part it is in: the first four were judged before the
    judge's step-marker rule), and the base model of the first."""
    files = [p for p in KNOB_PARTS if os.path.exists(os.path.join(ROOT, p))]
    runs = sorted(((r, p.split("/")[-2]) for p in files for r in load(p)["runs"] if r["tradeoff"]),
                  key=lambda rp: (rp[0]["variant"] != "rr", rp[0]["erase_ratio"], rp[0]["seed"]))
    b = load(files[0])["base"]
    bseen = split_counts(b)[0][0] / split_counts(b)[0][1]

    def cells(name, ratio, seed, part, r):
        seen, held = split_counts(r)
        added = "–" if r is b else ("%+.3f" % (seen[0] / seen[1] - bseen)).replace("-", "−")
        return [name, ratio, seed, part, rate(r, "asr_worst"), rate(r, "over_refusal"), kn_rate(seen), added,
                kn_rate(held), rate(r, "benign_accuracy")]

    rows = [cells("base", "–", "–", "–", b)] + [cells(NAMES[r["variant"]], "%g" % r["erase_ratio"], str(r["seed"]), part, r)
                                               for r, part in runs]
    return source(files, "mosr ablation --tradeoff ratio=LIST --tradeoff-only --retain-borderline; "
                  "results/knob_borderline/README.md has each part's command") + table(
        ["model", "erase ratio R", "seed", "part", "worst harm", "over-refusal", "seen words", "added on seen words",
         "held-out words", "benign accuracy"], rows, right={1, 2, 7})


# ----------------------------------------------------------------------------
# OALW's weights against RR's and MOSR's damage (results/oalw_damage/*.json: mosr analyze --defended)


def oalw_damage():
    files = ["results/oalw_damage/%s.json" % m for m in ("rr", "mosr")]
    rows = []
    for m, path in zip(("rr", "mosr"), files):
        c = load(path)["collateral"]
        rows.append([NAMES[m], "%d of %d" % (c["n_complied"], c["n_pseudo"]), str(c["n_damaged"]),
                     "%+.3f" % c["spearman_weight_drop"], "%+.3f" % c["spearman_weight_damaged"],
                     " / ".join("%.2f" % b["rate"] for b in c["bins"])])
    return source(files, "make oalw-damage", ", after `make demo`") + table(
        ["", "base complied", "damaged", "Spearman, weight vs cosine drop", "weight vs damaged",
         "damage rate by weight quintile, lowest → highest"], rows, right={2, 3, 4})


# ----------------------------------------------------------------------------

TABLES = {
    "demo_headline": demo_headline, "demo_paired": demo_paired, "demo_probe": demo_probe, "demo_criteria": demo_criteria,
    "base_sets": base_sets, "public_sets": public_sets, "ablation_default": ablation_default,
    "ablation_borderline": ablation_borderline, "ablation_criteria": ablation_criteria, "alpha_probe": alpha_probe,
    "tradeoff": tradeoff, "distinct": distinct, "oalw_damage": oalw_damage,
    "over_refusal_split": over_refusal_split, "knob_borderline": knob_borderline,
    "demo_tokens_caa": lambda: demo_headline("results/demo_tokens_caa/results.json",
                                             "mosr demo --caa-prefix tokens --threads 2 --out out/demo_tokens_caa"),
    "demo_large": lambda: demo_headline("results/demo_large/results.json",
                                        "mosr demo --model weights/base_large.bin -z weights/tokenizer.bin --threads 2"),
    "demo_large_paired": lambda: demo_paired("results/demo_large/results.json",
                                             "mosr demo --model weights/base_large.bin -z weights/tokenizer.bin --threads 2"),
}

START = re.compile(r"^<!-- table ([a-z_]+) -->$")
END = "<!-- end table -->"


def render(text, doc):
    """The text with every marked table rewritten; the names of the tables that changed."""
    lines, out, changed, i = text.split("\n"), [], [], 0
    while i < len(lines):
        out.append(lines[i])
        m = START.match(lines[i])
        i += 1
        if not m:
            continue
        name = m.group(1)
        if name not in TABLES:
            sys.exit("render.py: %s: unknown table %r (known: %s)" % (doc, name, ", ".join(sorted(TABLES))))
        j = i
        while j < len(lines) and lines[j] != END:
            j += 1
        if j == len(lines):
            sys.exit("render.py: %s: table %r has no %r line" % (doc, name, END))
        new = TABLES[name]()
        if lines[i:j] != new:
            changed.append("%s:%s" % (doc, name))
        out += new
        i = j
    return "\n".join(out), changed


def main():
    global ROOT
    args = sys.argv[1:]
    check = "--check" in args
    if "--root" in args:
        ROOT = args[args.index("--root") + 1]
    all_changed = []
    for doc in DOCS:
        path = os.path.join(ROOT, doc)
        with open(path) as f:
            text = f.read()
        new, changed = render(text, doc)
        all_changed += changed
        if changed and not check:
            tmp = path + ".tmp.%d" % os.getpid()
            with open(tmp, "w") as f:
                f.write(new)
            os.replace(tmp, path)
    if check and all_changed:
        print("render.py: out of date with results/: " + ", ".join(all_changed) + " (run make results-md)")
        sys.exit(1)
    if not check:
        print("render.py: %d table(s) rewritten%s" % (len(all_changed), (": " + ", ".join(all_changed)) if all_changed else ""))


if __name__ == "__main__":
    main()
