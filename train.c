// train.c — supervised training of the Llama model (mosr train) and its throughput benchmark
// (mosr bench): the chat template, examples and batches, AdamW, the learning-rate schedule,
// gradient clipping, crash-safe checkpoints with a resumable training state, and the loop.
// Conventions (B, T, C, V) are stated in model.h.
#include "train.h"

#include <errno.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <stb/stb_ds.h>

#include "dist.h"
#include "mosr.h" // the defence's default adapters, for bench --allreduce
#include "plot.h"
#include "util.h"

static void* calloc_or_die(size_t n, size_t size) {
    void* p = calloc(n ? n : 1, size);
    if (!p) {
        error_msg("out of memory (asked for %zu x %zu bytes)", n, size);
        exit(EXIT_FAILURE_RUN);
    }
    return p;
}

// A data set: every example of the training (or validation) files, in file order.
typedef struct {
    Example* examples; // (n) an stb_ds array
    int n;
    int n_cut;         // examples cut to the context length
    int n_dropped;     // examples with nothing left to learn (no counted position)
    long n_counted;    // counted positions over all examples
} ExampleSet;

// (stb_ds grows with realloc, which stops the run when memory runs out: main.c)
static void example_set_add(ExampleSet* s, Example ex) {
    arrput(s->examples, ex);
    s->n = (int)arrlen(s->examples);
}

static void free_example_set(ExampleSet* s) {
    for (int i = 0; i < s->n; i++) free_example(&s->examples[i]);
    arrfree(s->examples);
    memset(s, 0, sizeof(*s));
}

// reads prompt/response pairs from a JSONL (or any prompt_set_load format) file. Items without
// the response field are skipped (e.g. benign items when training on "refusal"). 0 on success.
static int load_chat_file(ExampleSet* s, Tokenizer* t, const char* path, const char* response_field,
                          int max_ids) {
    PromptSet ps;
    if (prompt_set_load(&ps, path) != 0) return -1;
    int n_before = s->n, n_missing = 0, n_dropped_before = s->n_dropped;
    for (int i = 0; i < ps.n; i++) {
        PromptItem* it = &ps.items[i];
        const char* response = !strcmp(response_field, "refusal") ? it->refusal
                             : !strcmp(response_field, "harmful") ? it->harmful
                             : !strcmp(response_field, "answer")  ? it->answer
                                                                  : it->response;
        if (!it->prompt || !response) {
            n_missing++;
            continue;
        }
        Example ex;
        int counted = example_from_chat(&ex, t, it->prompt, response, max_ids);
        if (counted < 0) {
            error_msg("out of memory reading %s", path);
            exit(EXIT_FAILURE_RUN);
        }
        if (counted == 0) { // the prompt alone fills the context: nothing to learn
            s->n_dropped++;
            free_example(&ex);
            continue;
        }
        s->n_cut += ex.ids[ex.n - 1] != chat_end_id(t);
        s->n_counted += counted;
        example_set_add(s, ex);
    }
    prompt_set_free(&ps);
    // a file with nothing usable fails in one line that says why; otherwise the skips are a note
    if (s->n == n_before) {
        error_msg("%s: no usable prompt/%s items (%d without a prompt or \"%s\", %d whose prompt fills the "
                  "context of %d tokens)", path, response_field, n_missing, response_field,
                  s->n_dropped - n_dropped_before, max_ids - 1);
        return -1;
    }
    if (n_missing) fprintf(stderr, "%s: %d items without a prompt or \"%s\" skipped\n", path, n_missing, response_field);
    return 0;
}

// reads plain text: one BOS, the whole file encoded, cut into rows of max_ids ids. Consecutive rows
// overlap by one id so that every token is predicted exactly once. 0 on success.
static int load_text_file(ExampleSet* s, Tokenizer* t, const char* path, int max_ids) {
    size_t len;
    char* text = read_file(path, &len);
    if (!text) return -1;
    if (strlen(text) != len || !utf8_valid(text, len)) {
        error_msg("%s: not UTF-8 text", path);
        free(text);
        return -1;
    }
    int* ids = malloc_or_die((len + 3) * sizeof(int));
    int n = tokenizer_encode(t, text, 1, 0, ids);
    free(text);
    if (n < 2) {
        error_msg("%s: too little text to train on", path);
        free(ids);
        return -1;
    }
    for (int start = 0; start + 1 < n; start += max_ids - 1) {
        Example ex = {0};
        ex.n = n - start < max_ids ? n - start : max_ids;
        ex.ids = malloc_or_die(ex.n * sizeof(int));
        ex.mask = malloc_or_die(ex.n * sizeof(float));
        memcpy(ex.ids, ids + start, ex.n * sizeof(int));
        for (int i = 0; i < ex.n; i++) ex.mask[i] = i < ex.n - 1 ? 1.0f : 0.0f;
        s->n_counted += ex.n - 1;
        example_set_add(s, ex);
    }
    free(ids);
    return 0;
}

// FNV-1a over every id and mask bit: a resumed run must see exactly the data of the first run
static uint64_t example_set_hash(const ExampleSet* s) {
    uint64_t h = HASH_START;
    for (int e = 0; e < s->n; e++) {
        const Example* ex = &s->examples[e];
        for (int i = 0; i < ex->n; i++) h = hash_u32(h, (uint32_t)ex->ids[i] * 2u + (ex->mask[i] > 0));
        h = (h ^ 0xff) * 1099511628211ull; // example boundary
    }
    return h;
}

// ----------------------------------------------------------------------------
// the data loader: a seeded shuffle of the examples each epoch, and a position in it

typedef struct {
    const ExampleSet* data;
    int* order;   // (n) this epoch's permutation of example indices
    int pos;      // the next example is order[pos]
    int epoch;    // passes over the data completed
    uint64_t rng; // drives the shuffles; saved with the training state
} DataLoader;

static void shuffle(int* a, int n, uint64_t* rng) {
    for (int i = n - 1; i > 0; i--) { // Fisher-Yates
        int j = random_u32(rng) % (uint32_t)(i + 1);
        int tmp = a[i];
        a[i] = a[j];
        a[j] = tmp;
    }
}

static void build_loader(DataLoader* l, const ExampleSet* data, uint64_t seed) {
    l->data = data;
    l->order = malloc_or_die(data->n * sizeof(int));
    for (int i = 0; i < data->n; i++) l->order[i] = i;
    l->pos = 0;
    l->epoch = 0;
    l->rng = seed * 0x9E3779B97F4A7C15ull + 0x5EED; // a different stream than the model init's
    if (l->rng == 0) l->rng = 1;                    // xorshift must not start at 0
    shuffle(l->order, data->n, &l->rng);
}

static void free_loader(DataLoader* l) {
    free(l->order);
    l->order = NULL;
}

static const Example* loader_current(const DataLoader* l) {
    return &l->data->examples[l->order[l->pos]];
}

static void loader_advance(DataLoader* l) {
    if (++l->pos == l->data->n) { // end of the epoch: reshuffle, go again
        l->pos = 0;
        l->epoch++;
        shuffle(l->order, l->data->n, &l->rng);
    }
}

// packing: rows of exactly max_T positions, filled with whole examples one after another (each
// keeps its own mask); an example that does not fit in what is left of a row starts the next row
// and the rest is padded. Attention is not blocked between the examples of a row.
static void batch_fill_packed(Batch* b, DataLoader* l, int B) {
    b->B = B;
    b->T = b->max_T;
    b->n_real = b->n_counted = 0;
    for (int r = 0; r < B; r++) {
        int fill = 0;
        while (fill < b->T) {
            const Example* ex = loader_current(l);
            int len = example_positions(ex, b->max_T);
            if (len > b->T - fill) break; // cannot happen on an empty row: len <= max_T
            fill += batch_put(b, r, fill, ex, len);
            loader_advance(l);
        }
        batch_pad_row(b, r, fill);
    }
}

static void next_batch(Batch* b, DataLoader* l, int B, int pack) {
    if (pack) {
        batch_fill_packed(b, l, B);
        return;
    }
    const Example* rows[B];
    for (int r = 0; r < B; r++) {
        rows[r] = loader_current(l);
        loader_advance(l);
    }
    batch_fill_padded(b, rows, B);
}

// rows one epoch makes, to turn --epochs into steps (packing: counted on the file order)
static long rows_per_epoch(const ExampleSet* s, int max_T, int pack) {
    if (!pack) return s->n;
    long rows = 1;
    int fill = 0;
    for (int i = 0; i < s->n; i++) {
        int len = example_positions(&s->examples[i], max_T);
        if (len > max_T - fill) {
            rows++;
            fill = 0;
        }
        fill += len;
    }
    return rows;
}

