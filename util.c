// util.c — error reporting, crash-safe writes, random numbers, a clock, UTF-8 and JSON helpers.
#include "util.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

// ----------------------------------------------------------------------------
// errors

void error_msg(const char* fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("mosr: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

// ----------------------------------------------------------------------------
// crash-safe writes

int atomic_open(AtomicFile* af, const char* path) {
    if (strlen(path) >= sizeof(af->path)) {
        error_msg("%s: path too long", path);
        return -1;
    }
    strcpy(af->path, path);
    // the pid keeps two processes writing the same file from sharing a temp file
    snprintf(af->tmp_path, sizeof(af->tmp_path), "%s.tmp.%d", path, (int)getpid());
    af->f = fopen(af->tmp_path, "wb");
    if (!af->f) {
        error_msg("%s: cannot write: %s", af->tmp_path, strerror(errno));
        return -1;
    }
    return 0;
}

int atomic_commit(AtomicFile* af) {
    // the data must be on disk before the rename makes it visible, or a power cut could leave
    // a renamed but empty file
    int bad = ferror(af->f) || fflush(af->f) != 0 || fsync(fileno(af->f)) != 0;
    bad |= fclose(af->f) != 0;
    af->f = NULL;
    if (bad) {
        error_msg("%s: write failed: %s", af->path, strerror(errno));
        unlink(af->tmp_path);
        return -1;
    }
    if (rename(af->tmp_path, af->path) != 0) {
        error_msg("%s: cannot rename %s into place: %s", af->path, af->tmp_path, strerror(errno));
        unlink(af->tmp_path);
        return -1;
    }
    return 0;
}

void atomic_abort(AtomicFile* af) {
    if (af->f) fclose(af->f);
    af->f = NULL;
    unlink(af->tmp_path);
}

int output_check(const char* path) {
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
        error_msg("%s: is a directory, expected a file to write", path);
        return -1;
    }
    // the surest test of "can a file be made there" is making one: the temp file of an atomic write
    AtomicFile af;
    if (atomic_open(&af, path) != 0) return -1;
    atomic_abort(&af);
    return 0;
}

char* read_file(const char* path, size_t* size_out) {
    struct stat st;
    if (stat(path, &st) != 0) {
        error_msg("%s: %s", path, strerror(errno));
        return NULL;
    }
    if (S_ISDIR(st.st_mode)) {
        error_msg("%s: is a directory, expected a file", path);
        return NULL;
    }
    FILE* f = fopen(path, "rb");
    if (!f) {
        error_msg("%s: %s", path, strerror(errno));
        return NULL;
    }
    // read in chunks rather than trusting st_size, so pipes and /proc files work too
    size_t cap = st.st_size > 0 ? (size_t)st.st_size + 1 : 4096, n = 0;
    char* buf = malloc(cap);
    while (buf) {
        n += fread(buf + n, 1, cap - n - 1, f);
        if (ferror(f) || feof(f)) break;
        char* bigger = realloc(buf, cap * 2);
        if (!bigger) { free(buf); buf = NULL; break; }
        buf = bigger;
        cap *= 2;
    }
    int failed = !buf || ferror(f);
    fclose(f);
    if (failed) {
        error_msg("%s: read failed", path);
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    if (size_out) *size_out = n;
    return buf;
}

// ----------------------------------------------------------------------------
// random numbers

uint32_t random_u32(uint64_t* state) {
    // xorshift rng: https://en.wikipedia.org/wiki/Xorshift#xorshift.2A
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    return (uint32_t)((*state * 0x2545F4914F6CDD1Dull) >> 32);
}

float random_f32(uint64_t* state) {
    return (random_u32(state) >> 8) / 16777216.0f; // 24 random bits: exactly representable
}

float random_normal(uint64_t* state) {
    // Box-Muller; 1 - u keeps the log argument in (0, 1]
    float u1 = 1.0f - random_f32(state);
    float u2 = random_f32(state);
    return sqrtf(-2.0f * logf(u1)) * cosf(6.28318530718f * u2);
}

// ----------------------------------------------------------------------------
// command-line values

int arg_int(const char* cmd, const char* flag, const char* value, long lo, long hi, int* out) {
    char* end;
    errno = 0;
    long v = value ? strtol(value, &end, 10) : 0;
    if (!value || end == value || *end != '\0' || errno || v < lo || v > hi) {
        error_msg("%s: %s expects an integer in %ld..%ld, got '%s'", cmd, flag, lo, hi, value ? value : "");
        return -1;
    }
    *out = (int)v;
    return 0;
}

int arg_float(const char* cmd, const char* flag, const char* value, double lo, double hi, float* out) {
    char* end;
    errno = 0;
    double v = value ? strtod(value, &end) : 0;
    // !(v >= lo) also rejects NaN
    if (!value || end == value || *end != '\0' || errno || !(v >= lo) || !(v <= hi)) {
        error_msg("%s: %s expects a number in %g..%g, got '%s'", cmd, flag, lo, hi, value ? value : "");
        return -1;
    }
    *out = (float)v;
    return 0;
}

int arg_u64(const char* cmd, const char* flag, const char* value, unsigned long long* out) {
    char* end;
    errno = 0;
    unsigned long long v = value ? strtoull(value, &end, 10) : 0;
    if (!value || end == value || *end != '\0' || errno || value[0] == '-') {
        error_msg("%s: %s expects a non-negative integer, got '%s'", cmd, flag, value ? value : "");
        return -1;
    }
    *out = v;
    return 0;
}

// ----------------------------------------------------------------------------
// time

double time_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

// ----------------------------------------------------------------------------
// UTF-8

int utf8_valid(const char* str, size_t n) {
    const unsigned char* s = (const unsigned char*)str;
    size_t i = 0;
    while (i < n) {
        unsigned char c = s[i];
        int len;
        uint32_t cp;
        if (c < 0x80) { i++; continue; }
        else if ((c & 0xE0) == 0xC0) { len = 2; cp = c & 0x1F; }
        else if ((c & 0xF0) == 0xE0) { len = 3; cp = c & 0x0F; }
        else if ((c & 0xF8) == 0xF0) { len = 4; cp = c & 0x07; }
        else return 0;
        if (i + len > n) return 0;
        for (int j = 1; j < len; j++) {
            if ((s[i + j] & 0xC0) != 0x80) return 0;
            cp = (cp << 6) | (s[i + j] & 0x3F);
        }
        // reject overlong forms, surrogates and code points past U+10FFFF
        if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000)) return 0;
        if ((cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF) return 0;
        i += len;
    }
    return 1;
}

static int utf8_put(char* out, uint32_t cp) {
    if (cp < 0x80) { out[0] = (char)cp; return 1; }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

// ----------------------------------------------------------------------------
// JSON: just enough to read one flat object per line. The scanner skips values it does not need
// (nested objects and arrays included), so unknown fields are ignored.

static const char* skip_ws(const char* p) {
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') p++;
    return p;
}

static int hex4(const char* p, uint32_t* out) {
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= c - '0';
        else if (c >= 'a' && c <= 'f') v |= c - 'a' + 10;
        else if (c >= 'A' && c <= 'F') v |= c - 'A' + 10;
        else return -1;
    }
    *out = v;
    return 0;
}

// p points at the opening quote. Decodes into out (if not NULL; needs as many bytes as the literal)
// and returns the pointer past the closing quote, or NULL if the literal is malformed.
static const char* parse_string(const char* p, char* out, size_t* out_len) {
    size_t n = 0;
    if (*p != '"') return NULL;
    p++;
    while (*p != '"') {
        if (*p == '\0') return NULL;
        if ((unsigned char)*p < 0x20) return NULL; // raw control characters are not allowed
        if (*p != '\\') {
            if (out) out[n] = *p;
            n++;
            p++;
            continue;
        }
        p++;
        char c = *p++;
        char tmp[4];
        int len = 1;
        switch (c) {
        case '"': tmp[0] = '"'; break;
        case '\\': tmp[0] = '\\'; break;
        case '/': tmp[0] = '/'; break;
        case 'b': tmp[0] = '\b'; break;
        case 'f': tmp[0] = '\f'; break;
        case 'n': tmp[0] = '\n'; break;
        case 'r': tmp[0] = '\r'; break;
        case 't': tmp[0] = '\t'; break;
        case 'u': {
            uint32_t cp;
            if (hex4(p, &cp)) return NULL;
            p += 4;
            if (cp >= 0xD800 && cp <= 0xDBFF) { // a high surrogate must be followed by a low one
                uint32_t lo;
                if (p[0] != '\\' || p[1] != 'u' || hex4(p + 2, &lo) || lo < 0xDC00 || lo > 0xDFFF) return NULL;
                p += 6;
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
                return NULL;
            }
            if (cp == 0) return NULL; // a NUL would cut the C string short
            len = utf8_put(tmp, cp);
            break;
        }
        default: return NULL;
        }
        if (out) memcpy(out + n, tmp, len);
        n += len;
    }
    if (out_len) *out_len = n;
    return p + 1;
}

// returns the pointer past one JSON value starting at p, or NULL if malformed
static const char* skip_value(const char* p, int depth) {
    p = skip_ws(p);
    if (depth > 64) return NULL;
    if (*p == '"') return parse_string(p, NULL, NULL);
    if (*p == '{' || *p == '[') {
        char close = *p == '{' ? '}' : ']';
        p = skip_ws(p + 1);
        if (*p == close) return p + 1;
        for (;;) {
            if (close == '}') {
                p = parse_string(skip_ws(p), NULL, NULL);
                if (!p) return NULL;
                p = skip_ws(p);
                if (*p != ':') return NULL;
                p++;
            }
            p = skip_value(p, depth + 1);
            if (!p) return NULL;
            p = skip_ws(p);
            if (*p == ',') { p++; continue; }
            if (*p == close) return p + 1;
            return NULL;
        }
    }
    // number, true, false, null
    const char* start = p;
    while (*p && strchr("+-.0123456789eEtruefalsn", *p)) p++;
    return p > start ? p : NULL;
}

// finds the value of top-level key in object; returns a pointer to its first character or NULL
static const char* find_key(const char* object, const char* key) {
    const char* p = skip_ws(object);
    if (*p != '{') return NULL;
    p = skip_ws(p + 1);
    if (*p == '}') return NULL;
    size_t key_len = strlen(key);
    for (;;) {
        p = skip_ws(p);
        size_t len;
        const char* after = parse_string(p, NULL, &len);
        if (!after) return NULL;
        int match = 0;
        if (len == key_len) {
            char* name = malloc(len + 1);
            if (!name) return NULL;
            parse_string(p, name, NULL);
            match = memcmp(name, key, len) == 0;
            free(name);
        }
        p = skip_ws(after);
        if (*p != ':') return NULL;
        p = skip_ws(p + 1);
        if (match) return p;
        p = skip_value(p, 1);
        if (!p) return NULL;
        p = skip_ws(p);
        if (*p != ',') return NULL;
        p++;
    }
}

char* json_get_string(const char* object, const char* key) {
    const char* p = find_key(object, key);
    if (!p || *p != '"') return NULL;
    return json_parse_string(p);
}

int json_get_number(const char* object, const char* key, double* out) {
    const char* p = find_key(object, key);
    if (!p) return -1;
    if (strncmp(p, "true", 4) == 0) { *out = 1; return 0; }
    if (strncmp(p, "false", 5) == 0) { *out = 0; return 0; }
    char* end;
    double v = strtod(p, &end);
    if (end == p) return -1;
    *out = v;
    return 0;
}

void json_write_string(FILE* f, const char* s) {
    fputc('"', f);
    for (const unsigned char* p = (const unsigned char*)s; *p; p++) {
        switch (*p) {
        case '"': fputs("\\\"", f); break;
        case '\\': fputs("\\\\", f); break;
        case '\n': fputs("\\n", f); break;
        case '\r': fputs("\\r", f); break;
        case '\t': fputs("\\t", f); break;
        default:
            if (*p < 0x20) fprintf(f, "\\u%04x", *p);
            else fputc(*p, f);
        }
    }
    fputc('"', f);
}

// ----------------------------------------------------------------------------
// walking arrays and objects in place

int json_iter_begin(JsonIter* it, const char* p) {
    p = skip_ws(p);
    if (*p != '[' && *p != '{') return -1;
    it->close = *p == '[' ? ']' : '}';
    it->p = p + 1;
    it->count = 0;
    return 0;
}

int json_iter_next(JsonIter* it, char** key, const char** value) {
    if (key) *key = NULL;
    if (!it->p) return -1;
    const char* p = skip_ws(it->p);
    // after an element comes ',' or the closing bracket; before the first, the bracket or a value
    if (*p == it->close) { it->p = p; return 0; }
    if (it->count > 0) {
        if (*p != ',') { it->p = NULL; return -1; }
        p = skip_ws(p + 1);
    }
    if (it->close == '}') {
        size_t len;
        const char* after = parse_string(p, NULL, &len);
        if (!after || *skip_ws(after) != ':') { it->p = NULL; return -1; }
        if (key) {
            *key = malloc(len + 1);
            if (!*key) { it->p = NULL; return -1; }
            parse_string(p, *key, NULL);
            (*key)[len] = '\0';
        }
        p = skip_ws(skip_ws(after) + 1);
    }
    const char* end = skip_value(p, 1);
    if (!end) {
        if (key) { free(*key); *key = NULL; }
        it->p = NULL;
        return -1;
    }
    *value = p;
    it->p = end;
    it->count++;
    return 1;
}

char* json_parse_string(const char* p) {
    p = skip_ws(p);
    size_t len;
    if (!parse_string(p, NULL, &len)) return NULL;
    char* out = malloc(len + 1);
    if (!out) return NULL;
    parse_string(p, out, NULL);
    out[len] = '\0';
    return out;
}
