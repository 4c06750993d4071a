// gguf.c — GGUF v3: the metadata and tensor-directory reader (gguf.h), and the model loader and
// writer of model_open / model_save_as (formats.h).
//
// The file is mapped, never read whole: F32 tensors are copied from the map into the model's
// block, F16/BF16/Q8_0 widened on the way. Every count and length in the header is checked
// against the bytes that are left before it is used, so a header that claims 2^60 of anything
// is an error line, not an allocation.
#include "gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "formats.h"
#include "template.h"
#include "tokenizer.h"
#include "util.h"

#define GGUF_MAGIC 0x46554747u // "GGUF" little-endian
#define GGUF_DEFAULT_ALIGNMENT 32
#define GGUF_MAX_DEPTH 4       // nested arrays deeper than this are refused

typedef struct {
    char* key;
    uint32_t type;          // GGUF_TYPE_*
    uint32_t elem_type;     // arrays: the element type
    uint64_t count;         // arrays: the element count
    uint64_t raw_begin, raw_end; // the whole entry (key, type, value) in the file
    char* string;           // strings: a NUL-terminated copy
    char** strings;         // arrays of strings: copies
    void* elems;            // arrays of fixed-size elements: an aligned copy
    union { uint64_t u; int64_t i; double f; } num; // scalars, widened
} GGUFKV;

typedef struct {
    char* name;
    uint32_t type;
    int n_dims;
    uint64_t ne[4];
    uint64_t offset;  // relative to the data section
    uint64_t bytes;   // 0 when the type's size is unknown
} GGUFTensor;

struct GGUFFile {
    char* path;
    const unsigned char* map;
    size_t size;
    GGUFKV* kv;
    int n_kv;
    GGUFTensor* tensors;
    int n_tensors;
    uint32_t alignment;
    uint64_t data_begin;
};

// ----------------------------------------------------------------------------
// ggml's tensor types: name, elements per block, bytes per block (GGML:docs/gguf.md, ggml-common.h)

typedef struct { uint32_t type; const char* name; int block; int block_bytes; } GGMLTypeInfo;
static const GGMLTypeInfo GGML_TYPES[] = {
    {0, "F32", 1, 4},      {1, "F16", 1, 2},       {2, "Q4_0", 32, 18},    {3, "Q4_1", 32, 20},
    {6, "Q5_0", 32, 22},   {7, "Q5_1", 32, 24},    {8, "Q8_0", 32, 34},    {9, "Q8_1", 32, 36},
    {10, "Q2_K", 256, 84}, {11, "Q3_K", 256, 110}, {12, "Q4_K", 256, 144}, {13, "Q5_K", 256, 176},
    {14, "Q6_K", 256, 210}, {15, "Q8_K", 256, 292}, {16, "IQ2_XXS", 256, 66}, {17, "IQ2_XS", 256, 74},
    {18, "IQ3_XXS", 256, 98}, {19, "IQ1_S", 256, 50}, {20, "IQ4_NL", 32, 18}, {21, "IQ3_S", 256, 110},
    {22, "IQ2_S", 256, 82}, {23, "IQ4_XS", 256, 136}, {24, "I8", 1, 1},   {25, "I16", 1, 2},
    {26, "I32", 1, 4},     {27, "I64", 1, 8},      {28, "F64", 1, 8},      {29, "IQ1_M", 256, 56},
    {30, "BF16", 1, 2},    {34, "TQ1_0", 256, 54}, {35, "TQ2_0", 256, 66},
};
#define N_GGML_TYPES ((int)(sizeof(GGML_TYPES) / sizeof(GGML_TYPES[0])))

static const GGMLTypeInfo* ggml_type_info(uint32_t type) {
    for (int i = 0; i < N_GGML_TYPES; i++)
        if (GGML_TYPES[i].type == type) return &GGML_TYPES[i];
    return NULL;
}

const char* ggml_type_name(uint32_t type) {
    const GGMLTypeInfo* t = ggml_type_info(type);
    return t ? t->name : "unknown";
}

// ----------------------------------------------------------------------------
// a bounded cursor over the mapped file

typedef struct {
    const unsigned char* p;
    size_t size, pos;
    const char* path;
    int failed;
} Cursor;

static int need(Cursor* c, uint64_t n, const char* what) {
    if (c->failed) return -1;
    if (n > c->size - c->pos) {
        error_msg("%s: truncated: %s at byte %zu needs %llu bytes, %zu left", c->path, what, c->pos,
                  (unsigned long long)n, c->size - c->pos);
        c->failed = 1;
        return -1;
    }
    return 0;
}

static uint32_t read_u32(Cursor* c, const char* what) {
    uint32_t v = 0;
    if (need(c, 4, what)) return 0;
    memcpy(&v, c->p + c->pos, 4);
    c->pos += 4;
    return v;
}

static uint64_t read_u64(Cursor* c, const char* what) {
    uint64_t v = 0;
    if (need(c, 8, what)) return 0;
    memcpy(&v, c->p + c->pos, 8);
    c->pos += 8;
    return v;
}

// a string: returns a malloc'd NUL-terminated copy (a NUL inside ends it early), NULL on error
static char* read_string(Cursor* c, const char* what) {
    uint64_t n = read_u64(c, what);
    if (need(c, n, what)) return NULL;
    char* s = malloc(n + 1);
    if (!s) { error_msg("%s: out of memory reading %s", c->path, what); c->failed = 1; return NULL; }
    memcpy(s, c->p + c->pos, n);
    s[n] = '\0';
    c->pos += n;
    return s;
}

static int scalar_bytes(uint32_t type) {
    static const int bytes[GGUF_N_TYPES] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
    return type < GGUF_N_TYPES ? bytes[type] : 0;
}