// ----------------------------------------------------------------------------
// AdamW, the learning-rate schedule, gradient clipping

void adamw_update(float* params, const float* grads, float* m, float* v, size_t n, float lr, float beta1,
                  float beta2, float eps, float weight_decay, int step) {
    // step counts from 1: the bias corrections undo the zero init of the moments
    float beta1_correction = 1.0f - powf(beta1, step);
    float beta2_correction = 1.0f - powf(beta2, step);
    #pragma omp parallel for
    for (size_t i = 0; i < n; i++) {
        float g = grads[i];
        m[i] = beta1 * m[i] + (1.0f - beta1) * g;
        v[i] = beta2 * v[i] + (1.0f - beta2) * g * g;
        float m_hat = m[i] / beta1_correction;
        float v_hat = v[i] / beta2_correction;
        // decoupled weight decay: the decay is not scaled by the adaptive denominator
        params[i] -= lr * (m_hat / (sqrtf(v_hat) + eps) + weight_decay * params[i]);
    }
}

float lr_schedule(int step, int warmup, int total, float lr_max, float lr_min) {
    if (step < warmup) return lr_max * (step + 1) / warmup; // linear warmup, never exactly 0
    if (total - 1 <= warmup) return lr_max;
    float progress = (float)(step - warmup) / (float)(total - 1 - warmup); // 0 .. 1
    if (progress > 1.0f) progress = 1.0f;
    return lr_min + 0.5f * (lr_max - lr_min) * (1.0f + cosf((float)M_PI * progress));
}

// Fixed chunks summed in a fixed order, so the norm (and the clipping, and so the whole run) is
// the same for any thread count; an OpenMP reduction would combine partial sums in any order.
#define NORM_CHUNKS 64
float grad_norm(const float* grads, size_t n) {
    double partial[NORM_CHUNKS];
    #pragma omp parallel for
    for (int c = 0; c < NORM_CHUNKS; c++) {
        size_t lo = n * c / NORM_CHUNKS, hi = n * (c + 1) / NORM_CHUNKS;
        double sum = 0.0;
        for (size_t i = lo; i < hi; i++) sum += (double)grads[i] * grads[i];
        partial[c] = sum;
    }
    double total = 0.0;
    for (int c = 0; c < NORM_CHUNKS; c++) total += partial[c];
    return (float)sqrt(total);
}

float grad_clip(float* grads, size_t n, float max_norm) {
    float norm = grad_norm(grads, n);
    if (max_norm > 0.0f && norm > max_norm && isfinite(norm)) {
        float scale = max_norm / norm;
        #pragma omp parallel for
        for (size_t i = 0; i < n; i++) grads[i] *= scale;
    }
    return norm;
}

static int all_finite(const float* x, size_t n) {
    int bad = 0;
    #pragma omp parallel for reduction(|| : bad)
    for (size_t i = 0; i < n; i++) bad = bad || !isfinite(x[i]);
    return !bad;
}

// ----------------------------------------------------------------------------
// the run log: one row per step, kept in memory, written as CSV and drawn as a PNG

typedef struct {
    double step, loss, val_loss, lr, tokens_per_s, elapsed; // val_loss is NaN when not measured
} LogRow;

typedef struct {
    LogRow* rows; // (n) an stb_ds array
    int n;
} RunLog;

static void run_log_add(RunLog* log, LogRow row) {
    arrput(log->rows, row);
    log->n = (int)arrlen(log->rows);
}

// the CSV is rewritten whole (at evaluations, checkpoints and the end), so it always agrees with
// the last training state; a row is its six doubles, val_loss blank when not measured
_Static_assert(sizeof(LogRow) == 6 * sizeof(double), "a log row is read as six doubles");
static int write_train_csv(const RunLog* log, const char* path) {
    return write_log_csv(path, "step,loss,val_loss,lr,tokens_per_s,elapsed", (const double*)log->rows, log->n, 6,
                         1u << 2);
}

static int write_loss_plot(const RunLog* log, const char* path) {
    float* x = malloc_or_die((log->n + 1) * sizeof(float));
    float* y = malloc_or_die((log->n + 1) * sizeof(float));
    float* vx = malloc_or_die((log->n + 1) * sizeof(float));
    float* vy = malloc_or_die((log->n + 1) * sizeof(float));
    int n_val = 0;
    for (int i = 0; i < log->n; i++) {
        x[i] = (float)log->rows[i].step;
        y[i] = (float)log->rows[i].loss;
        if (!isnan(log->rows[i].val_loss)) {
            vx[n_val] = x[i];
            vy[n_val++] = (float)log->rows[i].val_loss;
        }
    }
    Series series[2] = {{"train loss", x, y, log->n}, {"validation loss", vx, vy, n_val}};
    PlotOptions opt = {.title = "mosr train: loss", .x_label = "step", .y_label = "loss (nats/token)",
                       .log_y = 1};
    int rc = plot_lines(path, &opt, series, n_val > 0 ? 2 : 1);
    free(x);
    free(y);
    free(vx);
    free(vy);
    return rc;
}

// ----------------------------------------------------------------------------
// the training state: everything a resumed run needs to continue bit for bit. It holds the
// parameters too, so it never depends on the checkpoint next to it: a crash between writing the
// checkpoint and the state cannot pair a new model with old moments.

#define TRAIN_STATE_MAGIC 0x5453524dU // "MRST" in a little-endian file
#define TRAIN_STATE_VERSION 1

// the llama2.c part of a Config, as the state file stores it (Config itself has grown since)
typedef struct {
    int32_t dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len, shared_classifier;
} StateConfig;

typedef struct {
    uint32_t magic;
    int32_t version;
    StateConfig config; // 8 x int32
    int64_t step;       // optimiser steps done
    int64_t n_params;
    int64_t n_examples;
    int64_t loader_pos;
    int64_t loader_epoch;
    int64_t n_log_rows;
    uint64_t loader_rng;
    uint64_t data_hash;
    uint64_t seed;
    int32_t batch, grad_accum, seq_len, pack;
    int32_t threads;    // OpenMP threads of the run: another count may change the last bits
    int32_t ranks;      // MPI ranks of the run (0 in the files of before: 1); a resume must use as many
    double elapsed;     // seconds of training so far
    // then: params, adam m, adam v (n_params floats each), order (n_examples int32),
    // log rows (n_log_rows LogRow)
} TrainStateHeader;
_Static_assert(sizeof(TrainStateHeader) == 144, "the state header layout must not change silently");

static size_t train_state_size(const TrainStateHeader* h) {
    return sizeof(TrainStateHeader) + 3 * (size_t)h->n_params * sizeof(float) +
           (size_t)h->n_examples * sizeof(int32_t) + (size_t)h->n_log_rows * sizeof(LogRow);
}

static int train_state_save(const char* path, const TrainStateHeader* h, const float* params, const float* m,
                            const float* v, const int* order, const LogRow* rows) {
    AtomicFile af;
    if (atomic_open(&af, path) != 0) return -1;
    fwrite(h, sizeof(*h), 1, af.f);
    fwrite(params, sizeof(float), h->n_params, af.f);
    fwrite(m, sizeof(float), h->n_params, af.f);
    fwrite(v, sizeof(float), h->n_params, af.f);
    fwrite(order, sizeof(int32_t), h->n_examples, af.f);
    fwrite(rows, sizeof(LogRow), h->n_log_rows, af.f);
    return atomic_commit(&af);
}

// reads the header and checks the magic, version and that the file is exactly as long as the
// header says; leaves f positioned after the header. 0 on success.
static int train_state_open(FILE** out, TrainStateHeader* h, const char* path) {
    FILE* f = fopen(path, "rb");
    if (!f) {
        error_msg("%s: cannot open the training state: %s", path, strerror(errno));
        return -1;
    }
    struct stat st;
    const char* problem = NULL;
    if (fstat(fileno(f), &st) != 0 || fread(h, sizeof(*h), 1, f) != 1) problem = "too short for a header";
    else if (h->magic != TRAIN_STATE_MAGIC) problem = "not a mosr training state (bad magic)";
    else if (h->version != TRAIN_STATE_VERSION) problem = "unsupported training state version";
    else if (h->n_params <= 0 || h->n_params > (1ll << 34) || h->n_examples <= 0 || h->n_examples > (1ll << 31) ||
             h->n_log_rows < 0 || h->n_log_rows > (1ll << 31) || h->step < 0)
        problem = "corrupt header (counts out of range)";
    else if ((size_t)st.st_size != train_state_size(h)) problem = "size does not match its header (truncated?)";
    if (problem) {
        error_msg("%s: %s", path, problem);
        fclose(f);
        return -1;
    }
    *out = f;
    return 0;
}

