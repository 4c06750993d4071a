// llamacpp_run.mjs — llama.cpp (node-llama-cpp 3.21.1, its prebuilt CPU build) as the reference
// runtime of tests/test_formats.c: for each GGUF of a job list, the next-token probabilities after
// every prompt position and the greedy continuation of the prompt. One process for all the models
// (its start-up is the slow part). Exact settings (REAL_MODELS.md §A7): no GPU, flash attention
// off, F32 KV cache.
//
// usage: node tests/llamacpp_run.mjs JOBS.json OUT.json
//   JOBS: [{"gguf": PATH, "ids": [..], "greedy": N}, ...]
//   OUT:  [{"gguf": PATH, "probs": [[p_0 .. p_V-1] per prompt position], "greedy": [ids]} | {"error": "..."}]
import fs from "node:fs";
import { getLlama } from "node-llama-cpp";

const [jobsPath, outPath] = process.argv.slice(2);
const jobs = JSON.parse(fs.readFileSync(jobsPath, "utf8"));
const llama = await getLlama({ gpu: false, logLevel: "error" });
const out = [];
for (const job of jobs) {
    try {
        const model = await llama.loadModel({ modelPath: job.gguf, gpuLayers: 0 });
        const vocab = model.tokens.length ?? 0;
        const contextOptions = {
            contextSize: 256, batchSize: 256, flashAttention: false, threads: 2,
            experimentalKvCacheKeyType: "F32", experimentalKvCacheValueType: "F32",
        };
        // probabilities after each prompt token
        let context = await model.createContext(contextOptions);
        let seq = context.getSequence();
        const items = job.ids.map((t) => [t, { generateNext: { probabilities: true } }]);
        const res = await seq.controlledEvaluate(items);
        const probs = res.map((r) => {
            const row = new Array(model.fileInsights?.vocabSize ?? 0).fill(0);
            for (const [tok, p] of r.next.probabilities) row[tok] = p;
            return row;
        });
        await context.dispose();
        // greedy continuation
        context = await model.createContext(contextOptions);
        seq = context.getSequence();
        const greedy = [];
        for await (const tok of seq.evaluate(job.ids, { temperature: 0, yieldEogToken: true })) {
            greedy.push(tok);
            if (greedy.length >= job.greedy) break;
        }
        await context.dispose();
        await model.dispose();
        out.push({ gguf: job.gguf, probs, greedy, vocab });
    } catch (e) {
        out.push({ gguf: job.gguf, error: String(e && e.message ? e.message : e) });
    }
}
fs.writeFileSync(outPath, JSON.stringify(out));
process.exit(0);