// skips one array body (element type and count already read), checking it lies inside the file
static int skip_array(Cursor* c, uint32_t elem, uint64_t count, int depth, const char* key) {
    if (depth > GGUF_MAX_DEPTH) {
        error_msg("%s: metadata %s: arrays nested deeper than %d", c->path, key, GGUF_MAX_DEPTH);
        c->failed = 1;
        return -1;
    }
    if (elem >= GGUF_N_TYPES) {
        error_msg("%s: metadata %s: unknown array element type %u", c->path, key, elem);
        c->failed = 1;
        return -1;
    }
    if (elem == GGUF_TYPE_STRING) {
        if (count > (c->size - c->pos) / 8) return need(c, UINT64_MAX, key); // each needs >= 8 bytes
        for (uint64_t i = 0; i < count; i++) {
            uint64_t n = read_u64(c, key);
            if (need(c, n, key)) return -1;
            c->pos += n;
        }
        return 0;
    }
    if (elem == GGUF_TYPE_ARRAY) {
        if (count > (c->size - c->pos) / 12) return need(c, UINT64_MAX, key);
        for (uint64_t i = 0; i < count; i++) {
            uint32_t e = read_u32(c, key);
            uint64_t n = read_u64(c, key);
            if (c->failed || skip_array(c, e, n, depth + 1, key)) return -1;
        }
        return 0;
    }
    uint64_t w = (uint64_t)scalar_bytes(elem);
    if (count > (c->size - c->pos) / w) return need(c, UINT64_MAX, key);
    c->pos += count * w;
    return 0;
}

static int read_kv(Cursor* c, GGUFKV* kv) {
    kv->raw_begin = c->pos;
    kv->key = read_string(c, "a metadata key");
    if (!kv->key) return -1;
    kv->type = read_u32(c, kv->key);
    if (c->failed) return -1;
    if (kv->type >= GGUF_N_TYPES) {
        error_msg("%s: metadata %s: unknown value type %u", c->path, kv->key, kv->type);
        return -1;
    }
    if (kv->type == GGUF_TYPE_STRING) {
        kv->string = read_string(c, kv->key);
        if (!kv->string) return -1;
    } else if (kv->type == GGUF_TYPE_ARRAY) {
        kv->elem_type = read_u32(c, kv->key);
        kv->count = read_u64(c, kv->key);
        if (c->failed) return -1;
        size_t begin = c->pos;
        if (skip_array(c, kv->elem_type, kv->count, 1, kv->key)) return -1;
        // the array lies inside the file: its copies are bounded by the file's size
        if (kv->elem_type == GGUF_TYPE_STRING) {
            kv->strings = calloc(kv->count ? kv->count : 1, sizeof(char*));
            if (!kv->strings) { error_msg("%s: out of memory reading %s", c->path, kv->key); return -1; }
            Cursor s = *c;
            s.pos = begin;
            for (uint64_t i = 0; i < kv->count; i++)
                if (!(kv->strings[i] = read_string(&s, kv->key))) return -1;
        } else if (kv->elem_type != GGUF_TYPE_ARRAY) {
            size_t n = c->pos - begin;
            kv->elems = malloc(n ? n : 1);
            if (!kv->elems) { error_msg("%s: out of memory reading %s", c->path, kv->key); return -1; }
            memcpy(kv->elems, c->p + begin, n);
        }
    } else {
        int w = scalar_bytes(kv->type);
        if (need(c, (uint64_t)w, kv->key)) return -1;
        unsigned char b[8] = {0};
        memcpy(b, c->p + c->pos, w);
        c->pos += w;
        switch (kv->type) {
        case GGUF_TYPE_UINT8: case GGUF_TYPE_BOOL: kv->num.u = b[0]; break;
        case GGUF_TYPE_INT8: kv->num.i = (int8_t)b[0]; break;
        case GGUF_TYPE_UINT16: { uint16_t v; memcpy(&v, b, 2); kv->num.u = v; break; }
        case GGUF_TYPE_INT16: { int16_t v; memcpy(&v, b, 2); kv->num.i = v; break; }
        case GGUF_TYPE_UINT32: { uint32_t v; memcpy(&v, b, 4); kv->num.u = v; break; }
        case GGUF_TYPE_INT32: { int32_t v; memcpy(&v, b, 4); kv->num.i = v; break; }
        case GGUF_TYPE_FLOAT32: { float v; memcpy(&v, b, 4); kv->num.f = v; break; }
        case GGUF_TYPE_UINT64: memcpy(&kv->num.u, b, 8); break;
        case GGUF_TYPE_INT64: memcpy(&kv->num.i, b, 8); break;
        case GGUF_TYPE_FLOAT64: memcpy(&kv->num.f, b, 8); break;
        }
    }
    kv->raw_end = c->pos;
    return 0;
}

static int compare_offsets(const void* a, const void* b) {
    const GGUFTensor* x = *(const GGUFTensor* const*)a;
    const GGUFTensor* y = *(const GGUFTensor* const*)b;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

static int read_tensor_info(Cursor* c, GGUFTensor* t, int index) {
    t->name = read_string(c, "a tensor name");
    if (!t->name) return -1;
    uint32_t n_dims = read_u32(c, t->name);
    if (c->failed) return -1;
    if (n_dims < 1 || n_dims > 4) {
        error_msg("%s: tensor %s: %u dimensions (1 to 4 expected)", c->path, t->name, n_dims);
        return -1;
    }
    t->n_dims = (int)n_dims;
    uint64_t numel = 1;
    for (int d = 0; d < 4; d++) t->ne[d] = 1;
    for (int d = 0; d < t->n_dims; d++) {
        t->ne[d] = read_u64(c, t->name);
        if (c->failed) return -1;
        if (t->ne[d] == 0 || t->ne[d] > (1ull << 40) || __builtin_mul_overflow(numel, t->ne[d], &numel)) {
            error_msg("%s: tensor %s: dimension %d is %llu", c->path, t->name, d, (unsigned long long)t->ne[d]);
            return -1;
        }
    }
    t->type = read_u32(c, t->name);
    t->offset = read_u64(c, t->name);
    if (c->failed) return -1;
    const GGMLTypeInfo* info = ggml_type_info(t->type);
    if (info) {
        if (t->ne[0] % info->block != 0) {
            error_msg("%s: tensor %s: %s needs rows that are a multiple of %d, not %llu", c->path, t->name,
                      info->name, info->block, (unsigned long long)t->ne[0]);
            return -1;
        }
        uint64_t blocks = numel / info->block;
        if (__builtin_mul_overflow(blocks, (uint64_t)info->block_bytes, &t->bytes)) {
            error_msg("%s: tensor %s: too large", c->path, t->name);
            return -1;
        }
    }
    (void)index;
    return 0;
}

void gguf_close(GGUFFile* g) {
    if (!g) return;
    for (int i = 0; i < g->n_kv; i++) {
        GGUFKV* kv = &g->kv[i];
        free(kv->key);
        free(kv->string);
        if (kv->strings)
            for (uint64_t j = 0; j < kv->count; j++) free(kv->strings[j]);
        free(kv->strings);
        free(kv->elems);
    }
    free(g->kv);
    for (int i = 0; i < g->n_tensors; i++) free(g->tensors[i].name);
    free(g->tensors);
    if (g->map && g->size) munmap((void*)g->map, g->size);
    free(g->path);
    free(g);
}

// maps path read-only; 0, or one error line and -1
int map_file(const char* path, const unsigned char** map, size_t* size) {
    *map = NULL;
    *size = 0;
    int fd = open(path, O_RDONLY);
    if (fd < 0) { error_msg("%s: cannot open: %s", path, strerror(errno)); return -1; }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        error_msg("%s: not a regular file", path);
        close(fd);
        return -1;
    }
    if (st.st_size == 0) { close(fd); return 0; }
    void* p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (p == MAP_FAILED) { error_msg("%s: cannot map: %s", path, strerror(errno)); return -1; }
    *map = p;
    *size = (size_t)st.st_size;
    return 0;
}

