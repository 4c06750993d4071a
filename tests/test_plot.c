// test_plot.c — every chart kind is written to a temp dir and read back (stb_image): the PNG
// has the right size, there is ink in the plot area, each series' palette colour appears, bad
// input is refused without a file; symmetric_eigen finds a known spectrum, pca_2d known axes of
// synthetic data, and pca_axes + pca_project reproduce pca_2d.
#include <dirent.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <stb/stb_image.h>

#include "plot.h"
#include "util.h"
#include "tests/check.h"

static char dir[64];

static const char* in_dir(const char* name) {
    static char path[512];
    snprintf(path, sizeof(path), "%s/%.200s", dir, name);
    return path;
}

// reads width and height from the IHDR chunk, which must come first in a PNG
static int png_header_size(const char* path, int* w, int* h) {
    unsigned char b[24];
    FILE* f = fopen(path, "rb");
    if (!f) return 1;
    size_t got = fread(b, 1, sizeof(b), f);
    fclose(f);
    static const unsigned char sig[8] = {137, 'P', 'N', 'G', 13, 10, 26, 10};
    if (got != sizeof(b) || memcmp(b, sig, 8) != 0 || memcmp(b + 12, "IHDR", 4) != 0) return 1;
    *w = (b[16] << 24) | (b[17] << 16) | (b[18] << 8) | b[19];
    *h = (b[20] << 24) | (b[21] << 16) | (b[22] << 8) | b[23];
    return 0;
}

// pixels of exactly this colour inside the plot area (a generous box inside every layout)
static int count_colour(const unsigned char* img, int w, int r, int g, int b) {
    int n = 0;
    for (int y = 50; y < 500; y++)
        for (int x = 100; x < 780; x++) {
            const unsigned char* p = img + (y * w + x) * 3;
            n += p[0] == r && p[1] == g && p[2] == b;
        }
    return n;
}

static int count_non_white(const unsigned char* img, int w) {
    int n = 0;
    for (int y = 50; y < 500; y++)
        for (int x = 100; x < 780; x++) {
            const unsigned char* p = img + (y * w + x) * 3;
            n += !(p[0] == 255 && p[1] == 255 && p[2] == 255);
        }
    return n;
}

// the first colours of the palette, as plot.c documents them (Okabe-Ito)
static const unsigned char PAL[4][3] = {{0, 114, 178}, {230, 159, 0}, {0, 158, 115}, {213, 94, 0}};

// checks the file and that each of the first n_colours palette colours has >= min_px pixels
static void check_png(const char* name, int n_colours, int min_px) {
    const char* path = in_dir(name);
    int w = 0, h = 0;
    CHECK(png_header_size(path, &w, &h) == 0, "%s: missing or not a PNG", name);
    CHECK(w == PLOT_WIDTH && h == PLOT_HEIGHT, "%s: header says %dx%d", name, w, h);
    int iw, ih, ch;
    unsigned char* img = stbi_load(path, &iw, &ih, &ch, 3);
    CHECK(img != NULL, "%s: stb_image cannot decode it", name);
    if (!img) return;
    CHECK(iw == PLOT_WIDTH && ih == PLOT_HEIGHT, "%s: decodes to %dx%d", name, iw, ih);
    CHECK(img[0] == 255 && img[1] == 255 && img[2] == 255, "%s: corner is not white", name);
    int ink = count_non_white(img, iw);
    CHECK(ink > 2000, "%s: only %d non-white pixels in the plot area", name, ink);
    for (int k = 0; k < n_colours; k++) {
        int px = count_colour(img, iw, PAL[k][0], PAL[k][1], PAL[k][2]);
        CHECK(px >= min_px, "%s: palette colour %d has %d pixels (want >= %d)", name, k, px, min_px);
    }
    stbi_image_free(img);
}

static void test_lines(void) {
    float step[100], train[100], val[100], acc[4] = {0.55f, 0.8f, NAN, 0.95f}, layer[4] = {0, 1, 2, 3};
    for (int i = 0; i < 100; i++) {
        step[i] = i * 10;
        train[i] = 3.0f * expf(-i / 25.0f) + 0.05f;
        val[i] = 3.2f * expf(-i / 30.0f) + 0.1f;
    }
    val[50] = NAN; // a gap, not a crash
    val[51] = INFINITY;
    Series loss[2] = {{"train loss", step, train, 100}, {"val loss", step, val, 100}};
    PlotOptions o = {.title = "Training loss", .x_label = "step", .y_label = "loss", .log_y = 1};
    CHECK(plot_lines(in_dir("loss.png"), &o, loss, 2) == 0, "plot_lines (log y) failed");
    check_png("loss.png", 2, 800);

    o = (PlotOptions){.title = "Probe accuracy per layer", .x_label = "layer", .y_label = "accuracy",
                      .y_min = 0, .y_max = 1};
    Series probe[1] = {{"probe", layer, acc, 4}};
    CHECK(plot_lines(in_dir("probe.png"), &o, probe, 1) == 0, "plot_lines (short series) failed");
    check_png("probe.png", 1, 400);

    // nothing finite to draw: still a valid, empty figure
    float nan4[4] = {NAN, NAN, NAN, NAN};
    Series empty[1] = {{"nothing", nan4, nan4, 4}};
    CHECK(plot_lines(in_dir("empty.png"), &o, empty, 1) == 0, "all-NaN series should still plot");
}

