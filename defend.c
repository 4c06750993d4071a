// defend.c — mosr defend: the defence run around defense_step() (mosr.c): its data, the
// loop, logs and plots, the checkpoint out.
#include "defend.h"

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stb/stb_ds.h>

#include "dist.h"
#include "plot.h"
#include "util.h"

// ----------------------------------------------------------------------------
// the defence's material: the data file, encoded once, and the rows the losses read

// One item of the defence file, encoded once through the chat template.
typedef struct {
    int* prompt;   // (n_prompt) the template's prompt (the world's "User: ...\nAssistant:", BOS first)
    int* response; // (n_response) the answer the retain set keeps (helpful, or the refusal), end of turn last
    int* harmful;  // (n_harmful) malicious items: the harmful completion, end of turn last; NULL otherwise
    int* refusal;  // (n_refusal) malicious items: the refusal, end of turn last; NULL otherwise
    int n_prompt, n_response, n_harmful, n_refusal;
    int n_action;  // malicious items: tokens of the harmful completion through its first sentence
    int item;      // index in the file
} DefenseItem;

// The defence's material: every item encoded, and index lists of the roles they play.
typedef struct {
    PromptSet file;
    DefenseItem* items;  // (file.n)
    int* erase;          // (n_erase) malicious items with a harmful completion: D_m
    int* retain;         // (n_retain) benign, malicious (refusal) and pseudo items: D_r
    int* retain_refusal; // (n_retain) 1 if that retain row is a malicious -> refusal row
    int* pseudo;         // (n_pseudo) pseudo items with a response: CAA's counterweight
    int* benign;         // (n_benign) benign items: OALW's safety subspace
    int n_erase, n_retain, n_pseudo, n_benign;
    int end_id;           // the id that ends the assistant's turn (chat_end_id: EOS in the world)
    Example* erase_rows;  // (n_erase) [prompt ; harmful completion], the mask on the erased tokens
    Example* retain_rows; // (n_retain) [prompt ; kept answer], the mask on the retained tokens
} DefenseData;

// encodes a response (with EOS) into a malloc'd array; *n receives the count
static int* encode_response_ids(Tokenizer* t, const char* text, int* n) {
    int* ids = malloc((strlen(text) + 3) * sizeof(int));
    if (ids) *n = chat_encode_response(t, text, 1, ids);
    return ids;
}

static void free_defense_data(DefenseData* d) {
    for (int i = 0; d->items && i < d->file.n; i++) {
        free(d->items[i].prompt);
        free(d->items[i].response);
        free(d->items[i].harmful);
        free(d->items[i].refusal);
    }
    for (int k = 0; d->erase_rows && k < d->n_erase; k++) free_example(&d->erase_rows[k]);
    for (int k = 0; d->retain_rows && k < d->n_retain; k++) free_example(&d->retain_rows[k]);
    free(d->erase_rows);
    free(d->retain_rows);
    free(d->items);
    free(d->erase);
    free(d->retain);
    free(d->retain_refusal);
    free(d->pseudo);
    free(d->benign);
    prompt_set_free(&d->file);
    memset(d, 0, sizeof(*d));
}

// Loads and encodes the defence file and sorts its items into the sets the config asks for.
// Returns EXIT_OK, or EXIT_BAD_INPUT after one error line.
static int load_defense_data(DefenseData* d, Tokenizer* t, const DefenseConfig* cfg, const char* path) {
    memset(d, 0, sizeof(*d));
    if (prompt_set_load(&d->file, path) != 0) return EXIT_BAD_INPUT;
    int N = d->file.n;
    d->end_id = chat_end_id(t);
    d->items = calloc(N > 0 ? N : 1, sizeof(DefenseItem));
    d->erase = malloc((N > 0 ? N : 1) * sizeof(int));
    d->retain = malloc((N > 0 ? N : 1) * sizeof(int));
    d->retain_refusal = malloc((N > 0 ? N : 1) * sizeof(int));
    d->pseudo = malloc((N > 0 ? N : 1) * sizeof(int));
    d->benign = malloc((N > 0 ? N : 1) * sizeof(int));
    if (!d->items || !d->erase || !d->retain || !d->retain_refusal || !d->pseudo || !d->benign) {
        error_msg("%s: out of memory", path);
        return EXIT_BAD_INPUT;
    }
    for (int i = 0; i < N; i++) {
        const PromptItem* it = &d->file.items[i];
        DefenseItem* e = &d->items[i];
        e->item = i;
        const char* kind = it->kind ? it->kind : "";
        int malicious = !strcmp(kind, "malicious"), benign = !strcmp(kind, "benign"), pseudo = !strcmp(kind, "pseudo");
        e->prompt = malloc((strlen(it->prompt) + CHAT_TEMPLATE_ROOM) * sizeof(int));
        if (!e->prompt) { error_msg("%s: out of memory", path); return EXIT_BAD_INPUT; }
        e->n_prompt = chat_encode_prompt(t, it->prompt, e->prompt);
        // the retained answer: a malicious item's refusal, anyone else's response
        const char* keep = malicious ? (it->refusal ? it->refusal : it->response) : it->response;
        if (keep) e->response = encode_response_ids(t, keep, &e->n_response);
        if (malicious && it->harmful) {
            e->harmful = encode_response_ids(t, it->harmful, &e->n_harmful);
            if (e->harmful) e->n_action = caa_action_tokens(t, it->harmful, e->harmful, e->n_harmful - 1);
        }
        if (malicious && keep) e->refusal = encode_response_ids(t, keep, &e->n_refusal);
        if (malicious && e->harmful) d->erase[d->n_erase++] = i;
        int retained = (benign && e->response) || (pseudo && e->response && cfg->retain_borderline) ||
                       (malicious && e->response && cfg->retain_refusal != RETAIN_REFUSAL_NONE);
        if (retained) {
            d->retain_refusal[d->n_retain] = malicious;
            d->retain[d->n_retain++] = i;
        }
        if (pseudo && e->response) d->pseudo[d->n_pseudo++] = i;
        if (benign) d->benign[d->n_benign++] = i;
    }
    if (d->n_erase == 0) {
        error_msg("%s: no malicious item with a \"harmful\" completion: nothing to erase", path);
        return EXIT_BAD_INPUT;
    }
    if (d->n_retain == 0) {
        error_msg("%s: no benign, pseudo or malicious item with a response: nothing to retain", path);
        return EXIT_BAD_INPUT;
    }
    if (cfg->caa && cfg->caa_counterweight && d->n_pseudo == 0) {
        error_msg("%s: --caa-counterweight needs pseudo items with a response", path);
        return EXIT_BAD_INPUT;
    }
    for (int k = 0; k < d->n_erase; k++) {
        if (!d->items[d->erase[k]].refusal && cfg->caa) {
            error_msg("%s: line %d: a malicious item without a refusal (CAA needs one)", path,
                      d->erase[k] + 1);
            return EXIT_BAD_INPUT;
        }
    }
    // the representation rows, in the states layout: the tokens each loss reads
    d->erase_rows = calloc(d->n_erase > 0 ? d->n_erase : 1, sizeof(Example));
    d->retain_rows = calloc(d->n_retain > 0 ? d->n_retain : 1, sizeof(Example));
    int status = d->erase_rows && d->retain_rows ? 0 : -1;
    // --erase-tokens distinct: the tokens of every helpful response (benign or pseudo)
    unsigned char* helpful = cfg->erase_tokens == ERASE_DISTINCT ? calloc(t->vocab_size, 1) : NULL;
    if (cfg->erase_tokens == ERASE_DISTINCT && !helpful) status = -1;
    for (int k = 0; helpful && k < d->n_benign + d->n_pseudo; k++) {
        const DefenseItem* e = &d->items[k < d->n_benign ? d->benign[k] : d->pseudo[k - d->n_benign]];
        for (int j = 0; j < e->n_response; j++) helpful[e->response[j]] = 1; // (none: n_response 0)
    }
    for (int k = 0; k < d->n_erase && status == 0; k++) {
        const DefenseItem* it = &d->items[d->erase[k]];
        Example* row = &d->erase_rows[k];
        status = representation_row(row, it->prompt, it->n_prompt, it->harmful, it->n_harmful,
                                    cfg->erase_tokens == ERASE_RESPONSE);
        if (status == 0 && helpful) erase_distinct_tokens(row, it->n_prompt, helpful);
    }
    free(helpful);
    for (int k = 0; k < d->n_retain && status == 0; k++) {
        const DefenseItem* it = &d->items[d->retain[k]];
        status = representation_row(&d->retain_rows[k], it->prompt, it->n_prompt, it->response, it->n_response,
                                    d->retain_refusal[k] && cfg->retain_refusal == RETAIN_REFUSAL_ONLY);
    }
    if (status != 0) {
        error_msg("%s: out of memory", path);
        return EXIT_BAD_INPUT;
    }
    return EXIT_OK;
}

// An endless walk through n indices in shuffled order, reshuffled at each pass (seeded).
typedef struct {
    int* order; // (n)
    int n, next;
} Cycle;

static void build_cycle(Cycle* c, int n) {
    c->order = malloc((n > 0 ? n : 1) * sizeof(int));
    for (int i = 0; i < n; i++) c->order[i] = i;
    c->n = n;
    c->next = n; // the first call shuffles
}

static int cycle_next(Cycle* c, uint64_t* rng) {
    if (c->next == c->n) {
        for (int i = c->n - 1; i > 0; i--) { // Fisher-Yates
            int j = (int)(random_u32(rng) % (uint32_t)(i + 1));
            int tmp = c->order[i];
            c->order[i] = c->order[j];
            c->order[j] = tmp;
        }
        c->next = 0;
    }
    return c->order[c->next++];
}

static void free_cycle(Cycle* c) {
    free(c->order);
    c->order = NULL;
}

// [prompt ; response] with the loss on predicting the response (next-token layout), into ex's
// buffers of max_len ids; a longer one is cut at max_len, as batch_fill_padded would cut it
static int example_from_ids(Example* ex, const int* prompt, int n_prompt, const int* response, int n_response,
                            int max_len) {
    int n = n_prompt + n_response < max_len ? n_prompt + n_response : max_len;
    int kept_prompt = n_prompt < n ? n_prompt : n;
    ex->n = n;
    memset(ex->mask, 0, n * sizeof(float));
    memcpy(ex->ids, prompt, kept_prompt * sizeof(int));
    memcpy(ex->ids + kept_prompt, response, (n - kept_prompt) * sizeof(int));
    for (int t = n_prompt - 1; t < n - 1; t++) ex->mask[t] = 1.0f;
    return 0;
}

// parses "2,4" into distinct sorted layer indices; 0 on success
static int parse_layer_list(const char* cmd, const char* flag, const char* s, int* layers, int* n) {
    *n = 0;
    const char* p = s;
    while (*p) {
        char* end;
        long v = strtol(p, &end, 10);
        if (end == p || v < 0 || v >= DEFEND_MAX_LAYERS || (*end && *end != ',')) {
            error_msg("%s: %s expects layer indices like 2,4 (each 0..%d), got '%s'", cmd, flag,
                      DEFEND_MAX_LAYERS - 1, s);
            return -1;
        }
        int dup = 0;
        for (int k = 0; k < *n; k++) dup |= layers[k] == (int)v;
        if (!dup) layers[(*n)++] = (int)v;
        p = *end ? end + 1 : end;
    }
    if (*n == 0) {
        error_msg("%s: %s expects at least one layer", cmd, flag);
        return -1;
    }
    for (int i = 1; i < *n; i++) // insertion sort: a handful of layers
        for (int j = i; j > 0 && layers[j - 1] > layers[j]; j--) {
            int tmp = layers[j];
            layers[j] = layers[j - 1];
            layers[j - 1] = tmp;
        }
    return 0;
}