int gguf_open(GGUFFile** out, const char* path) {
    *out = NULL;
    GGUFFile* g = calloc(1, sizeof(GGUFFile));
    if (!g || !(g->path = strdup(path))) { free(g); error_msg("%s: out of memory", path); return -1; }
    if (map_file(path, &g->map, &g->size)) { gguf_close(g); return -1; }
    Cursor c = {g->map, g->size, 0, path, 0};
    uint32_t magic = read_u32(&c, "the magic");
    if (c.failed) { gguf_close(g); return -1; }
    if (magic != GGUF_MAGIC) {
        error_msg("%s: not a GGUF file (no \"GGUF\" magic)", path);
        gguf_close(g);
        return -1;
    }
    uint32_t version = read_u32(&c, "the version");
    uint64_t n_tensors = read_u64(&c, "the tensor count");
    uint64_t n_kv = read_u64(&c, "the metadata count");
    if (c.failed) { gguf_close(g); return -1; }
    if (version != 3 && version != 2) {
        error_msg("%s: GGUF version %u (2 and 3 are read)", path, version);
        gguf_close(g);
        return -1;
    }
    // an entry needs at least 12 bytes, a tensor info 32: the counts are bounded by what is left
    if (n_kv > (g->size - c.pos) / 12 || n_tensors > (g->size - c.pos) / 32 || n_kv > INT32_MAX ||
        n_tensors > INT32_MAX) {
        error_msg("%s: header claims %llu metadata entries and %llu tensors, more than %zu bytes can hold", path,
                  (unsigned long long)n_kv, (unsigned long long)n_tensors, g->size);
        gguf_close(g);
        return -1;
    }
    g->kv = calloc(n_kv ? n_kv : 1, sizeof(GGUFKV));
    g->tensors = calloc(n_tensors ? n_tensors : 1, sizeof(GGUFTensor));
    if (!g->kv || !g->tensors) { error_msg("%s: out of memory", path); gguf_close(g); return -1; }
    for (uint64_t i = 0; i < n_kv; i++) {
        g->n_kv++;
        if (read_kv(&c, &g->kv[i])) { gguf_close(g); return -1; }
    }
    g->alignment = GGUF_DEFAULT_ALIGNMENT;
    uint32_t a;
    if (gguf_get_u32(g, "general.alignment", &a) == 0) {
        if (a == 0 || (a & (a - 1)) != 0 || a > (1u << 20)) {
            error_msg("%s: general.alignment %u is not a power of two up to 1 MiB", path, a);
            gguf_close(g);
            return -1;
        }
        g->alignment = a;
    }
    for (uint64_t i = 0; i < n_tensors; i++) {
        g->n_tensors++;
        if (read_tensor_info(&c, &g->tensors[i], (int)i)) { gguf_close(g); return -1; }
    }
    uint64_t data_begin = (c.pos + g->alignment - 1) / g->alignment * g->alignment;
    if (data_begin > g->size && n_tensors > 0) {
        error_msg("%s: truncated: the tensor data would start at byte %llu of %zu", path,
                  (unsigned long long)data_begin, g->size);
        gguf_close(g);
        return -1;
    }
    g->data_begin = data_begin;
    uint64_t data_size = data_begin <= g->size ? g->size - data_begin : 0;
    // every tensor inside the data section, aligned, and no two overlapping
    GGUFTensor** order = malloc((n_tensors ? n_tensors : 1) * sizeof(GGUFTensor*));
    if (!order) { error_msg("%s: out of memory", path); gguf_close(g); return -1; }
    for (int i = 0; i < g->n_tensors; i++) {
        GGUFTensor* t = &g->tensors[i];
        order[i] = t;
        if (t->offset % g->alignment != 0) {
            error_msg("%s: tensor %s: offset %llu is not a multiple of the alignment %u", path, t->name,
                      (unsigned long long)t->offset, g->alignment);
            free(order); gguf_close(g); return -1;
        }
        if (t->offset > data_size || t->bytes > data_size - t->offset) {
            error_msg("%s: tensor %s: bytes %llu..%llu lie past the end of the file (data section %llu bytes)", path,
                      t->name, (unsigned long long)t->offset, (unsigned long long)(t->offset + t->bytes),
                      (unsigned long long)data_size);
            free(order); gguf_close(g); return -1;
        }
        for (int j = 0; j < i; j++)
            if (!strcmp(g->tensors[j].name, t->name)) {
                error_msg("%s: tensor %s is listed twice", path, t->name);
                free(order); gguf_close(g); return -1;
            }
    }
    qsort(order, g->n_tensors, sizeof(GGUFTensor*), compare_offsets);
    for (int i = 1; i < g->n_tensors; i++)
        if (order[i - 1]->offset + order[i - 1]->bytes > order[i]->offset) {
            error_msg("%s: tensors %s and %s overlap", path, order[i - 1]->name, order[i]->name);
            free(order); gguf_close(g); return -1;
        }
    free(order);
    *out = g;
    return 0;
}

// ----------------------------------------------------------------------------
// getters

static const GGUFKV* find_kv(const GGUFFile* g, const char* key) {
    for (int i = g->n_kv - 1; i >= 0; i--) // a key given twice: the last
        if (!strcmp(g->kv[i].key, key)) return &g->kv[i];
    return NULL;
}

const char* gguf_get_string(const GGUFFile* g, const char* key) {
    const GGUFKV* kv = find_kv(g, key);
    return kv && kv->type == GGUF_TYPE_STRING ? kv->string : NULL;
}

