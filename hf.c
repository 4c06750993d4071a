// hf.c — Hugging Face model folders: config.json + model.safetensors (or a sharded
// model.safetensors.index.json), read into a model and written back; and PEFT LoRA adapters.
//
// safetensors (../shared/REAL_MODELS.md §A2): u64 N, N bytes of JSON
//   {"name": {"dtype": "BF16", "shape": [r, c], "data_offsets": [begin, end]}, ..., "__metadata__": {...}}
// then the data; offsets relative to the data's start, little-endian, C order. The files are mapped,
// not read: each tensor is widened to f32 from the map (and its Q/K rows put in mosr's order).
// The header is checked whole (its length against the file and a 100 MB cap as in the reference
// reader, every tensor's bytes inside the data and no two overlapping) before anything is read.
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <stb/stb_ds.h>

#include "formats.h"
#include "gguf.h"
#include "util.h"

#define ST_MAX_HEADER (100ull << 20) // the reference implementation's limit
#define ST_MAX_DIMS 8
#define HF_MAX_SHARDS 1024
#define HF_MAX_CONTEXT 8192 // the context mosr allocates for: min(max_position_embeddings, this)

// ----------------------------------------------------------------------------
// safetensors files

typedef struct {
    char* name;
    char dtype[16];    // as the file spells it
    int n_dims;
    uint64_t shape[ST_MAX_DIMS];
    uint64_t begin, end; // relative to the data
} STTensor;

typedef struct {
    char* path;
    const unsigned char* map;
    size_t size;
    uint64_t data_begin;   // 8 + header length
    STTensor* tensors;     // (n) an stb_ds array
    int n;
    char* header;          // the JSON, NUL-terminated
} STFile;

static void st_close(STFile* f) {
    for (int i = 0; i < f->n; i++) free(f->tensors[i].name);
    arrfree(f->tensors);
    free(f->header);
    if (f->map) munmap((void*)f->map, f->size);
    free(f->path);
    memset(f, 0, sizeof(*f));
}

// bytes per element of a safetensors dtype, 0 if unknown (safetensors tensor.rs Dtype)
static int st_dtype_bytes(const char* d) {
    static const struct { const char* name; int bytes; } T[] = {
        {"BOOL", 1}, {"U8", 1}, {"I8", 1}, {"F8_E5M2", 1}, {"F8_E4M3", 1}, {"I16", 2}, {"U16", 2},
        {"F16", 2}, {"BF16", 2}, {"I32", 4}, {"U32", 4}, {"F32", 4}, {"F64", 8}, {"I64", 8}, {"U64", 8}};
    for (size_t i = 0; i < sizeof(T) / sizeof(T[0]); i++)
        if (!strcmp(T[i].name, d)) return T[i].bytes;
    return 0;
}

// a non-negative integer JSON value below 2^53; 0 on success
static int json_uint(const char* p, uint64_t* out) {
    while (*p == ' ' || *p == '\n' || *p == '\t' || *p == '\r') p++;
    if (!isdigit((unsigned char)*p)) return -1;
    uint64_t v = 0;
    while (isdigit((unsigned char)*p)) {
        if (v > (1ull << 53) / 10) return -1;
        v = v * 10 + (uint64_t)(*p++ - '0');
    }
    if (*p == '.' || *p == 'e' || *p == 'E') return -1;
    *out = v;
    return 0;
}

// reads a JSON array of up to cap non-negative integers; the count, or -1
static int json_uint_array(const char* p, uint64_t* out, int cap) {
    JsonIter it;
    const char* v;
    int n = 0, r;
    if (json_iter_begin(&it, p) || it.close != ']') return -1;
    while ((r = json_iter_next(&it, NULL, &v)) == 1) {
        if (n >= cap || json_uint(v, &out[n])) return -1;
        n++;
    }
    return r == 0 ? n : -1;
}

static int compare_begin(const void* a, const void* b) {
    const STTensor* x = *(const STTensor* const*)a;
    const STTensor* y = *(const STTensor* const*)b;
    return x->begin < y->begin ? -1 : x->begin > y->begin;
}

