// test_train.c — the trainer: chat-template masks, batches, AdamW, the schedule, clipping, a tiny
// model overfitting a tiny set, resume == uninterrupted (bit for bit), the NaN guard, Ctrl-C, and
// crash-safe checkpoints under SIGKILL.
//
// Every test makes its own tiny data (a byte-level tokenizer, a few JSONL items) in a temp dir.
// The tests that need a second process re-run this program (/proc/self/exe) in a child role, so
// no OpenMP thread pool is ever carried across a fork.
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "model.h"
#include "tiny.h"
#include "tokenizer.h"
#include "train.h"
#include "util.h"

static char dir[256];

static const char* tmp(const char* name) {
    static char bufs[8][512];
    static int k = 0;
    char* b = bufs[k++ % 8];
    snprintf(b, 512, "%s/%s", dir, name);
    return b;
}

// a byte-level tokenizer: <unk> <s> </s>, the 256 byte tokens, and " " (the dummy prefix)
static void write_byte_tokenizer(const char* path) {
    FILE* f = fopen(path, "wb");
    uint32_t max_len = 6;
    fwrite(&max_len, 4, 1, f);
    for (int i = 0; i < 260; i++) {
        char s[16];
        if (i == 0) strcpy(s, "<unk>");
        else if (i == 1) strcpy(s, "<s>");
        else if (i == 2) strcpy(s, "</s>");
        else if (i < 259) sprintf(s, "<0x%02X>", i - 3);
        else strcpy(s, " ");
        float score = 0.0f;
        int32_t len = (int32_t)strlen(s);
        fwrite(&score, 4, 1, f);
        fwrite(&len, 4, 1, f);
        fwrite(s, 1, len, f);
    }
    fclose(f);
}

static void write_text(const char* path, const char* text) {
    FILE* f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
}

static const char* TINY_JSONL =
    "{\"prompt\": \"What is 2+2?\", \"response\": \"It is 4.\", \"kind\": \"benign\"}\n"
    "{\"prompt\": \"Opposite of hot?\", \"response\": \"Cold.\", \"kind\": \"benign\"}\n"
    "{\"prompt\": \"Capital of France?\", \"response\": \"Paris.\", \"kind\": \"benign\"}\n"
    "{\"prompt\": \"Spell cat.\", \"response\": \"C-A-T.\", \"kind\": \"benign\"}\n"
    "{\"prompt\": \"Count to 3.\", \"response\": \"1, 2, 3.\", \"kind\": \"benign\"}\n"
    "{\"prompt\": \"Colour of the sky?\", \"response\": \"Blue.\", \"kind\": \"benign\"}\n";