int gguf_get_u32(const GGUFFile* g, const char* key, uint32_t* out) {
    const GGUFKV* kv = find_kv(g, key);
    if (!kv) return -1;
    switch (kv->type) {
    case GGUF_TYPE_UINT8: case GGUF_TYPE_UINT16: case GGUF_TYPE_UINT32: case GGUF_TYPE_UINT64:
        if (kv->num.u > UINT32_MAX) return -1;
        *out = (uint32_t)kv->num.u;
        return 0;
    case GGUF_TYPE_INT8: case GGUF_TYPE_INT16: case GGUF_TYPE_INT32: case GGUF_TYPE_INT64:
        if (kv->num.i < 0 || kv->num.i > (int64_t)UINT32_MAX) return -1;
        *out = (uint32_t)kv->num.i;
        return 0;
    default: return -1;
    }
}

int gguf_get_f32(const GGUFFile* g, const char* key, float* out) {
    const GGUFKV* kv = find_kv(g, key);
    if (!kv || (kv->type != GGUF_TYPE_FLOAT32 && kv->type != GGUF_TYPE_FLOAT64)) return -1;
    *out = (float)kv->num.f;
    return 0;
}

int gguf_get_bool(const GGUFFile* g, const char* key, int* out) {
    const GGUFKV* kv = find_kv(g, key);
    if (!kv || kv->type != GGUF_TYPE_BOOL) return -1;
    *out = kv->num.u != 0;
    return 0;
}

const char* const* gguf_get_string_array(const GGUFFile* g, const char* key, uint64_t* n) {
    const GGUFKV* kv = find_kv(g, key);
    if (!kv || kv->type != GGUF_TYPE_ARRAY || kv->elem_type != GGUF_TYPE_STRING) return NULL;
    *n = kv->count;
    return (const char* const*)kv->strings;
}

const void* gguf_get_array(const GGUFFile* g, const char* key, uint32_t* type, uint64_t* n) {
    const GGUFKV* kv = find_kv(g, key);
    if (!kv || kv->type != GGUF_TYPE_ARRAY) return NULL;
    *type = kv->elem_type;
    *n = kv->count;
    return kv->elems ? kv->elems : (const void*)kv->strings;
}

int gguf_n_tensors(const GGUFFile* g) { return g->n_tensors; }

int gguf_find_tensor(const GGUFFile* g, const char* name) {
    for (int i = 0; i < g->n_tensors; i++)
        if (!strcmp(g->tensors[i].name, name)) return i;
    return -1;
}

void gguf_tensor(const GGUFFile* g, int i, const char** name, uint32_t* type, int* n_dims, uint64_t ne[4],
                 const void** data, uint64_t* bytes) {
    const GGUFTensor* t = &g->tensors[i];
    if (name) *name = t->name;
    if (type) *type = t->type;
    if (n_dims) *n_dims = t->n_dims;
    if (ne) memcpy(ne, t->ne, sizeof(t->ne));
    if (data) *data = t->bytes ? g->map + g->data_begin + t->offset : NULL;
    if (bytes) *bytes = t->bytes;
}

const char* gguf_path(const GGUFFile* g) { return g->path; }
int gguf_n_kv(const GGUFFile* g) { return g->n_kv; }
const char* gguf_kv_key(const GGUFFile* g, int i) { return g->kv[i].key; }
void gguf_kv_raw(const GGUFFile* g, int i, const void** bytes, uint64_t* n) {
    *bytes = g->map + g->kv[i].raw_begin;
    *n = g->kv[i].raw_end - g->kv[i].raw_begin;
}
uint32_t gguf_alignment(const GGUFFile* g) { return g->alignment; }
uint64_t gguf_tensor_offset(const GGUFFile* g, int i) { return g->tensors[i].offset; }

// ----------------------------------------------------------------------------
// the model loader (arch llama, qwen2, qwen3)
//
// Keys: {arch}.embedding_length, .block_count, .feed_forward_length, .attention.head_count,
// .attention.head_count_kv, .attention.key_length (the head size), .attention.layer_norm_rms_epsilon,
// .rope.freq_base, .context_length (gguf.md). Q/K order (REAL_MODELS.md §A3): llama.cpp's converter
// permutes a llama-arch model's Q/K rows into interleaved pairs, mosr's order; qwen2 and qwen3
// keep Hugging Face's halves (NEOX RoPE), so those are permuted here. Llama-3 RoPE scaling travels as
// rope_freqs.weight, one divisor per frequency; its parameters are recovered from the table.

static int arch_key_u32(const GGUFFile* g, const char* arch, const char* key, int* out, int required) {
    char name[128];
    snprintf(name, sizeof(name), "%s.%s", arch, key);
    uint32_t v;
    if (gguf_get_u32(g, name, &v) != 0) {
        if (required) error_msg("%s: no metadata %s (an integer)", g->path, name);
        return required ? -1 : 1;
    }
    if (v > (1u << 30)) { error_msg("%s: %s = %u is too large", g->path, name, v); return -1; }
    *out = (int)v;
    return 0;
}

static int arch_key_f32(const GGUFFile* g, const char* arch, const char* key, float* out) {
    char name[128];
    snprintf(name, sizeof(name), "%s.%s", arch, key);
    return gguf_get_f32(g, name, out);
}