static void test_scatter(void) {
    enum { N = 400 };
    float xy[2 * N];
    int cls[N];
    uint64_t rng = 7;
    for (int i = 0; i < N; i++) {
        cls[i] = i % 4;
        xy[2 * i] = 3.0f * (cls[i] & 1) + random_normal(&rng);
        xy[2 * i + 1] = 3.0f * (cls[i] >> 1) + random_normal(&rng);
    }
    xy[10] = NAN;
    const char* names[4] = {"benign", "malicious", "pseudo", "pseudo (held-out)"};
    PlotOptions o = {.title = "Layer 2 representations (PCA)", .x_label = "PC 1", .y_label = "PC 2"};
    CHECK(plot_scatter(in_dir("scatter.png"), &o, xy, cls, N, names, 4) == 0, "plot_scatter failed");
    check_png("scatter.png", 4, 1500);

    cls[5] = 4; // class out of range: refused, and no file
    CHECK(plot_scatter(in_dir("bad.png"), &o, xy, cls, N, names, 4) != 0, "bad class accepted");
    CHECK(access(in_dir("bad.png"), F_OK) != 0, "a refused scatter left a file");
}

static void test_points_and_bars(void) {
    LabelledPoint models[3] = {{"base", 0.11f, 0.39f, 0, 0, 0, 0},
                               {"RR", 0.146f, 0.02f, 0.126f, 0.166f, 0.01f, 0.03f},
                               {"MOSR", 0.14f, 0.0f, 0.125f, 0.155f, 0.0f, 0.012f}};
    PlotOptions o = {.title = "Safety vs over-refusal", .x_label = "over-refusal rate",
                     .y_label = "attack success rate"};
    CHECK(plot_points(in_dir("tradeoff.png"), &o, models, 3) == 0, "plot_points failed");
    check_png("tradeoff.png", 3, 200);

    const char* groups[4] = {"RR", "RR + OALW", "RR + CAA", "MOSR (full)"};
    const char* metrics[3] = {"over-refusal", "attack success", "benign acc."};
    float mean[12] = {0.15f, 0.01f, 0.99f, 0.14f, 0.08f, 0.98f, 0.25f, 0.0f, 0.99f, 0.14f, 0.0f, 0.99f};
    float spread[12] = {0.02f, 0.01f, 0.01f, 0.03f, 0.03f, 0.01f, 0.04f, 0, 0.005f, 0.02f, 0, 0.01f};
    BarChart bc = {groups, metrics, mean, spread, 4, 3};
    o = (PlotOptions){.title = "Ablation (mean +- sd over 3 seeds)", .y_label = "rate"};
    CHECK(plot_bars(in_dir("ablation.png"), &o, &bc) == 0, "plot_bars failed");
    check_png("ablation.png", 3, 800);
}

static void test_bad_input(void) {
    PlotOptions o = {.title = "x"};
    float v[2] = {0, 1};
    Series s = {"s", v, v, 2};
    CHECK(plot_lines(in_dir("none.png"), &o, &s, 0) != 0, "zero series accepted");
    CHECK(plot_lines(in_dir("none.png"), NULL, &s, 1) != 0, "NULL options accepted");
    Series broken = {"broken", NULL, v, 2};
    CHECK(plot_lines(in_dir("none.png"), &o, &broken, 1) != 0, "series without x accepted");
    CHECK(access(in_dir("none.png"), F_OK) != 0, "a refused plot left a file");
    CHECK(plot_lines("/nonexistent-dir/x.png", &o, &s, 1) != 0, "write into a missing dir succeeded");
    // non-ASCII and control bytes in labels are drawn as '?', not read out of the font table
    PlotOptions u = {.title = "caf\xc3\xa9 \x01\x7f", .x_label = "\xff\xfe", .y_label = "\xe2\x82\xac"};
    Series named = {"na\xc3\xafve", v, v, 2};
    CHECK(plot_lines(in_dir("utf8.png"), &u, &named, 1) == 0, "non-ASCII labels refused");
    // the write is atomic: no temp file may be left behind in the directory
    DIR* d = opendir(dir);
    int temps = 0;
    for (struct dirent* e; d && (e = readdir(d));) temps += strstr(e->d_name, ".tmp") != NULL;
    if (d) closedir(d);
    CHECK(temps == 0, "%d temp files left in %s", temps, dir);
}

