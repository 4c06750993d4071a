// template_ref.mjs — the reference renderings for tests/test_template.c: @huggingface/jinja
// renders each case's chat template, and @huggingface/tokenizers encodes the text (without
// added BOS/EOS, as apply_chat_template does) when the case names a tokenizer folder.
// usage: node tests/template_ref.mjs CASES.json  (run from tests/, where node_modules is)
// CASES.json: [{template | config, messages, add_generation_prompt, bos_token, eos_token,
//               enable_thinking?, tokenizer?}]; prints one JSON line per case: {text, ids}.
import { Template } from "@huggingface/jinja";
import { Tokenizer } from "@huggingface/tokenizers";
import fs from "fs";

const cases = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
const tokenizers = new Map(); // folder -> Tokenizer, each file read once
for (const c of cases) {
    const jinja = c.config ? JSON.parse(fs.readFileSync(c.config, "utf8")).chat_template : c.template;
    const vars = {messages: c.messages, add_generation_prompt: c.add_generation_prompt,
                  bos_token: c.bos_token, eos_token: c.eos_token};
    if (c.enable_thinking !== undefined) vars.enable_thinking = c.enable_thinking;
    const text = new Template(jinja).render(vars);
    let ids = null;
    if (c.tokenizer) {
        if (!tokenizers.has(c.tokenizer)) {
            const json = JSON.parse(fs.readFileSync(c.tokenizer + "/tokenizer.json", "utf8"));
            const config = JSON.parse(fs.readFileSync(c.tokenizer + "/tokenizer_config.json", "utf8"));
            tokenizers.set(c.tokenizer, new Tokenizer(json, config));
        }
        ids = tokenizers.get(c.tokenizer).encode(text, {add_special_tokens: false}).ids;
    }
    console.log(JSON.stringify({text, ids}));
}