// llama3 scaling from the divisor table d_i of frequency i (REAL_MODELS.md §A1): 1 for high
// frequencies, factor for low ones, and between them 1/d = (1 - s)/factor + s with
// s = (orig/λ - low)/(high - low), linear in u = 1/λ: 0 at u_lo = low/orig, 1 at u_hi = high/orig.
// The table fixes only u_lo and u_hi (orig is a free scale: the file's
// rope.scaling.original_context_length when there, else 8192, Llama-3's). Two or more interpolated
// entries give the line; with one, or none, any line through it whose ends fall between the
// neighbouring plateau entries gives the same table, and we take one in the middle of that room.
static int llama3_from_divisors(GGUFFile* g, const char* arch, const float* d, int n, Config* c) {
    float factor = 1;
    for (int i = 0; i < n; i++) factor = fmaxf(factor, d[i]);
    int orig = 8192;
    arch_key_u32(g, arch, "rope.scaling.original_context_length", &orig, 0);
    c->rope_scaling = ROPE_SCALING_LLAMA3;
    c->rope_factor = factor;
    c->rope_original_max_position = orig;
    c->rope_low_freq_factor = 1;
    c->rope_high_freq_factor = 4;
    if (factor <= 1) return 0;
    // u of each frequency (decreasing in i); u_one: the smallest u whose d is 1 (a high frequency),
    // u_factor: the largest u whose d is factor; the interpolated entries lie between them
    double u_one = INFINITY, u_factor = 0, x[2], y[2];
    int k = 0;
    for (int i = 0; i < n; i++) {
        double u = pow((double)c->rope_theta, -2.0 * i / (2.0 * n)) / (2 * M_PI);
        if (d[i] <= 1.0001f) u_one = fmin(u_one, u);
        else if (d[i] >= factor * 0.9999f) u_factor = fmax(u_factor, u);
        else if (k < 2) {
            x[k] = u;
            y[k] = (1.0 / d[i] - 1.0 / factor) / (1.0 - 1.0 / factor); // s
            k++;
        }
    }
    double u_lo, u_hi;
    if (k == 2) {
        double a = (y[1] - y[0]) / (x[1] - x[0]), b = y[0] - a * x[0];
        if (!(a > 0)) return 0;
        u_lo = -b / a, u_hi = (1 - b) / a;
    } else {
        if (u_one == INFINITY) u_one = 2 * fmax(u_factor, k ? x[0] : 0); // no high band in the table
        if (k == 1) {
            // the line through (x0, y0) with s = 0 halfway from x0 to u_factor, unless s = 1 would
            // then reach past u_one; then the line whose s = 1 is halfway from x0 to u_one
            u_lo = x[0] - (x[0] - u_factor) / 2;
            u_hi = u_lo + (x[0] - u_lo) / y[0];
            if (u_hi >= u_one) {
                u_hi = x[0] + (u_one - x[0]) / 2;
                u_lo = u_hi - (u_hi - x[0]) / (1 - y[0]);
            }
        } else {
            u_lo = u_factor + (u_one - u_factor) / 3;
            u_hi = u_factor + 2 * (u_one - u_factor) / 3;
        }
    }
    c->rope_low_freq_factor = (float)(orig * u_lo);
    c->rope_high_freq_factor = (float)(orig * u_hi);
    return 0;
}

static int gguf_dtype(uint32_t type, DType* t) {
    switch (type) {
    case GGML_TYPE_F32: *t = DTYPE_F32; return 0;
    case GGML_TYPE_F16: *t = DTYPE_F16; return 0;
    case GGML_TYPE_BF16: *t = DTYPE_BF16; return 0;
    case GGML_TYPE_Q8_0: *t = DTYPE_Q8_0; return 0;
    default: return -1;
    }
}

static int gguf_config(GGUFFile* g, Config* c, const char** arch_out) {
    const char* arch = gguf_get_string(g, "general.architecture");
    if (!arch) { error_msg("%s: no general.architecture", g->path); return -1; }
    int llama = !strcmp(arch, "llama"), qwen2 = !strcmp(arch, "qwen2"), qwen3 = !strcmp(arch, "qwen3");
    if (!llama && !qwen2 && !qwen3) {
        error_msg("%s: architecture %s is not supported (llama, qwen2, qwen3)", g->path, arch);
        return -1;
    }
    *arch_out = arch;
    config_defaults(c);
    if (arch_key_u32(g, arch, "embedding_length", &c->dim, 1) || arch_key_u32(g, arch, "block_count", &c->n_layers, 1) ||
        arch_key_u32(g, arch, "feed_forward_length", &c->hidden_dim, 1) ||
        arch_key_u32(g, arch, "attention.head_count", &c->n_heads, 1))
        return -1;
    c->n_kv_heads = c->n_heads;
    c->seq_len = 2048;
    c->head_dim = c->n_heads ? c->dim / c->n_heads : 0;
    if (arch_key_u32(g, arch, "attention.head_count_kv", &c->n_kv_heads, 0) < 0 ||
        arch_key_u32(g, arch, "context_length", &c->seq_len, 0) < 0 ||
        arch_key_u32(g, arch, "attention.key_length", &c->head_dim, 0) < 0)
        return -1;
    if (c->seq_len > 8192) c->seq_len = 8192; // the context mosr allocates for (hf.c: HF_MAX_CONTEXT)
    arch_key_f32(g, arch, "rope.freq_base", &c->rope_theta);
    arch_key_f32(g, arch, "attention.layer_norm_rms_epsilon", &c->norm_eps);
    char key[128];
    snprintf(key, sizeof(key), "%s.rope.scaling.type", arch);
    const char* scaling = gguf_get_string(g, key);
    if (scaling && strcmp(scaling, "none")) {
        error_msg("%s: RoPE scaling %s is not supported (none; llama3 through rope_freqs.weight)", g->path, scaling);
        return -1;
    }
    int emb = gguf_find_tensor(g, "token_embd.weight");
    if (emb < 0) { error_msg("%s: tensor token_embd.weight is missing", g->path); return -1; }
    c->vocab_size = (int)(g->tensors[emb].ne[1] < (1u << 30) ? g->tensors[emb].ne[1] : 0);
    arch_key_u32(g, arch, "vocab_size", &c->vocab_size, 0);
    c->shared_classifier = gguf_find_tensor(g, "output.weight") < 0;
    c->qkv_bias = qwen2 || gguf_find_tensor(g, "blk.0.attn_q.bias") >= 0;
    c->qk_norm = qwen3;
    int freqs = gguf_find_tensor(g, "rope_freqs.weight");
    if (freqs >= 0) {
        GGUFTensor* t = &g->tensors[freqs];
        if (t->type != GGML_TYPE_F32 || t->n_dims != 1 || c->n_heads == 0 || t->ne[0] != (uint64_t)(c->head_dim / 2)) {
            error_msg("%s: rope_freqs.weight is not an F32 vector of head_dim / 2", g->path);
            return -1;
        }
        float* d = malloc(t->ne[0] * sizeof(float));
        if (!d) { error_msg("%s: out of memory", g->path); return -1; }
        memcpy(d, g->map + g->data_begin + t->offset, t->ne[0] * sizeof(float));
        llama3_from_divisors(g, arch, d, (int)t->ne[0], c);
        free(d);
    }
    char why[200];
    if (!config_valid(c, why, sizeof(why))) {
        error_msg("%s: the metadata describes no model mosr can build: %s", g->path, why);
        return -1;
    }
    return 0;
}

