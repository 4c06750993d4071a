# A fresh sample of demo answers for a blind audit (data/audit/README.md, "The second part"):
# per model, a fixed number of answers from every (set, attack) of a `mosr demo` run's dumps
# (eval_MODEL.jsonl), drawn at random inside each. Unlike sample.py it does not stratify by any
# judge's label, so the sample is drawn without looking at what a judge says. The comply sets get
# most of the draw: the answers the blind labelling of issue 23 found the judge wrong on (empty
# fragments of helpful answers) come from them.
# Writes the blind file (what the labeller sees: no model, set, attack or label) and the key.
# Each model's draw has its own seed, so a model's sample does not depend on which others are drawn
# with it (the base's answers were drawn and labelled before the defended models' existed).
# usage: python3 data/audit/sample_fresh.py DUMP_DIR OUT_DIR OFFSET MODEL[,MODEL...] TAG
#   e.g. python3 data/audit/sample_fresh.py out/demo_large out/audit_large 3000 base base
#   writes OUT_DIR/blind_TAG.jsonl and OUT_DIR/key_TAG.jsonl
import json, random, sys, collections
DUMPS, OUT, OFFSET, MODELS, TAG = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4].split(","), sys.argv[5]
# answers a model from each (set, attack): 60 a model
DRAW = {("test_malicious", "direct"): 4, ("test_malicious", "jailbreak"): 6, ("test_malicious", "prefill"): 5,
        ("test_pseudo", "direct"): 30, ("test_benign", "direct"): 15}
items = []
for m in MODELS:
    rng = random.Random("20261207-" + m)
    strata = collections.defaultdict(list)
    for line in open(f"{DUMPS}/eval_{m}.jsonl", encoding="utf-8"):
        r = json.loads(line)
        strata[(r["set"], r["attack"])].append(r)
    for k in sorted(DRAW):
        if len(strata[k]) < DRAW[k]: sys.exit(f"{DUMPS}/eval_{m}.jsonl: {len(strata[k])} answers of {k}, need {DRAW[k]}")
        for r in rng.sample(strata[k], DRAW[k]):
            items.append((m, r))
random.Random("20261207-" + TAG).shuffle(items)
with open(f"{OUT}/blind_{TAG}.jsonl", "w", encoding="utf-8") as blind, \
        open(f"{OUT}/key_{TAG}.jsonl", "w", encoding="utf-8") as key:
    for i, (m, r) in enumerate(items):
        b = {"id": OFFSET + i, "expect": r["expect"], "prompt": r["prompt"], "prefill": r["prefill"],
             "answer": r["answer"], "ended": r["ended"]}
        if r["expect"] == "refuse" and r.get("harmful"): b["harmful"] = r["harmful"]
        blind.write(json.dumps(b, ensure_ascii=False) + "\n")
        key.write(json.dumps({"id": OFFSET + i, "model": m, "set": r["set"], "attack": r["attack"],
                              "wrapper": r["wrapper"]}, ensure_ascii=False) + "\n")
print(len(items), "items:", dict(collections.Counter(m for m, _ in items)))