static int read_floats(FILE* f, void* dst, size_t size, size_t n, const char* path) {
    if (fread(dst, size, n, f) != n) {
        error_msg("%s: read failed", path);
        return -1;
    }
    return 0;
}

// ----------------------------------------------------------------------------
// options of mosr train

typedef struct {
    // the model: from a checkpoint, or built from these flags
    const char* init_path;
    const char* tokenizer_path;
    const char* template_name; // --template: the chat template of --data's examples (NULL: the model's own)
    int dim, n_layers, n_heads, n_kv_heads, hidden_dim, seq_len, shared_classifier;
    // the data
    const char* data_paths[64];
    int data_is_text[64];
    int n_data;
    const char* val_path;
    int response_field_index; // --response-field: 0 response, 1 refusal, 2 harmful, 3 answer
    const char* response_field; // its name, the JSONL field
    int pack;
    // the optimisation
    int steps;
    float epochs;
    int batch, grad_accum;
    float lr, lr_min, weight_decay, beta1, beta2, eps, clip;
    int warmup;
    // bookkeeping
    int eval_every, val_batches, save_every, print_every, stop_at;
    const char* out_path;
    const char* log_path;
    const char* plot_path;
    const char* dump_grad_path; // --dump-grad: the first step's summed gradient, for the MPI test
    int resume;
    uint64_t seed;
    int threads;
} TrainOptions;

static void train_defaults(TrainOptions* o) {
    memset(o, 0, sizeof(*o));
    o->dim = 128;
    o->n_layers = 4;
    o->n_heads = 4;
    o->n_kv_heads = 0; // = n_heads
    o->hidden_dim = 0; // llama's rule from dim
    o->seq_len = 0;    // 256 from scratch; the checkpoint's with --init
    o->steps = 0;
    o->epochs = 0.0f; // neither given: one epoch
    o->batch = 16;
    o->grad_accum = 1;
    o->lr = 1e-3f;
    o->lr_min = -1.0f; // = lr / 10
    o->weight_decay = 0.1f;
    o->beta1 = 0.9f;
    o->beta2 = 0.95f;
    o->eps = 1e-8f;
    o->clip = 1.0f;
    o->warmup = 100;
    o->eval_every = 100;
    o->val_batches = 0; // all
    o->save_every = 500;
    o->print_every = 10;
    o->seed = 1337;
}

static void train_usage(void) {
    fprintf(stderr,
        "usage: mosr train -z TOKENIZER.bin (--data FILE.jsonl | --text FILE)... [options]\n"
        "Supervised training of a chat model, from scratch or from a checkpoint.\n"
        "\n"
        "model (from scratch unless --init):\n"
        "  --init MODEL.bin      start from this checkpoint (its config wins over the flags below)\n"
        "  -z, --tokenizer FILE  tokenizer.bin (required); a new model takes its vocabulary size\n"
        "  --template NAME       the chat template of --data's examples (" TEMPLATE_NAMES ");\n"
        "                        default: the tokenizer's own, the world's for a tokenizer.bin\n"
        "  --dim N               width (default 128)\n"
        "  --layers N            layers (default 4)\n"
        "  --heads N             query heads (default 4)\n"
        "  --kv-heads N          key/value heads (default = heads)\n"
        "  --hidden N            SwiGLU width (default 8*dim/3 rounded up to 32)\n"
        "  --seq-len N           context length; with --init at most the model's (default 256)\n"
        "  --shared-classifier   tie the classifier to the token embedding (default untied)\n"
        "data:\n"
        "  --data FILE           JSONL prompt/response items (repeatable), rendered through the chat\n"
        "                        template of data.h; the loss is on the response tokens and EOS only\n"
        "  --text FILE           plain text (repeatable): all tokens count, cut into seq-len rows\n"
        "  --response-field F    train on this field instead: response|refusal|harmful|answer\n"
        "                        (default response); items without it are skipped\n"
        "  --val FILE            validation data, read like the training data (JSONL if any --data)\n"
        "  --pack                pack examples into full seq-len rows (default: one example a row,\n"
        "                        padded to the longest in the batch)\n"
        "optimisation:\n"
        "  --steps N             optimiser steps (default: one epoch)\n"
        "  --epochs X            passes over the data, instead of --steps\n"
        "  --batch N             rows per micro-batch (default 16)\n"
        "  --grad-accum N        micro-batches per step; the loss is the mean over all their\n"
        "                        counted tokens (default 1)\n"
        "  --lr X                peak learning rate (default 1e-3)\n"
        "  --lr-min X            final learning rate of the cosine decay (default lr/10)\n"
        "  --warmup N            linear warmup steps (default 100)\n"
        "  --weight-decay X      AdamW decoupled decay, not on the rmsnorm gains (default 0.1)\n"
        "  --beta1 X, --beta2 X  AdamW moments (default 0.9, 0.95)\n"
        "  --clip X              clip the global gradient norm to X; 0 = off (default 1.0)\n"
        "  --seed N              model init and data shuffle (default 1337)\n"
        "  --threads N           OpenMP threads (default: all; per rank under MPI); a resume must use\n"
        "                        the same count\n"
        "output:\n"
        "  -o, --out MODEL.bin   checkpoint, written atomically every --save-every steps, at the end\n"
        "                        and on Ctrl-C (which then exits 130); the training state goes to\n"
        "                        MODEL.bin.state\n"
        "  --save-every N        (default 500)\n"
        "  --resume              continue the run saved in MODEL.bin.state (same flags, seed, threads)\n"
        "  --eval-every N        validation loss every N steps and at the end (default 100)\n"
        "  --val-batches N       batches of the validation set to use (default all)\n"
        "  --print-every N       progress line on stderr every N steps (default 10)\n"
        "  --log FILE.csv        step,loss,val_loss,lr,tokens_per_s,elapsed (rewritten atomically at\n"
        "                        evaluations, checkpoints and the end)\n"
        "  --plot FILE.png       loss curve, drawn at checkpoints and the end\n"
        "  --stop-at N           stop after step N (a resumed run past N: after its first step) as\n"
        "                        Ctrl-C would, with checkpoint and state, e.g. to split a run into sessions\n"
        "  --dump-grad FILE      the first step's gradient (summed over the micro-batches and ranks,\n"
        "                        before clipping) as raw float32 in the parameters' order, for tests\n"
        "A NaN or Inf loss stops the run with exit code 1 and keeps the last good checkpoint.\n"
        "Under MPI (mpirun -np N build/mpi/mosr train ..., README \"Past one machine\"): a step is N x\n"
        "--grad-accum micro-batches, rank r computing micro-batches r x grad-accum onwards, the gradients\n"
        "summed; rank 0 prints and writes; a resume needs the same N.\n");
}

// --data FILE and --text FILE: one more training file, and which kind it is
static int add_data_file(const char* cmd, const char* flag, const char* value, void* dest) {
    TrainOptions* o = dest;
    if (o->n_data == 64) {
        error_msg("%s: at most 64 --data / --text files", cmd);
        return -1;
    }
    o->data_is_text[o->n_data] = !strcmp(flag, "--text");
    o->data_paths[o->n_data++] = value;
    return 0;
}

