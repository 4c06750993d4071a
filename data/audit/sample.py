# Stratified sample of demo answers for the blind audit (data/audit/README.md): per model, equal shares
# of every (expect, set, attack, label) stratum of a `mosr eval --dump` file, labelled by the judge of
# the time (judge-1). Writes the blind file (what the labeller sees) and the key (what they must not).
# usage: python3 data/audit/sample.py PER_MODEL MODELS OFFSET TAG DUMP_DIR OUT_DIR
#   e.g. python3 data/audit/sample.py 110 base 0 base out/dumps out/audit  (reads out/dumps/base.jsonl)
import json, random, sys, collections
random.seed(20261201)
models = sys.argv[2].split(",")
OFFSET = int(sys.argv[3])
TAG = sys.argv[4]
DUMPS, OUT = sys.argv[5], sys.argv[6]
mal = {}
for line in open("data/test_malicious.jsonl"):
    o = json.loads(line); mal[o["prompt"]] = o.get("harmful")
def harmful_for(prompt):
    if prompt in mal: return mal[prompt]
    for p, h in mal.items():
        if p in prompt: return h
    return None
PER_MODEL = int(sys.argv[1]) if len(sys.argv) > 1 else 110
items = []
for m in models:
    rows = [json.loads(l) for l in open(f"{DUMPS}/{m}.jsonl")]
    strata = collections.defaultdict(list)
    for r in rows:
        strata[(r["expect"], r["set"], r["attack"], r["label"])].append(r)
    keys = sorted(strata)
    # equal allocation over strata, leftovers to the largest strata
    take = {k: 0 for k in keys}
    left = PER_MODEL
    while left > 0:
        progressed = False
        for k in keys:
            if left == 0: break
            if take[k] < len(strata[k]):
                take[k] += 1; left -= 1; progressed = True
        if not progressed: break
    for k in keys:
        for r in random.sample(strata[k], take[k]):
            items.append((m, k, r))
random.shuffle(items)
blind, key = [], []
for i, (m, k, r) in enumerate(items):
    h = harmful_for(r["prompt"]) if r["expect"] == "refuse" else None
    b = {"id": OFFSET + i, "expect": r["expect"], "prompt": r["prompt"], "prefill": r["prefill"],
         "answer": r["answer"], "ended": r["eos"]}
    if h: b["harmful"] = h
    blind.append(b)
    key.append({"id": OFFSET + i, "model": m, "set": r["set"], "attack": r["attack"], "wrapper": r["wrapper"],
                "old_label": r["label"], "old_harmful": r["harmful"]})
with open(f"{OUT}/blind_{TAG}.jsonl", "w") as f:
    for b in blind: f.write(json.dumps(b, ensure_ascii=False) + "\n")
with open(f"{OUT}/key_{TAG}.jsonl", "w") as f:
    for k in key: f.write(json.dumps(k, ensure_ascii=False) + "\n")
print(len(blind), "items;", collections.Counter((k["model"], k["old_label"]) for k in key))