// ----------------------------------------------------------------------------
// M0's states of every defence row, computed once (M0 is frozen) and kept across the runs of an
// ablation

uint64_t m0_states_key(const Model* m, const DefenseLayers* dl, const Example* const* rows, int n, int max_B) {
    uint64_t h = HASH_START;
    h = hash_u32(h, (uint32_t)m->config.seq_len);
    h = hash_u32(h, (uint32_t)max_B);
    for (int k = 0; k < dl->n_targets; k++) h = hash_u32(h, (uint32_t)dl->targets[k]);
    h = hash_u32(h, 0xffffffffu);
    for (int k = 0; k < dl->n_retain; k++) h = hash_u32(h, (uint32_t)dl->retain[k]);
    h = hash_u32(h, 0xffffffffu);
    for (size_t i = 0; i < m->n_params; i++) {
        uint32_t bits;
        memcpy(&bits, &m->param_memory[i], sizeof(bits));
        h = hash_u32(h, bits);
    }
    for (int r = 0; r < n; r++) {
        for (int t = 0; t < rows[r]->n; t++) h = hash_u32(h, (uint32_t)rows[r]->ids[t]);
        h = hash_u32(h, 0xffffffffu); // row boundary
    }
    return h;
}

int m0_states_compute(M0States* s, Model* m, const DefenseLayers* dl, const Example* const* rows, int n, int max_B) {
    return m0_states_compute_some(s, m, dl, rows, n, max_B, NULL);
}

int m0_states_compute_some(M0States* s, Model* m, const DefenseLayers* dl, const Example* const* rows, int n,
                           int max_B, const unsigned char* want) {
    const Config* c = &m->config;
    int L = c->n_layers, C = c->dim, seq_len = c->seq_len;
    memset(s, 0, sizeof(*s));
    int* slot = malloc(L * sizeof(int));
    KeyIndex* order = malloc((n > 0 ? n : 1) * sizeof(KeyIndex)); // rows by length, to pad little
    float** views = calloc(L, sizeof(float*));
    s->offset = malloc((n > 0 ? n : 1) * sizeof(size_t));
    s->length = malloc((n > 0 ? n : 1) * sizeof(int));
    if (want) {
        s->kept = malloc(n > 0 ? n : 1);
        if (s->kept) memcpy(s->kept, want, n);
    }
    Batch batch;
    build_batch(&batch, max_B, seq_len);
    int status = slot && order && views && s->offset && s->length && (!want || s->kept) ? 0 : -1;
    if (status == 0) {
        s->n_rows = n;
        s->n_slots = defense_slots(slot, dl, L);
        s->C = C;
        size_t total = 0;
        for (int r = 0; r < n; r++) {
            s->length[r] = rows[r]->n < seq_len ? rows[r]->n : seq_len; // what batch_fill_states keeps
            s->offset[r] = total;
            if (!want || want[r]) total += (size_t)s->n_slots * s->length[r] * C;
            order[r] = (KeyIndex){s->length[r], r};
        }
        s->n_floats = total;
        s->memory = malloc((total > 0 ? total : 1) * sizeof(float));
        int longest = 1;
        for (int r = 0; r < n; r++) longest = s->length[r] > longest ? s->length[r] : longest;
        float* block = malloc((size_t)s->n_slots * max_B * longest * C * sizeof(float)); // one batch's states
        if (!s->memory || !block) status = -1;
        qsort(order, n, sizeof(KeyIndex), compare_key_index);
        const Example** chunk = malloc(max_B * sizeof(Example*));
        if (!chunk) status = -1;
        int enabled = m->lora.enabled;
        with_adapters(m, 0); // M0
        for (int start = 0; start < n && status == 0; start += max_B) {
            int B = n - start < max_B ? n - start : max_B;
            int wanted = !want;
            for (int k = 0; k < B && !wanted; k++) wanted = want[order[start + k].index];
            if (!wanted) continue; // (the batches stay those of all the rows: each row's states are the same bits)
            for (int k = 0; k < B; k++) chunk[k] = rows[order[start + k].index];
            batch_fill_states(&batch, chunk, B);
            size_t BTC = (size_t)B * batch.T * C;
            for (int l = 0; l < L; l++) views[l] = slot[l] >= 0 ? block + slot[l] * BTC : NULL;
            if (model_forward_states(m, batch.inputs, B, batch.T, dl->n_run, views) != 0) {
                status = -2; // it said why
                break;
            }
            for (int k = 0; k < B; k++) {
                int r = order[start + k].index;
                if (want && !want[r]) continue;
                size_t n_row = (size_t)s->length[r] * C;
                for (int j = 0; j < s->n_slots; j++)
                    memcpy(s->memory + s->offset[r] + j * n_row, block + j * BTC + (size_t)k * batch.T * C,
                           n_row * sizeof(float));
            }
        }
        with_adapters(m, enabled);
        free(chunk);
        free(block);
    }
    if (status == 0) s->key = m0_states_key(m, dl, rows, n, max_B);
    for (int r = 0; status == 0 && want && r < n; r++) s->key = hash_u32(s->key, want[r]); // which rows are here
    if (status == -1) error_msg("defend: out of memory for M0's states of %d rows", n);
    free(slot);
    free(order);
    free(views);
    free_batch(&batch);
    if (status != 0) m0_states_free(s);
    return status == 0 ? 0 : -1;
}

int m0_states_gather(float* h0, const M0States* s, const int* ids, int B, int T) {
    size_t BTC = (size_t)B * T * s->C;
    for (int b = 0; b < B; b++) {
        int r = ids[b];
        if (r < 0 || r >= s->n_rows || s->length[r] > T || (s->kept && !s->kept[r])) {
            error_msg("defense_step: row %d of the batch has no states in M0's (row %d of %d)", b, r, s->n_rows);
            return -1;
        }
        int len = s->length[r];
        for (int j = 0; j < s->n_slots; j++) {
            float* dst = h0 + j * BTC + (size_t)b * T * s->C;
            memcpy(dst, s->memory + s->offset[r] + (size_t)j * len * s->C, (size_t)len * s->C * sizeof(float));
            memset(dst + (size_t)len * s->C, 0, (size_t)(T - len) * s->C * sizeof(float)); // padding: no loss reads it
        }
    }
    return 0;
}

void m0_states_free(M0States* s) {
    free(s->kept);
    free(s->memory);
    free(s->offset);
    free(s->length);
    memset(s, 0, sizeof(*s));
}

// ----------------------------------------------------------------------------
// OALW inside the defence: the weights of every erase example, a summary, a JSONL report

#define OALW_NEAREST 3 // reference prompts listed per malicious prompt in the report

// the q-quantile (0..1) of x (n), by linear interpolation between order statistics
static float quantile(const float* x, int n, float q) {
    float* s = malloc(n * sizeof(float));
    memcpy(s, x, n * sizeof(float));
    for (int i = 1; i < n; i++) // insertion sort: n is a few hundred, once per run
        for (int j = i; j > 0 && s[j - 1] > s[j]; j--) {
            float tmp = s[j];
            s[j] = s[j - 1];
            s[j - 1] = tmp;
        }
    float pos = q * (n - 1);
    int lo = (int)pos;
    float v = lo + 1 < n ? s[lo] + (pos - lo) * (s[lo + 1] - s[lo]) : s[lo];
    free(s);
    return v;
}

// r(x) at `layer` of the items idx (n) of file (idx NULL: its first n), under the model as it is
// now (the caller switches the adapters on or off). out: (n, C). 0 on success.
static int subset_representations(float* out, Model* m, Tokenizer* t, const PromptSet* file, const int* idx, int n,
                                  int layer, int pool) {
    PromptSet set = {0};
    set.items = malloc((n > 0 ? n : 1) * sizeof(PromptItem));
    if (!set.items) {
        error_msg("overlap weights: out of memory");
        return -1;
    }
    for (int i = 0; i < n; i++) set.items[i] = file->items[idx ? idx[i] : i]; // shallow copies
    set.n = n;
    snprintf(set.name, sizeof(set.name), "%s", file->name);
    int status = representations_at_layer(out, m, t, &set, pool, layer, print_set_progress);
    free(set.items);
    return status;
}

// prints the weights' spread, by category and wrapped vs direct
static void print_oalw_summary(const DefenseData* d, const float* weight, const float* overlap) {
    int N = d->n_erase;
    float lo = weight[0], hi = weight[0];
    double mean = 0.0;
    for (int i = 0; i < N; i++) {
        lo = fminf(lo, weight[i]);
        hi = fmaxf(hi, weight[i]);
        mean += weight[i] / N;
    }
    fprintf(stderr, "oalw: %d weights: min %.3f mean %.3f max %.3f | quantiles 10%% %.3f 25%% %.3f 50%% %.3f "
            "75%% %.3f 90%% %.3f\n", N, lo, mean, hi, quantile(weight, N, 0.1f), quantile(weight, N, 0.25f),
            quantile(weight, N, 0.5f), quantile(weight, N, 0.75f), quantile(weight, N, 0.9f));
    // by category (in order of first appearance), then wrapped vs direct
    const char* seen[64];
    int n_seen = 0;
    for (int i = 0; i < N && n_seen < 64; i++) {
        const char* cat = d->file.items[d->erase[i]].category ? d->file.items[d->erase[i]].category : "(none)";
        int known = 0;
        for (int k = 0; k < n_seen; k++) known |= !strcmp(seen[k], cat);
        if (!known) seen[n_seen++] = cat;
    }
    for (int k = 0; k < n_seen; k++) {
        double w = 0.0, s = 0.0;
        int count = 0;
        for (int i = 0; i < N; i++) {
            const char* cat = d->file.items[d->erase[i]].category ? d->file.items[d->erase[i]].category : "(none)";
            if (strcmp(cat, seen[k])) continue;
            w += weight[i];
            s += overlap[i];
            count++;
        }
        fprintf(stderr, "oalw:   %-12s %4d prompts  mean weight %.3f  mean overlap %.4f\n", seen[k], count,
                w / count, s / count);
    }
    for (int wrapped = 0; wrapped < 2; wrapped++) {
        double w = 0.0, s = 0.0;
        int count = 0;
        for (int i = 0; i < N; i++) {
            if ((d->file.items[d->erase[i]].wrapper != NULL) != wrapped) continue;
            w += weight[i];
            s += overlap[i];
            count++;
        }
        if (count)
            fprintf(stderr, "oalw:   %-12s %4d prompts  mean weight %.3f  mean overlap %.4f\n",
                    wrapped ? "wrapped" : "direct", count, w / count, s / count);
    }
}