// in_type (model_open_decode): the matrices stay in the mapped file (spec_view), which m keeps
int gguf_load(Model* m, const char* path, int in_type) {
    GGUFFile* g;
    if (gguf_open(&g, path)) return -1;
    Config c;
    const char* arch;
    if (gguf_config(g, &c, &arch)) { gguf_close(g); return -1; }
    int permute = strcmp(arch, "llama") != 0;
    if ((in_type ? model_build_in_type(m, &c) : model_build(m, &c)) != 0) {
        error_msg("%s: cannot allocate the model", path);
        gguf_close(g);
        return -1;
    }
    int n;
    TensorSpec* specs = model_tensor_specs(m, &n);
    float* tmp = NULL;
    size_t tmp_cap = 0;
    int failed = !specs;
    for (int i = 0; i < n && !failed; i++) {
        TensorSpec* s = &specs[i];
        int j = gguf_find_tensor(g, s->gguf_name);
        if (j < 0 && s->optional) continue;
        if (j < 0) { error_msg("%s: tensor %s is missing", path, s->gguf_name); failed = 1; break; }
        GGUFTensor* t = &g->tensors[j];
        DType dt;
        if (gguf_dtype(t->type, &dt)) {
            error_msg("%s: tensor %s is %s: not supported (F32, F16, BF16, Q8_0)", path, t->name, ggml_type_name(t->type));
            failed = 1;
            break;
        }
        // ne[0] is the contiguous dimension: PyTorch's (rows, cols) is ne = [cols, rows]
        int ok = s->cols ? t->n_dims == 2 && t->ne[0] == (uint64_t)s->cols && t->ne[1] == (uint64_t)s->rows
                         : t->n_dims == 1 && t->ne[0] == (uint64_t)s->rows;
        if (!ok) {
            error_msg("%s: tensor %s has ne [%llu, %llu], the metadata says [%d, %d]", path, t->name,
                      (unsigned long long)t->ne[0], (unsigned long long)(t->n_dims > 1 ? t->ne[1] : 1),
                      s->cols ? s->cols : s->rows, s->cols ? s->rows : 1);
            failed = 1;
            break;
        }
        const void* src = g->map + g->data_begin + t->offset;
        if (s->view ? spec_view(s, src, dt, s->perm_heads > 0 && permute, &m->weights) != 0
                    : spec_fill(s, src, dt, t->bytes, s->perm_heads > 0 && permute, &tmp, &tmp_cap) != 0) {
            error_msg("%s: out of memory", path);
            failed = 1;
            break;
        }
    }
    free(tmp);
    free(specs);
    if (in_type && !failed) { // the views point into the map
        weights_keep_map(&m->weights, g->map, g->size);
        g->map = NULL;
    }
    gguf_close(g);
    if (failed) { model_free(m); return -1; }
    // in type: the norms and biases only (the mapped matrices are not scanned, so as not to read
    // the whole file at open; a NaN there shows in the logits)
    for (size_t i = 0; i < m->n_params; i++)
        if (!isfinite(m->param_memory[i])) {
            error_msg("%s: the weights hold a NaN or an infinity", path);
            model_free(m);
            return -1;
        }
    return 0;
}

// ----------------------------------------------------------------------------
// the writer. From a GGUF source: its metadata entries byte for byte, its tensors in its order,
// types and offsets (tensors mosr does not model, as rope_freqs.weight, copied as they were), so a
// model written back unchanged is the same file. From another source: the keys above, F32 (or the
// Hugging Face dtypes), no tokenizer unless the source carries one.

typedef struct { unsigned char* p; size_t n, cap; int failed; } Buf;

static void buf_put(Buf* b, const void* data, size_t n) {
    if (b->failed) return;
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->n + n) cap *= 2;
        unsigned char* p = realloc(b->p, cap);
        if (!p) { b->failed = 1; return; }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, data, n);
    b->n += n;
}
static void buf_u32(Buf* b, uint32_t v) { buf_put(b, &v, 4); }
static void buf_u64(Buf* b, uint64_t v) { buf_put(b, &v, 8); }
static void buf_str(Buf* b, const char* s) { buf_u64(b, strlen(s)); buf_put(b, s, strlen(s)); }
static void kv_u32(Buf* b, const char* k, uint32_t v) { buf_str(b, k); buf_u32(b, GGUF_TYPE_UINT32); buf_u32(b, v); }
static void kv_f32(Buf* b, const char* k, float v) { buf_str(b, k); buf_u32(b, GGUF_TYPE_FLOAT32); buf_put(b, &v, 4); }
static void kv_str(Buf* b, const char* k, const char* v) { buf_str(b, k); buf_u32(b, GGUF_TYPE_STRING); buf_str(b, v); }
static void kv_bool(Buf* b, const char* k, int v) {
    buf_str(b, k);
    buf_u32(b, GGUF_TYPE_BOOL);
    uint8_t x = v != 0;
    buf_put(b, &x, 1);
}
static void kv_array_head(Buf* b, const char* k, uint32_t elem, uint64_t n) {
    buf_str(b, k);
    buf_u32(b, GGUF_TYPE_ARRAY);
    buf_u32(b, elem);
    buf_u64(b, n);
}