// parses one tensor entry; 0, or one error line and -1
static int st_parse_entry(STFile* f, STTensor* t, const char* value, uint64_t data_size) {
    const char* path = f->path;
    char* dtype = json_get_string(value, "dtype");
    if (!dtype) { error_msg("%s: tensor %s has no dtype", path, t->name); return -1; }
    int bytes = st_dtype_bytes(dtype);
    if (!bytes || strlen(dtype) >= sizeof(t->dtype)) {
        error_msg("%s: tensor %s: unknown dtype '%.20s'", path, t->name, dtype);
        free(dtype);
        return -1;
    }
    strcpy(t->dtype, dtype);
    free(dtype);
    const char* shape = NULL;
    const char* offsets = NULL;
    JsonIter it;
    char* key;
    const char* v;
    int r;
    json_iter_begin(&it, value);
    while ((r = json_iter_next(&it, &key, &v)) == 1) {
        if (!strcmp(key, "shape")) shape = v;
        else if (!strcmp(key, "data_offsets")) offsets = v;
        free(key);
    }
    if (!shape || (t->n_dims = json_uint_array(shape, t->shape, ST_MAX_DIMS)) < 0) {
        error_msg("%s: tensor %s: no shape, or not a list of up to %d sizes", path, t->name, ST_MAX_DIMS);
        return -1;
    }
    uint64_t off[2];
    if (!offsets || json_uint_array(offsets, off, 2) != 2) {
        error_msg("%s: tensor %s: data_offsets is not [begin, end]", path, t->name);
        return -1;
    }
    uint64_t numel = 1;
    for (int d = 0; d < t->n_dims; d++)
        if (__builtin_mul_overflow(numel, t->shape[d], &numel)) {
            error_msg("%s: tensor %s: its shape overflows", path, t->name);
            return -1;
        }
    t->begin = off[0];
    t->end = off[1];
    if (t->begin > t->end || t->end > data_size) {
        error_msg("%s: tensor %s: bytes %llu..%llu lie outside the %llu bytes of data", path, t->name,
                  (unsigned long long)t->begin, (unsigned long long)t->end, (unsigned long long)data_size);
        return -1;
    }
    if (numel > UINT64_MAX / (uint64_t)bytes || t->end - t->begin != numel * (uint64_t)bytes) {
        error_msg("%s: tensor %s: %llu bytes of data for a %s tensor of %llu elements", path, t->name,
                  (unsigned long long)(t->end - t->begin), t->dtype, (unsigned long long)numel);
        return -1;
    }
    return 0;
}

static int st_open(STFile* f, const char* path) {
    memset(f, 0, sizeof(*f));
    if (!(f->path = strdup(path))) { error_msg("%s: out of memory", path); return -1; }
    if (map_file(path, &f->map, &f->size)) { st_close(f); return -1; }
    if (f->size < 8) {
        error_msg("%s: truncated: %zu bytes, a safetensors file starts with an 8-byte header length", path, f->size);
        st_close(f);
        return -1;
    }
    uint64_t n;
    memcpy(&n, f->map, 8);
    if (n > ST_MAX_HEADER || n > f->size - 8) {
        error_msg("%s: header length %llu %s", path, (unsigned long long)n,
                  n > ST_MAX_HEADER ? "is over the 100 MB limit" : "runs past the end of the file");
        st_close(f);
        return -1;
    }
    f->data_begin = 8 + n;
    uint64_t data_size = f->size - f->data_begin;
    if (!(f->header = malloc(n + 1))) { error_msg("%s: out of memory", path); st_close(f); return -1; }
    memcpy(f->header, f->map + 8, n);
    f->header[n] = '\0';
    if (strlen(f->header) != n) {
        // right-padding with spaces is allowed, NULs are not
        error_msg("%s: the JSON header holds a NUL byte", path);
        st_close(f);
        return -1;
    }
    JsonIter it;
    char* key;
    const char* v;
    int r;
    if (json_iter_begin(&it, f->header) || it.close != '}') {
        error_msg("%s: the header is not a JSON object", path);
        st_close(f);
        return -1;
    }
    while ((r = json_iter_next(&it, &key, &v)) == 1) {
        if (!strcmp(key, "__metadata__")) { free(key); continue; }
        arrput(f->tensors, ((STTensor){.name = key}));
        f->n = (int)arrlen(f->tensors);
        STTensor* t = &f->tensors[f->n - 1];
        if (*v != '{') {
            error_msg("%s: entry %s is not an object", path, key);
            st_close(f);
            return -1;
        }
        if (st_parse_entry(f, t, v, data_size)) { st_close(f); return -1; }
    }
    if (r < 0) {
        error_msg("%s: malformed JSON header (%s)", path, json_error());
        st_close(f);
        return -1;
    }
    const char* rest = it.p + 1; // after the object: only padding
    while (*rest == ' ' || *rest == '\n' || *rest == '\t' || *rest == '\r') rest++;
    if (*rest) { error_msg("%s: bytes after the JSON header", path); st_close(f); return -1; }
    STTensor** order = malloc((size_t)(f->n ? f->n : 1) * sizeof(STTensor*));
    if (!order) { error_msg("%s: out of memory", path); st_close(f); return -1; }
    for (int i = 0; i < f->n; i++) order[i] = &f->tensors[i];
    qsort(order, f->n, sizeof(STTensor*), compare_begin);
    for (int i = 1; i < f->n; i++) {
        if (order[i - 1]->end > order[i]->begin) {
            error_msg("%s: tensors %s and %s overlap", path, order[i - 1]->name, order[i]->name);
            free(order);
            st_close(f);
            return -1;
        }
    }
    free(order);
    return 0;
}