// returns 0 to run, 1 after --help, -1 on a usage error
static int parse_train_args(TrainOptions* o, int argc, char** argv) {
    const char* cmd = "train";
    train_defaults(o);
    const ArgSpec args[] = {
        // the model
        {"--init", ARG_STRING, &o->init_path},
        {"-z|--tokenizer", ARG_STRING, &o->tokenizer_path},
        {"--template", ARG_STRING, &o->template_name},
        {"--dim", ARG_INT, &o->dim, 1, 65536},
        {"--layers", ARG_INT, &o->n_layers, 1, 1024},
        {"--heads", ARG_INT, &o->n_heads, 1, 65536},
        {"--kv-heads", ARG_INT, &o->n_kv_heads, 1, 65536},
        {"--hidden", ARG_INT, &o->hidden_dim, 1, 262144},
        {"--seq-len", ARG_INT, &o->seq_len, 1, 1 << 20},
        {"--shared-classifier", ARG_SWITCH, &o->shared_classifier, 1},
        // the data
        {"--data|--text", ARG_CALL, o, .call = add_data_file},
        {"--response-field", ARG_CHOICE, &o->response_field_index, .choices = "response|refusal|harmful|answer"},
        {"--val", ARG_STRING, &o->val_path},
        {"--pack", ARG_SWITCH, &o->pack, 1},
        // the optimisation
        {"--steps", ARG_INT, &o->steps, 1, 1 << 30},
        {"--epochs", ARG_FLOAT, &o->epochs, 1e-6, 1e6},
        {"--batch", ARG_INT, &o->batch, 1, 4096},
        {"--grad-accum", ARG_INT, &o->grad_accum, 1, 4096},
        {"--lr", ARG_FLOAT, &o->lr, 0, 1e38},
        {"--lr-min", ARG_FLOAT, &o->lr_min, 0, 1e38},
        {"--warmup", ARG_INT, &o->warmup, 0, 1 << 30},
        {"--weight-decay", ARG_FLOAT, &o->weight_decay, 0, 1e6},
        {"--beta1", ARG_FLOAT, &o->beta1, 0, 0.999999},
        {"--beta2", ARG_FLOAT, &o->beta2, 0, 0.999999},
        {"--clip", ARG_FLOAT, &o->clip, 0, 1e30},
        {"--seed", ARG_U64, &o->seed},
        {"--threads", ARG_INT, &o->threads, 1, 1024},
        // the output and bookkeeping
        {"-o|--out", ARG_STRING, &o->out_path},
        {"--save-every", ARG_INT, &o->save_every, 1, 1 << 30},
        {"--resume", ARG_SWITCH, &o->resume, 1},
        {"--eval-every", ARG_INT, &o->eval_every, 1, 1 << 30},
        {"--val-batches", ARG_INT, &o->val_batches, 1, 1 << 30},
        {"--print-every", ARG_INT, &o->print_every, 1, 1 << 30},
        {"--log", ARG_STRING, &o->log_path},
        {"--plot", ARG_STRING, &o->plot_path},
        {"--dump-grad", ARG_STRING, &o->dump_grad_path},
        {"--stop-at", ARG_INT, &o->stop_at, 1, 1 << 30},
        {0}};
    int parsed = args_parse(cmd, args, argc, argv);
    if (parsed == ARGS_HELP) {
        train_usage();
        return 1;
    }
    if (parsed != 0) return -1;
    // what must be there, and what cannot go together
    const char* problem = !o->tokenizer_path ? "missing -z TOKENIZER.bin (see mosr train --help)"
                        : o->n_data == 0 ? "missing --data FILE.jsonl or --text FILE (see mosr train --help)"
                        : o->steps && o->epochs > 0 ? "give --steps or --epochs, not both"
                        : o->resume && !o->out_path ? "--resume needs -o MODEL.bin (the run to continue)"
                        : NULL;
    if (problem) {
        error_msg("%s: %s", cmd, problem);
        return -1;
    }
    static const char* const fields[] = {"response", "refusal", "harmful", "answer"};
    o->response_field = fields[o->response_field_index];
    if (o->lr_min < 0) o->lr_min = o->lr / 10.0f;
    if (o->lr_min > o->lr) {
        error_msg("%s: --lr-min %g is above --lr %g: the schedule only decays", cmd, o->lr_min, o->lr);
        return -1;
    }
    return 0;
}

static void format_duration(double s, char* buf, size_t len) {
    long t = (long)(s + 0.5);
    if (t >= 3600) snprintf(buf, len, "%ldh%02ldm", t / 3600, t / 60 % 60);
    else if (t >= 60) snprintf(buf, len, "%ldm%02lds", t / 60, t % 60);
    else snprintf(buf, len, "%lds", t);
}

// mean loss over the counted tokens of (up to max_batches batches of) a data set, in file order.
// Under MPI the batches are dealt out (batch k to rank k % N); each batch's sum and count come
// back to every rank in a table that only its own rank filled, so the total is added up in batch
// order as in one process, to the same bits.
static float validation_loss(Model* m, const ExampleSet* val, Batch* b, int max_batches) {
    int n_batches = (val->n + b->max_B - 1) / b->max_B;
    if (max_batches > 0 && n_batches > max_batches) n_batches = max_batches;
    double* sums = calloc(2 * (size_t)n_batches + 1, sizeof(double)); // (n_batches) sums, then counts
    if (!sums) {
        error_msg("out of memory for the validation loss");
        exit(EXIT_FAILURE_RUN);
    }
    const Example* rows[b->max_B];
    for (int k = 0; k < n_batches; k++) {
        if (!dist_mine(k)) continue;
        int start = k * b->max_B, n = val->n - start < b->max_B ? val->n - start : b->max_B;
        for (int r = 0; r < n; r++) rows[r] = &val->examples[start + r];
        batch_fill_padded(b, rows, n);
        if (b->n_counted == 0) continue;
        model_forward(m, b->inputs, b->B, b->T, m->config.n_layers);
        sums[k] = (double)model_loss(m, b->targets, b->mask, 0.0f) * b->n_counted;
        sums[n_batches + k] = b->n_counted;
    }
    dist_allreduce_sum_doubles(sums, 2 * (size_t)n_batches);
    double sum = 0.0, count = 0.0;
    for (int k = 0; k < n_batches; k++) sum += sums[k], count += sums[n_batches + k];
    free(sums);
    return count > 0 ? (float)(sum / count) : NAN;
}

// the parameters' checksum, compared across the ranks (dist.h): they must stay identical
static void check_params_same(const Model* m, int step) {
    if (dist_size() == 1) return;
    char what[64];
    snprintf(what, sizeof(what), "the parameters after step %d", step);
    dist_check_same(dist_hash_bytes(HASH_START, m->param_memory, m->n_params * sizeof(float)), what);
}

// loads every --data / --text file (or the --val file) into one example set. 0 on success.
static int load_data(ExampleSet* s, Tokenizer* t, const TrainOptions* o, int max_ids, int validation) {
    memset(s, 0, sizeof(*s));
    int any_chat = 0;
    for (int i = 0; i < o->n_data; i++) any_chat |= !o->data_is_text[i];
    for (int i = 0; i < (validation ? 1 : o->n_data); i++) {
        const char* path = validation ? o->val_path : o->data_paths[i];
        int text = validation ? !any_chat : o->data_is_text[i];
        int rc = text ? load_text_file(s, t, path, max_ids)
                      : load_chat_file(s, t, path, o->response_field, max_ids);
        if (rc != 0) return -1;
    }
    return 0;
}

// ----------------------------------------------------------------------------
// mosr train: a run is built (tokenizer, model, data, optimiser, a resumed state), stepped until
// its last step, a stop or a divergence, and freed, as defend's run is

// Everything a training run holds between its steps.
typedef struct {
    TrainOptions* o;
    Tokenizer tok;
    Model model;
    int have_tok, have_model;
    ExampleSet train, val;     // tokenised once up front; rows hold at most T + 1 ids (T predictions)
    DataLoader loader;
    Batch* batches;            // (grad_accum) this rank's micro-batches of a step
    int n_batches_built;
    Batch val_batch;
    Batch others;              // under MPI: where the other ranks' micro-batches are drawn, to keep the loader in step
    float *adam_m, *adam_v;    // (n_params) AdamW's moments
    size_t n_norm_params;      // the rmsnorm gains, the first three tensors of the block: no weight decay
    RunLog log;
    char state_path[4200];     // -o's training state ("" without -o, or when -o is written in place)
    FILE* state_file;          // the state being resumed, open (on rank 0) until it is read
    TrainStateHeader resumed;
    uint64_t data_hash;
    long total_steps;
    int B, T, root, n_ranks;
    int step, start_step;      // the steps done, and the step this session started at
    double elapsed_before;     // the seconds of the run before this session
    double t_start, t_print;
    long tokens_since_print;
    float loss;                // the last step's
} TrainRun;

// what a step leaves the loop to do
enum { TRAIN_GO_ON, TRAIN_STOPPED, TRAIN_DIVERGED, TRAIN_FAILED };

