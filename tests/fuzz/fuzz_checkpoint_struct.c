// fuzz_checkpoint_struct.c — model_load on checkpoints with a well-formed header: the fuzzer picks
// the config fields (small values, with zero, negative and odd ones mixed in), the version, the
// shared flag and how far the body length is off, so that it reaches the body reading, the
// finiteness check and a decode step instead of stopping at the magic number.
//
// input: byte 0 flags (bit 0 version 1, bit 1 shared classifier, bit 2 body length off by delta,
//        bit 3 a corrupt padding byte (v1) or vocab INT32_MIN (v0), bits 4-7 a v1 version word),
//        bytes 1-7 the seven fields, byte 8 the delta (signed, in bytes), then the body pattern.
#include <limits.h>
#include <math.h>

#include "fuzz.h"
#include "generate.h"
#include "model.h"

int fuzz_checkpoint_struct_init(void) { return 0; }

// a header field from one byte: mostly 1..32, sometimes 0, negative or large
static int32_t struct_field(uint8_t b) {
    if (b < 200) return 1 + b % 32;
    if (b < 220) return 0;
    if (b < 240) return -(int32_t)(b - 219);
    if (b < 250) return 1 << (b - 230); // 2^10 .. 2^19
    return INT32_MAX - (255 - b);
}

// the exact file size implied by c (as model.c computes it), or 0 if it is absurd
static size_t struct_expected_bytes(const Config* c, int version) {
    size_t sizes[N_PARAMETER_TENSORS];
    if (!config_valid(c, NULL, 0)) return 0;
    size_t floats = param_sizes_for(c, sizes);
    if (version == 0) floats += (size_t)c->seq_len * (c->dim / c->n_heads);
    size_t header = version == 1 ? 256 : 28;
    if (floats > (1u << 18)) return 0; // over 1 MB: too slow to write for every input
    return header + floats * sizeof(float);
}

int fuzz_checkpoint_struct(const uint8_t* data, size_t size) {
    if (size < 9) return 0;
    uint8_t flags = data[0];
    int version = flags & 1, shared = (flags >> 1) & 1;
    int32_t fields[7];
    for (int i = 0; i < 7; i++) fields[i] = struct_field(data[1 + i]);
    Config c = {fields[0], fields[1], fields[2], fields[3], fields[4], fields[5], fields[6], shared};
    size_t expected = struct_expected_bytes(&c, version);
    size_t body_pattern = size - 9;
    const uint8_t* pattern = data + 9;
    // a body of the right size (or off by delta), filled with the pattern (or small floats)
    size_t file_size = expected ? expected : 256 + body_pattern;
    if (flags & 4) {
        long delta = (int8_t)data[8];
        file_size = (long)file_size + delta < 0 ? 0 : (size_t)((long)file_size + delta);
    }
    unsigned char* file = calloc(file_size + 256, 1);
    size_t header_bytes = version == 1 ? 256 : 28;
    if (version == 1) {
        uint32_t magic = 0x616b3432u;
        int32_t v = (flags >> 4) == 0 ? 1 : (flags >> 4);
        memcpy(file, &magic, 4);
        memcpy(file + 4, &v, 4);
        memcpy(file + 8, fields, sizeof(fields));
        file[36] = (unsigned char)shared;
        if (flags & 8) file[37 + data[8] % 219] = 1;
    } else {
        if (!shared) fields[5] = -fields[5];
        if (flags & 8) fields[5] = INT32_MIN;
        memcpy(file, fields, sizeof(fields));
    }
    for (size_t i = header_bytes; i + 4 <= file_size; i += 4) {
        float x;
        if (body_pattern >= 4) memcpy(&x, pattern + (i / 4 * 4) % (body_pattern - body_pattern % 4), 4);
        else x = 0.01f * (float)((i / 4) % 17) - 0.08f;
        memcpy(file + i, &x, 4);
    }
    const char* path = fuzz_write_file("checkpoint_struct", "model.bin", file, file_size);
    free(file);
    Model m;
    if (model_load(&m, path) != 0) return 0;
    FUZZ_ASSERT(m.config.dim == c.dim && m.config.vocab_size == c.vocab_size && m.config.seq_len == c.seq_len,
                "the loaded config is the header's");
    for (size_t i = 0; i < m.n_params; i++) FUZZ_ASSERT(isfinite(m.param_memory[i]), "a loaded weight is finite");
    double kv = 2.0 * c.n_layers * c.seq_len * c.n_kv_heads * (c.dim / c.n_heads) * 4;
    if (kv < 64e6) {
        int token = 0, pos = c.seq_len - 1;
        FUZZ_ASSERT(model_decode(&m, &token, &pos, 1) != NULL, "decode on a loaded model");
    }
    model_free(&m);
    return 0;
}

FUZZ_ENTRY(checkpoint_struct)