static STTensor* st_find(STFile* f, const char* name) {
    for (int i = 0; i < f->n; i++)
        if (!strcmp(f->tensors[i].name, name)) return &f->tensors[i];
    return NULL;
}

// ----------------------------------------------------------------------------
// a folder: config.json and its safetensors files

typedef struct {
    STFile* files;
    int n_files;
    char* config_json;
} HFFolder;

static void hf_close(HFFolder* h) {
    for (int i = 0; i < h->n_files; i++) st_close(&h->files[i]);
    free(h->files);
    free(h->config_json);
    memset(h, 0, sizeof(*h));
}

static void join(char* out, size_t cap, const char* dir, const char* name) {
    snprintf(out, cap, "%s/%s", dir, name);
}

static int file_exists(const char* path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

// opens config.json and the weights of dir: model.safetensors, or every file the index names
static int hf_open(HFFolder* h, const char* dir) {
    memset(h, 0, sizeof(*h));
    char path[4200];
    join(path, sizeof(path), dir, "config.json");
    if (!file_exists(path)) { error_msg("%s: is a directory, but not a model folder (no config.json)", dir); return -1; }
    if (!(h->config_json = read_file_max(path, 16u << 20, NULL))) return -1;
    join(path, sizeof(path), dir, "model.safetensors");
    if (file_exists(path)) {
        if (!(h->files = calloc(1, sizeof(STFile)))) { error_msg("%s: out of memory", dir); hf_close(h); return -1; }
        h->n_files = 1;
        if (st_open(&h->files[0], path)) { hf_close(h); return -1; }
        return 0;
    }
    join(path, sizeof(path), dir, "model.safetensors.index.json");
    if (!file_exists(path)) {
        error_msg("%s: no model.safetensors nor model.safetensors.index.json", dir);
        hf_close(h);
        return -1;
    }
    char* index = read_file_max(path, 64u << 20, NULL);
    if (!index) { hf_close(h); return -1; }
    // weight_map: name -> shard file; open each shard once
    const char* map = NULL;
    JsonIter it;
    char* key;
    const char* v;
    int r;
    if (json_iter_begin(&it, index) == 0 && it.close == '}')
        while ((r = json_iter_next(&it, &key, &v)) == 1) {
            if (!strcmp(key, "weight_map")) map = v;
            free(key);
        }
    if (!map || json_iter_begin(&it, map) || it.close != '}') {
        error_msg("%s: no weight_map object", path);
        free(index);
        hf_close(h);
        return -1;
    }
    char* names[HF_MAX_SHARDS];
    int n_names = 0, failed = 0;
    while (!failed && (r = json_iter_next(&it, &key, &v)) == 1) {
        free(key);
        char* file = json_parse_string(v);
        if (!file || strchr(file, '/') || !strcmp(file, "..")) {
            error_msg("%s: a weight_map entry is not a file name in the folder", path);
            free(file);
            failed = 1;
            break;
        }
        int seen = 0;
        for (int i = 0; i < n_names; i++) seen |= !strcmp(names[i], file);
        if (seen) { free(file); continue; }
        if (n_names == HF_MAX_SHARDS) { error_msg("%s: more than %d shards", path, HF_MAX_SHARDS); free(file); failed = 1; break; }
        names[n_names++] = file;
    }
    if (!failed && r < 0) { error_msg("%s: malformed weight_map (%s)", path, json_error()); failed = 1; }
    free(index);
    if (!failed && !(h->files = calloc(n_names ? n_names : 1, sizeof(STFile)))) failed = 1;
    for (int i = 0; i < n_names; i++) {
        if (!failed) {
            char shard[4200];
            join(shard, sizeof(shard), dir, names[i]);
            h->n_files++;
            if (st_open(&h->files[i], shard)) failed = 1;
        }
        free(names[i]);
    }
    if (failed) { hf_close(h); return -1; }
    return 0;
}

static STTensor* hf_find(HFFolder* h, const char* name, STFile** file) {
    for (int i = 0; i < h->n_files; i++) {
        STTensor* t = st_find(&h->files[i], name);
        if (t) { *file = &h->files[i]; return t; }
    }
    return NULL;
}

// ----------------------------------------------------------------------------
// config.json

// the value of a top-level member of a JSON object, or NULL
static const char* json_member(const char* object, const char* name) {
    JsonIter it;
    char* key;
    const char* v;
    const char* found = NULL;
    if (json_iter_begin(&it, object) || it.close != '}') return NULL;
    while (json_iter_next(&it, &key, &v) == 1) {
        if (!strcmp(key, name)) found = v;
        free(key);
    }
    return found;
}

static int config_int(const char* json, const char* key, int* out, int required, const char* path) {
    double v;
    if (json_get_number(json, key, &v) != 0) {
        if (required) error_msg("%s: config.json has no %s", path, key);
        return required ? -1 : 1;
    }
    if (v != floor(v) || v < 0 || v > 1e9) {
        error_msg("%s: config.json: %s = %g is not a size", path, key, v);
        return -1;
    }
    *out = (int)v;
    return 0;
}

static int config_bool(const char* json, const char* key, int dflt) {
    const char* v = json_member(json, key);
    if (!v) return dflt;
    if (!strncmp(v, "true", 4)) return 1;
    if (!strncmp(v, "false", 5)) return 0;
    return dflt;
}

// reads the model description of a config.json into c; 0, or one error line naming what is not
// supported and -1
static int hf_parse_config(const char* json, const char* path, Config* c) {
    config_defaults(c);
    const char* archs = json_member(json, "architectures");
    char* arch = NULL;
    if (archs) {
        JsonIter it;
        const char* v;
        if (json_iter_begin(&it, archs) == 0 && json_iter_next(&it, NULL, &v) == 1) arch = json_parse_string(v);
    }
    if (!arch) arch = json_get_string(json, "model_type");
    if (!arch) { error_msg("%s: config.json names no architecture", path); return -1; }
    int llama = !strcmp(arch, "LlamaForCausalLM") || !strcmp(arch, "llama");
    int qwen2 = !strcmp(arch, "Qwen2ForCausalLM") || !strcmp(arch, "qwen2");
    int qwen3 = !strcmp(arch, "Qwen3ForCausalLM") || !strcmp(arch, "qwen3");
    if (!llama && !qwen2 && !qwen3) {
        error_msg("%s: architecture %s is not supported (LlamaForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM)",
                  path, arch);
        free(arch);
        return -1;
    }
    free(arch);
    int max_pos = 2048;
    if (config_int(json, "hidden_size", &c->dim, 1, path) || config_int(json, "intermediate_size", &c->hidden_dim, 1, path) ||
        config_int(json, "num_hidden_layers", &c->n_layers, 1, path) ||
        config_int(json, "num_attention_heads", &c->n_heads, 1, path) ||
        config_int(json, "vocab_size", &c->vocab_size, 1, path) ||
        config_int(json, "max_position_embeddings", &max_pos, 0, path) < 0)
        return -1;
    c->n_kv_heads = c->n_heads;
    if (config_int(json, "num_key_value_heads", &c->n_kv_heads, 0, path) < 0) return -1;
    c->head_dim = c->n_heads > 0 ? c->dim / c->n_heads : 0;
    const char* hd = json_member(json, "head_dim");
    if (hd && strncmp(hd, "null", 4) && config_int(json, "head_dim", &c->head_dim, 1, path)) return -1;
    c->seq_len = max_pos < HF_MAX_CONTEXT ? max_pos : HF_MAX_CONTEXT;
    double v;
    if (json_get_number(json, "rope_theta", &v) == 0) c->rope_theta = (float)v;
    if (json_get_number(json, "rms_norm_eps", &v) == 0) c->norm_eps = (float)v;
    // HF's LlamaConfig and Qwen2/3Config default to untied
    c->shared_classifier = config_bool(json, "tie_word_embeddings", 0);
    char* act = json_get_string(json, "hidden_act");
    if (act && strcmp(act, "silu")) {
        error_msg("%s: hidden_act %s is not supported (silu)", path, act);
        free(act);
        return -1;
    }
    free(act);
    if (config_bool(json, "attention_bias", 0)) {
        error_msg("%s: attention_bias true (biases on every attention map, o_proj too) is not supported", path);
        return -1;
    }
    if (config_bool(json, "mlp_bias", 0)) { error_msg("%s: mlp_bias true is not supported", path); return -1; }
    if (config_bool(json, "use_sliding_window", 0)) {
        error_msg("%s: use_sliding_window true (sliding-window attention) is not supported", path);
        return -1;
    }
    c->qkv_bias = qwen2;
    c->qk_norm = qwen3;
    const char* scaling = json_member(json, "rope_scaling");
    if (scaling && *scaling == '{') {
        char* type = json_get_string(scaling, "rope_type");
        if (!type) type = json_get_string(scaling, "type");
        if (!type || strcmp(type, "llama3")) {
            if (!type || strcmp(type, "default")) {
                error_msg("%s: rope_scaling of type %s is not supported (llama3)", path, type ? type : "(none)");
                free(type);
                return -1;
            }
        } else {
            c->rope_scaling = ROPE_SCALING_LLAMA3;
            double f, lo, hi, orig;
            if (json_get_number(scaling, "factor", &f) || json_get_number(scaling, "low_freq_factor", &lo) ||
                json_get_number(scaling, "high_freq_factor", &hi) ||
                json_get_number(scaling, "original_max_position_embeddings", &orig) || !(hi > lo) || !(f > 0)) {
                error_msg("%s: rope_scaling llama3 needs factor, low_freq_factor < high_freq_factor and "
                          "original_max_position_embeddings", path);
                free(type);
                return -1;
            }
            c->rope_factor = (float)f;
            c->rope_low_freq_factor = (float)lo;
            c->rope_high_freq_factor = (float)hi;
            c->rope_original_max_position = (int)orig;
        }
        free(type);
    }
    char why[200];
    if (!config_valid(c, why, sizeof(why))) {
        error_msg("%s: config.json describes no model mosr can build: %s", path, why);
        return -1;
    }
    return 0;
}

// ----------------------------------------------------------------------------
// loading

static int st_dtype_of(const char* name, DType* t) {
    if (!strcmp(name, "F32")) *t = DTYPE_F32;
    else if (!strcmp(name, "F16")) *t = DTYPE_F16;
    else if (!strcmp(name, "BF16")) *t = DTYPE_BF16;
    else return -1;
    return 0;
}

// in_type (model_open_decode): the matrices stay in the mapped files (spec_view), which m keeps
int hf_load(Model* m, const char* dir, int in_type) {
    HFFolder h;
    if (hf_open(&h, dir)) return -1;
    Config c;
    char cfg_path[4200];
    join(cfg_path, sizeof(cfg_path), dir, "config.json");
    if (hf_parse_config(h.config_json, cfg_path, &c)) { hf_close(&h); return -1; }
    if ((in_type ? model_build_in_type(m, &c) : model_build(m, &c)) != 0) {
        error_msg("%s: cannot allocate the model", dir);
        hf_close(&h);
        return -1;
    }
    int n;
    TensorSpec* specs = model_tensor_specs(m, &n);
    float* tmp = NULL;
    size_t tmp_cap = 0;
    int failed = !specs;
    for (int i = 0; i < n && !failed; i++) {
        TensorSpec* s = &specs[i];
        STFile* f;
        STTensor* t = hf_find(&h, s->hf_name, &f);
        if (!t && s->optional) { // a tied checkpoint without lm_head.weight
            continue;
        }
        if (!t) { error_msg("%s: tensor %s is missing", dir, s->hf_name); failed = 1; break; }
        DType dt;
        if (st_dtype_of(t->dtype, &dt)) {
            error_msg("%s: tensor %s: dtype %s is not supported (F32, F16, BF16)", f->path, t->name, t->dtype);
            failed = 1;
            break;
        }
        int ok = s->cols ? t->n_dims == 2 && t->shape[0] == (uint64_t)s->rows && t->shape[1] == (uint64_t)s->cols
                         : t->n_dims == 1 && t->shape[0] == (uint64_t)s->rows;
        if (!ok) {
            char got[128] = "";
            for (int d = 0; d < t->n_dims; d++)
                snprintf(got + strlen(got), sizeof(got) - strlen(got), "%s%llu", d ? ", " : "", (unsigned long long)t->shape[d]);
            if (s->cols) error_msg("%s: tensor %s has shape [%s], config.json says [%d, %d]", f->path, t->name, got, s->rows, s->cols);
            else error_msg("%s: tensor %s has shape [%s], config.json says [%d]", f->path, t->name, got, s->rows);
            failed = 1;
            break;
        }
        const void* src = f->map + f->data_begin + t->begin;
        if (s->view ? spec_view(s, src, dt, s->perm_heads > 0, &m->weights) != 0
                    : spec_fill(s, src, dt, t->end - t->begin, s->perm_heads > 0, &tmp, &tmp_cap) != 0) {
            error_msg("%s: out of memory", dir);
            failed = 1;
            break;
        }
    }
    free(tmp);
    free(specs);
    for (int i = 0; i < h.n_files && in_type && !failed; i++) { // the views point into the maps
        weights_keep_map(&m->weights, h.files[i].map, h.files[i].size);
        h.files[i].map = NULL;
    }
    hf_close(&h);
    if (failed) { model_free(m); return -1; }
    // in type: the norms and biases only (the mapped matrices are not scanned, so as not to read
    // the whole file at open; a NaN there shows in the logits)
    for (size_t i = 0; i < m->n_params; i++)
        if (!isfinite(m->param_memory[i])) {
            error_msg("%s: the weights hold a NaN or an infinity", dir);
            model_free(m);
            return -1;
        }
    return 0;
}

// ----------------------------------------------------------------------------
// writing

typedef struct {
    const char* name;
    DType dtype;
    const float* data;    // f32, in mosr's row order
    int rows, cols, perm_heads, head_size; // cols 0: a vector
} OutTensor;

static const char* st_dtype_name(DType t) {
    return t == DTYPE_F16 ? "F16" : t == DTYPE_BF16 ? "BF16" : "F32";
}

static int compare_out(const void* a, const void* b) {
    const OutTensor* x = a;
    const OutTensor* y = b;
    int ax = (int)dtype_bytes(x->dtype, 1), ay = (int)dtype_bytes(y->dtype, 1);
    if (ax != ay) return ay - ax; // the reference writer: larger alignment first, then by name
    return strcmp(x->name, y->name);
}

static size_t out_numel(const OutTensor* t) { return (size_t)t->rows * (size_t)(t->cols ? t->cols : 1); }

// writes a safetensors file of the tensors (sorted as the reference writer sorts), atomically
static int st_write(const char* path, OutTensor* t, int n) {
    qsort(t, n, sizeof(OutTensor), compare_out);
    // the header: compact JSON, padded with spaces to a multiple of 8
    size_t cap = 256 + (size_t)n * 256, len = 0;
    char* header = malloc(cap);
    if (!header) { error_msg("%s: out of memory", path); return -1; }
    len += snprintf(header + len, cap - len, "{\"__metadata__\":{\"format\":\"pt\"}");
    uint64_t offset = 0;
    for (int i = 0; i < n; i++) {
        uint64_t bytes = dtype_bytes(t[i].dtype, out_numel(&t[i]));
        if (t[i].cols)
            len += snprintf(header + len, cap - len, ",\"%s\":{\"dtype\":\"%s\",\"shape\":[%d,%d],\"data_offsets\":[%llu,%llu]}",
                            t[i].name, st_dtype_name(t[i].dtype), t[i].rows, t[i].cols, (unsigned long long)offset,
                            (unsigned long long)(offset + bytes));
        else
            len += snprintf(header + len, cap - len, ",\"%s\":{\"dtype\":\"%s\",\"shape\":[%d],\"data_offsets\":[%llu,%llu]}",
                            t[i].name, st_dtype_name(t[i].dtype), t[i].rows, (unsigned long long)offset,
                            (unsigned long long)(offset + bytes));
        offset += bytes;
    }
    len += snprintf(header + len, cap - len, "}");
    while (len % 8) header[len++] = ' ';
    AtomicFile af;
    if (atomic_open(&af, path)) { free(header); return -1; }
    uint64_t n_header = len;
    fwrite(&n_header, 8, 1, af.f);
    fwrite(header, 1, len, af.f);
    free(header);
    float* rows = NULL;
    void* packed = NULL;
    size_t cap_rows = 0;
    int failed = 0;
    for (int i = 0; i < n && !failed; i++) {
        size_t numel = out_numel(&t[i]);
        if (numel > cap_rows) {
            free(rows);
            free(packed);
            cap_rows = numel;
            rows = malloc(numel * sizeof(float));
            packed = malloc(numel * sizeof(float));
            if (!rows || !packed) { error_msg("%s: out of memory", path); failed = 1; break; }
        }
        const float* src = t[i].data;
        if (t[i].perm_heads) {
            rows_pairs_to_halves(rows, src, t[i].perm_heads, t[i].head_size, t[i].cols ? t[i].cols : 1);
            src = rows;
        }
        if (t[i].dtype == DTYPE_F32) fwrite(src, sizeof(float), numel, af.f);
        else {
            dtype_narrow(packed, src, t[i].dtype, numel);
            fwrite(packed, 1, dtype_bytes(t[i].dtype, numel), af.f);
        }
    }
    free(rows);
    free(packed);
    if (failed) { atomic_abort(&af); return -1; }
    return atomic_commit(&af);
}

static int make_dir(const char* dir) {
    if (mkdir(dir, 0777) != 0 && errno != EEXIST) {
        error_msg("%s: cannot make the folder: %s", dir, strerror(errno));
        return -1;
    }
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) { error_msg("%s: exists and is not a folder", dir); return -1; }
    return 0;
}

