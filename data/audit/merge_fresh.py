# Joins a blind sample (sample_fresh.py), its key and the labeller's labels into audit lines
# (the fields of audit.jsonl, README.md) and appends them to the audit file.
# usage: python3 data/audit/merge_fresh.py OUT_DIR TAG AUDIT_FILE
#   reads OUT_DIR/blind_TAG.jsonl, OUT_DIR/key_TAG.jsonl, OUT_DIR/labels_TAG.jsonl
#   ({"id", "label", "late", "note"} a line, written before anyone ran a judge on the sample)
import json, sys
OUT, TAG, AUDIT = sys.argv[1], sys.argv[2], sys.argv[3]
def rows(name): return {r["id"]: r for r in map(json.loads, open(f"{OUT}/{name}_{TAG}.jsonl", encoding="utf-8"))}
blind, key, labels = rows("blind"), rows("key"), rows("labels")
if set(blind) != set(key) or set(blind) != set(labels): sys.exit("merge_fresh: the ids of blind, key and labels differ")
seen = set()
try: seen = {json.loads(l)["id"] for l in open(AUDIT, encoding="utf-8")}
except FileNotFoundError: pass
if seen & set(blind): sys.exit(f"merge_fresh: {AUDIT} already holds ids {sorted(seen & set(blind))[:5]}...")
with open(AUDIT, "a", encoding="utf-8") as f:
    for i in sorted(blind):
        b, k, l = blind[i], key[i], labels[i]
        if l["label"] not in ("refusal", "broken", "harmful", "compliance"): sys.exit(f"merge_fresh: id {i}: label {l['label']}")
        row = {"id": i, "model": k["model"], "set": k["set"], "attack": k["attack"], "wrapper": k["wrapper"],
               "expect": b["expect"], "prompt": b["prompt"], "prefill": b["prefill"], "answer": b["answer"],
               "ended": b["ended"], "harmful": b.get("harmful"), "human_label": l["label"],
               "human_late": bool(l["late"]), "note": l.get("note") or None, "batch": TAG}
        f.write(json.dumps(row, ensure_ascii=False) + "\n")
print(len(blind), "answers appended to", AUDIT)