// the model of a run: from a resumed state, a checkpoint, or the config flags. An exit code.
static int train_model_open(TrainRun* r) {
    TrainOptions* o = r->o;
    if (o->resume && !r->state_path[0]) {
        error_msg("train: --resume: -o %s is written in place (a device, FIFO or pipe) and has no state", o->out_path);
        return EXIT_USAGE;
    }
    if (o->resume) {
        // rank 0 reads the state (only its machine has one) and hands it to the other ranks
        int opened = r->root ? train_state_open(&r->state_file, &r->resumed, r->state_path) == 0 : 1;
        dist_bcast(&opened, sizeof(opened));
        if (!opened) return EXIT_BAD_INPUT;
        dist_bcast(&r->resumed, sizeof(r->resumed));
        const StateConfig* sc = &r->resumed.config;
        Config rc;
        config_defaults(&rc);
        rc.dim = sc->dim, rc.hidden_dim = sc->hidden_dim, rc.n_layers = sc->n_layers, rc.n_heads = sc->n_heads;
        rc.n_kv_heads = sc->n_kv_heads, rc.vocab_size = sc->vocab_size, rc.seq_len = sc->seq_len;
        rc.shared_classifier = sc->shared_classifier;
        if (model_build(&r->model, &rc) != 0) return EXIT_BAD_INPUT;
        r->have_model = 1;
        if (o->seq_len && o->seq_len != r->resumed.seq_len) {
            error_msg("%s: the run used --seq-len %d, not %d", r->state_path, r->resumed.seq_len, o->seq_len);
            return EXIT_USAGE;
        }
        o->seq_len = r->resumed.seq_len;
    } else if (o->init_path) {
        if (model_open(&r->model, o->init_path, NULL) != 0) return EXIT_BAD_INPUT;
        r->have_model = 1;
        if (o->seq_len == 0 || o->seq_len > r->model.config.seq_len) {
            if (o->seq_len > r->model.config.seq_len)
                fprintf(stderr, "note: --seq-len %d is more than the model's %d; using %d\n", o->seq_len,
                        r->model.config.seq_len, r->model.config.seq_len);
            o->seq_len = r->model.config.seq_len;
        }
    } else {
        if (o->seq_len == 0) o->seq_len = 256;
        Config c = {.dim = o->dim, .n_layers = o->n_layers, .n_heads = o->n_heads,
                    .n_kv_heads = o->n_kv_heads ? o->n_kv_heads : o->n_heads,
                    .hidden_dim = o->hidden_dim ? o->hidden_dim : (8 * o->dim / 3 + 31) / 32 * 32,
                    .vocab_size = r->tok.vocab_size, .seq_len = o->seq_len,
                    .shared_classifier = o->shared_classifier};
        if (model_build(&r->model, &c) != 0) return EXIT_USAGE;
        r->have_model = 1;
        model_init_random(&r->model, o->seed);
    }
    return EXIT_OK;
}

// resuming: parameters, moments, data order and log from the state file, once it is known to be
// this run's. An exit code.
static int train_state_restore(TrainRun* r) {
    const TrainOptions* o = r->o;
    const TrainStateHeader* h = &r->resumed;
    Model* m = &r->model;
    const char* mismatch = NULL;
    if ((size_t)h->n_params != m->n_params) mismatch = "parameter count";
    else if (h->n_examples != r->train.n || h->data_hash != r->data_hash) mismatch = "training data";
    else if (h->seed != o->seed) mismatch = "--seed";
    else if (h->batch != r->B) mismatch = "--batch";
    else if (h->grad_accum != o->grad_accum) mismatch = "--grad-accum";
    else if (h->pack != o->pack) mismatch = "--pack";
    if (!mismatch && (h->ranks ? h->ranks : 1) != r->n_ranks) {
        // a step is N x --grad-accum micro-batches: another N is another run
        error_msg("%s: the run used %d MPI rank%s, this one %d: resume it with mpirun -np %d", r->state_path,
                  h->ranks ? h->ranks : 1, h->ranks > 1 ? "s" : "", r->n_ranks, h->ranks ? h->ranks : 1);
        return EXIT_USAGE;
    }
    if (mismatch) {
        error_msg("%s: the %s differs from the run being resumed", r->state_path, mismatch);
        return EXIT_USAGE;
    }
    if (h->threads != omp_get_max_threads())
        fprintf(stderr, "note: the run used %d threads, this one %d: its losses may differ in the last bits\n",
                h->threads, omp_get_max_threads());
    int32_t* order = malloc_or_die(h->n_examples * sizeof(int32_t));
    LogRow* rows_in = malloc_or_die((h->n_log_rows + 1) * sizeof(LogRow));
    FILE* f = r->state_file;
    int bad = !r->root ? 0 : read_floats(f, m->param_memory, sizeof(float), h->n_params, r->state_path) ||
              read_floats(f, r->adam_m, sizeof(float), h->n_params, r->state_path) ||
              read_floats(f, r->adam_v, sizeof(float), h->n_params, r->state_path) ||
              read_floats(f, order, sizeof(int32_t), h->n_examples, r->state_path) ||
              read_floats(f, rows_in, sizeof(LogRow), h->n_log_rows, r->state_path);
    dist_bcast(&bad, sizeof(bad));
    if (!bad) { // the log rows stay on rank 0, the only one that writes the log
        dist_bcast(m->param_memory, m->n_params * sizeof(float));
        dist_bcast(r->adam_m, m->n_params * sizeof(float));
        dist_bcast(r->adam_v, m->n_params * sizeof(float));
        dist_bcast(order, h->n_examples * sizeof(int32_t));
    }
    for (int i = 0; i < h->n_examples && !bad; i++) bad = order[i] < 0 || order[i] >= r->train.n;
    if (!bad && (h->loader_pos < 0 || h->loader_pos >= r->train.n)) bad = 1;
    // a saved state is always finite (the loop checks before saving): a NaN is damage, not divergence
    int not_finite = !bad && (!all_finite(m->param_memory, m->n_params) || !all_finite(r->adam_m, m->n_params) ||
                              !all_finite(r->adam_v, m->n_params));
    if (bad || not_finite) {
        error_msg("%s: corrupt training state%s", r->state_path,
                  not_finite ? " (its parameters or moments hold NaN or Inf)" : "");
        free(order);
        free(rows_in);
        return EXIT_BAD_INPUT;
    }
    for (int i = 0; i < r->train.n; i++) r->loader.order[i] = order[i];
    r->loader.pos = (int)h->loader_pos;
    r->loader.epoch = (int)h->loader_epoch;
    r->loader.rng = h->loader_rng;
    for (int i = 0; r->root && i < h->n_log_rows; i++) run_log_add(&r->log, rows_in[i]);
    free(order);
    free(rows_in);
    r->step = (int)h->step;
    r->elapsed_before = h->elapsed;
    if (r->state_file) fclose(r->state_file);
    r->state_file = NULL;
    fprintf(stderr, "resuming %s at step %d\n", r->state_path, r->step);
    return EXIT_OK;
}