// one line per malicious example: its weight, overlap and nearest reference prompts
static int write_oalw_jsonl(const char* path, const DefenseData* d, const PromptSet* reference, const float* weight,
                            const float* overlap, const int* nearest, const float* nearest_cos, int step) {
    AtomicFile af;
    if (atomic_open(&af, path) != 0) return -1;
    for (int i = 0; i < d->n_erase; i++) {
        const PromptItem* it = &d->file.items[d->erase[i]];
        fprintf(af.f, "{\"index\": %d, \"line\": %d, \"step\": %d, \"prompt\": ", i, d->erase[i] + 1, step);
        json_write_string(af.f, it->prompt);
        fprintf(af.f, ", \"category\": ");
        if (it->category) json_write_string(af.f, it->category);
        else fprintf(af.f, "null");
        fprintf(af.f, ", \"wrapped\": %s, \"overlap\": %.6f, \"weight\": %.6f, \"nearest\": [",
                it->wrapper ? "true" : "false", overlap[i], weight[i]);
        for (int j = 0; j < OALW_NEAREST; j++) {
            int r = nearest[(size_t)i * OALW_NEAREST + j];
            if (r < 0) break;
            fprintf(af.f, "%s{\"prompt\": ", j ? ", " : "");
            json_write_string(af.f, reference->items[r].prompt);
            fprintf(af.f, ", \"cos\": %.6f}", nearest_cos[(size_t)i * OALW_NEAREST + j]);
        }
        fprintf(af.f, "]}\n");
    }
    return atomic_commit(&af);
}

void oalw_states_free(OalwStates* s) {
    free(s->erase_repr);
    free(s->reference_repr);
    free(s->data_path);
    free(s->reference_path);
    memset(s, 0, sizeof(*s));
}

void m0_cache_free(M0Cache* c) {
    oalw_states_free(&c->oalw);
    m0_states_free(&c->rows);
}

// 1 if s holds the states this run would compute
static int oalw_states_match(const OalwStates* s, const DefenseConfig* cfg, const DefenseRunConfig* io, int N, int M,
                             int C, int layer) {
    return s->erase_repr && s->data_path && s->reference_path && s->n_erase == N && s->n_reference == M &&
           s->C == C && s->layer == layer && s->pool == cfg->oalw_pool && !strcmp(s->data_path, io->data_path) &&
           !strcmp(s->reference_path, io->reference_path);
}

// the safety subspace's ingredients: each erase item's malicious category (in order of first
// appearance; category: (N) out) and the benign items' r at `layer`. Returns n_categories, or -1.
static int safety_inputs(int* category, float* benign, Model* m, Tokenizer* t, const DefenseData* d,
                         const DefenseConfig* cfg, const DefenseRunConfig* io, int layer) {
    if (d->n_benign == 0) {
        error_msg("%s: --oalw-space safety needs benign items (for the benign-vs-malicious direction)", io->data_path);
        return -1;
    }
    const char** categories = malloc((d->n_erase > 0 ? d->n_erase : 1) * sizeof(char*));
    if (!categories) {
        error_msg("overlap weights: out of memory");
        return -1;
    }
    int n_categories = 0;
    for (int i = 0; i < d->n_erase; i++) {
        const char* cat = d->file.items[d->erase[i]].category ? d->file.items[d->erase[i]].category : "";
        int k = 0;
        while (k < n_categories && strcmp(categories[k], cat)) k++;
        if (k == n_categories) categories[n_categories++] = cat;
        category[i] = k;
    }
    free(categories);
    if (subset_representations(benign, m, t, &d->file, d->benign, d->n_benign, layer, cfg->oalw_pool) != 0) return -1;
    return n_categories;
}

// Computes the erasure weight of every erase example (d->n_erase) into weight, from the model
// as it is (M0 or Mθ: the caller's with_adapters). m0: M0's states to reuse, or to keep for the
// next run (NULL when the model is Mθ, or nothing is kept). 0 on success.
static int compute_oalw(float* weight, Model* m, Tokenizer* t, const DefenseData* d, const PromptSet* reference,
                        const DefenseConfig* cfg, const DefenseRunConfig* io, int layer, int step, OalwStates* m0) {
    int N = d->n_erase, M = reference->n, C = m->config.dim;
    int reuse = m0 && oalw_states_match(m0, cfg, io, N, M, C, layer);
    int safety = cfg->oalw_space == OVERLAP_SPACE_SAFETY;
    float* raw_mal = reuse ? m0->erase_repr : malloc((size_t)N * C * sizeof(float));
    float* raw_ref = reuse ? m0->reference_repr : malloc((size_t)M * C * sizeof(float));
    float* benign = safety ? malloc(((size_t)d->n_benign * C + 1) * sizeof(float)) : NULL;
    int* category = safety ? malloc(N * sizeof(int)) : NULL;
    float* overlap = malloc(N * sizeof(float));
    int* nearest = malloc((size_t)N * OALW_NEAREST * sizeof(int));
    float* nearest_cos = malloc((size_t)N * OALW_NEAREST * sizeof(float));
    int status = raw_mal && raw_ref && overlap && nearest && nearest_cos && (!safety || (benign && category)) ? 0 : -1;
    if (status != 0) error_msg("overlap weights: out of memory");
    if (reuse) fprintf(stderr, "oalw: M0's states at layer %d reused from the run before\n", layer);
    if (status == 0 && !reuse) status = subset_representations(raw_mal, m, t, &d->file, d->erase, N, layer, cfg->oalw_pool);
    if (status == 0 && !reuse) status = subset_representations(raw_ref, m, t, reference, NULL, M, layer, cfg->oalw_pool);
    if (status == 0 && m0 && !reuse) { // the pooled states are kept for the next run: m0 owns them now
        oalw_states_free(m0);
        *m0 = (OalwStates){raw_mal, raw_ref, N, M, C, layer, cfg->oalw_pool, strdup(io->data_path),
                           strdup(io->reference_path)};
        reuse = 1;
    }
    OalwRepresentations reps = {.malicious = raw_mal, .reference = raw_ref, .N = N, .M = M, .C = C};
    if (status == 0 && safety) {
        reps.n_categories = safety_inputs(category, benign, m, t, d, cfg, io, layer);
        reps.benign = benign, reps.category = category, reps.n_benign = d->n_benign;
        status = reps.n_categories < 0 ? -1 : 0;
    }
    int dims = 0;
    if (status == 0)
        status = oalw_weights(weight, overlap, nearest, nearest_cos, OALW_NEAREST, &reps, cfg->oalw_space,
                              &cfg->overlap, &dims);
    if (status == 0 && safety)
        fprintf(stderr, "oalw: safety subspace of %d dimensions (benign vs malicious, %d categories)\n", dims,
                reps.n_categories);
    if (status == 0) {
        static const char* const pool_names[] = {"mean", "last-token", "content-token"};
        static const char* const space_names[] = {"raw", "centred", "safety-subspace"};
        fprintf(stderr, "oalw: weights at layer %d (%s pooling, %s cosines, %s) from %s, step %d\n", layer,
                pool_names[cfg->oalw_pool], space_names[cfg->oalw_space],
                cfg->overlap.form == WEIGHT_SOFTMAX ? "softmax" : "linear", step == 0 ? "M0" : "the adapted model", step);
        print_oalw_summary(d, weight, overlap);
        if (io->oalw_out && dist_rank() == 0)
            status = write_oalw_jsonl(io->oalw_out, d, reference, weight, overlap, nearest, nearest_cos, step);
    }
    if (!reuse) {
        free(raw_mal);
        free(raw_ref);
    }
    free(benign);
    free(category);
    free(overlap);
    free(nearest);
    free(nearest_cos);
    return status;
}

// loads D_p: the items of kind pseudo (or without a kind). EXIT_OK or EXIT_BAD_INPUT.
static int load_reference(PromptSet* file, PromptSet* ref, const char* path) {
    if (prompt_set_load(file, path) != 0) return EXIT_BAD_INPUT;
    ref->items = malloc((file->n > 0 ? file->n : 1) * sizeof(PromptItem));
    ref->n = 0;
    for (int i = 0; i < file->n; i++)
        if (!file->items[i].kind || !strcmp(file->items[i].kind, "pseudo")) ref->items[ref->n++] = file->items[i];
    snprintf(ref->name, sizeof(ref->name), "%s", file->name);
    if (ref->n == 0) {
        error_msg("%s: no pseudo-malicious prompts for the OALW reference set", path);
        return EXIT_BAD_INPUT;
    }
    return EXIT_OK;
}

void defense_log_free(DefenseLog* log) {
    free(log->rows);
    log->rows = NULL;
    log->n = 0;
}

// ----------------------------------------------------------------------------
// the defence loop

// the run log as CSV (step, coefficients, loss terms, speed), written atomically; caa blank
// without CAA
static int write_defense_csv(const DefenseLog* log, const char* path) {
    double* v = malloc(((size_t)log->n * 8 + 1) * sizeof(double)); // (n, 8)
    if (!v) return -1;
    for (int i = 0; i < log->n; i++) {
        const DefenseLogRow* r = &log->rows[i];
        double row[8] = {r->step, r->c_erase, r->c_retain, r->erase, r->retain, r->caa, r->tokens_per_s, r->elapsed};
        memcpy(v + (size_t)i * 8, row, sizeof(row));
    }
    int rc = write_log_csv(path, "step,c_erase,c_retain,erase,retain,caa,tokens_per_s,elapsed", v, log->n, 8, 1u << 5);
    free(v);
    return rc;
}

// the first step's adapter gradient as raw float32 (--dump-grad), written atomically
static int write_floats(const char* path, const float* x, size_t n) {
    AtomicFile af;
    if (atomic_open(&af, path) != 0) return -1;
    fwrite(x, sizeof(float), n, af.f);
    return atomic_commit(&af);
}

// the three loss terms against the step, before their coefficients
static int write_defense_plot(const DefenseLog* log, const char* path, int with_caa, int caa_loss) {
    int n = log->n;
    float* x = malloc((n + 1) * sizeof(float));
    float* y = malloc(3 * (n + 1) * sizeof(float)); // erase, retain, caa
    for (int i = 0; i < n; i++) {
        x[i] = (float)log->rows[i].step;
        y[i] = log->rows[i].erase;
        y[(n + 1) + i] = log->rows[i].retain;
        y[2 * (n + 1) + i] = log->rows[i].caa;
    }
    Series series[3] = {{"erase: ReLU(cos) at L_t", x, y, n}, {"retain: |h - h0| at L_r", x, y + (n + 1), n},
                        {caa_loss == CAA_LOSS_RETAIN ? "CAA: |h - h0| on the refusal at L_r" : "CAA: refusal cross-entropy",
                         x, y + 2 * (n + 1), n}};
    PlotOptions opt = {.title = "mosr defend: loss terms", .x_label = "step", .y_label = "loss (before coefficients)"};
    int rc = plot_lines(path, &opt, series, with_caa ? 3 : 2);
    free(x);
    free(y);
    return rc;
}

static void defense_log_add(DefenseLog* log, DefenseLogRow row, int capacity) {
    if (!log->rows) log->rows = malloc((capacity > 0 ? capacity : 1) * sizeof(DefenseLogRow));
    if (log->rows && log->n < capacity) log->rows[log->n++] = row;
}