static int copy_file(const char* from, const char* to) {
    size_t n;
    char* buf = read_file_max(from, READ_MAX_TEXT, &n);
    if (!buf) return -1;
    AtomicFile af;
    if (atomic_open(&af, to)) { free(buf); return -1; }
    fwrite(buf, 1, n, af.f);
    free(buf);
    return atomic_commit(&af);
}

// a config.json for a model that did not come from one
static int write_config(const Model* m, const char* path, const char* dtype) {
    const Config* c = &m->config;
    const char* arch = model_arch_name(c);
    AtomicFile af;
    if (atomic_open(&af, path)) return -1;
    FILE* f = af.f;
    fprintf(f, "{\n  \"architectures\": [\"%s\"],\n  \"model_type\": \"%s\",\n",
            !strcmp(arch, "qwen2") ? "Qwen2ForCausalLM" : !strcmp(arch, "qwen3") ? "Qwen3ForCausalLM" : "LlamaForCausalLM", arch);
    fprintf(f, "  \"hidden_size\": %d,\n  \"intermediate_size\": %d,\n  \"num_hidden_layers\": %d,\n", c->dim, c->hidden_dim, c->n_layers);
    fprintf(f, "  \"num_attention_heads\": %d,\n  \"num_key_value_heads\": %d,\n  \"head_dim\": %d,\n", c->n_heads, c->n_kv_heads, c->head_dim);
    fprintf(f, "  \"vocab_size\": %d,\n  \"max_position_embeddings\": %d,\n", c->vocab_size, c->seq_len);
    fprintf(f, "  \"rope_theta\": %.9g,\n  \"rms_norm_eps\": %.9g,\n  \"hidden_act\": \"silu\",\n", c->rope_theta, c->norm_eps);
    fprintf(f, "  \"tie_word_embeddings\": %s,\n  \"attention_bias\": false,\n", c->shared_classifier ? "true" : "false");
    if (c->rope_scaling == ROPE_SCALING_LLAMA3)
        fprintf(f, "  \"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": %.9g, \"low_freq_factor\": %.9g, "
                   "\"high_freq_factor\": %.9g, \"original_max_position_embeddings\": %d},\n",
                c->rope_factor, c->rope_low_freq_factor, c->rope_high_freq_factor, c->rope_original_max_position);
    else fprintf(f, "  \"rope_scaling\": null,\n");
    fprintf(f, "  \"torch_dtype\": \"%s\"\n}\n", !strcmp(dtype, "BF16") ? "bfloat16" : !strcmp(dtype, "F16") ? "float16" : "float32");
    return atomic_commit(&af);
}