// everything a run needs before its first step, every input and output checked first. An exit
// code; free_train_run frees what was built either way.
static int build_train_run(TrainRun* r, TrainOptions* o) {
    memset(r, 0, sizeof(*r));
    r->o = o;
    // (a checkpoint written in place, to a device, FIFO or pipe, has no state beside it)
    if (o->out_path && !path_written_in_place(o->out_path))
        snprintf(r->state_path, sizeof(r->state_path), "%s.state", o->out_path);

    if (tokenizer_open(&r->tok, o->tokenizer_path, 0) != 0) return EXIT_BAD_INPUT;
    r->have_tok = 1;
    int any_chat = 0; // --data files are conversations: they need a template (--text ones do not)
    for (int i = 0; i < o->n_data; i++) any_chat |= !o->data_is_text[i];
    if (any_chat || o->val_path) {
        int rc = template_attach(&r->tok, o->init_path, o->tokenizer_path, o->template_name);
        if (rc != EXIT_OK) return rc;
    }
    // every output checked against every input before any work; -o may replace its --init
    // (a run continued in place), and the training state goes beside -o
    const OutputArg outputs[] = {{.flag = "-o", .path = o->out_path, .may_replace = "--init"},
                                 {.flag = "-o's state", .path = r->state_path[0] ? r->state_path : NULL},
                                 {.flag = "--log", .path = o->log_path}, {.flag = "--plot", .path = o->plot_path},
                                 {.flag = "--dump-grad", .path = o->dump_grad_path}};
    InputArg inputs[3 + 64] = {{"-z", o->tokenizer_path}, {"--val", o->val_path}, {"--init", o->init_path}};
    for (int i = 0; i < o->n_data; i++)
        inputs[3 + i] = (InputArg){o->data_is_text[i] ? "--text" : "--data", o->data_paths[i]};
    // (under MPI only rank 0 writes, so only its outputs are checked; every rank's inputs must match)
    r->root = dist_rank() == 0, r->n_ranks = dist_size();
    if (paths_check("train", outputs, r->root ? 5 : 0, inputs, 3 + o->n_data) != 0) return EXIT_USAGE;
    dist_check_inputs("train", inputs, 3 + o->n_data);

    int rc = train_model_open(r);
    if (rc != EXIT_OK) return rc;
    Config* c = &r->model.config;
    if (r->tok.vocab_size > c->vocab_size) {
        error_msg("%s: %d tokens, but the model has a vocabulary of %d", o->tokenizer_path, r->tok.vocab_size,
                  c->vocab_size);
        return EXIT_BAD_INPUT;
    }
    int T = r->T = o->seq_len, B = r->B = o->batch;

    // the data, tokenised once up front
    if (load_data(&r->train, &r->tok, o, T + 1, 0) != 0) return EXIT_BAD_INPUT;
    if (o->val_path && load_data(&r->val, &r->tok, o, T + 1, 1) != 0) return EXIT_BAD_INPUT;
    r->data_hash = example_set_hash(&r->train);
    long rows = rows_per_epoch(&r->train, T, o->pack);
    r->total_steps = o->steps ? o->steps
                   : (long)ceil((o->epochs > 0 ? o->epochs : 1.0) * rows / ((double)B * o->grad_accum * r->n_ranks));
    if (r->total_steps < 1) r->total_steps = 1;
    fprintf(stderr, "data: %d examples (%ld counted tokens), %d cut to %d tokens, %d dropped; %ld %s rows an epoch\n",
            r->train.n, r->train.n_counted, r->train.n_cut, T + 1, r->train.n_dropped, rows,
            o->pack ? "packed" : "padded");
    if (o->val_path) fprintf(stderr, "validation: %d examples (%ld counted tokens)\n", r->val.n, r->val.n_counted);

    // the optimiser state, the gradients, the loader and the batch buffers
    Model* m = &r->model;
    model_alloc_grads(m);
    r->adam_m = calloc_or_die(m->n_params, sizeof(float));
    r->adam_v = calloc_or_die(m->n_params, sizeof(float));
    build_loader(&r->loader, &r->train, o->seed);
    r->batches = calloc_or_die(o->grad_accum, sizeof(Batch));
    for (; r->n_batches_built < o->grad_accum; r->n_batches_built++) build_batch(&r->batches[r->n_batches_built], B, T);
    build_batch(&r->val_batch, B, T);
    build_batch(&r->others, B, T);
    r->n_norm_params = m->param_sizes[0] + m->param_sizes[1] + m->param_sizes[2];

    if (o->resume && (rc = train_state_restore(r)) != EXIT_OK) return rc;

    fprintf(stderr, "model: dim %d, %d layers, %d/%d heads, hidden %d, vocab %d, seq_len %d: %.2fM parameters\n",
            c->dim, c->n_layers, c->n_heads, c->n_kv_heads, c->hidden_dim, c->vocab_size, c->seq_len,
            m->n_params / 1e6);
    fprintf(stderr, "training: %ld steps of %d x %d rows x %d positions, lr %g -> %g (warmup %d), %d threads",
            r->total_steps, o->grad_accum * r->n_ranks, B, T, o->lr, o->lr_min, o->warmup, omp_get_max_threads());
    if (r->n_ranks > 1) fprintf(stderr, " on each of %d MPI ranks (%d micro-batches each)", r->n_ranks, o->grad_accum);
    fputc('\n', stderr);
    check_params_same(m, r->step); // the same start everywhere (a rank's --init or seed differing)
    if (!o->out_path) fprintf(stderr, "note: no -o given, nothing will be saved\n");
    return EXIT_OK;
}

// the checkpoint, then the training state (which carries its own copy of the parameters), the log
// and the plot, on rank 0. 0 on success.
static int train_run_save(TrainRun* r, double elapsed) {
    const TrainOptions* o = r->o;
    const Config* c = &r->model.config;
    TrainStateHeader h = {.magic = TRAIN_STATE_MAGIC, .version = TRAIN_STATE_VERSION,
                          .config = {c->dim, c->hidden_dim, c->n_layers, c->n_heads, c->n_kv_heads,
                                     c->vocab_size, c->seq_len, c->shared_classifier},
                          .step = r->step, .n_params = (int64_t)r->model.n_params,
                          .n_examples = r->train.n, .loader_pos = r->loader.pos, .loader_epoch = r->loader.epoch,
                          .n_log_rows = r->log.n, .loader_rng = r->loader.rng, .data_hash = r->data_hash,
                          .seed = o->seed, .batch = r->B, .grad_accum = o->grad_accum, .seq_len = r->T,
                          .pack = o->pack, .threads = omp_get_max_threads(), .ranks = r->n_ranks,
                          .elapsed = elapsed};
    if (model_save_as(&r->model, o->out_path, model_format_for_output(o->out_path, o->init_path), o->init_path) != 0 ||
        (r->state_path[0] && train_state_save(r->state_path, &h, r->model.param_memory, r->adam_m, r->adam_v,
                                              r->loader.order, r->log.rows) != 0))
        return -1;
    if (o->log_path && write_train_csv(&r->log, o->log_path) != 0) return -1;
    if (o->plot_path && write_loss_plot(&r->log, o->plot_path) != 0) return -1;
    fprintf(stderr, "saved %s (step %d)\n", o->out_path, r->step);
    return 0;
}

// One optimiser step: its micro-batches, forward and backward, AdamW, then the log, the progress
// line and the checkpoint. What the loop does next: go on, or stop (Ctrl-C, --stop-at), or the run
// diverged, or a file could not be written.
static int train_run_step(TrainRun* r) {
    const TrainOptions* o = r->o;
    Model* m = &r->model;
    int B = r->B, n_ranks = r->n_ranks;
    double t0 = time_now();
    float lr = lr_schedule(r->step, o->warmup, (int)r->total_steps, o->lr, o->lr_min);

    // 1) the micro-batches of this step, all of them up front: the loss is the mean over
    //    every counted token of the step, so each micro-batch's gradient is weighted by its
    //    share of those tokens. Under MPI the step has N x grad_accum micro-batches, rank r's
    //    are r x grad_accum onwards; every rank draws them all (the loader stays the same
    //    everywhere) and keeps its own, and the counts are summed over the ranks.
    long counts[2] = {0, 0}; // counted and real positions of the step
    for (int g = 0; g < o->grad_accum * n_ranks; g++) {
        int own = g / o->grad_accum == dist_rank();
        Batch* b = own ? &r->batches[g % o->grad_accum] : &r->others;
        next_batch(b, &r->loader, B, o->pack);
        if (own) counts[0] += b->n_counted, counts[1] += b->n_real;
    }
    dist_allreduce_sum_longs(counts, 2);
    long n_counted = counts[0], n_real = counts[1];

    // 2) forward, loss and backward of each micro-batch, accumulating the gradients
    model_zero_grads(m);
    double loss_sum = 0.0;
    for (int k = 0; k < o->grad_accum; k++) {
        Batch* b = &r->batches[k];
        if (b->n_counted == 0) continue; // nothing to learn in this micro-batch
        float share = (float)b->n_counted / (float)n_counted;
        model_forward(m, b->inputs, b->B, b->T, m->config.n_layers);
        float micro_loss = model_loss(m, b->targets, b->mask, share);
        loss_sum += (double)micro_loss * share;
        model_backward(m, 1, NULL);
    }
    // under MPI: the loss and the gradients summed over the ranks, one all-reduce of the block
    dist_allreduce_sum_doubles(&loss_sum, 1);
    dist_allreduce_sum_floats(m->grad_memory, m->n_params);
    float loss = r->loss = (float)loss_sum;
    if (o->dump_grad_path && r->step == r->start_step && r->root) {
        AtomicFile af;
        if (atomic_open(&af, o->dump_grad_path) != 0) return TRAIN_FAILED;
        fwrite(m->grad_memory, sizeof(float), m->n_params, af.f);
        if (atomic_commit(&af) != 0) return TRAIN_FAILED;
    }

    // 3) a NaN or Inf stops the run before it can touch the parameters or a checkpoint
    float norm = grad_clip(m->grad_memory, m->n_params, o->clip);
    if (!isfinite(loss) || !isfinite(norm)) {
        error_msg("step %d: the %s is %s: the run diverged (try a lower --lr or --clip); the last "
                  "checkpoint%s is kept", r->step + 1, isfinite(loss) ? "gradient norm" : "loss",
                  isnan(isfinite(loss) ? norm : loss) ? "NaN" : "Inf", o->out_path ? "" : " (none)");
        return TRAIN_DIVERGED;
    }

    // 4) AdamW: no weight decay on the rmsnorm gains (the first three tensors of the block)
    size_t n_norm = r->n_norm_params;
    adamw_update(m->param_memory, m->grad_memory, r->adam_m, r->adam_v, n_norm, lr, o->beta1, o->beta2, o->eps, 0.0f,
                 r->step + 1);
    adamw_update(m->param_memory + n_norm, m->grad_memory + n_norm, r->adam_m + n_norm, r->adam_v + n_norm,
                 m->n_params - n_norm, lr, o->beta1, o->beta2, o->eps, o->weight_decay, r->step + 1);
    int step = ++r->step;

    // 5) bookkeeping: the log row, validation, the progress line
    double t1 = time_now();
    double elapsed = r->elapsed_before + (t1 - r->t_start);
    LogRow row = {step, loss, NAN, lr, n_real / (t1 - t0), elapsed};
    int stop = dist_any(interrupted()) || (o->stop_at && step >= o->stop_at); // (every rank stops at one step)
    int last = step == r->total_steps || stop;
    if (o->val_path && (step % o->eval_every == 0 || last)) {
        row.val_loss = validation_loss(m, &r->val, &r->val_batch, o->val_batches);
    }
    run_log_add(&r->log, row);
    r->tokens_since_print += n_real;
    if (step % o->print_every == 0 || step == r->start_step + 1 || last) {
        double now = time_now();
        double mean_step = (now - r->t_start) / (step - r->start_step);
        char eta[32], spent[32];
        format_duration(mean_step * (r->total_steps - step), eta, sizeof(eta));
        format_duration(elapsed, spent, sizeof(spent));
        fprintf(stderr, "step %d/%ld | loss %.4f", step, r->total_steps, loss);
        if (!isnan(row.val_loss)) fprintf(stderr, " | val %.4f", row.val_loss);
        fprintf(stderr, " | lr %.2e | norm %.3f | %.0f tok/s | %s elapsed, ETA %s\n", lr, norm,
                r->tokens_since_print / (now - r->t_print), spent, eta);
        r->t_print = now;
        r->tokens_since_print = 0;
    }

    // 6) checkpoint: every --save-every steps, at the end, on Ctrl-C or --stop-at; under MPI
    //    the ranks' parameters are compared first, then rank 0 writes
    int save = o->out_path && (step % o->save_every == 0 || step == r->total_steps || stop);
    if (save || last || step % DIST_CHECK_EVERY == 0) check_params_same(m, step);
    // the parameters are checked first: a checkpoint is never overwritten with NaNs
    if (save && !all_finite(m->param_memory, m->n_params)) {
        error_msg("step %d: the parameters hold NaN or Inf: the run diverged (try a lower --lr); "
                  "the last checkpoint is kept", step);
        return TRAIN_DIVERGED;
    }
    if (save && r->root) {
        if (train_run_save(r, elapsed) != 0) return TRAIN_FAILED;
    } else if (r->root && o->log_path && !isnan(row.val_loss) && write_train_csv(&r->log, o->log_path) != 0) {
        return TRAIN_FAILED;
    }
    if (stop) {
        fprintf(stderr, "stopped at step %d%s\n", step, dist_any(interrupted()) ? " (Ctrl-C)" : "");
        return TRAIN_STOPPED;
    }
    return TRAIN_GO_ON;
}