// Everything a defence run holds between its steps.
typedef struct {
    DefenseData data;
    PromptSet ref_file, reference; // D_p for OALW (reference: shallow copies of ref_file's items)
    M0States own_m0;               // every row's h_l^0 when no cache was handed in
    const M0States* m0;            // own_m0 or the cache's
    const DefenseRunConfig* io;    // the run's files and reporting
    DefenseState state;            // the injected gradients, AdamW (mosr.h)
    float* h0;                     // (n_slots, 2 batch, max_T, C) this step's rows' h_l^0
    int max_T;                     // the most positions a step's batch has (longest_step_row)
    float* erase_weight;           // (n_erase) OALW's w_i of every erase example; 1 without OALW
    float* row_weight;             // (batch) those of this step's erase rows
    Batch rr;                      // batch erase rows, then batch retain rows (states layout)
    const Example** rr_rows;       // (2 batch)
    int* rr_ids;                   // (2 batch) their rows in m0: erase rows first, then retain rows
    Batch caa;                     // n_caa CAA rows, then n_counter counterweight rows (next-token)
    Example* caa_rows;             // (n_caa + n_counter) this step's, drawn afresh into the same buffers
    const Example** caa_ptrs;      // (n_caa + n_counter)
    int n_caa, n_counter;
    Cycle erase_cycle, retain_cycle, caa_cycle, pseudo_cycle;
    uint64_t rng_data, rng_caa;    // separate streams: switching CAA on or off leaves the RR rows as they are
    DefenseLog log;
    long tokens;                   // positions run so far
    double flop;                   // FLOPs of the steps so far
    double start;
} DefenseRun;

static void free_defense_run(DefenseRun* r) {
    defense_log_free(&r->log);
    for (int k = 0; r->caa_rows && k < r->n_caa + r->n_counter; k++) free_example(&r->caa_rows[k]);
    free(r->caa_rows);
    free(r->caa_ptrs);
    if (r->caa.inputs) free_batch(&r->caa);
    if (r->rr.inputs) free_batch(&r->rr);
    free(r->rr_rows);
    free(r->rr_ids);
    free_cycle(&r->erase_cycle);
    free_cycle(&r->retain_cycle);
    free_cycle(&r->caa_cycle);
    free_cycle(&r->pseudo_cycle);
    free(r->erase_weight);
    free(r->row_weight);
    free_defense_state(&r->state);
    free(r->h0);
    m0_states_free(&r->own_m0);
    free(r->reference.items); // shallow copies: the strings belong to ref_file
    prompt_set_free(&r->ref_file);
    free_defense_data(&r->data);
    memset(r, 0, sizeof(*r));
}

// Every defence row's h_l^0 (erase rows, then retain rows): the cache's if they are these rows'
// states, else computed now, into the cache (for the next run) or into the run. -1 on failure.
// Under MPI a rank needs the states of the rows its share of the steps draws (want, NULL: all).
static int defense_m0_states(DefenseRun* r, Model* m, const DefenseLayers* dl, M0Cache* cache, int max_B,
                             const unsigned char* want) {
    const DefenseData* d = &r->data;
    int n = d->n_erase + d->n_retain;
    const Example** rows = malloc((n > 0 ? n : 1) * sizeof(Example*));
    if (!rows) return -1;
    for (int i = 0; i < d->n_erase; i++) rows[i] = &d->erase_rows[i];
    for (int i = 0; i < d->n_retain; i++) rows[d->n_erase + i] = &d->retain_rows[i];
    int status = 0;
    uint64_t key = m0_states_key(m, dl, rows, n, max_B);
    for (int i = 0; want && i < n; i++) key = hash_u32(key, want[i]); // (as m0_states_compute_some keys them)
    if (cache && cache->rows.memory && cache->rows.key == key) {
        fprintf(stderr, "defend: M0's states of the %d rows reused from the run before\n", n);
    } else {
        M0States* s = cache ? &cache->rows : &r->own_m0;
        m0_states_free(s);
        double start = time_now();
        status = m0_states_compute_some(s, m, dl, rows, n, max_B, want);
        int n_kept = n;
        for (int i = 0; want && i < n; i++) n_kept -= !want[i];
        if (status == 0 && want)
            fprintf(stderr, "defend: rank 0 uses %d of the %d rows: M0's states of those only\n", n_kept, n);
        if (status == 0) {
            fprintf(stderr, "defend: M0's states of the %d rows at %d layers (%.0f MB) in %.1f s: M0 is frozen, so "
                    "no step runs it\n", n_kept, s->n_slots, s->n_floats * sizeof(float) / 1048576.0, time_now() - start);
        }
    }
    r->m0 = cache ? &cache->rows : &r->own_m0;
    free(rows);
    return status;
}

// Under MPI: which rows (erase rows, then retain rows, as in M0States) this rank's share of the
// run's steps draws — rows k = rank, rank + N, ... of each half of every step's batch (see
// defense_run_step) — found by walking the run's draws ahead on copies of its cycles. malloc'd.
static unsigned char* rows_used_here(const DefenseRun* r, const DefenseConfig* cfg) {
    const DefenseData* d = &r->data;
    unsigned char* want = calloc(d->n_erase + d->n_retain + 1, 1);
    Cycle erase = r->erase_cycle, retain = r->retain_cycle;
    erase.order = malloc_or_die((d->n_erase + 1) * sizeof(int));
    retain.order = malloc_or_die((d->n_retain + 1) * sizeof(int));
    memcpy(erase.order, r->erase_cycle.order, d->n_erase * sizeof(int));
    memcpy(retain.order, r->retain_cycle.order, d->n_retain * sizeof(int));
    uint64_t rng = r->rng_data;
    for (int step = 0; want && step < cfg->steps; step++)
        for (int k = 0; k < 2 * cfg->batch; k++) {
            int is_erase = k < cfg->batch;
            int i = cycle_next(is_erase ? &erase : &retain, &rng);
            if (dist_mine(is_erase ? k : k - cfg->batch)) want[is_erase ? i : d->n_erase + i] = 1;
        }
    free(erase.order);
    free(retain.order);
    if (!want) error_msg("defend: out of memory");
    return want;
}

// --oalw-level token: appends to *states (an stb_ds array of *n rows of C) the M0 states at
// layer l of the rows' masked positions (the tokens their loss reads), in row order, running
// TOKEN_ROWS rows a forward (padding after a row does not change its states: attention is
// causal). 0, or -1.
#define TOKEN_ROWS 32
static int append_token_states(float** states, int* n, Model* m, const Example* const* rows, int n_rows, int layer) {
    int C = m->config.dim, T = m->config.seq_len;
    Batch b;
    build_batch(&b, TOKEN_ROWS, T);
    float* h = malloc((size_t)TOKEN_ROWS * T * C * sizeof(float));
    float* views[DEFEND_MAX_LAYERS] = {0};
    views[layer] = h;
    int status = h && b.inputs ? 0 : -1;
    if (status) error_msg("oalw: out of memory");
    for (int r0 = 0; status == 0 && r0 < n_rows; r0 += TOKEN_ROWS) {
        int nb = n_rows - r0 < TOKEN_ROWS ? n_rows - r0 : TOKEN_ROWS;
        batch_fill_states(&b, rows + r0, nb);
        if (model_forward_states(m, b.inputs, nb, b.T, layer + 1, views) != 0) { status = -1; break; }
        for (int r = 0; r < nb && status == 0; r++) {
            for (int t = 0; t < b.T; t++) {
                if (!(b.mask[(size_t)r * b.T + t] > 0.0f)) continue;
                memcpy(arraddnptr(*states, C), h + ((size_t)r * b.T + t) * C, C * sizeof(float));
                (*n)++;
            }
        }
    }
    free(h);
    free_batch(&b);
    return status;
}

// --oalw-out with the token level: every erase row's tokens (their text pieces) and weights, one
// JSONL line a row, and beside it an HTML page that colours each token by its weight
static int write_token_oalw(const char* path, const DefenseData* d, Tokenizer* t, int layer) {
    AtomicFile af, html;
    char html_path[4200];
    snprintf(html_path, sizeof(html_path), "%s.html", path);
    if (atomic_open(&af, path) != 0) return -1;
    if (atomic_open(&html, html_path) != 0) { atomic_abort(&af); return -1; }
    fprintf(html.f, "<!doctype html><meta charset=utf-8><title>OALW token weights</title>\n"
                    "<style>body{font:14px monospace;max-width:60em} span{padding:0 1px} p{margin:.8em 0}</style>\n"
                    "<h3>OALW token weights at layer %d: dark red = erased fully (high weight), white = spared "
                    "(low weight); grey = not erased</h3>\n", layer);
    for (int i = 0; i < d->n_erase; i++) {
        const Example* row = &d->erase_rows[i];
        fprintf(af.f, "{\"index\": %d, \"prompt\": ", i);
        json_write_string(af.f, d->file.items[d->erase[i]].prompt);
        fprintf(af.f, ", \"tokens\": [");
        int first = 1;
        fprintf(html.f, "<p>");
        for (int k = 1; k < row->n; k++) {
            // position k - 1's state predicts token k: the weight at k - 1 is shown on token k
            const char* piece = tokenizer_decode(t, row->ids[k - 1], row->ids[k]);
            float w = row->mask[k - 1];
            fprintf(af.f, "%s[", first ? "" : ", ");
            json_write_string(af.f, piece);
            fprintf(af.f, ", %.4f]", w);
            first = 0;
            int shade = w > 0.0f ? 255 - (int)fminf(255.0f, 110.0f * w) : -1;
            if (shade < 0) fprintf(html.f, "<span style=\"color:#999\">");
            else fprintf(html.f, "<span title=\"%.3f\" style=\"background:rgb(255,%d,%d)\">", w, shade, shade);
            for (const char* c = piece; *c; c++) {
                if (*c == '<') fputs("&lt;", html.f);
                else if (*c == '&') fputs("&amp;", html.f);
                else if (*c == '\n') fputs("&#8629;", html.f);
                else fputc(*c, html.f);
            }
            fprintf(html.f, "</span>");
        }
        fprintf(html.f, "</p>\n");
        fprintf(af.f, "]}\n");
    }
    if (atomic_commit(&html) != 0) { atomic_abort(&af); return -1; }
    return atomic_commit(&af);
}