static DType gguf_to_dtype(uint32_t t) {
    return t == GGML_TYPE_F16 ? DTYPE_F16 : t == GGML_TYPE_BF16 ? DTYPE_BF16 : DTYPE_F32;
}

int hf_save(const Model* m, const char* out_dir, const char* source_path) {
    ModelFormat src_format = source_path ? model_format_of(source_path) : MODEL_FORMAT_LLAMA2C;
    HFFolder h = {0};
    GGUFFile* g = NULL;
    if (src_format == MODEL_FORMAT_HF && hf_open(&h, source_path)) return -1;
    if (src_format == MODEL_FORMAT_GGUF && gguf_open(&g, source_path)) return -1;
    int n;
    TensorSpec* specs = model_tensor_specs(m, &n);
    OutTensor* out = calloc((size_t)n, sizeof(OutTensor));
    int k = 0, failed = !specs || !out;
    DType first = DTYPE_F32;
    for (int i = 0; i < n && !failed; i++) {
        const TensorSpec* s = &specs[i];
        DType dt = DTYPE_F32;
        if (src_format == MODEL_FORMAT_HF) {
            STFile* f;
            STTensor* t = hf_find(&h, s->hf_name, &f);
            if (!t && s->optional) continue; // tied, and the source had no lm_head either
            if (t) st_dtype_of(t->dtype, &dt);
        } else if (src_format == MODEL_FORMAT_GGUF) {
            int j = gguf_find_tensor(g, s->gguf_name);
            if (j < 0 && s->optional) continue;
            if (j >= 0) {
                uint32_t type;
                gguf_tensor(g, j, NULL, &type, NULL, NULL, NULL, NULL);
                dt = gguf_to_dtype(type);
            }
        } else if (s->optional) continue;
        if (k == 0) first = dt;
        out[k++] = (OutTensor){s->hf_name, dt, s->data, s->rows, s->cols, s->perm_heads, s->head_size};
    }
    char path[4200];
    if (!failed) failed = make_dir(out_dir);
    if (!failed) {
        join(path, sizeof(path), out_dir, "model.safetensors");
        failed = st_write(path, out, k);
    }
    if (!failed) {
        join(path, sizeof(path), out_dir, "config.json");
        if (src_format == MODEL_FORMAT_HF) {
            char from[4200];
            join(from, sizeof(from), source_path, "config.json");
            failed = copy_file(from, path);
        } else failed = write_config(m, path, st_dtype_name(first));
    }
    // the tokenizer, template and generation files of the source folder come along
    if (!failed && src_format == MODEL_FORMAT_HF) {
        DIR* d = opendir(source_path);
        struct dirent* e;
        while (d && !failed && (e = readdir(d))) {
            const char* name = e->d_name;
            size_t len = strlen(name);
            if (name[0] == '.' || !strcmp(name, "config.json") || !strcmp(name, "model.safetensors.index.json") ||
                (len > 12 && !strcmp(name + len - 12, ".safetensors")))
                continue;
            char from[4200];
            join(from, sizeof(from), source_path, name);
            join(path, sizeof(path), out_dir, name);
            if (file_exists(from)) failed = copy_file(from, path);
        }
        if (d) closedir(d);
    }
    free(out);
    free(specs);
    hf_close(&h);
    if (g) gguf_close(g);
    return failed ? -1 : 0;
}