// after the last step (or a stop, or a divergence): the log and the plot always show the run as
// it went, diverged or not. The run's exit code.
static int finish_train_run(TrainRun* r, int diverged) {
    const TrainOptions* o = r->o;
    if (r->root && o->log_path && r->log.n > 0 && write_train_csv(&r->log, o->log_path) != 0) return EXIT_FAILURE_RUN;
    if (r->root && o->plot_path && r->log.n > 0 && write_loss_plot(&r->log, o->plot_path) != 0) return EXIT_FAILURE_RUN;
    if (!diverged) {
        char spent[32];
        format_duration(time_now() - r->t_start, spent, sizeof(spent));
        fprintf(stderr, "done: step %d, loss %.4f, %s this session\n", r->step, r->loss, spent);
        model_memory_report(stderr, "train", &r->model, 2 * r->model.n_params * sizeof(float), 0, NULL); // AdamW: m and v
    }
    // a run cut short by Ctrl-C must not look finished to `mosr train ... && mosr defend ...`
    return diverged ? EXIT_FAILURE_RUN : dist_any(interrupted()) ? EXIT_INTERRUPTED : EXIT_OK;
}

static void free_train_run(TrainRun* r) {
    if (r->state_file) fclose(r->state_file);
    for (int k = 0; k < r->n_batches_built; k++) free_batch(&r->batches[k]);
    if (r->n_batches_built) free_batch(&r->val_batch), free_batch(&r->others);
    free(r->batches);
    free(r->adam_m);
    free(r->adam_v);
    arrfree(r->log.rows);
    free_loader(&r->loader);
    free_example_set(&r->train);
    free_example_set(&r->val);
    if (r->have_model) model_free(&r->model);
    if (r->have_tok) tokenizer_free(&r->tok);
}

int train_main(int argc, char** argv) {
    TrainOptions o;
    int parsed = parse_train_args(&o, argc, argv);
    if (parsed != 0) return parsed > 0 ? EXIT_OK : EXIT_USAGE;
    if (o.threads > 0) omp_set_num_threads(o.threads);

    TrainRun r;
    int exit_code = build_train_run(&r, &o);
    if (exit_code == EXIT_OK) {
        // Ctrl-C asks the loop to stop at the end of the current step, with checkpoint and state
        interrupt_catch();
        r.t_start = r.t_print = time_now();
        r.start_step = r.step;
        int next = TRAIN_GO_ON;
        while (next == TRAIN_GO_ON && r.step < r.total_steps) next = train_run_step(&r);
        exit_code = next == TRAIN_FAILED ? EXIT_FAILURE_RUN : finish_train_run(&r, next == TRAIN_DIVERGED);
    }
    interrupt_release();
    free_train_run(&r);
    return exit_code;
}

// ----------------------------------------------------------------------------
// mosr bench: training throughput of a randomly initialised model on random tokens

static void bench_usage(void) {
    fprintf(stderr,
        "usage: mosr bench [options]\n"
        "Times full training steps (forward of all layers, loss on every token, backward, AdamW lr 1e-4\n"
        "wd 0.1 on all parameters) of a random model on random tokens. Prints each step's time; the\n"
        "last line is 'train tok/s: N', the mean over the steps after the first (warm-up) one.\n"
        "  --dim N        width (default 128)\n"
        "  --layers N     layers (default 4)\n"
        "  --heads N      query heads (default 4)\n"
        "  --kv-heads N   key/value heads (default = heads)\n"
        "  --hidden N     SwiGLU width (default 352)\n"
        "  --vocab N      vocabulary size (default 512)\n"
        "  --tied         the classifier shares the embedding's weights\n"
        "  --model FILE   the shape (and weights) of a model file instead of the flags above\n"
        "  --seq N        sequence length T (default 256; at most the model's with --model)\n"
        "  --batch N      batch size B (default 16)\n"
        "  --steps N      training steps, the first one a warm-up (default 10)\n"
        "  --threads N    OpenMP threads (default: all)\n"
        "With --allreduce, times nothing but the sgemm peak: prints what data parallelism over MPI\n"
        "costs at this shape. Per step and rank, for train (all parameters) and defend (the defence's\n"
        "default LoRA adapters): the bytes all-reduced, the compute of B rows of T tokens per rank\n"
        "(defend: B erase + B retain rows through the layers the losses read, B CAA rows through all),\n"
        "its time at the sgemm peak, and the link speed at which the all-reduce stays under 10 %% of\n"
        "a step. Under mpirun with 2 or more ranks it also times the all-reduces between them.\n"
        "  --gflops G     the FLOP/s of one rank, in GFLOP/s (default: the sgemm peak, measured now)\n");
}

// the seconds of one all-reduce of n floats between the ranks: the median of 5, after a warm-up
static double time_allreduce(size_t n) {
    float* x = calloc_or_die(n, sizeof(float));
    double t[5];
    for (int rep = -1; rep < 5; rep++) {
        dist_allreduce_sum_floats(x, 1); // every rank starts together
        double t0 = time_now();
        dist_allreduce_sum_floats(x, n);
        if (rep >= 0) t[rep] = dist_allreduce_max_double(time_now() - t0);
    }
    free(x);
    for (int i = 1; i < 5; i++) // insertion sort of 5
        for (int j = i; j > 0 && t[j] < t[j - 1]; j--) { double s = t[j]; t[j] = t[j - 1], t[j - 1] = s; }
    return t[2];
}

// One line of bench --allreduce: what the all-reduce of one step of `what` costs. A ring
// all-reduce sends 2 (N - 1) / N x the block from every rank (N = 2: the block once; many ranks:
// twice); mosr all-reduces after the backward, so the step is compute + communication, and the
// communication is under 10 % of it when it takes at most compute / 9.
static void allreduce_line(const char* what, size_t n_floats, double flop, double gflops, const char* detail) {
    double bytes = 4.0 * n_floats, seconds = flop / (gflops * 1e9);
    double link2 = 9.0 * 8.0 * bytes / seconds, link_many = 2.0 * link2; // bit/s
    printf("%s: all-reduce %.4g MB a step (%s); compute %.4g GFLOP a step and rank = %.4g s at %.1f GFLOP/s; "
           "communication under 10 %% of a step with a link of %.3g Gbit/s (2 ranks) to %.3g Gbit/s (many, ring)\n",
           what, bytes / 1e6, detail, flop / 1e9, seconds, gflops, link2 / 1e9, link_many / 1e9);
}