// OALW one level down: each erased token's weight w_{i,t} from the overlap of its M0 state at
// layer l_w with the states of helpful answers' tokens (the responses of the reference set D_p and
// of the defence data's benign and pseudo items), in the centred space by default; the weights
// go into the erase rows' masks, where the erase term reads them (erase_loss_forward). M0: the
// caller switches the adapters off. 0, or -1 after one error line.
static int compute_token_oalw(Model* m, Tokenizer* t, DefenseData* d, const PromptSet* reference,
                              const DefenseConfig* cfg, const DefenseRunConfig* io, int layer) {
    double start = time_now();
    int C = m->config.dim, seq_len = m->config.seq_len;
    float *mal = NULL, *ref = NULL;
    int N = 0, M = 0, status = 0;
    // the erase rows, then the helpful answers: the reference's responses and the defence data's
    // benign and pseudo answers, at the positions whose states predict the answer (as the erase
    // rows' mask: from the last prompt token to the answer's second-to-last)
    int n_rows = d->n_erase + (reference ? reference->n : 0) + d->n_benign + d->n_pseudo, n_ref_rows = 0;
    int counts[3] = {0, 0, 0};
    Example* helpful = calloc(n_rows > 0 ? n_rows : 1, sizeof(Example));
    const Example** ptrs = malloc((n_rows > 0 ? n_rows : 1) * sizeof(Example*));
    if (!helpful || !ptrs) { error_msg("oalw: out of memory"); status = -1; }
    for (int i = 0; status == 0 && i < d->n_erase; i++) ptrs[i] = &d->erase_rows[i];
    if (status == 0) status = append_token_states(&mal, &N, m, ptrs, d->n_erase, layer);
    for (int i = 0; status == 0 && reference && i < reference->n; i++) {
        const PromptItem* it = &reference->items[i];
        if (it->response && example_from_chat(&helpful[n_ref_rows], t, it->prompt, it->response, seq_len) > 0) {
            ptrs[n_ref_rows] = &helpful[n_ref_rows];
            n_ref_rows++, counts[0]++;
        }
    }
    const int* idx[2] = {d->benign, d->pseudo};
    int n_idx[2] = {d->n_benign, d->n_pseudo};
    for (int k = 0; k < 2; k++) {
        for (int j = 0; status == 0 && j < n_idx[k]; j++) {
            const DefenseItem* it = &d->items[idx[k][j]];
            if (!it->response) continue;
            Example* ex = &helpful[n_ref_rows];
            if (representation_row(ex, it->prompt, it->n_prompt, it->response, it->n_response, 1) != 0) { status = -1; break; }
            for (int q = 0; q + 1 < ex->n; q++) ex->mask[q] = ex->mask[q + 1]; // one position earlier
            ex->mask[ex->n - 1] = 0.0f;
            ptrs[n_ref_rows++] = ex, counts[1 + k]++;
        }
    }
    if (status == 0) status = append_token_states(&ref, &M, m, ptrs, n_ref_rows, layer);
    for (int i = 0; helpful && i < n_ref_rows; i++) free_example(&helpful[i]);
    free(helpful);
    free(ptrs);
    float* w = status == 0 ? malloc((size_t)(N > 0 ? N : 1) * sizeof(float)) : NULL;
    if (status == 0 && !w) { error_msg("oalw: out of memory"); status = -1; }
    if (status == 0 && (N == 0 || M == 0)) {
        error_msg("oalw: token level needs erased tokens and helpful answers' tokens (got %d and %d)", N, M);
        status = -1;
    }
    if (status == 0 && cfg->oalw_space == OVERLAP_SPACE_CENTRED) centre_representations(mal, N, ref, M, C);
    if (status == 0) status = token_overlap_weights(w, NULL, mal, N, ref, M, C, &cfg->overlap);
    if (status == 0) {
        // the weights into the masks, in the order the states were taken; and where they fall:
        // on the prompt, on the answer's first tokens (the opener harmful and helpful answers share)
        double sum[3] = {0}, cnt[3] = {0};
        float lo = w[0], hi = w[0];
        int j = 0;
        for (int i = 0; i < d->n_erase; i++) {
            Example* row = &d->erase_rows[i];
            int n_prompt = d->items[d->erase[i]].n_prompt;
            int T = row->n < seq_len ? row->n : seq_len;
            for (int q = 0; q < T; q++) {
                if (!(row->mask[q] > 0.0f)) continue;
                row->mask[q] = w[j];
                int part = q < n_prompt - 1 ? 0 : q < n_prompt - 1 + 4 ? 1 : 2;
                sum[part] += w[j], cnt[part]++;
                lo = fminf(lo, w[j]), hi = fmaxf(hi, w[j]);
                j++;
            }
        }
        fprintf(stderr, "oalw: token level at layer %d (%s cosines, top-%d): %d erased tokens vs %d helpful-answer "
                "tokens (%d reference, %d benign, %d pseudo answers) in %.1f s; weights %.3f..%.3f, mean on the "
                "prompt %.3f, on the answer's first 4 tokens %.3f, after them %.3f\n", layer,
                cfg->oalw_space == OVERLAP_SPACE_CENTRED ? "centred" : "raw", cfg->overlap.k, N, M, counts[0],
                counts[1], counts[2], time_now() - start, lo, hi, cnt[0] ? sum[0] / cnt[0] : 0.0,
                cnt[1] ? sum[1] / cnt[1] : 0.0, cnt[2] ? sum[2] / cnt[2] : 0.0);
        if (io->oalw_out && dist_rank() == 0) status = write_token_oalw(io->oalw_out, d, t, layer);
    }
    free(w);
    arrfree(mal);
    arrfree(ref);
    return status;
}

// The data, the adapters on m (all seven maps of layers [0, max target]; M0 = the same without
// them), M0's states of every row, the buffers, and OALW's weights from M0. A util.h exit code.
// The most positions a step's batch can have: its longest representation row, CAA row or
// counterweight row (each cut to the context). The step's buffers are sized by it, not by the
// context: at SmolLM2-135M's shape the context's 256 positions reserved 6 GB for rows of ~70.
static int longest_step_row(const DefenseData* d, const DefenseConfig* cfg, int seq_len) {
    int longest = 1;
    for (int i = 0; i < d->n_erase; i++)
        if (d->erase_rows[i].n > longest) longest = d->erase_rows[i].n;
    for (int i = 0; i < d->n_retain; i++)
        if (d->retain_rows[i].n > longest) longest = d->retain_rows[i].n;
    for (int i = 0; cfg->caa && i < d->n_erase; i++) { // [prompt ; part of the completion ; refusal]
        const DefenseItem* it = &d->items[d->erase[i]];
        int n = it->n_prompt + it->n_harmful + it->n_refusal;
        if (n > longest) longest = n;
    }
    for (int i = 0; cfg->caa && cfg->caa_counterweight && i < d->n_pseudo; i++) {
        const DefenseItem* it = &d->items[d->pseudo[i]];
        int n = it->n_prompt + it->n_response;
        if (n > longest) longest = n;
    }
    return longest < seq_len ? longest : seq_len;
}

static int build_defense_run(DefenseRun* r, Model* m, Tokenizer* t, const DefenseConfig* cfg,
                             const DefenseRunConfig* io, const DefenseLayers* dl, M0Cache* cache) {
    memset(r, 0, sizeof(*r));
    r->io = io;
    DefenseData* d = &r->data;
    if (cfg->oalw && cfg->oalw_level == OALW_LEVEL_TOKEN && (cfg->oalw_every > 0 || cfg->oalw_space == OVERLAP_SPACE_SAFETY)) {
        error_msg("defend: --oalw-level token computes the weights once, from M0, in the raw or centred space "
                  "(not with --oalw-every or --oalw-space safety)");
        return EXIT_USAGE;
    }
    int rc = load_defense_data(d, t, cfg, io->data_path);
    if (rc != EXIT_OK) return rc;
    if (cfg->oalw && (rc = load_reference(&r->ref_file, &r->reference, io->reference_path)) != EXIT_OK) return rc;
    fprintf(stderr, "defend: %s, %d erase examples, %d retain examples (%s refusal rows, %s borderline), "
            "targets", cfg->method == DEFEND_MOSR ? "MOSR" : "RR", d->n_erase, d->n_retain,
            cfg->retain_refusal == RETAIN_REFUSAL_ALL ? "all-token" : cfg->retain_refusal == RETAIN_REFUSAL_ONLY ? "refusal-token" : "no",
            cfg->retain_borderline ? "with" : "no");
    for (int k = 0; k < dl->n_targets; k++) fprintf(stderr, "%s%d", k ? "," : " ", dl->targets[k]);
    fprintf(stderr, ", retain layers %d..%d (%d), OALW %s, CAA %s%s\n", dl->retain[0], dl->retain[dl->n_retain - 1],
            dl->n_retain, cfg->oalw ? "on" : "off", cfg->caa ? "on" : "off",
            cfg->caa && cfg->caa_counterweight ? " + counterweight" : "");

    if (cfg->caa) {
        // what the prefix draw has to work with: the action's length against K = frac * completion
        double action = 0.0, length = 0.0;
        int n_fixed = 0;
        for (int k = 0; k < d->n_erase; k++) {
            const DefenseItem* it = &d->items[d->erase[k]];
            action += (double)it->n_action / d->n_erase;
            length += (double)(it->n_harmful - 1) / d->n_erase;
            n_fixed += it->n_action >= (int)floorf((it->n_harmful - 1) * cfg->caa_frac);
        }
        fprintf(stderr, "defend: CAA prefixes %s; harmful actions %.1f tokens on average, completions %.1f, "
                "K = %g x completion; %d of %d actions reach K (their k is the action)\n",
                cfg->caa_prefix == CAA_PREFIX_CONTENT ? "through the harmful action" : "of k ~ U{kmin .. K} tokens",
                action, length, cfg->caa_frac, n_fixed, d->n_erase);
        if (cfg->caa_loss == CAA_LOSS_RETAIN)
            fprintf(stderr, "defend: CAA rows in the retain term: their refusal's states kept at M0's (run every "
                    "step), weight c_r(t) x %g\n", cfg->caa_weight);
    }
    if (model_lora_init(m, cfg->rank, cfg->lora_alpha, 0, dl->max_target + 1, (1 << N_LORA_MAPS) - 1, cfg->lora_b_std,
                        cfg->seed) != 0)
        return EXIT_FAILURE_RUN;
    fprintf(stderr, "defend: LoRA rank %d alpha %g on layers 0..%d: %zu trainable parameters\n", cfg->rank,
            cfg->lora_alpha, dl->max_target, m->lora.n_params);

    int seq_len = m->config.seq_len, B = 2 * cfg->batch;
    r->n_caa = cfg->caa ? (cfg->caa_batch > 0 ? cfg->caa_batch : cfg->batch) : 0;
    r->n_counter = cfg->caa && cfg->caa_counterweight ? r->n_caa : 0;
    // every buffer a step uses, at its largest (B x the longest row): the steps allocate nothing
    int n_rows_max = B > r->n_caa + r->n_counter ? B : r->n_caa + r->n_counter;
    r->max_T = longest_step_row(d, cfg, seq_len);
    if (model_reserve(m, n_rows_max, r->max_T) != 0) return EXIT_FAILURE_RUN;
    build_cycle(&r->erase_cycle, d->n_erase);
    build_cycle(&r->retain_cycle, d->n_retain);
    build_cycle(&r->caa_cycle, d->n_erase);
    build_cycle(&r->pseudo_cycle, d->n_pseudo);
    r->rng_data = cfg->seed * 0x9E3779B97F4A7C15ULL + 1;
    r->rng_caa = cfg->seed * 0xD1B54A32D192ED03ULL + 7;
    unsigned char* want = dist_size() > 1 ? rows_used_here(r, cfg) : NULL;
    int m0_status = defense_m0_states(r, m, dl, cache, B, want);
    free(want);
    if (m0_status != 0) return EXIT_FAILURE_RUN;
    int ok = build_defense_state(&r->state, m, dl, B, r->max_T) == 0;
    if (ok && (r->state.n_slots != r->m0->n_slots || m->config.dim != r->m0->C)) {
        error_msg("defend: M0's states were computed for other layers (%d, not %d)", r->m0->n_slots, r->state.n_slots);
        return EXIT_FAILURE_RUN;
    }
    r->h0 = ok ? malloc((size_t)r->state.n_slots * B * r->max_T * m->config.dim * sizeof(float)) : NULL;
    r->erase_weight = malloc(d->n_erase * sizeof(float));
    r->row_weight = malloc(cfg->batch * sizeof(float));
    r->rr_rows = malloc(B * sizeof(Example*));
    r->rr_ids = malloc(B * sizeof(int));
    if (!ok || !r->h0 || !r->erase_weight || !r->row_weight || !r->rr_rows || !r->rr_ids) {
        error_msg("defend: out of memory for a batch of %d x %d", B, seq_len);
        return EXIT_FAILURE_RUN;
    }
    build_batch(&r->rr, B, seq_len);
    for (int i = 0; i < d->n_erase; i++) r->erase_weight[i] = 1.0f;
    if (r->n_caa > 0) {
        // the CAA rows' buffers, filled afresh every step
        r->caa_rows = calloc(r->n_caa + r->n_counter, sizeof(Example));
        r->caa_ptrs = malloc((r->n_caa + r->n_counter) * sizeof(Example*));
        ok = r->caa_rows && r->caa_ptrs;
        for (int k = 0; ok && k < r->n_caa + r->n_counter; k++) ok = example_alloc(&r->caa_rows[k], seq_len + 1) == 0;
        if (!ok) {
            error_msg("defend: out of memory for %d CAA rows", r->n_caa + r->n_counter);
            return EXIT_FAILURE_RUN;
        }
        build_batch(&r->caa, r->n_caa + r->n_counter, seq_len);
        if (cfg->caa_loss == CAA_LOSS_RETAIN && reserve_caa_states(&r->state, m, r->n_caa + r->n_counter) != 0) {
            error_msg("defend: out of memory for M0's states of %d CAA rows", r->n_caa + r->n_counter);
            return EXIT_FAILURE_RUN;
        }
    }

    // OALW's weights from M0, before any training
    if (cfg->oalw) with_adapters(m, 0);
    if (cfg->oalw && cfg->oalw_level == OALW_LEVEL_TOKEN) {
        if (compute_token_oalw(m, t, d, &r->reference, cfg, io, dl->oalw_layer) != 0) return EXIT_FAILURE_RUN;
    } else if (cfg->oalw) {
        OalwStates* kept = cache ? &cache->oalw : NULL;
        if (compute_oalw(r->erase_weight, m, t, d, &r->reference, cfg, io, dl->oalw_layer, 0, kept) != 0)
            return EXIT_FAILURE_RUN;
    }
    r->start = time_now();
    profile_on = io->profile; // the steps only, from here
    memset(profile_seconds, 0, sizeof(profile_seconds));
    return EXIT_OK;
}