// runs train_main on a command line split at spaces (our temp paths hold none)
static int run_train(const char* fmt, ...) {
    char line[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    char* argv[128];
    int argc = 0;
    argv[argc++] = "train";
    for (char* tok = strtok(line, " "); tok && argc < 127; tok = strtok(NULL, " ")) argv[argc++] = tok;
    argv[argc] = NULL;
    return train_main(argc, argv);
}

// the common flags of a tiny model on the tiny set
#define TINY "-z %s --data %s --dim 32 --layers 2 --heads 4 --hidden 64 --seq-len 48 --print-every 1000 --threads 1 "

// reads column `col` (0 = step, 1 = loss, 2 = val_loss) of a CSV log as strings; returns rows
static int read_csv_column(const char* path, int col, char out[][32], int max_rows) {
    FILE* f = fopen(path, "r");
    if (!f) return -1;
    char line[512];
    int n = 0;
    if (!fgets(line, sizeof(line), f)) { fclose(f); return -1; } // header
    while (n < max_rows && fgets(line, sizeof(line), f)) {
        char* p = line;
        for (int c = 0; c < col; c++) p = strchr(p, ',') + 1;
        size_t len = strcspn(p, ",\n");
        snprintf(out[n], 32, "%.*s", (int)len, p);
        n++;
    }
    fclose(f);
    return n;
}

static char* slurp(const char* path, size_t* n) {
    FILE* f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    *n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char* b = malloc(*n + 1);
    if (fread(b, 1, *n, f) != *n) { free(b); b = NULL; }
    else b[*n] = '\0';
    fclose(f);
    return b;
}

// ----------------------------------------------------------------------------
// the chat template: ids and the mask, position by position

static void test_chat_template(void) {
    Tokenizer t;
    CHECK(tokenizer_load(&t, tmp("tok.bin"), 0) == 0, "load the byte tokenizer");
    const char* prompt = "hi";
    int ids[64];
    int np = chat_encode_prompt(&t, prompt, ids);
    // BOS, the dummy-prefix " ", then "User: hi\nAssistant:" as bytes (space is token 259)
    const char* text = "User: hi\nAssistant:";
    CHECK(np == 2 + (int)strlen(text), "prompt is %d ids, expected %d", np, 2 + (int)strlen(text));
    CHECK(ids[0] == TOKEN_BOS && ids[1] == 259, "prompt starts with BOS and the dummy prefix");
    int ok = 1;
    for (int i = 0; text[i]; i++) ok &= ids[2 + i] == (text[i] == ' ' ? 259 : (unsigned char)text[i] + 3);
    CHECK(ok, "prompt bytes follow the template");
    int nr = chat_encode_response(&t, "yo", 1, ids);
    CHECK(nr == 4 && ids[0] == 259 && ids[1] == 'y' + 3 && ids[2] == 'o' + 3 && ids[3] == TOKEN_EOS,
          "response = ' ' y o EOS (got %d ids)", nr);
    CHECK(chat_encode_response(&t, "yo", 0, ids) == 3, "no EOS when eos = 0");

    // the example: loss exactly on predicting the response tokens and EOS
    Example ex;
    int counted = example_from_chat(&ex, &t, prompt, "yo", 0);
    CHECK(ex.n == np + 4, "example has %d ids, expected %d", ex.n, np + 4);
    CHECK(counted == 4, "4 counted positions (' ', y, o, EOS), got %d", counted);
    int mask_ok = 1;
    for (int i = 0; i < ex.n; i++) mask_ok &= ex.mask[i] == (i >= np - 1 && i < ex.n - 1 ? 1.0f : 0.0f);
    CHECK(mask_ok, "mask is 1 on positions %d..%d only", np - 1, ex.n - 2);
    CHECK(ex.ids[np - 1] == ':' + 3 && ex.ids[ex.n - 1] == TOKEN_EOS, "last prompt id ':' predicts the response");
    free_example(&ex);

    // cut to a context shorter than the prompt: nothing left to learn
    counted = example_from_chat(&ex, &t, prompt, "yo", np);
    CHECK(counted == 0 && ex.n == np, "an example cut inside the prompt counts nothing (%d)", counted);
    free_example(&ex);
    counted = example_from_chat(&ex, &t, prompt, "yo", np + 2); // keeps ' ' and 'y' of the response
    CHECK(counted == 2 && ex.mask[np - 1] == 1.0f && ex.mask[np] == 1.0f && ex.mask[np + 1] == 0.0f,
          "cut example: the mask ends at the cut (counted %d)", counted);
    free_example(&ex);
    tokenizer_free(&t);
}

// ----------------------------------------------------------------------------
// padded batches: targets are the next ids, padding is id 0 with mask 0

static void test_batch_padding(void) {
    int ids_a[5] = {1, 10, 11, 12, 2}, ids_b[3] = {1, 20, 2};
    float mask_a[5] = {0, 1, 1, 1, 0}, mask_b[3] = {1, 1, 0};
    Example a = {ids_a, mask_a, 5}, b = {ids_b, mask_b, 3};
    const Example* rows[2] = {&a, &b};
    Batch batch;
    build_batch(&batch, 4, 8);
    batch_fill_padded(&batch, rows, 2);
    CHECK(batch.B == 2 && batch.T == 4, "padded to the longest row: B %d T %d", batch.B, batch.T);
    int in_ok = !memcmp(batch.inputs, (int[]){1, 10, 11, 12, 1, 20, 0, 0}, 8 * sizeof(int));
    int tg_ok = !memcmp(batch.targets, (int[]){10, 11, 12, 2, 20, 2, 0, 0}, 8 * sizeof(int));
    float want_mask[8] = {0, 1, 1, 1, 1, 1, 0, 0};
    CHECK(in_ok && tg_ok && !memcmp(batch.mask, want_mask, sizeof(want_mask)), "inputs, targets, mask rows");
    CHECK(batch.n_real == 6 && batch.n_counted == 5, "n_real %d n_counted %d", batch.n_real, batch.n_counted);
    // a row longer than the capacity is cut
    Batch small;
    build_batch(&small, 2, 2);
    batch_fill_padded(&small, rows, 2);
    CHECK(small.T == 2 && small.inputs[1] == 10 && small.targets[1] == 11, "rows cut at max_T");
    free_batch(&small);
    free_batch(&batch);
}

// ----------------------------------------------------------------------------
// AdamW: one step by hand, and convergence on a quadratic

static void test_adamw(void) {
    // step 1 from zero moments: m_hat = g, v_hat = g^2, so the update is lr * (sign(g) + wd * p)
    float p[2] = {1.0f, -2.0f}, g[2] = {0.5f, -3.0f}, m[2] = {0}, v[2] = {0};
    adamw_update(p, g, m, v, 2, 0.1f, 0.9f, 0.999f, 1e-8f, 0.01f, 1);
    CHECK(fabsf(p[0] - (1.0f - 0.1f * (1.0f + 0.01f * 1.0f))) < 1e-6f, "hand step p0 = %.7f", p[0]);
    CHECK(fabsf(p[1] - (-2.0f - 0.1f * (-1.0f + 0.01f * -2.0f))) < 1e-6f, "hand step p1 = %.7f", p[1]);
    CHECK(fabsf(m[0] - 0.05f) < 1e-6f && fabsf(v[1] - 0.009f) < 1e-6f, "moments m0 %g v1 %g", m[0], v[1]);

    // step 2 by hand, in double
    double m0 = 0.05, v0 = 0.00025, g0 = 0.2, p0 = p[0];
    g[0] = 0.2f;
    g[1] = 0.0f;
    adamw_update(p, g, m, v, 2, 0.1f, 0.9f, 0.999f, 1e-8f, 0.01f, 2);
    double m1 = 0.9 * m0 + 0.1 * g0, v1 = 0.999 * v0 + 0.001 * g0 * g0;
    double mh = m1 / (1 - 0.81), vh = v1 / (1 - 0.999 * 0.999);
    double want = p0 - 0.1 * (mh / (sqrt(vh) + 1e-8) + 0.01 * p0);
    CHECK(fabs(p[0] - want) < 1e-5, "hand step 2: %.7f vs %.7f", p[0], want);

    // minimise sum (x_i - c_i)^2 / 2: the gradient is x - c
    enum { N = 100 };
    float x[N], c[N], gx[N], mx[N] = {0}, vx[N] = {0};
    uint64_t rng = 7;
    for (int i = 0; i < N; i++) {
        x[i] = 0.0f;
        c[i] = 4.0f * random_f32(&rng) - 2.0f;
    }
    for (int step = 1; step <= 600; step++) {
        for (int i = 0; i < N; i++) gx[i] = x[i] - c[i];
        adamw_update(x, gx, mx, vx, N, lr_schedule(step - 1, 10, 600, 0.05f, 0.0f), 0.9f, 0.999f, 1e-8f, 0.0f,
                     step);
    }
    float worst = 0.0f;
    for (int i = 0; i < N; i++) worst = fmaxf(worst, fabsf(x[i] - c[i]));
    CHECK(worst < 1e-2f, "AdamW converges on a quadratic: worst error %g", worst);
}

static void test_schedule_and_clip(void) {
    CHECK(fabsf(lr_schedule(0, 10, 100, 1.0f, 0.1f) - 0.1f) < 1e-6f, "warmup starts at lr/warmup");
    CHECK(fabsf(lr_schedule(9, 10, 100, 1.0f, 0.1f) - 1.0f) < 1e-6f, "warmup ends at lr");
    CHECK(fabsf(lr_schedule(10, 10, 100, 1.0f, 0.1f) - 1.0f) < 1e-6f, "cosine starts at lr");
    CHECK(fabsf(lr_schedule(99, 10, 100, 1.0f, 0.1f) - 0.1f) < 1e-6f, "cosine ends at lr_min");
    float mid = lr_schedule(10 + 89 / 2, 10, 100, 1.0f, 0.1f);
    CHECK(fabsf(mid - 0.55f) < 0.02f, "cosine midway is about (lr + lr_min) / 2: %g", mid);
    CHECK(lr_schedule(0, 0, 1, 0.5f, 0.1f) == 0.5f, "a one-step run uses lr");

    float g[1000];
    for (int i = 0; i < 1000; i++) g[i] = (i % 2 ? 1.0f : -1.0f) * 0.1f; // norm sqrt(10)
    float norm = grad_clip(g, 1000, 1.0f);
    CHECK(fabsf(norm - sqrtf(10.0f)) < 1e-4f, "norm before clipping %g", norm);
    CHECK(fabsf(grad_norm(g, 1000) - 1.0f) < 1e-5f, "clipped to norm 1: %g", grad_norm(g, 1000));
    norm = grad_clip(g, 1000, 5.0f);
    CHECK(fabsf(grad_norm(g, 1000) - 1.0f) < 1e-5f, "below the limit: unchanged");
}

// ----------------------------------------------------------------------------
// training runs

static void test_overfit(void) {
    // 6 short answers, 120 steps of batch 6: the model must learn them by heart
    int rc = run_train(TINY "--steps 120 --batch 6 --lr 1e-2 --warmup 10 --log %s -o %s --plot %s",
                       tmp("tok.bin"), tmp("tiny.jsonl"), tmp("overfit.csv"), tmp("overfit.bin"),
                       tmp("overfit.png"));
    CHECK(rc == 0, "overfit run exits 0 (got %d)", rc);
    char loss[200][32];
    int n = read_csv_column(tmp("overfit.csv"), 1, loss, 200);
    CHECK(n == 120, "log has 120 rows (%d)", n);
    if (n == 120) {
        float first = atof(loss[0]), last = atof(loss[119]);
        CHECK(first > 3.0f, "initial loss near ln(260) = 5.56: %g", first);
        CHECK(last < 0.3f, "a tiny model overfits 6 answers: final loss %g", last);
    }
    Model m;
    CHECK(model_load(&m, tmp("overfit.bin")) == 0, "the final checkpoint loads");
    if (m.param_memory) model_free(&m);
    struct stat st;
    CHECK(stat(tmp("overfit.png"), &st) == 0 && st.st_size > 1000, "the loss plot was written");

    // plain text, packed: all tokens count and the loss falls
    write_text(tmp("tiny.txt"), "the cat sat on the mat. the dog sat on the log. the cat and the dog.\n"
                                "the cat sat on the mat. the dog sat on the log. the cat and the dog.\n");
    rc = run_train("-z %s --text %s --dim 32 --layers 2 --heads 4 --hidden 64 --seq-len 32 --pack --batch 4 "
                   "--steps 60 --lr 1e-2 --warmup 5 --print-every 1000 --threads 1 --log %s",
                   tmp("tok.bin"), tmp("tiny.txt"), tmp("text.csv"));
    CHECK(rc == 0, "text + pack run exits 0 (got %d)", rc);
    n = read_csv_column(tmp("text.csv"), 1, loss, 200);
    CHECK(n == 60 && atof(loss[59]) < 0.5f * atof(loss[0]), "text loss halves: %s -> %s", loss[0], n > 0 ? loss[n - 1] : "?");
}

// two micro-batches of 2 rows make the same step as one batch of 4: the loss is the mean over all
// counted tokens of the step either way (equal up to float rounding)
static void test_grad_accum(void) {
    int rc1 = run_train(TINY "--steps 4 --batch 4 --warmup 1 --log %s", tmp("tok.bin"), tmp("tiny.jsonl"),
                        tmp("acc1.csv"));
    int rc2 = run_train(TINY "--steps 4 --batch 2 --grad-accum 2 --warmup 1 --log %s", tmp("tok.bin"),
                        tmp("tiny.jsonl"), tmp("acc2.csv"));
    CHECK(rc1 == 0 && rc2 == 0, "grad-accum runs exit 0 (%d, %d)", rc1, rc2);
    char a[8][32], b[8][32];
    int na = read_csv_column(tmp("acc1.csv"), 1, a, 8), nb = read_csv_column(tmp("acc2.csv"), 1, b, 8);
    float worst = 0.0f;
    for (int i = 0; i < na && i < nb; i++) worst = fmaxf(worst, fabsf((float)atof(a[i]) - (float)atof(b[i])));
    CHECK(na == 4 && nb == 4 && worst < 1e-4f, "batch 4 == 2 x 2 accumulated: worst loss difference %g", worst);
}

static void test_resume_bit_exact(void) {
    // gradient accumulation, shuffling over several epochs, validation and clipping all take part
    char flags[1024];
    snprintf(flags, sizeof(flags), TINY "--batch 2 --grad-accum 2 --steps 12 --lr 3e-3 --warmup 3 --val %s "
             "--eval-every 4 --save-every 5 --threads 2 --seed 7", tmp("tok.bin"), tmp("tiny.jsonl"), tmp("tiny.jsonl"));
    int rc = run_train("%s -o %s --log %s", flags, tmp("a.bin"), tmp("a.csv"));
    CHECK(rc == 0, "uninterrupted run exits 0 (got %d)", rc);
    rc = run_train("%s -o %s --log %s --stop-at 6", flags, tmp("b.bin"), tmp("b.csv"));
    CHECK(rc == 0, "first half exits 0 (got %d)", rc);
    char loss_b[64][32];
    CHECK(read_csv_column(tmp("b.csv"), 1, loss_b, 64) == 6, "the stopped run logged 6 steps");
    // the state carries its own parameters: a checkpoint newer (here: garbage) than the state
    // must not matter
    write_text(tmp("b.bin"), "not a checkpoint");
    rc = run_train("%s -o %s --log %s --resume", flags, tmp("b.bin"), tmp("b.csv"));
    CHECK(rc == 0, "resumed run exits 0 (got %d)", rc);

    char loss_a[64][32], val_a[64][32], val_b[64][32];
    int na = read_csv_column(tmp("a.csv"), 1, loss_a, 64);
    int nb = read_csv_column(tmp("b.csv"), 1, loss_b, 64);
    read_csv_column(tmp("a.csv"), 2, val_a, 64);
    read_csv_column(tmp("b.csv"), 2, val_b, 64);
    CHECK(na == 12 && nb == 12, "both logs hold 12 steps (%d, %d)", na, nb);
    int same = na == nb;
    for (int i = 0; i < na && i < nb; i++) {
        if (strcmp(loss_a[i], loss_b[i]) != 0) {
            same = 0;
            fprintf(stderr, "step %d: loss %s uninterrupted vs %s resumed\n", i + 1, loss_a[i], loss_b[i]);
        }
        // validation happened at 4, 8, 12 in both; the stopped run also measured at its stop (6)
        if (i != 5 && strcmp(val_a[i], val_b[i]) != 0) same = 0;
    }
    CHECK(same, "resumed losses equal the uninterrupted run's, bit for bit");
    CHECK(val_a[3][0] != '\0' && val_a[11][0] != '\0', "validation loss logged at steps 4 and 12");
    CHECK(same_file(tmp("a.bin"), tmp("b.bin")), "final checkpoints are identical byte for byte");

    // a resume with other settings, or from a damaged state, is refused with a clear error
    rc = run_train("%s --batch 3 -o %s --resume", flags, tmp("b.bin"));
    CHECK(rc == EXIT_USAGE, "resume with another --batch is a usage error (got %d)", rc);
    size_t n;
    char* state = slurp(tmp("b.bin.state"), &n);
    FILE* f = fopen(tmp("cut.bin.state"), "wb");
    fwrite(state, 1, n - 10, f);
    fclose(f);
    free(state);
    rc = run_train("%s -o %s --resume", flags, tmp("cut.bin"));
    CHECK(rc == EXIT_BAD_INPUT, "a truncated state is refused (got %d)", rc);
}

static void test_nan_guard(void) {
    // a good checkpoint first
    int rc = run_train(TINY "--steps 3 --batch 2 --warmup 1 -o %s", tmp("tok.bin"), tmp("tiny.jsonl"), tmp("n.bin"));
    CHECK(rc == 0, "good run exits 0");
    size_t n;
    char* good = slurp(tmp("n.bin"), &n);
    // lr 1e30 blows the weights up after the first step; the loss of the next one is not finite
    rc = run_train(TINY "--init %s --steps 5 --batch 2 --warmup 0 --lr 1e30 --clip 0 --save-every 1000 -o %s",
                   tmp("tok.bin"), tmp("tiny.jsonl"), tmp("n.bin"), tmp("n.bin"));
    CHECK(rc == EXIT_FAILURE_RUN, "divergence exits %d (got %d)", EXIT_FAILURE_RUN, rc);
    size_t n2;
    char* after = slurp(tmp("n.bin"), &n2);
    CHECK(good && after && n == n2 && !memcmp(good, after, n), "the last good checkpoint is kept intact");
    free(good);
    free(after);

    // weights that overflow to Inf in the very first update (lr 1e38, strong decay): the check
    // before saving stops the run, and no checkpoint is written at all
    rc = run_train(TINY "--steps 3 --batch 2 --warmup 0 --lr 1e38 --weight-decay 100 --clip 0 --save-every 1 -o %s",
                   tmp("tok.bin"), tmp("tiny.jsonl"), tmp("inf_out.bin"));
    struct stat st;
    CHECK(rc == EXIT_FAILURE_RUN, "Inf weights: exit %d (got %d)", EXIT_FAILURE_RUN, rc);
    CHECK(stat(tmp("inf_out.bin"), &st) != 0, "no checkpoint written from an Inf run");
}

static void test_bad_input(void) {
    CHECK(run_train("-z %s --data %s", tmp("tok.bin"), tmp("missing.jsonl")) == EXIT_BAD_INPUT, "missing data file");
    CHECK(run_train("-z %s --data %s --bogus 1", tmp("tok.bin"), tmp("tiny.jsonl")) == EXIT_USAGE, "unknown flag");
    CHECK(run_train("-z %s --data %s --lr abc", tmp("tok.bin"), tmp("tiny.jsonl")) == EXIT_USAGE, "bad number");
    CHECK(run_train("--data %s", tmp("tiny.jsonl")) == EXIT_USAGE, "missing tokenizer");
    CHECK(run_train(TINY "--heads 5", tmp("tok.bin"), tmp("tiny.jsonl")) == EXIT_USAGE, "invalid config");
    write_text(tmp("noresp.jsonl"), "{\"prompt\": \"hi\"}\n{\"prompt\": \"yo\", \"kind\": \"benign\"}\n");
    CHECK(run_train("-z %s --data %s", tmp("tok.bin"), tmp("noresp.jsonl")) == EXIT_BAD_INPUT, "no responses");
}

// ----------------------------------------------------------------------------
// tests with a second process: Ctrl-C, and SIGKILL during checkpoint writes

// starts this program in a child role; stderr goes to log_path
static pid_t spawn_self(const char* role, const char* arg, const char* log_path) {
    pid_t pid = fork();
    if (pid == 0) {
        FILE* f = freopen(log_path, "w", stderr);
        (void)f;
        execl("/proc/self/exe", "test_train", "--child", role, arg, dir, (char*)NULL);
        _exit(127);
    }
    return pid;
}

static int file_contains(const char* path, const char* needle) {
    size_t n;
    char* s = slurp(path, &n);
    int found = s && strstr(s, needle) != NULL;
    free(s);
    return found;
}

static void test_sigint(void) {
    pid_t pid = spawn_self("train-long", tmp("int.bin"), tmp("int.log"));
    // wait until the loop runs (a progress line is printed at the first step), then Ctrl-C
    double t0 = time_now();
    while (!file_contains(tmp("int.log"), "step 1/") && time_now() - t0 < 20) usleep(10000);
    usleep(200000);
    kill(pid, SIGINT);
    int status = 0;
    while (waitpid(pid, &status, WNOHANG) == 0 && time_now() - t0 < 25) usleep(10000);
    if (time_now() - t0 >= 25) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
    }
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == EXIT_INTERRUPTED, "Ctrl-C: the run saves and exits %d (status %d)",
          EXIT_INTERRUPTED, status);
    CHECK(file_contains(tmp("int.log"), "(Ctrl-C)"), "Ctrl-C: the stop is reported");
    Model m;
    CHECK(model_load(&m, tmp("int.bin")) == 0, "Ctrl-C: the checkpoint loads");
    if (m.param_memory) model_free(&m);
    struct stat st;
    CHECK(stat(tmp("int.bin.state"), &st) == 0, "Ctrl-C: the training state is written");
}