// symmetric_eigen on the (n, n) matrix with 2 on the diagonal and -1 beside it (the second
// difference), whose eigenvalues are 2 - 2 cos(k pi / (n + 1)), k = 1..n, with eigenvectors
// sin(j k pi / (n + 1))
static void test_symmetric_eigen(void) {
    enum { N = 9 };
    float a[N * N] = {0}, copy[N * N], eig[N];
    for (int i = 0; i < N; i++) {
        a[i * N + i] = 2.0f;
        if (i + 1 < N) a[i * N + i + 1] = a[(i + 1) * N + i] = -1.0f;
    }
    memcpy(copy, a, sizeof(a));
    CHECK(symmetric_eigen(eig, a, N, 1) == 0, "symmetric_eigen failed");
    double worst_value = 0, worst_vector = 0, worst_norm = 0, worst_exact = 0;
    for (int k = 0; k < N; k++) {
        double want = 2.0 - 2.0 * cos((k + 1) * M_PI / (N + 1)); // ascending in k
        worst_value = fmax(worst_value, fabs(eig[k] - want));
        const float* v = a + k * N;
        double norm = 0, dot_exact = 0, norm_exact = 0;
        for (int i = 0; i < N; i++) {
            double av = 0; // (A v)_i - lambda v_i
            for (int j = 0; j < N; j++) av += copy[i * N + j] * v[j];
            worst_vector = fmax(worst_vector, fabs(av - eig[k] * v[i]));
            double exact = sin((i + 1) * (k + 1) * M_PI / (N + 1));
            norm += v[i] * v[i];
            dot_exact += v[i] * exact;
            norm_exact += exact * exact;
        }
        worst_norm = fmax(worst_norm, fabs(norm - 1.0));
        worst_exact = fmax(worst_exact, 1.0 - fabs(dot_exact) / sqrt(norm_exact)); // |cos| to the known one
    }
    CHECK(worst_value < 1e-5, "eigenvalues off the known 2 - 2 cos(k pi / 10) by up to %g", worst_value);
    CHECK(worst_vector < 1e-5, "|A v - lambda v| up to %g", worst_vector);
    CHECK(worst_norm < 1e-5, "eigenvectors not unit length (off by up to %g)", worst_norm);
    CHECK(worst_exact < 1e-5, "eigenvectors not along the known sin(j k pi / 10) (1 - |cos| up to %g)", worst_exact);
    // eigenvalues only: the same values
    float values_only[N];
    memcpy(a, copy, sizeof(a));
    CHECK(symmetric_eigen(values_only, a, N, 0) == 0, "symmetric_eigen without vectors failed");
    double worst_same = 0;
    for (int k = 0; k < N; k++) worst_same = fmax(worst_same, fabs(values_only[k] - eig[k]));
    CHECK(worst_same < 1e-5, "eigenvalues without vectors differ by up to %g", worst_same);
}