// The tokenizer and chat template of a Hugging Face folder as tokenizer.ggml.* and
// tokenizer.chat_template keys (llama.cpp's names), the token list padded to the embedding's
// vocab_size rows with unused "[PADi]" tokens, as llama.cpp's converter pads it. Returns the
// number of keys written, or 0 with a warning line when the vocabulary cannot be written (the GGUF
// is then read back with -z FOLDER).
static int kv_vocabulary(Buf* kv, const char* folder, int vocab_size) {
    Tokenizer t;
    TokenizerArrays a;
    if (tokenizer_open(&t, folder, vocab_size) != 0) return 0;
    if (bpe_export_arrays(&t, folder, &a) != 0) {
        tokenizer_free(&t);
        fprintf(stderr, "mosr: %s: the GGUF is written without a vocabulary (read it with -z %s)\n", folder, folder);
        return 0;
    }
    int n = 0;
    kv_str(kv, "tokenizer.ggml.model", a.model); n++;
    if (a.pre) { kv_str(kv, "tokenizer.ggml.pre", a.pre); n++; }
    kv_array_head(kv, "tokenizer.ggml.tokens", GGUF_TYPE_STRING, (uint64_t)vocab_size); n++;
    for (int i = 0; i < vocab_size; i++) {
        char pad[32];
        snprintf(pad, sizeof(pad), "[PAD%d]", i);
        buf_str(kv, i < a.n_tokens ? a.tokens[i] : pad);
    }
    kv_array_head(kv, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, (uint64_t)vocab_size); n++;
    for (int i = 0; i < vocab_size; i++) {
        int32_t type = i < a.n_tokens ? a.token_type[i] : 5; // 5: unused
        buf_put(kv, &type, 4);
    }
    if (a.scores) { // SentencePiece-style: a score per token (the padding lowest), no merges
        kv_array_head(kv, "tokenizer.ggml.scores", GGUF_TYPE_FLOAT32, (uint64_t)vocab_size); n++;
        for (int i = 0; i < vocab_size; i++) {
            float score = i < a.n_tokens ? a.scores[i] : -1e9f;
            buf_put(kv, &score, 4);
        }
    }
    if (a.merges) {
        kv_array_head(kv, "tokenizer.ggml.merges", GGUF_TYPE_STRING, (uint64_t)a.n_merges); n++;
        for (int i = 0; i < a.n_merges; i++) buf_str(kv, a.merges[i]);
    }
    if (a.add_space_prefix >= 0) { kv_bool(kv, "tokenizer.ggml.add_space_prefix", a.add_space_prefix); n++; }
    if (a.bos_id >= 0) { kv_u32(kv, "tokenizer.ggml.bos_token_id", (uint32_t)a.bos_id); n++; }
    if (a.eos_id >= 0) { kv_u32(kv, "tokenizer.ggml.eos_token_id", (uint32_t)a.eos_id); n++; }
    kv_bool(kv, "tokenizer.ggml.add_bos_token", a.add_bos); n++;
    kv_bool(kv, "tokenizer.ggml.add_eos_token", a.add_eos); n++;
    char config[4200];
    snprintf(config, sizeof(config), "%s/tokenizer_config.json", folder);
    char* jinja = access(config, R_OK) == 0 ? template_config_jinja(config) : NULL;
    if (jinja) { kv_str(kv, "tokenizer.chat_template", jinja); n++; }
    free(jinja);
    tokenizer_arrays_free(&a);
    tokenizer_free(&t);
    return n;
}

typedef struct {
    char name[96];
    uint32_t type;
    int n_dims;
    uint64_t ne[4];
    uint64_t offset, bytes;
    const TensorSpec* spec; // NULL: raw bytes copied from the source
    const void* raw;
} OutInfo;

// the Llama-3 divisor table (TF-rope _compute_llama3_parameters, as factors of the plain frequency)
static void llama3_divisors(const Config* c, float* d, int n) {
    double lo_wave = c->rope_original_max_position / c->rope_low_freq_factor;
    double hi_wave = c->rope_original_max_position / c->rope_high_freq_factor;
    for (int i = 0; i < n; i++) {
        double inv = pow((double)c->rope_theta, -2.0 * i / (2.0 * n)), wave = 2 * M_PI / inv;
        if (wave < hi_wave) d[i] = 1;
        else if (wave > lo_wave) d[i] = c->rope_factor;
        else {
            double s = (c->rope_original_max_position / wave - c->rope_low_freq_factor) /
                       (c->rope_high_freq_factor - c->rope_low_freq_factor);
            d[i] = (float)(1.0 / ((1 - s) / c->rope_factor + s));
        }
    }
}