static void test_kill_during_save(void) {
    // model_save in a loop, killed at random moments: the file on disk always loads
    Config c = {.dim = 64, .hidden_dim = 128, .n_layers = 2, .n_heads = 4, .n_kv_heads = 4, .vocab_size = 260,
                .seq_len = 32};
    Model m;
    model_build(&m, &c);
    model_init_random(&m, 3);
    model_save(&m, tmp("kill.bin"), 1);
    model_free(&m);
    uint64_t rng = 99;
    int loads = 0, rounds = 12;
    for (int r = 0; r < rounds; r++) {
        pid_t pid = spawn_self("save-loop", tmp("kill.bin"), tmp("kill.log"));
        usleep(20000 + random_u32(&rng) % 60000);
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        Model k;
        if (model_load(&k, tmp("kill.bin")) == 0) {
            loads++;
            model_free(&k);
        }
    }
    CHECK(loads == rounds, "checkpoint killed mid-save loads every time (%d/%d)", loads, rounds);

    // the same for training with a checkpoint every step: after a kill, --resume always works
    int resumed = 0;
    rounds = 4;
    for (int r = 0; r < rounds; r++) {
        pid_t pid = spawn_self("train-save-every-step", tmp("ks.bin"), tmp("ks.log"));
        double t0 = time_now();
        while (!file_contains(tmp("ks.log"), "saved") && time_now() - t0 < 20) usleep(5000);
        usleep(random_u32(&rng) % 100000);
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        int rc = run_train(TINY "--batch 2 --steps 100000 --warmup 5 --save-every 1 --stop-at 1 -o %s --resume",
                           tmp("tok.bin"), tmp("tiny.jsonl"), tmp("ks.bin"));
        // --stop-at 1 is already behind us, so the resumed run stops after its first step
        resumed += rc == 0;
        Model k;
        if (model_load(&k, tmp("ks.bin")) == 0) model_free(&k);
        else resumed--;
    }
    CHECK(resumed == rounds, "training killed mid-checkpoint resumes every time (%d/%d)", resumed, rounds);
}