// this step's CAA rows: [prompt ; k harmful tokens ; refusal], then the counterweight rows
// (pseudo -> helpful); rows that do not fit the context are skipped. Returns the row count.
static int draw_caa_rows(DefenseRun* r, const DefenseConfig* cfg, int seq_len) {
    const DefenseData* d = &r->data;
    int n_rows = 0;
    for (int k = 0; k < r->n_caa; k++) {
        const DefenseItem* it = &d->items[d->erase[cycle_next(&r->caa_cycle, &r->rng_caa)]];
        // the completion without its EOS: a prefix of it is context, never an ending
        int k_action = cfg->caa_prefix == CAA_PREFIX_CONTENT ? it->n_action : 0;
        if (build_caa_example(&r->caa_rows[n_rows], NULL, it->prompt, it->n_prompt, it->harmful, it->n_harmful - 1,
                              it->refusal, it->n_refusal, d->end_id, k_action, cfg->caa_kmin, cfg->caa_frac, seq_len + 1,
                              &r->rng_caa) == 0)
            n_rows++;
    }
    for (int k = 0; k < r->n_counter; k++) {
        const DefenseItem* it = &d->items[d->pseudo[cycle_next(&r->pseudo_cycle, &r->rng_caa)]];
        if (example_from_ids(&r->caa_rows[n_rows], it->prompt, it->n_prompt, it->response, it->n_response,
                             seq_len + 1) == 0)
            n_rows++;
    }
    for (int k = 0; k < n_rows; k++) r->caa_ptrs[k] = &r->caa_rows[k];
    return n_rows;
}

// One step of the run: OALW's weights again if due, this step's rows, defense_step, the log.
// A util.h exit code.
static int defense_run_step(DefenseRun* r, Model* m, Tokenizer* t, const DefenseConfig* cfg, int step) {
    const DefenseData* d = &r->data;
    if (cfg->oalw && cfg->oalw_every > 0 && step > 0 && step % cfg->oalw_every == 0) {
        with_adapters(m, 1); // Mθ
        if (compute_oalw(r->erase_weight, m, t, d, &r->reference, cfg, r->io, r->state.layers.oalw_layer, step, NULL) != 0)
            return EXIT_FAILURE_RUN;
    }
    // the erase rows, then the retain rows, in one block
    for (int k = 0; k < 2 * cfg->batch; k++) {
        int erase = k < cfg->batch;
        int i = cycle_next(erase ? &r->erase_cycle : &r->retain_cycle, &r->rng_data);
        r->rr_rows[k] = erase ? &d->erase_rows[i] : &d->retain_rows[i];
        r->rr_ids[k] = erase ? i : d->n_erase + i;
        if (erase) r->row_weight[k] = r->erase_weight[i];
    }
    if (cfg->oalw) oalw_batch_weights(r->row_weight, cfg->batch, cfg->oalw_norm); // over the whole step's rows
    // under MPI: this rank's share, rows k = rank, rank + N, ... of each half (every rank drew
    // them all, so the draws stay the same everywhere); the rows move down in place
    int n_mine = 0, n_erase_mine = 0;
    for (int k = 0; k < 2 * cfg->batch; k++) {
        if (!dist_mine(k < cfg->batch ? k : k - cfg->batch)) continue;
        r->rr_rows[n_mine] = r->rr_rows[k];
        r->rr_ids[n_mine] = r->rr_ids[k];
        if (k < cfg->batch) r->row_weight[n_mine] = r->row_weight[k];
        n_mine++;
        if (k < cfg->batch) n_erase_mine = n_mine;
    }
    batch_fill_states(&r->rr, r->rr_rows, n_mine);
    const Batch* caa = NULL;
    if (r->n_caa > 0) {
        int n_rows = draw_caa_rows(r, cfg, m->config.seq_len), n_caa_mine = 0;
        for (int k = 0; k < n_rows; k++)
            if (dist_mine(k)) r->caa_ptrs[n_caa_mine++] = r->caa_ptrs[k];
        if (n_caa_mine > 0) {
            batch_fill_padded(&r->caa, r->caa_ptrs, n_caa_mine);
            caa = &r->caa;
        }
    }
    DefenseStepResult s;
    int gathered = 0;
    PROFILE(PROF_M0, gathered = m0_states_gather(r->h0, r->m0, r->rr_ids, r->rr.B, r->rr.T));
    if (gathered != 0 ||
        defense_step(&r->state, m, cfg, step, &r->rr, r->h0, n_erase_mine, r->row_weight, caa, &s) != 0)
        return EXIT_FAILURE_RUN;
    if (r->io->dump_grad && step == 0 && dist_rank() == 0 &&
        write_floats(r->io->dump_grad, m->lora.grad_memory, m->lora.n_params) != 0)
        return EXIT_FAILURE_RUN;
    // the adapters must stay the same on every rank (dist.h)
    if (dist_size() > 1 && ((step + 1) % DIST_CHECK_EVERY == 0 || step + 1 == cfg->steps)) {
        char what[80];
        snprintf(what, sizeof(what), "the adapters after step %d", step + 1);
        dist_check_same(dist_hash_bytes(HASH_START, m->lora.param_memory, m->lora.n_params * sizeof(float)), what);
    }
    r->tokens += s.tokens;
    r->flop += s.flop;

    double elapsed = time_now() - r->start;
    float rate = elapsed > 0 ? (float)(r->tokens / elapsed) : 0.0f;
    defense_log_add(&r->log, (DefenseLogRow){step, s.c_erase, s.c_retain, s.erase, s.retain, s.caa, rate,
                                             (float)elapsed}, cfg->steps);
    int every = r->io->print_every;
    if (every > 0 && (step % every == 0 || step == cfg->steps - 1)) {
        double eta = elapsed / (step + 1) * (cfg->steps - step - 1);
        fprintf(stderr, "step %4d/%d | erase %.4f retain %.4f", step + 1, cfg->steps, s.erase, s.retain);
        if (r->n_caa > 0) fprintf(stderr, " caa %.4f", s.caa);
        fprintf(stderr, " | c_s %.2f c_r %.2f | %.0f tok/s | ETA %.0f s\n", s.c_erase, s.c_retain, rate, eta);
    }
    return EXIT_OK;
}

void defense_run_config_default(DefenseRunConfig* r) {
    memset(r, 0, sizeof(*r));
    r->data_path = "data/defense.jsonl";
    r->reference_path = "data/reference.jsonl";
    r->print_every = 10;
}

int defend(Model* m, Tokenizer* t, const DefenseConfig* cfg, const DefenseRunConfig* io, DefenseLog* log_out) {
    return defend_reusing(m, t, cfg, io, log_out, NULL);
}

