// llamacpp_tokenize.mjs — llama.cpp's tokenizer (node-llama-cpp 3.21.1) on the vocabulary of a GGUF
// file, for tests/test_real_cli.sh: one line of ids per {"text": ...} line of the input (nothing
// added, special-token strings read as text), and the file's chat template on the last line.
//
// usage: node tests/llamacpp_tokenize.mjs MODEL.gguf TEXTS.jsonl
import fs from "node:fs";
import { getLlama } from "node-llama-cpp";

const [modelPath, textsPath] = process.argv.slice(2);
const llama = await getLlama({ gpu: false, logLevel: "error" });
const model = await llama.loadModel({ modelPath, gpuLayers: 0 });
for (const line of fs.readFileSync(textsPath, "utf8").split("\n")) {
    if (!line.trim()) continue;
    const { text } = JSON.parse(line);
    console.log(model.tokenize(text, false).join(" "));
}
console.log(JSON.stringify(model.fileInfo?.metadata?.tokenizer?.chat_template ?? null));
await model.dispose();