// ----------------------------------------------------------------------------
// PEFT adapters: adapter_model.safetensors (lora_A (r, in), lora_B (out, r) per adapted map and
// layer, in Hugging Face's row order) and adapter_config.json. PEFT scales by lora_alpha / r, as
// mosr does.

static const char* const PEFT_MODULES[N_LORA_MAPS] = {"q_proj", "k_proj", "v_proj", "o_proj",
                                                      "gate_proj", "down_proj", "up_proj"};
static const char* const PEFT_PARENT[N_LORA_MAPS] = {"self_attn", "self_attn", "self_attn", "self_attn",
                                                     "mlp", "mlp", "mlp"};

int model_save_peft(const Model* m, const char* out_dir, const char* base_path) {
    const LoRA* lo = &m->lora;
    const Config* c = &m->config;
    if (lo->n_params == 0) { error_msg("%s: the model has no adapters to write", out_dir); return -1; }
    int HS = c->head_dim, QD = c->n_heads * HS, KVD = c->n_kv_heads * HS;
    int in_of[N_LORA_MAPS] = {c->dim, c->dim, c->dim, QD, c->dim, c->hidden_dim, c->dim};
    int out_of[N_LORA_MAPS] = {QD, KVD, KVD, c->dim, c->hidden_dim, c->dim, c->hidden_dim};
    int perm_of[N_LORA_MAPS] = {c->n_heads, c->n_kv_heads, 0, 0, 0, 0, 0};
    int n_layers = lo->layer_end - lo->layer_begin, r = lo->rank;
    int n = 0;
    OutTensor* t = calloc((size_t)(2 * N_LORA_MAPS * n_layers + 1), sizeof(OutTensor));
    char (*names)[128] = calloc((size_t)(2 * N_LORA_MAPS * n_layers + 1), 128);
    if (!t || !names) { free(t); free(names); error_msg("%s: out of memory", out_dir); return -1; }
    for (int k = 0; k < N_LORA_MAPS; k++) {
        if (!(lo->targets & (1 << k))) continue;
        for (int l = 0; l < n_layers; l++) {
            int layer = lo->layer_begin + l;
            snprintf(names[n], 128, "base_model.model.model.layers.%d.%s.%s.lora_A.weight", layer, PEFT_PARENT[k], PEFT_MODULES[k]);
            t[n] = (OutTensor){names[n], DTYPE_F32, lo->a[k] + (size_t)l * r * in_of[k], r, in_of[k], 0, 0};
            n++;
            snprintf(names[n], 128, "base_model.model.model.layers.%d.%s.%s.lora_B.weight", layer, PEFT_PARENT[k], PEFT_MODULES[k]);
            // B's rows are q's (k's) output rows: back into the half-rotation order of the base
            t[n] = (OutTensor){names[n], DTYPE_F32, lo->b[k] + (size_t)l * out_of[k] * r, out_of[k], r, perm_of[k], HS};
            n++;
        }
    }
    char path[4200];
    int failed = make_dir(out_dir);
    if (!failed) {
        join(path, sizeof(path), out_dir, "adapter_model.safetensors");
        failed = st_write(path, t, n);
    }
    free(t);
    free(names);
    if (failed) return -1;
    join(path, sizeof(path), out_dir, "adapter_config.json");
    AtomicFile af;
    if (atomic_open(&af, path)) return -1;
    FILE* f = af.f;
    fprintf(f, "{\n  \"peft_type\": \"LORA\",\n  \"task_type\": \"CAUSAL_LM\",\n  \"base_model_name_or_path\": ");
    json_write_string(f, base_path ? base_path : "");
    fprintf(f, ",\n  \"r\": %d,\n  \"lora_alpha\": %.9g,\n  \"lora_dropout\": 0.0,\n  \"bias\": \"none\",\n", r, lo->alpha);
    fprintf(f, "  \"fan_in_fan_out\": false,\n  \"inference_mode\": true,\n  \"use_rslora\": false,\n  \"target_modules\": [");
    int first = 1;
    for (int k = 0; k < N_LORA_MAPS; k++)
        if (lo->targets & (1 << k)) { fprintf(f, "%s\"%s\"", first ? "" : ", ", PEFT_MODULES[k]); first = 0; }
    fprintf(f, "],\n  \"layers_to_transform\": [");
    for (int l = lo->layer_begin; l < lo->layer_end; l++) fprintf(f, "%s%d", l > lo->layer_begin ? ", " : "", l);
    fprintf(f, "]\n}\n");
    return atomic_commit(&af);
}