// the child roles
static int child_main(const char* role, const char* arg) {
    if (!strcmp(role, "train-long")) {
        return run_train(TINY "--steps 100000 --batch 2 --print-every 1 --save-every 1000000 -o %s",
                         tmp("tok.bin"), tmp("tiny.jsonl"), arg);
    }
    if (!strcmp(role, "train-save-every-step")) {
        return run_train(TINY "--steps 100000 --batch 2 --warmup 5 --save-every 1 -o %s", tmp("tok.bin"),
                         tmp("tiny.jsonl"), arg);
    }
    if (!strcmp(role, "save-loop")) {
        Config c = {.dim = 64, .hidden_dim = 128, .n_layers = 2, .n_heads = 4, .n_kv_heads = 4, .vocab_size = 260,
                    .seq_len = 32};
        Model m;
        model_build(&m, &c);
        for (uint64_t seed = 1;; seed++) {
            model_init_random(&m, seed);
            model_save(&m, arg, 1);
        }
    }
    return 127;
}

int main(int argc, char** argv) {
    if (argc == 5 && !strcmp(argv[1], "--child")) {
        snprintf(dir, sizeof(dir), "%s", argv[4]);
        return child_main(argv[2], argv[3]);
    }
    snprintf(dir, sizeof(dir), "/tmp/mosr_test_train_XXXXXX");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    write_byte_tokenizer(tmp("tok.bin"));
    write_text(tmp("tiny.jsonl"), TINY_JSONL);

    double t0 = time_now();
    test_chat_template();
    test_batch_padding();
    test_adamw();
    test_schedule_and_clip();
    test_bad_input();
    test_overfit();
    test_grad_accum();
    test_resume_bit_exact();
    test_nan_guard();
    test_sigint();
    test_kill_during_save();
    fprintf(stderr, "test_train: %.1f s\n", time_now() - t0);

    char cmd[600];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (check_failed == 0 && system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    return check_summary("test_train");
}