// data = 3 a u1 + 1 b u2 + small noise, with u1, u2 orthonormal: PC 1 must be +-3a, PC 2 +-b
static void test_pca(void) {
    enum { N = 300, D = 12 };
    static float data[N * D], out[N * 2], again[N * 2];
    float a[N], b[N], u1[D] = {0}, u2[D] = {0};
    for (int j = 0; j < D; j++) { u1[j] = (j < 4) ? 0.5f : 0; u2[j] = (j >= 4 && j < 8) ? 0.5f : 0; }
    u2[4] = -0.5f; // a sign pattern, so the axis is not all-positive
    uint64_t rng = 3;
    for (int i = 0; i < N; i++) { a[i] = random_normal(&rng); b[i] = random_normal(&rng); }
    // make the sample of b exactly uncorrelated with a, or the true PCs would mix the two a little
    double ab = 0, aa = 0, mean_a = 0, mean_b = 0;
    for (int i = 0; i < N; i++) { mean_a += a[i] / N; mean_b += b[i] / N; }
    for (int i = 0; i < N; i++) { a[i] -= mean_a; b[i] -= mean_b; ab += a[i] * b[i]; aa += a[i] * a[i]; }
    for (int i = 0; i < N; i++) b[i] -= ab / aa * a[i];
    for (int i = 0; i < N; i++) {
        for (int j = 0; j < D; j++)
            data[i * D + j] = 5.0f + 3 * a[i] * u1[j] + b[i] * u2[j] + 0.01f * random_normal(&rng);
    }
    CHECK(pca_2d(data, N, D, out) == 0, "pca_2d failed");
    // correlation of each PC with its known source
    double ma = 0, mb = 0, m0 = 0, m1 = 0;
    for (int i = 0; i < N; i++) { ma += a[i]; mb += b[i]; m0 += out[2 * i]; m1 += out[2 * i + 1]; }
    ma /= N; mb /= N; m0 /= N; m1 /= N;
    double c0 = 0, c1 = 0, va = 0, vb = 0, v0 = 0, v1 = 0;
    for (int i = 0; i < N; i++) {
        double da = a[i] - ma, db = b[i] - mb, d0 = out[2 * i] - m0, d1 = out[2 * i + 1] - m1;
        c0 += da * d0; c1 += db * d1; va += da * da; vb += db * db; v0 += d0 * d0; v1 += d1 * d1;
    }
    double r0 = c0 / sqrt(va * v0), r1 = c1 / sqrt(vb * v1);
    CHECK(fabs(r0) > 0.999, "PC 1 vs the dominant source: |r| = %.5f", fabs(r0));
    CHECK(fabs(r1) > 0.999, "PC 2 vs the second source: |r| = %.5f", fabs(r1));
    CHECK(fabs(sqrt(v0 / va) - 3.0) < 0.02, "PC 1 scale %.4f, want 3", sqrt(v0 / va));
    CHECK(fabs(sqrt(v1 / vb) - 1.0) < 0.02, "PC 2 scale %.4f, want 1", sqrt(v1 / vb));
    CHECK(fabs(m0) < 1e-4 && fabs(m1) < 1e-4, "projections not centred: %g %g", m0, m1);
    // the sign convention makes the largest coefficient positive: u1 is all-positive, so PC 1
    // must increase with a; and a second run gives the same bits
    CHECK(r0 > 0, "PC 1 sign convention broken (r = %.4f)", r0);
    CHECK(pca_2d(data, N, D, again) == 0 && memcmp(out, again, sizeof(out)) == 0, "pca_2d not deterministic");
    // bad input is refused
    CHECK(pca_2d(data, 1, D, out) != 0, "pca_2d accepted a single row");
    data[7] = NAN;
    CHECK(pca_2d(data, N, D, out) != 0, "pca_2d accepted NaN data");
}

// pca_axes + pca_project give back pca_2d's own projection, and project other rows linearly
static void test_pca_axes(void) {
    enum { N = 40, C = 6 };
    float x[N * C], xy[N * 2], again[N * 2], mean[C], axes[2 * C];
    uint64_t rng = 7;
    for (int i = 0; i < N; i++)
        for (int c = 0; c < C; c++) // most variance along c = 0, then c = 1
            x[i * C + c] = random_normal(&rng) * (c == 0 ? 5.0f : c == 1 ? 2.0f : 0.3f) + 1.0f;
    CHECK(pca_2d(x, N, C, xy) == 0 && pca_axes(mean, axes, x, N, C) == 0, "pca_2d and pca_axes run");
    pca_project(again, x, N, C, mean, axes);
    float worst = 0.0f;
    for (int i = 0; i < 2 * N; i++) worst = fmaxf(worst, fabsf(again[i] - xy[i]));
    CHECK(worst < 1e-3f, "projecting on pca_axes reproduces pca_2d (max difference %g)", worst);
    float norm0 = 0.0f, dot = 0.0f;
    for (int c = 0; c < C; c++) norm0 += axes[c] * axes[c], dot += axes[c] * axes[C + c];
    CHECK(fabsf(norm0 - 1.0f) < 1e-3f && fabsf(dot) < 1e-3f, "the axes are orthonormal (|v0|^2 %g, v0.v1 %g)", norm0,
          dot);
    CHECK(fabsf(axes[0]) > 0.95f, "the first axis is the direction of most variance (%g)", axes[0]);
}

int main(void) {
    snprintf(dir, sizeof(dir), "/tmp/test_plot.XXXXXX");
    if (!mkdtemp(dir)) { perror("mkdtemp"); return 1; }
    test_lines();
    test_scatter();
    test_points_and_bars();
    test_bad_input();
    test_symmetric_eigen();
    test_pca();
    test_pca_axes();
    const char* keep = getenv("KEEP_PLOTS");
    if (keep) printf("figures kept in %s\n", dir);
    else {
        DIR* d = opendir(dir);
        for (struct dirent* e; d && (e = readdir(d));)
            if (e->d_name[0] != '.') unlink(in_dir(e->d_name));
        if (d) closedir(d);
        rmdir(dir);
    }
    return check_summary("test_plot");
}