// mosr bench --allreduce: the all-reduce of train and defend at the model m's shape, on paper and
// (under mpirun) timed between the ranks here
static int bench_allreduce(Model* m, int B, int T, double gflops) {
    const Config* c = &m->config;
    int L = c->n_layers;
    int measured = gflops <= 0;
    if (measured) gflops = sgemm_peak_gflops();
    printf("bench --allreduce: dim %d, %d layers, %d/%d heads, hidden %d, vocab %d%s: %.4gM parameters; "
           "B %d x T %d per rank; %.1f GFLOP/s per rank (%s)\n",
           c->dim, L, c->n_heads, c->n_kv_heads, c->hidden_dim, c->vocab_size, c->shared_classifier ? ", tied" : "",
           m->n_params / 1e6, B, T, gflops, measured ? "the sgemm peak, measured now" : "--gflops");

    // train: every parameter's gradient; the step is a forward and backward through everything
    double train_flop = model_forward_flop(m, B, T, L, 0) + model_backward_flop(m, B, T, L, 1, 1, 0);
    allreduce_line("train", m->n_params, train_flop, gflops, "every parameter's gradient");

    // defend: the default MOSR run's adapters (defense_config_default, defense_layers), and the
    // flops of defense_step: the representation rows up to n_run, the CAA rows through all layers
    DefenseConfig cfg;
    defense_config_default(&cfg, DEFEND_MOSR);
    DefenseLayers dl;
    if (defense_layers(&dl, &cfg, L) != 0) return EXIT_USAGE;
    if (model_lora_init(m, cfg.rank, cfg.lora_alpha, 0, dl.max_target + 1, (1 << N_LORA_MAPS) - 1, cfg.lora_b_std,
                        cfg.seed) != 0)
        return EXIT_FAILURE_RUN;
    double defend_flop = model_forward_flop(m, 2 * B, T, dl.n_run, 1) + model_backward_flop(m, 2 * B, T, dl.n_run, 0, 0, 1) +
                         model_forward_flop(m, B, T, L, 1) + model_backward_flop(m, B, T, L, 1, 0, 1);
    char detail[160];
    snprintf(detail, sizeof(detail), "LoRA rank %d on the %d maps of layers 0..%d: %.4gM parameters", cfg.rank,
             N_LORA_MAPS, dl.max_target, m->lora.n_params / 1e6);
    allreduce_line("defend", m->lora.n_params, defend_flop, gflops, detail);

    // under mpirun: the all-reduces timed between these ranks (not over 1 GB a rank)
    if (dist_size() > 1) {
        size_t blocks[2] = {m->n_params, m->lora.n_params};
        const char* names[2] = {"train", "defend"};
        double flops[2] = {train_flop, defend_flop};
        for (int k = 0; k < 2; k++) {
            if (blocks[k] * sizeof(float) > ((size_t)1 << 30)) {
                printf("timed %s: not timed, %.3g MB is over 1 GB\n", names[k], blocks[k] * 4.0 / 1e6);
                continue;
            }
            double s = time_allreduce(blocks[k]), step = flops[k] / (gflops * 1e9);
            printf("timed %s: all-reduce of %.4g MB between %d ranks: %.3g ms (%.3g GB/s of the block), "
                   "%.1f %% of a step at %.1f GFLOP/s\n",
                   names[k], blocks[k] * 4.0 / 1e6, dist_size(), s * 1e3, blocks[k] * 4.0 / s / 1e9,
                   100.0 * s / (step + s), gflops);
        }
    }
    return EXIT_OK;
}

int bench_main(int argc, char** argv) {
    Config c = {.dim = 128, .n_layers = 4, .n_heads = 4, .n_kv_heads = 0, .hidden_dim = 352,
                .vocab_size = 512, .seq_len = 256, .shared_classifier = 0};
    int B = 16, steps = 10, threads = 0, allreduce = 0;
    float gflops = 0.0f;
    const char* model_path = NULL;
    const char* cmd = "bench";
    const ArgSpec args[] = {
        {"--dim", ARG_INT, &c.dim, 1, 65536},
        {"--layers", ARG_INT, &c.n_layers, 1, 1024},
        {"--heads", ARG_INT, &c.n_heads, 1, 65536},
        {"--kv-heads", ARG_INT, &c.n_kv_heads, 1, 65536},
        {"--hidden", ARG_INT, &c.hidden_dim, 1, 262144},
        {"--vocab", ARG_INT, &c.vocab_size, 1, 1 << 24},
        {"--tied", ARG_SWITCH, &c.shared_classifier, 1},
        {"--model", ARG_STRING, &model_path},
        {"--seq", ARG_INT, &c.seq_len, 1, 1 << 20},
        {"--batch", ARG_INT, &B, 1, 4096},
        {"--steps", ARG_INT, &steps, 2, 1 << 20},
        {"--threads", ARG_INT, &threads, 1, 1024},
        {"--allreduce", ARG_SWITCH, &allreduce, 1},
        {"--gflops", ARG_FLOAT, &gflops, 0.001f, 1e9f},
        {0}};
    int parsed = args_parse(cmd, args, argc, argv);
    if (parsed == ARGS_HELP) {
        bench_usage();
        return EXIT_OK;
    }
    if (parsed != 0) return EXIT_USAGE;
    if (gflops > 0 && !allreduce) {
        error_msg("bench: --gflops goes with --allreduce");
        return EXIT_USAGE;
    }
    if (c.n_kv_heads == 0) c.n_kv_heads = c.n_heads;
    if (threads > 0) omp_set_num_threads(threads);
    int T = c.seq_len;

    Model model;
    if (model_path) {
        if (model_open(&model, model_path, NULL) != 0) return EXIT_BAD_INPUT;
        if (T > model.config.seq_len) T = model.config.seq_len;
        c = model.config;
    } else if (model_build(&model, &c) != 0) {
        return EXIT_USAGE;
    }
    if (allreduce) { // on paper: the parameters are never touched (nor made resident)
        int rc = bench_allreduce(&model, B, T, gflops);
        model_free(&model);
        return rc;
    }
    if (!model_path) model_init_random(&model, 1337);
    model_alloc_grads(&model);
    float* adam_m = calloc_or_die(model.n_params, sizeof(float));
    float* adam_v = calloc_or_die(model.n_params, sizeof(float));
    // random tokens (B, T + 1): inputs are the first T of each row, targets the last T
    uint64_t rng = 42;
    int* tokens = malloc_or_die((size_t)B * (T + 1) * sizeof(int));
    int* inputs = malloc_or_die((size_t)B * T * sizeof(int));
    int* targets = malloc_or_die((size_t)B * T * sizeof(int));
    for (size_t i = 0; i < (size_t)B * (T + 1); i++) tokens[i] = random_u32(&rng) % c.vocab_size;
    for (int b = 0; b < B; b++) {
        memcpy(inputs + (size_t)b * T, tokens + (size_t)b * (T + 1), T * sizeof(int));
        memcpy(targets + (size_t)b * T, tokens + (size_t)b * (T + 1) + 1, T * sizeof(int));
    }
    printf("bench: dim %d, %d layers, %d/%d heads, hidden %d, vocab %d, B %d, T %d, %d threads: %.2fM parameters\n",
           c.dim, c.n_layers, c.n_heads, c.n_kv_heads, c.hidden_dim, c.vocab_size, B, T, omp_get_max_threads(),
           model.n_params / 1e6);

    double timed = 0.0;
    for (int step = 1; step <= steps; step++) {
        double t0 = time_now();
        model_zero_grads(&model);
        model_forward(&model, inputs, B, T, c.n_layers);
        float loss = model_loss(&model, targets, NULL, 1.0f);
        model_backward(&model, 1, NULL);
        adamw_update(model.param_memory, model.grad_memory, adam_m, adam_v, model.n_params, 1e-4f, 0.9f, 0.95f,
                     1e-8f, 0.1f, step);
        double dt = time_now() - t0;
        if (step > 1) timed += dt;
        printf("step %d: loss %.4f, %.1f ms%s\n", step, loss, dt * 1e3, step == 1 ? " (warm-up)" : "");
    }
    printf("train tok/s: %.0f\n", (double)B * T * (steps - 1) / timed);

    free(tokens);
    free(inputs);
    free(targets);
    free(adam_m);
    free(adam_v);
    model_free(&model);
    return EXIT_OK;
}