int defend_reusing(Model* m, Tokenizer* t, const DefenseConfig* cfg, const DefenseRunConfig* io, DefenseLog* log_out,
                   M0Cache* m0) {
    if (m->lora.n_params > 0) {
        error_msg("defend: the model already has LoRA adapters (merge or free them first)");
        return EXIT_USAGE;
    }
    if (cfg->steps < 0 || cfg->batch < 1 || cfg->rank < 1 || !(cfg->lr > 0.0f)) {
        error_msg("defend: bad config (steps %d, batch %d, rank %d, lr %g)", cfg->steps, cfg->batch, cfg->rank, cfg->lr);
        return EXIT_USAGE;
    }
    if (cfg->batch < dist_size()) { // every rank needs an erase and a retain row in each step
        error_msg("defend: --batch %d is less than the %d MPI ranks", cfg->batch, dist_size());
        return EXIT_USAGE;
    }
    DefenseLayers dl;
    if (defense_layers(&dl, cfg, m->config.n_layers) != 0) return EXIT_USAGE;

    DefenseRun run;
    int rc = build_defense_run(&run, m, t, cfg, io, &dl, m0);
    for (int step = 0; step < cfg->steps && rc == EXIT_OK; step++) {
        if (dist_any(interrupted())) {
            error_msg("defend: interrupted (Ctrl-C) at step %d of %d; no model written", step, cfg->steps);
            rc = EXIT_INTERRUPTED;
            break;
        }
        rc = defense_run_step(&run, m, t, cfg, step);
    }
    if (rc == EXIT_OK && cfg->steps > 0) {
        double seconds = fmax(time_now() - run.start, 1e-9), gflops = run.flop / seconds / 1e9;
        double peak = sgemm_peak_gflops();
        fprintf(stderr, "defend: %d steps in %.1f s (%.0f tok/s, %.1f GFLOP/s = %.0f%% of the sgemm peak: %.1f GFLOP/s "
                "on %d threads, measured now)\n", cfg->steps, seconds, run.tokens / seconds, gflops,
                peak > 0 ? 100.0 * gflops / peak : 0.0, peak, omp_get_max_threads());
        // AdamW's two moments of the adapters; beside the model's blocks, M0's states (every row's, and
        // a step's block) and their gradients
        const DefenseState* st = &run.state;
        size_t block = (size_t)(2 * cfg->batch) * run.max_T * m->config.dim;
        size_t states = 2 * st->n_slots * block + run.m0->n_floats; // h0 and dh, and every row's
        model_memory_report(stderr, "defend", m, 2 * st->n_lora * sizeof(float), states * sizeof(float),
                            "M0's states (every row's, a step's h0 and dh)");
        if (io->profile) profile_report(stderr, "defend", seconds, cfg->steps);
    }
    profile_on = 0;
    if (rc == EXIT_OK) {
        // the adapters as they are, for people who apply them to the base; then into the weights:
        // an ordinary model again
        // (under MPI rank 0 writes what there is to write)
        int root = dist_rank() == 0;
        if (root && io->adapter_out && model_save_peft(m, io->adapter_out, io->adapter_base) != 0) rc = EXIT_FAILURE_RUN;
        model_lora_merge(m);
        if (!root) { /* nothing to write */ }
        else if (io->log_path && write_defense_csv(&run.log, io->log_path) != 0) rc = EXIT_FAILURE_RUN;
        else if (io->plot_path && run.log.n > 0 && write_defense_plot(&run.log, io->plot_path, run.n_caa > 0, cfg->caa_loss) != 0)
            rc = EXIT_FAILURE_RUN;
    }
    if (m->lora.n_params > 0 && rc != EXIT_OK) model_lora_free(m);
    if (log_out && rc == EXIT_OK) {
        *log_out = run.log;
        run.log = (DefenseLog){0};
    }
    free_defense_run(&run);
    return rc;
}

// ----------------------------------------------------------------------------
// mosr defend: the command

static void defend_usage(FILE* f) {
    fprintf(f,
        "usage: mosr defend MODEL [-z TOKENIZER] --method rr|mosr -o OUT [options]\n"
        "\n"
        "Hardens a chat model with Representation Rerouting (RR, DESIGN.md 1.3), or with MOSR = RR +\n"
        "Overlap-Aware Loss Weighting + Context-Aware Augmentation (1.4), trained as LoRA adapters\n"
        "that are merged into the weights of OUT.bin (an ordinary checkpoint).\n"
        "\n"
        "  --method rr|mosr          rr: OALW and CAA off; mosr: both on (default mosr)\n"
        "MODEL: a llama2.c .bin (with -z TOKENIZER.bin), a .gguf file or a Hugging Face folder (their own\n"
        "tokenizer); OUT is written in MODEL's format (a folder: same tensor names and dtypes, config and\n"
        "tokenizer files copied; a GGUF: all its metadata), or as its name says (.gguf, .bin)\n"
        "  -o, --out OUT             the defended model (required)\n"
        "  --adapter-out DIR         also the LoRA adapters, before merging, as a PEFT adapter folder\n"
        "                            (adapter_model.safetensors + adapter_config.json)\n"
        "  --v0                      write OUT.bin as a llama2.c v0 checkpoint (default v1)\n"
        "  --template NAME           the chat template (" TEMPLATE_NAMES "); default: the\n"
        "                            model's own (tokenizer_config.json / GGUF), the world's for a tokenizer.bin\n"
        "data:\n"
        "  --data FILE               erase, retain and borderline examples (default data/defense.jsonl):\n"
        "                            malicious items with \"harmful\" are erased (prompt + completion);\n"
        "                            benign -> response, malicious -> refusal, pseudo -> response retained\n"
        "  --reference FILE          D_p, OALW's pseudo-malicious reference set (default data/reference.jsonl)\n"
        "RR:\n"
        "  --targets LIST            target layers L_t, e.g. 2,4 (default: n_layers/3 and 2*n_layers/3)\n"
        "  --retain-layers LIST      retain layers L_r (default: every layer up to the highest target)\n"
        "  --alpha X                 schedule: c_s = X (1 - t/2T), c_r = X t/2T (default 10); X scales\n"
        "                            the whole loss, which AdamW's step normalises away: the strength\n"
        "                            of the erasure is set by --steps and --lr\n"
        "  --erase-ratio R           c_s x 2R/(1+R), c_r x 2/(1+R): the erase/retain ratio moves R-fold,\n"
        "                            their common scale stays (default 1)\n"
        "  --steps N                 optimiser steps (default 150)\n"
        "  --batch N                 erase rows and retain rows per step, N each (default 16)\n"
        "  --lr X                    AdamW learning rate, constant, no weight decay (default 1e-3)\n"
        "  --seed N                  LoRA init, sampling, CAA prefixes (default 1337)\n"
        "  --erase-tokens all|response|distinct  erase prompt + response tokens (default, DESIGN.md\n"
        "                            1.3); the response only (milder: prompt states, which pseudo-malicious\n"
        "                            prompts share, are left alone); or the prompt + the response tokens no\n"
        "                            helpful response of the data has (the shared openers left alone)\n"
        "  --retain-refusal all|refusal|none  malicious -> refusal rows: retain loss on all their tokens,\n"
        "                            on the refusal tokens only, or no such rows (default all)\n"
        "  --retain-borderline       pseudo -> helpful rows in the retain set too, as the published\n"
        "                            Circuit Breakers recipe does with XSTest-like data (default off:\n"
        "  --no-retain-borderline    D_r = benign + malicious -> refusal, DESIGN.md 1.3)\n"
        "LoRA (all seven maps of layers 0..max target):\n"
        "  --rank N                  (default 8)\n"
        "  --lora-alpha X            scale alpha/rank (default 16)\n"
        "  --lora-b-std X            B ~ N(0, X): breaks the cos = 1 symmetry at step 0; 0 = the usual\n"
        "                            LoRA init, under which the erasure cannot start (default 1e-3)\n"
        "OALW (on with --method mosr):\n"
        "  --oalw, --no-oalw         switch it on or off\n"
        "  --oalw-layer L            l_w, the layer of the pooled representations (default: first target)\n"
        "  --oalw-pool mean|last|content  mean over the prompt tokens after BOS, the last one, or the\n"
        "                            content tokens: the user's request without the chat template and\n"
        "                            without sentences shared by 2%% or more of the set's prompts\n"
        "                            (politeness, jailbreak wrappers) (default mean)\n"
        "  --oalw-space raw|centred|safety  where the cosines are taken: as pooled, minus the mean over\n"
        "                            D_m and D_p, or centred and projected onto the safety subspace\n"
        "                            (benign-vs-malicious direction + malicious category directions)\n"
        "                            (default centred)\n"
        "  --oalw-level prompt|token  one weight per malicious prompt (default, the paper's), or one per\n"
        "                            erased token: the overlap of its M0 state with helpful answers' token\n"
        "                            states (reference and benign responses); --oalw-out then also writes\n"
        "                            FILE.html, the completions' tokens coloured by weight\n"
        "  --oalw-norm batch|weights  the weighted erasure divided by the batch size (default), or by\n"
        "                            the batch's own sum of weights (the first build's)\n"
        "  --oalw-score topk|centroid  s_i: mean of the k largest cosines to D_p, or the cosine to its\n"
        "                            centroid (default topk)\n"
        "  --oalw-k K                (default 8)\n"
        "  --oalw-form linear|softmax  w = max(w_min, 1 - lambda (s - min s)/(max s - min s)), or\n"
        "                            w ~ exp(-s/tau); either scaled to mean 1 (default linear)\n"
        "  --oalw-lambda X           (default 0.8)\n"
        "  --oalw-wmin X             (default 0.1)\n"
        "  --oalw-tau X              (default 0.05)\n"
        "  --oalw-every N            recompute the weights with the adapted model every N steps\n"
        "                            (default 0: once, from M0, before training)\n"
        "  --oalw-out FILE.jsonl     every malicious example's weight, overlap and nearest reference prompts\n"
        "CAA (on with --method mosr):\n"
        "  --caa, --no-caa           switch it on or off\n"
        "  --caa-prefix content|tokens  content: every prefix runs at least through the harmful action\n"
        "                            (the completion's first sentence), k ~ U{max(action, kmin) .. K};\n"
        "                            tokens: the first build's k ~ U{kmin .. K} (default content)\n"
        "  --caa-kmin N              the shortest prefix, in harmful tokens (default 0)\n"
        "  --caa-frac X              K = X * the completion's length (default 0.5)\n"
        "  --caa-weight X            c_a, the weight of the CAA term (default 1)\n"
        "  --caa-batch N             CAA rows per step (default: --batch)\n"
        "  --caa-counterweight       as many pseudo -> helpful rows beside them, in the same loss (default off)\n"
        "  --caa-loss ce|retain      ce: c_a x the cross-entropy of the refusal (default); retain: the rows\n"
        "                            join the retain term instead, c_r(t) x c_a x |h - h0| at L_r on the\n"
        "                            states that predict the refusal, h0 = the base model's (adapters off)\n"
        "                            on the same row, run every step: M0's states of a refusal written\n"
        "                            after a harmful prefix are kept, rather than its tokens trained\n"
        "output:\n"
        "  --log FILE.csv            step,c_erase,c_retain,erase,retain,caa,tokens_per_s,elapsed\n"
        "                            (default OUT.csv: OUT.bin without .bin)\n"
        "  --plot FILE.png           the loss terms against the step (default OUT_loss.png)\n"
        "  --print-every N           progress line every N steps, 0 = none (default 10)\n"
        "  --threads N               OpenMP threads (default: all; per rank under MPI); a run is\n"
        "                            reproducible for a given seed and thread count\n"
        "  --dump-grad FILE          the first step's adapter gradient (summed over the ranks) as raw\n"
        "                            float32, in the adapters' order, for tests\n"
        "  --profile                 where the steps' time went: seconds a step in each part (the\n"
        "                            layers' row loops, attention, classifier, losses, AdamW, ...)\n"
        "The model is written first, then the log and the plot. Ctrl-C stops the run without writing\n"
        "any of them (exit 130).\n"
        "Under MPI (mpirun -np N build/mpi/mosr defend ..., README \"Past one machine\"): each step's\n"
        "--batch erase and retain rows (and CAA rows) are dealt out to the ranks, row k to rank k %% N,\n"
        "the adapters' gradients summed; rank 0 prints and writes. --batch must be at least N.\n");
}

// out path without a trailing ".bin", plus suffix
static void derived_path(char* buf, size_t len, const char* out, const char* suffix) {
    size_t n = strlen(out);
    if (n > 4 && !strcmp(out + n - 4, ".bin")) n -= 4;
    snprintf(buf, len, "%.*s%s", (int)n, out, suffix);
}

// --targets and --retain-layers (ARG_CALL, dest: the DefenseConfig)
static int parse_targets(const char* cmd, const char* flag, const char* value, void* dest) {
    DefenseConfig* c = dest;
    return parse_layer_list(cmd, flag, value, c->targets, &c->n_targets);
}

