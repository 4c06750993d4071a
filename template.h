// template.h — chat templates: how a conversation becomes the ids a model reads.
//
// A real chat model comes with a Jinja `chat_template` (tokenizer_config.json, or GGUF's
// tokenizer.chat_template). mosr does not interpret Jinja: it recognises which family a template
// belongs to by the markers in its text, and renders that family in C. The families:
//   world   the small world's "User: {prompt}\nAssistant:" + " {answer}" + EOS (data.h, llama2.c models)
//   chatml  <|im_start|>{role}\n{content}<|im_end|>\n ... <|im_start|>assistant\n
//           (SmolLM2, Qwen2.5; a system turn the template writes when none is given is kept)
//   qwen3   ChatML with thinking off: the generation prompt ends in <think>\n\n</think>\n\n
//   llama3  <|begin_of_text|><|start_header_id|>{role}<|end_header_id|>\n\n{content|trim}<|eot_id|>
//           (Llama-3.1/3.2 templates: a system turn with the "Cutting Knowledge Date" preamble, always)
//   llama2  <s>[INST] <<SYS>>\n{system}\n<</SYS>>\n\n{user} [/INST] {answer} </s>
//   zephyr  <|system|>\n{system}</s>\n<|user|>\n{user}</s>\n<|assistant|>\n{answer}</s>\n (TinyLlama)
// Rendering to ids: the family's markers that are tokens of the tokenizer (tokenizer_find_token)
// are emitted as their ids, never encoded; the text between two markers is one piece of text
// encoded with tokenizer_encode_plain (special-token strings in it are plain text), as Hugging
// Face tokenizes a rendered template between its special tokens. The assistant's tokens are its
// content and its end-of-turn marker; where its content shares a piece of text with the
// template's (ChatML's "assistant\n" + answer), the answer's tokens are those that follow the
// tokens of the template's text alone (a token straddling the two counts as the answer's).
#ifndef MOSR_TEMPLATE_H
#define MOSR_TEMPLATE_H

#include "tokenizer.h"

typedef enum {
    TEMPLATE_WORLD,
    TEMPLATE_CHATML,
    TEMPLATE_QWEN3,
    TEMPLATE_LLAMA3,
    TEMPLATE_LLAMA2,
    TEMPLATE_ZEPHYR,
    N_TEMPLATE_FAMILIES
} TemplateFamily;

// the world's template (data.h): "User: " prompt "\nAssistant:"
#define CHAT_USER_PREFIX "User: "
#define CHAT_ASSISTANT_PREFIX "\nAssistant:"

#define TEMPLATE_NAMES "world, chatml, qwen3, llama3, llama2, zephyr"
#define TEMPLATE_TEXT_MAX 256 // longest default system prompt / preamble kept from a Jinja text
// ids a rendered prompt may need beyond one per byte of its messages (markers, role names, a
// default system prompt): callers size prompt buffers as strlen(prompt) + CHAT_TEMPLATE_ROOM
#define CHAT_TEMPLATE_ROOM (2 * TEMPLATE_TEXT_MAX + 64)

// One allocation (tokenizer_free frees it with free()): no pointers inside.
typedef struct ChatTemplate {
    int family;                              // TemplateFamily
    char default_system[TEMPLATE_TEXT_MAX];  // chatml: the system turn written when none is given ("" = none)
    char system_preamble[TEMPLATE_TEXT_MAX]; // llama3: text opening the system turn (its date lines); with
                                             // always_system the system turn is written even when empty
    int always_system;
    int always_header;                       // llama3 without add_generation_prompt in its Jinja: the
                                             // assistant header ends every rendering
} ChatTemplate;

typedef struct {
    const char* role; // "system" | "user" | "assistant"
    const char* content;
} ChatMessage;

// the family of a name ("chatml", ...); -1 if none
int template_family_of(const char* name);
const char* template_family_name(int family);
// a template of one family with nothing recognised from a Jinja text (no default system prompt)
void template_init(ChatTemplate* ct, int family);
// recognises the family of a Jinja chat template and its quirks (default system prompt, date
// preamble). 0, or -1 with one error line naming `source` and the families known.
int template_recognise(ChatTemplate* ct, const char* jinja, const char* source);

// The template of a model, for the commands that build conversations: `name` (--template) if
// given; else the Jinja chat_template found with the model — MODEL or TOKENIZER a .gguf
// (tokenizer.chat_template), or a Hugging Face folder / the folder of a tokenizer.json
// (tokenizer_config.json's chat_template: a string, or a list of {name, template} whose
// "default" is taken); else, for a llama2.c tokenizer.bin, the world's. The markers must be
// tokens of t (checked here). Attaches it to t (t->chat_template, freed by tokenizer_free).
// A util.h exit code; one error line on failure.
int template_attach(Tokenizer* t, const char* model_path, const char* tok_path, const char* name);

// tokenizer_config.json's chat_template (malloc'd), or NULL after one error line
char* template_config_jinja(const char* path);

// Renders messages as the family's Jinja renders them (text, malloc'd); add_generation_prompt
// appends the opening of the assistant's turn.
char* template_render_text(const ChatTemplate* ct, const ChatMessage* msgs, int n, int add_generation_prompt);
// The same as ids (at most cap; -1 if more are needed or a marker has no id). assistant[i] = 1
// when ids[i] is the assistant's (its content and its end-of-turn marker), else 0 (may be NULL).
int template_render_ids(const ChatTemplate* ct, Tokenizer* t, const ChatMessage* msgs, int n,
                        int add_generation_prompt, int* ids, float* assistant, int cap);

// The single-turn pieces data.h's chat functions are made of (ct NULL = the world's):
// the prompt, up to where the assistant's answer begins; ids must hold strlen(prompt) + CHAT_TEMPLATE_ROOM
int template_encode_prompt(const ChatTemplate* ct, Tokenizer* t, const char* prompt, int* ids);
// an answer as it continues that prompt, with the end-of-turn marker when end is 1; ids must hold
// strlen(response) + 3 ids
int template_encode_response(const ChatTemplate* ct, Tokenizer* t, const char* response, int end, int* ids);
// the token span [*first, *end) of template_encode_prompt's ids (n of them) that holds the
// characters [a, b) of the prompt (a token straddling a boundary is included); 0, or -1 if none does
int template_prompt_span(const ChatTemplate* ct, Tokenizer* t, const char* prompt, const int* ids, int n,
                         int a, int b, int* first, int* end);
// how many of a response's ids (from template_encode_response of text) hold its first `chars` bytes
int template_response_tokens(const ChatTemplate* ct, Tokenizer* t, const char* text, size_t chars,
                             const int* ids, int n);
// the id that ends the assistant's turn (world: EOS), -1 if the tokenizer has none
int template_end_id(const ChatTemplate* ct, const Tokenizer* t);
// ids that end an answer in generation (into stop, room for 4); their count
int template_stop_ids(const ChatTemplate* ct, const Tokenizer* t, int* stop);

#endif