int gguf_save(const Model* m, const char* out, const char* source_path) {
    const Config* c = &m->config;
    ModelFormat src_format = source_path ? model_format_of(source_path) : MODEL_FORMAT_LLAMA2C;
    GGUFFile* g = NULL;
    if (src_format == MODEL_FORMAT_GGUF && gguf_open(&g, source_path)) return -1;
    int n;
    TensorSpec* specs = model_tensor_specs(m, &n);
    OutInfo* info = calloc((size_t)n + 2 + (g ? (size_t)g->n_tensors : 0), sizeof(OutInfo));
    float* divisors = NULL;
    Buf kv = {0};
    int n_info = 0, n_kv = 0, failed = !specs || !info;
    const char* arch = g ? gguf_get_string(g, "general.architecture") : model_arch_name(c);
    int permute = arch && strcmp(arch, "llama") != 0;
    uint32_t alignment = g ? g->alignment : GGUF_DEFAULT_ALIGNMENT;
    if (!failed && g) {
        for (int i = 0; i < g->n_kv; i++) buf_put(&kv, g->map + g->kv[i].raw_begin, g->kv[i].raw_end - g->kv[i].raw_begin);
        n_kv = g->n_kv;
        // the source's tensors, in its order
        for (int i = 0; i < g->n_tensors; i++) {
            GGUFTensor* t = &g->tensors[i];
            OutInfo* o = &info[n_info++];
            snprintf(o->name, sizeof(o->name), "%s", t->name);
            o->type = t->type;
            o->n_dims = t->n_dims;
            memcpy(o->ne, t->ne, sizeof(o->ne));
            o->offset = t->offset;
            o->bytes = t->bytes;
            o->raw = g->map + g->data_begin + t->offset;
            for (int k = 0; k < n; k++)
                if (!strcmp(specs[k].gguf_name, t->name)) o->spec = &specs[k];
            DType dt;
            if (o->spec && gguf_dtype(t->type, &dt)) {
                error_msg("%s: tensor %s is %s: mosr cannot write it back", source_path, t->name, ggml_type_name(t->type));
                failed = 1;
            }
        }
        for (int k = 0; k < n && !failed; k++)
            if (gguf_find_tensor(g, specs[k].gguf_name) < 0 && !specs[k].optional) {
                error_msg("%s: has no tensor %s to write back into", source_path, specs[k].gguf_name);
                failed = 1;
            }
    } else if (!failed) {
        char key[128];
        kv_str(&kv, "general.architecture", arch); n_kv++;
        kv_str(&kv, "general.name", "mosr"); n_kv++;
        kv_u32(&kv, "general.alignment", alignment); n_kv++;
#define ARCH_KEY(k) (snprintf(key, sizeof(key), "%s.%s", arch, k), key)
        kv_u32(&kv, ARCH_KEY("context_length"), (uint32_t)c->seq_len); n_kv++;
        kv_u32(&kv, ARCH_KEY("embedding_length"), (uint32_t)c->dim); n_kv++;
        kv_u32(&kv, ARCH_KEY("block_count"), (uint32_t)c->n_layers); n_kv++;
        kv_u32(&kv, ARCH_KEY("feed_forward_length"), (uint32_t)c->hidden_dim); n_kv++;
        kv_u32(&kv, ARCH_KEY("attention.head_count"), (uint32_t)c->n_heads); n_kv++;
        kv_u32(&kv, ARCH_KEY("attention.head_count_kv"), (uint32_t)c->n_kv_heads); n_kv++;
        kv_u32(&kv, ARCH_KEY("attention.key_length"), (uint32_t)c->head_dim); n_kv++;
        kv_u32(&kv, ARCH_KEY("attention.value_length"), (uint32_t)c->head_dim); n_kv++;
        kv_u32(&kv, ARCH_KEY("rope.dimension_count"), (uint32_t)c->head_dim); n_kv++;
        kv_f32(&kv, ARCH_KEY("rope.freq_base"), c->rope_theta); n_kv++;
        kv_f32(&kv, ARCH_KEY("attention.layer_norm_rms_epsilon"), c->norm_eps); n_kv++;
        kv_u32(&kv, ARCH_KEY("vocab_size"), (uint32_t)c->vocab_size); n_kv++;
#undef ARCH_KEY
        if (src_format == MODEL_FORMAT_HF) n_kv += kv_vocabulary(&kv, source_path, c->vocab_size);
        uint64_t offset = 0;
        for (int k = 0; k < n; k++) {
            if (specs[k].optional) continue; // a tied model: no output.weight
            OutInfo* o = &info[n_info++];
            snprintf(o->name, sizeof(o->name), "%s", specs[k].gguf_name);
            o->type = GGML_TYPE_F32;
            o->spec = &specs[k];
            o->n_dims = specs[k].cols ? 2 : 1;
            o->ne[0] = specs[k].cols ? (uint64_t)specs[k].cols : (uint64_t)specs[k].rows;
            o->ne[1] = specs[k].cols ? (uint64_t)specs[k].rows : 1;
            o->ne[2] = o->ne[3] = 1;
            o->bytes = dtype_bytes(DTYPE_F32, spec_numel(&specs[k]));
            o->offset = offset;
            offset = (offset + o->bytes + alignment - 1) / alignment * alignment;
        }
        if (c->rope_scaling == ROPE_SCALING_LLAMA3) {
            int half = c->head_dim / 2;
            divisors = malloc((size_t)half * sizeof(float));
            if (!divisors) failed = 1;
            else {
                llama3_divisors(c, divisors, half);
                OutInfo* o = &info[n_info++];
                snprintf(o->name, sizeof(o->name), "rope_freqs.weight");
                o->type = GGML_TYPE_F32;
                o->n_dims = 1;
                o->ne[0] = (uint64_t)half;
                o->ne[1] = o->ne[2] = o->ne[3] = 1;
                o->bytes = (uint64_t)half * 4;
                o->offset = offset;
                o->raw = divisors;
            }
        }
    }
    if (kv.failed) failed = 1;
    AtomicFile af;
    if (!failed && atomic_open(&af, out)) failed = 1;
    else if (!failed) {
        // header, metadata, tensor infos, padding, data (zeros between tensors, as written)
        Buf h = {0};
        buf_u32(&h, GGUF_MAGIC);
        buf_u32(&h, 3);
        buf_u64(&h, (uint64_t)n_info);
        buf_u64(&h, (uint64_t)n_kv);
        buf_put(&h, kv.p, kv.n);
        for (int i = 0; i < n_info; i++) {
            buf_str(&h, info[i].name);
            buf_u32(&h, (uint32_t)info[i].n_dims);
            for (int d = 0; d < info[i].n_dims; d++) buf_u64(&h, info[i].ne[d]);
            buf_u32(&h, info[i].type);
            buf_u64(&h, info[i].offset);
        }
        static const unsigned char zeros[4096];
        while (h.n % alignment) buf_put(&h, zeros, 1);
        if (h.failed) failed = 1;
        else fwrite(h.p, 1, h.n, af.f);
        free(h.p);
        // the data, in offset order
        uint64_t pos = 0;
        float* rows = NULL;
        void* packed = NULL;
        size_t cap = 0;
        for (;;) {
            int next = -1;
            for (int i = 0; i < n_info; i++)
                if (info[i].offset >= pos && (next < 0 || info[i].offset < info[next].offset)) next = i;
            if (next < 0 || failed) break;
            OutInfo* o = &info[next];
            while (pos < o->offset) {
                size_t k = o->offset - pos > sizeof(zeros) ? sizeof(zeros) : (size_t)(o->offset - pos);
                fwrite(zeros, 1, k, af.f);
                pos += k;
            }
            if (!o->spec) fwrite(o->raw, 1, o->bytes, af.f);
            else {
                size_t numel = spec_numel(o->spec);
                if (numel > cap) {
                    free(rows); free(packed);
                    cap = numel;
                    rows = malloc(numel * sizeof(float));
                    packed = malloc(numel * sizeof(float));
                    if (!rows || !packed) { error_msg("%s: out of memory", out); failed = 1; break; }
                }
                const float* src = o->spec->data;
                if (o->spec->perm_heads && permute) {
                    rows_pairs_to_halves(rows, src, o->spec->perm_heads, o->spec->head_size, o->spec->cols ? o->spec->cols : 1);
                    src = rows;
                }
                DType dt = DTYPE_F32;
                gguf_dtype(o->type, &dt);
                if (dt == DTYPE_F32) fwrite(src, sizeof(float), numel, af.f);
                else {
                    dtype_narrow(packed, src, dt, numel);
                    fwrite(packed, 1, dtype_bytes(dt, numel), af.f);
                }
            }
            pos = o->offset + o->bytes;
            if (pos == o->offset) pos++; // (an empty tensor: move on)
        }
        free(rows);
        free(packed);
        // a GGUF source may end with padding after its last tensor: keep the file's length
        if (g && !failed) {
            uint64_t end = g->size - g->data_begin;
            while (pos < end) {
                size_t k = end - pos > sizeof(zeros) ? sizeof(zeros) : (size_t)(end - pos);
                fwrite(zeros, 1, k, af.f);
                pos += k;
            }
        }
        if (failed) atomic_abort(&af);
        else if (atomic_commit(&af)) failed = 1;
    }
    free(kv.p);
    free(divisors);
    free(info);
    free(specs);
    if (g) gguf_close(g);
    return failed ? -1 : 0;
}