static int parse_retain_layers(const char* cmd, const char* flag, const char* value, void* dest) {
    DefenseConfig* c = dest;
    return parse_layer_list(cmd, flag, value, c->retain_layers, &c->n_retain);
}

int defense_args(ArgSpec* specs, DefenseConfig* c, int with_batch) {
    const ArgSpec knobs[] = {
        {"--targets", ARG_CALL, c, .call = parse_targets},
        {"--retain-layers", ARG_CALL, c, .call = parse_retain_layers},
        {"--alpha", ARG_FLOAT, &c->alpha, 0, 1e6},
        {"--erase-ratio", ARG_FLOAT, &c->erase_ratio, 1e-6, 1e6},
        {"--batch", ARG_INT, &c->batch, 1, 4096},
        {"--lr", ARG_FLOAT, &c->lr, 1e-9, 10},
        {"--erase-tokens", ARG_CHOICE, &c->erase_tokens, .choices = "all|response|distinct"},        // ERASE_*
        {"--retain-refusal", ARG_CHOICE, &c->retain_refusal, .choices = "all|refusal|none"}, // RETAIN_REFUSAL_*
        {"--retain-borderline", ARG_SWITCH, &c->retain_borderline, 1},
        {"--no-retain-borderline", ARG_SWITCH, &c->retain_borderline, 0},
        {"--rank", ARG_INT, &c->rank, 1, 1024},
        {"--lora-alpha", ARG_FLOAT, &c->lora_alpha, 1e-6, 1e6},
        {"--lora-b-std", ARG_FLOAT, &c->lora_b_std, 0, 10},
        {"--oalw-layer", ARG_INT, &c->oalw_layer, 0, DEFEND_MAX_LAYERS - 1},
        {"--oalw-pool", ARG_CHOICE, &c->oalw_pool, .choices = "mean|last|content"},      // POOL_*
        {"--oalw-space", ARG_CHOICE, &c->oalw_space, .choices = "raw|centred|safety"},   // OVERLAP_SPACE_*
        {"--oalw-norm", ARG_CHOICE, &c->oalw_norm, .choices = "batch|weights"},          // OALW_NORM_*
        {"--oalw-level", ARG_CHOICE, &c->oalw_level, .choices = "prompt|token"},         // OALW_LEVEL_*
        {"--oalw-score", ARG_CHOICE, &c->overlap.score, .choices = "topk|centroid"},     // OVERLAP_TOPK, ...
        {"--oalw-form", ARG_CHOICE, &c->overlap.form, .choices = "linear|softmax"},      // WEIGHT_LINEAR, ...
        {"--oalw-k", ARG_INT, &c->overlap.k, 1, 1 << 20},
        {"--oalw-lambda", ARG_FLOAT, &c->overlap.lambda, 0, 1e3},
        {"--oalw-wmin", ARG_FLOAT, &c->overlap.w_min, 0, 1}, // w <= 1 before scaling
        {"--oalw-tau", ARG_FLOAT, &c->overlap.tau, 1e-6, 1e6},
        {"--oalw-every", ARG_INT, &c->oalw_every, 0, 1 << 24},
        {"--caa-prefix", ARG_CHOICE, &c->caa_prefix, .choices = "content|tokens"},       // CAA_PREFIX_*
        {"--caa-kmin", ARG_INT, &c->caa_kmin, 0, 1 << 20},
        {"--caa-frac", ARG_FLOAT, &c->caa_frac, 0, 1},
        {"--caa-weight", ARG_FLOAT, &c->caa_weight, 0, 1e6},
        {"--caa-batch", ARG_INT, &c->caa_batch, 1, 4096},
        {"--caa-counterweight", ARG_SWITCH, &c->caa_counterweight, 1},
        {"--caa-loss", ARG_CHOICE, &c->caa_loss, .choices = "ce|retain"},               // CAA_LOSS_*
    };
    _Static_assert(sizeof(knobs) / sizeof(knobs[0]) == DEFENSE_ARGS, "DEFENSE_ARGS counts the rows of knobs");
    int n = 0;
    for (int k = 0; k < DEFENSE_ARGS; k++)
        if (with_batch || strcmp(knobs[k].name, "--batch") != 0) specs[n++] = knobs[k];
    specs[n] = (ArgSpec){0};
    return n;
}

int defend_main(int argc, char** argv) {
    const char* cmd = "defend";
    const char *model_path = NULL, *tok_path = NULL, *out_path = NULL, *log_path = NULL, *plot_path = NULL;
    const char* template_name = NULL; // --template, NULL: the model's own
    int version = 1, threads = 0, method = DEFEND_MOSR, oalw = -1, caa = -1; // -1: as the method says
    DefenseConfig cfg;
    defense_config_default(&cfg, DEFEND_MOSR);
    DefenseRunConfig io;
    defense_run_config_default(&io);
    ArgSpec knobs[DEFENSE_ARGS + 1];
    defense_args(knobs, &cfg, 1);
    ArgSpec args[25 + DEFENSE_ARGS] = {
        {"MODEL.bin", ARG_STRING, &model_path},
        {"-z", ARG_STRING, &tok_path},
        {"--template", ARG_STRING, &template_name},
        {"-o|--out", ARG_STRING, &out_path},
        {"--adapter-out", ARG_STRING, &io.adapter_out},
        {"--v0", ARG_SWITCH, &version, 0},
        {"--method", ARG_CHOICE, &method, .choices = "rr|mosr"}, // DEFEND_RR, DEFEND_MOSR
        {"--oalw", ARG_SWITCH, &oalw, 1},
        {"--no-oalw", ARG_SWITCH, &oalw, 0},
        {"--caa", ARG_SWITCH, &caa, 1},
        {"--no-caa", ARG_SWITCH, &caa, 0},
        {"--data", ARG_STRING, &io.data_path},
        {"--reference", ARG_STRING, &io.reference_path},
        {"--steps", ARG_INT, &cfg.steps, 1, 1 << 24},
        {"--seed", ARG_U64, &cfg.seed},
        {"--oalw-out", ARG_STRING, &io.oalw_out},
        {"--log", ARG_STRING, &log_path},
        {"--plot", ARG_STRING, &plot_path},
        {"--print-every", ARG_INT, &io.print_every, 0, 1 << 24},
        {"--threads", ARG_INT, &threads, 1, 1024},
        {"--dump-grad", ARG_STRING, &io.dump_grad},
        {"--profile", ARG_SWITCH, &io.profile, 1},
        {0}};
    args_append(args, sizeof(args) / sizeof(args[0]), knobs);
    int parsed = args_parse(cmd, args, argc, argv);
    if (parsed == ARGS_HELP) { defend_usage(stdout); return EXIT_OK; }
    if (parsed != 0) return EXIT_USAGE;
    // the method sets only the defaults of its two components
    cfg.method = method;
    cfg.oalw = oalw >= 0 ? oalw : method == DEFEND_MOSR;
    cfg.caa = caa >= 0 ? caa : method == DEFEND_MOSR;
    if (!model_path || !out_path) {
        error_msg("%s: needs MODEL.bin (with -z), a .gguf or a model folder, and -o OUT.bin (or OUT.gguf, OUT folder) (see mosr defend --help)", cmd);
        return EXIT_USAGE;
    }
    if (io.oalw_out && !cfg.oalw) { // the weights are OALW's: without it there is nothing to write
        error_msg("%s: --oalw-out needs OALW (--method mosr, or --oalw)", cmd);
        return EXIT_USAGE;
    }
    if (threads > 0) omp_set_num_threads(threads);
    char log_default[4200], plot_default[4200];
    derived_path(log_default, sizeof(log_default), out_path, ".csv");
    derived_path(plot_default, sizeof(plot_default), out_path, "_loss.png");
    io.log_path = log_path ? log_path : log_default;
    io.plot_path = plot_path ? plot_path : plot_default;

    // -o may replace MODEL.bin: the model is read whole before anything is written
    const OutputArg outputs[] = {{.flag = "-o", .path = out_path, .may_replace = "MODEL.bin"},
                                 {.flag = "--log", .path = io.log_path}, {.flag = "--plot", .path = io.plot_path},
                                 {.flag = "--oalw-out", .path = io.oalw_out},
                                 {.flag = "--adapter-out", .path = io.adapter_out, .is_dir = 1},
                                 {.flag = "--dump-grad", .path = io.dump_grad}};
    const InputArg inputs[] = {{"MODEL.bin", model_path}, {"-z", tok_path}, {"--data", io.data_path},
                              {"--reference", io.reference_path}};
    // under MPI only rank 0 writes (its outputs are checked), and every rank reads the same inputs
    int root = dist_rank() == 0;
    if (paths_check(cmd, outputs, root ? 6 : 0, inputs, 4) != 0) return EXIT_USAGE;
    dist_check_inputs(cmd, inputs, 4);
    if (!root) io.oalw_out = io.adapter_out = io.dump_grad = NULL;
    io.adapter_base = model_path;
    // OUT is written in MODEL's format (a folder stays a folder), or as its name says (.gguf, .bin)
    ModelFormat out_format = model_format_for_output(out_path, model_path);
    Model m = {0};
    Tokenizer t = {0};
    int rc = load_model_and_tokenizer(&m, &t, model_path, tok_path);
    if (rc) return rc;
    if ((rc = template_attach(&t, model_path, tok_path, template_name)) != EXIT_OK) {
        tokenizer_free(&t);
        model_free(&m);
        return rc;
    }
    // the log and plot are written after the model, so that they never describe a run that
    // produced nothing; Ctrl-C stops the loop (defend() returns EXIT_INTERRUPTED) and writes
    // neither. One that comes during the writes lets them finish, then renames none of them
    // (they are one group) and exits EXIT_INTERRUPTED.
    DefenseRunConfig run = io;
    run.log_path = run.plot_path = NULL;
    DefenseLog log = {0};
    interrupt_catch();
    rc = defend(&m, &t, &cfg, &run, &log);
    if (rc == EXIT_OK && root) {
        atomic_group_begin(); // the model, log and plot all, or none (a full disk at the plot keeps the old model)
        int saved = out_format == MODEL_FORMAT_LLAMA2C ? model_save(&m, out_path, version)
                                                        : model_save_as(&m, out_path, out_format, model_path);
        int failed = saved != 0 || write_defense_csv(&log, io.log_path) != 0 ||
                     (log.n > 0 && write_defense_plot(&log, io.plot_path, cfg.caa, cfg.caa_loss) != 0);
        int stopped = !failed && interrupted(); // Ctrl-C during the writes: none of them, as during the loop
        if (atomic_group_end(!failed && !stopped) != 0) failed = 1;
        if (failed)
            rc = EXIT_FAILURE_RUN;
        else if (stopped) {
            error_msg("defend: interrupted (Ctrl-C) while writing the outputs; none written");
            rc = EXIT_INTERRUPTED;
        } else fprintf(stderr, "defend: %s (%s) written; log %s, plot %s\n", out_path, model_format_name(out_format),
                       io.log_path, io.plot_path);
    }
    interrupt_release();
    defense_log_free(&log);
    tokenizer_free(&t);
    model_free(&m);
    return rc;
}

