// llamacpp_bench.mjs — llama.cpp's side of bench/bench_llamacpp.sh (node-llama-cpp 3.21.1, its
// prebuilt CPU build, as tests/llamacpp_run.mjs drives it; bench/bench_llamacpp.c is mosr's side).
// The same work as mosr's side, greedy, on prompts of token ids:
//   prefill: a fresh sequence of the long prompt, to its first generated token (time to first
//            token); tokens/s = prompt length / that time
//   decode:  a fresh sequence of the short prompt, then N_NEW greedy tokens; tokens/s = (N_NEW - 1)
//            / the time from the first generated token to the last
// Before them one short warm-up run. Both are also timed in the process's CPU time
// (process.cpuUsage: every thread of it, Node.js's own included; bench_llamacpp.c says why).
// Settings: no GPU, flash attention off, llama.cpp's default
// KV cache type (F16), context 1024, batch 512 (the whole long prompt in one batch), THREADS threads.
// Prints one JSON line with the fields of mosr's side.
//
// usage: node bench/llamacpp_bench.mjs MODEL.gguf SHORT_IDS.txt LONG_IDS.txt [N_NEW] [THREADS]
import fs from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";

// node-llama-cpp lives in tests/node_modules (tests/package.json), not beside this file
const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(path.join(here, "..", "tests", "package.json"));
const { getLlama } = await import(require.resolve("node-llama-cpp"));

const [modelPath, shortPath, longPath, nNewArg, threadsArg] = process.argv.slice(2);
if (!longPath) {
    console.error("usage: node bench/llamacpp_bench.mjs MODEL.gguf SHORT_IDS.txt LONG_IDS.txt [N_NEW] [THREADS]");
    process.exit(2);
}
const nNew = Number(nNewArg ?? 128);
const threads = Number(threadsArg ?? 2);
const readIds = (p) => fs.readFileSync(p, "utf8").trim().split(/\s+/).map(Number);
const shortIds = readIds(shortPath);
const longIds = readIds(longPath);

const t0 = performance.now();
const llama = await getLlama({ gpu: false, logLevel: "error", maxThreads: threads });
const model = await llama.loadModel({ modelPath, gpuLayers: 0 });
const context = await model.createContext({
    contextSize: 1024, batchSize: 512, flashAttention: false, threads: { ideal: threads, min: threads },
});
const loadSeconds = (performance.now() - t0) / 1000;
const seq = context.getSequence();

// the process's CPU time so far (user + system, all threads), ms
const cpuMs = () => { const u = process.cpuUsage(); return (u.user + u.system) / 1000; };

// greedy from a fresh sequence: the generated ids, the time each came and the CPU time at each
// (ms since the start)
async function run(ids, n) {
    await seq.clearHistory();
    const out = [], at = [], cpu = [];
    const start = performance.now(), cpuStart = cpuMs();
    for await (const tok of seq.evaluate(ids, { temperature: 0, yieldEogToken: true })) {
        out.push(tok);
        at.push(performance.now() - start);
        cpu.push(cpuMs() - cpuStart);
        if (out.length >= n) break;
    }
    return { out, at, cpu };
}

await run(shortIds, 4); // warm-up
const prefill = await run(longIds, 1);
const decode = await run(shortIds, nNew);
const prefillSeconds = prefill.at[0] / 1000;
const decodeSeconds = (decode.at[nNew - 1] - decode.at[0]) / 1000;
const prefillCpu = prefill.cpu[0] / 1000, decodeCpu = (decode.cpu[nNew - 1] - decode.cpu[0]) / 1000;
console.log(JSON.stringify({
    runtime: "llama.cpp", load_s: +loadSeconds.toFixed(3),
    prefill_tokens: longIds.length, prefill_s: +prefillSeconds.toFixed(4),
    prefill_tok_s: +(longIds.length / prefillSeconds).toFixed(2),
    prefill_cpu_tok_s: +(longIds.length / prefillCpu).toFixed(2),
    decode_tokens: nNew, decode_tok_s: +((nNew - 1) / decodeSeconds).toFixed(2),
    decode_cpu_tok_s: +((nNew - 1) / decodeCpu).toFixed(2), ids: decode.out,
}));
await context.dispose();
await model.dispose();
process.exit(0);
