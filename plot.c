// plot.c — PNG figures for mosr, drawn pixel by pixel into an RGB buffer.
//
// stb_image_write encodes the PNG (its implementation is compiled into Debian's libstb, so this
// file only includes the header) and stb_easy_font turns text into axis-aligned quads, which we
// fill at 2x scale. Everything else — lines, markers, ticks, legends — is a few loops here.
// Layout of this file: canvas and drawing primitives, text, axes, legend, PNG output, the four
// chart kinds, and PCA.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>
#include <stb/stb_image_write.h>
// the header defines a few static helpers we do not call
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#include <stb/stb_easy_font.h>
#pragma GCC diagnostic pop

#include "plot.h"
#include "util.h"

// ----------------------------------------------------------------------------
// colours: the Okabe-Ito palette (yellow swapped for grey, which reads better on white)

typedef struct {
    unsigned char r, g, b;
} Color;

static const Color PALETTE[PLOT_MAX_SERIES] = {
    {0, 114, 178},   // blue
    {230, 159, 0},   // orange
    {0, 158, 115},   // bluish green
    {213, 94, 0},    // vermillion
    {204, 121, 167}, // reddish purple
    {86, 180, 233},  // sky blue
    {0, 0, 0},       // black
    {128, 128, 128}, // grey
};
static const Color WHITE = {255, 255, 255};
static const Color INK = {34, 34, 34};       // text and error bars
static const Color AXIS = {90, 90, 90};      // frame and tick marks
static const Color GRID = {228, 228, 228};   // grid lines
static const Color BORDER = {190, 190, 190}; // legend box

enum { MARK_CIRCLE, MARK_SQUARE, MARK_TRIANGLE, MARK_DIAMOND, N_MARKS };

// ----------------------------------------------------------------------------
// canvas and drawing primitives

typedef struct {
    unsigned char* rgb; // (height, width, 3)
    int width, height;
    int clip_x0, clip_y0, clip_x1, clip_y1; // pixels outside [x0, x1) x [y0, y1) are not touched
} Canvas;

// a white PLOT_WIDTH x PLOT_HEIGHT canvas; path is only for the error message
static int build_canvas(Canvas* c, const char* path) {
    c->width = PLOT_WIDTH;
    c->height = PLOT_HEIGHT;
    c->rgb = malloc((size_t)c->width * c->height * 3);
    if (!c->rgb) { error_msg("%s: out of memory for the image", path); return 1; }
    memset(c->rgb, 255, (size_t)c->width * c->height * 3);
    c->clip_x0 = 0; c->clip_y0 = 0; c->clip_x1 = c->width; c->clip_y1 = c->height;
    return 0;
}

static void free_canvas(Canvas* c) { free(c->rgb); c->rgb = NULL; }

static void set_clip(Canvas* c, int x0, int y0, int x1, int y1) {
    c->clip_x0 = x0 < 0 ? 0 : x0;
    c->clip_y0 = y0 < 0 ? 0 : y0;
    c->clip_x1 = x1 > c->width ? c->width : x1;
    c->clip_y1 = y1 > c->height ? c->height : y1;
}

static void put_pixel(Canvas* c, int x, int y, Color col) {
    if (x < c->clip_x0 || x >= c->clip_x1 || y < c->clip_y0 || y >= c->clip_y1) return;
    unsigned char* p = c->rgb + ((size_t)y * c->width + x) * 3;
    p[0] = col.r; p[1] = col.g; p[2] = col.b;
}

// fills [x0, x1) x [y0, y1)
static void fill_rect(Canvas* c, int x0, int y0, int x1, int y1, Color col) {
    for (int y = y0; y < y1; y++)
        for (int x = x0; x < x1; x++) put_pixel(c, x, y, col);
}

// Liang-Barsky: shortens the segment to the box; 0 if nothing of it is inside. Done in doubles
// before rounding, so a point far off-scale (a fixed axis range) still gives the right slope.
static int clip_segment(double* x0, double* y0, double* x1, double* y1,
                        double xmin, double ymin, double xmax, double ymax) {
    double dx = *x1 - *x0, dy = *y1 - *y0, t0 = 0, t1 = 1;
    double p[4] = {-dx, dx, -dy, dy};
    double q[4] = {*x0 - xmin, xmax - *x0, *y0 - ymin, ymax - *y0};
    for (int i = 0; i < 4; i++) {
        if (p[i] == 0) {
            if (q[i] < 0) return 0;
            continue;
        }
        double t = q[i] / p[i];
        if (p[i] < 0) { if (t > t1) return 0; if (t > t0) t0 = t; }
        else          { if (t < t0) return 0; if (t < t1) t1 = t; }
    }
    *x1 = *x0 + t1 * dx; *y1 = *y0 + t1 * dy;
    *x0 = *x0 + t0 * dx; *y0 = *y0 + t0 * dy;
    return 1;
}

// Bresenham, stamping a thickness x thickness square at every step
static void draw_line(Canvas* c, double fx0, double fy0, double fx1, double fy1,
                      Color col, int thickness) {
    if (!clip_segment(&fx0, &fy0, &fx1, &fy1, c->clip_x0 - 2, c->clip_y0 - 2,
                      c->clip_x1 + 1, c->clip_y1 + 1)) return;
    int x0 = (int)lround(fx0), y0 = (int)lround(fy0), x1 = (int)lround(fx1), y1 = (int)lround(fy1);
    int dx = abs(x1 - x0), dy = -abs(y1 - y0);
    int sx = x0 < x1 ? 1 : -1, sy = y0 < y1 ? 1 : -1;
    int err = dx + dy, lo = -(thickness / 2);
    for (;;) {
        fill_rect(c, x0 + lo, y0 + lo, x0 + lo + thickness, y0 + lo + thickness, col);
        if (x0 == x1 && y0 == y1) break;
        int e2 = 2 * err;
        if (e2 >= dy) { err += dy; x0 += sx; }
        if (e2 <= dx) { err += dx; y0 += sy; }
    }
}

// a filled marker of "radius" r centred on (x, y); shapes tell classes apart without colour
static void draw_marker(Canvas* c, double fx, double fy, int shape, int r, Color col) {
    if (!(fabs(fx) < 1e6 && fabs(fy) < 1e6)) return;
    int x = (int)lround(fx), y = (int)lround(fy);
    for (int dy = -r; dy <= r; dy++) {
        for (int dx = -r; dx <= r; dx++) {
            int in;
            switch (shape % N_MARKS) {
            case MARK_CIRCLE:   in = dx * dx + dy * dy <= r * r + r / 2; break;
            case MARK_SQUARE:   in = abs(dx) < r && abs(dy) < r; break;
            case MARK_TRIANGLE: in = 2 * abs(dx) <= dy + r; break; // apex up, base at y + r
            default:            in = abs(dx) + abs(dy) <= r; break;
            }
            if (in) put_pixel(c, x + dx, y + dy, col);
        }
    }
}

// ----------------------------------------------------------------------------
// text: stb_easy_font quads, filled at an integer scale. One line is 12 font units high.

#define TEXT_SCALE 2
#define TEXT_MAX 160

// stb_easy_font indexes its glyph table with (char - 32), so any byte outside printable ASCII
// (a UTF-8 label, a control character) would read out of bounds: those become '?'.
static void sanitise_text(char* out, const char* in) {
    int i = 0;
    for (; in && in[i] && i < TEXT_MAX - 1; i++) {
        unsigned char ch = (unsigned char)in[i];
        out[i] = (ch == '\n' || (ch >= 32 && ch < 127)) ? (char)ch : '?';
    }
    out[i] = '\0';
}

static int text_width(const char* s, int scale) {
    char buf[TEXT_MAX];
    sanitise_text(buf, s);
    return stb_easy_font_width(buf) * scale;
}

static int text_lines(const char* s) {
    int lines = 1;
    for (; s && *s; s++) lines += *s == '\n';
    return lines;
}

// draws s with its top-left corner at (x, y); if vertical, the text is turned 90 degrees
// counter-clockwise (reading bottom to top) and (x, y) is its bottom-left corner
static void draw_text(Canvas* c, int x, int y, const char* s, Color col, int scale, int vertical) {
    static float quads[TEXT_MAX * 80]; // 4 vertices of 4 floats per quad, ~270 bytes per char
    char buf[TEXT_MAX];
    sanitise_text(buf, s);
    int n_quads = stb_easy_font_print(0, 0, buf, NULL, quads, sizeof(quads));
    for (int q = 0; q < n_quads; q++) {
        // vertices are x, y, z, rgba(4 bytes); corners 0 and 2 are opposite
        float qx0 = quads[q * 16 + 0], qy0 = quads[q * 16 + 1];
        float qx1 = quads[q * 16 + 8], qy1 = quads[q * 16 + 9];
        int ax0 = (int)lroundf(qx0 * scale), ay0 = (int)lroundf(qy0 * scale);
        int ax1 = (int)lroundf(qx1 * scale), ay1 = (int)lroundf(qy1 * scale);
        if (vertical) fill_rect(c, x + ay0, y - ax1, x + ay1, y - ax0, col);
        else fill_rect(c, x + ax0, y + ay0, x + ax1, y + ay1, col);
    }
}

// centres every line of s on x, and the block on y (glyphs sit in the top 9 of a line's 12 units)
static void draw_text_centred(Canvas* c, int x, int y, const char* s, Color col, int scale) {
    char buf[TEXT_MAX];
    sanitise_text(buf, s);
    int top = y - (12 * text_lines(buf) - 3) * scale / 2;
    char* rest = NULL;
    for (char* line = strtok_r(buf, "\n", &rest); line; line = strtok_r(NULL, "\n", &rest), top += 12 * scale)
        draw_text(c, x - text_width(line, scale) / 2, top, line, col, scale, 0);
}

// ----------------------------------------------------------------------------
// axes: data range, "nice" ticks (1, 2 or 5 x 10^k) and the mapping from data to pixels

#define MAX_TICKS 32

typedef struct {
    // layout wishes, set by the chart before setup_frame
    int inset;         // pixels between the frame and the data range, so markers are not cut
    int x_label_lines; // lines of text under the x axis (bar charts' group names)
    int integer_x;     // x is a count (layers, steps): ticks no closer than 1
    int legend_on_top; // leave a row between title and plot area for the legend
    // computed by setup_frame
    int left, top, right, bottom; // plot area in pixels (right, bottom exclusive)
    double x0, x1, y0, y1;        // data range shown; y in log10 units if log_y
    int log_y;
    double x_ticks[MAX_TICKS], y_ticks[MAX_TICKS]; // in axis units
    int n_x_ticks, n_y_ticks;
    double x_step, y_step;
} Frame;

static double nice_step(double span, int target_ticks) {
    double raw = span / target_ticks;
    double mag = pow(10, floor(log10(raw)));
    double norm = raw / mag;
    return (norm <= 1 ? 1 : norm <= 2 ? 2 : norm <= 5 ? 5 : 10) * mag;
}

// picks the shown range [*a, *b] and its tick step from the data extent [lo, hi] (lo > hi
// when there is no data) or from a fixed range [fix_lo, fix_hi] if fix_lo < fix_hi
static void fit_axis(double lo, double hi, float fix_lo, float fix_hi,
                     double* a, double* b, double* step) {
    if (fix_lo < fix_hi && isfinite(fix_lo) && isfinite(fix_hi)) {
        *a = fix_lo; *b = fix_hi;
        *step = nice_step(*b - *a, 6);
        return;
    }
    if (lo > hi) { lo = 0; hi = 1; }
    if (hi - lo < 1e-12 * fmax(1.0, fabs(lo))) {
        double pad = lo != 0 ? 0.5 * fabs(lo) : 1;
        lo -= pad; hi += pad;
    }
    *step = nice_step(hi - lo, 6);
    *a = floor(lo / *step + 1e-9) * *step;
    *b = ceil(hi / *step - 1e-9) * *step;
}

static int linear_ticks(double a, double b, double step, double* out) {
    int n = 0;
    for (double k = ceil(a / step - 1e-9); n < MAX_TICKS && k * step <= b + step * 1e-9; k++)
        out[n++] = fabs(k * step) < step * 1e-9 ? 0 : k * step;
    return n;
}

// log axis: whole decades (in log10 units). Over at most two decades 2x and 5x are added too.
static int log_ticks(double a, double b, double* out) {
    int n = 0, decades = (int)(b - a);
    int every = decades > 8 ? (decades + 7) / 8 : 1;
    for (int k = (int)floor(a); k <= (int)ceil(b) && n < MAX_TICKS - 3; k += every) {
        if (k >= a - 1e-9 && k <= b + 1e-9) out[n++] = k;
        if (decades <= 2) {
            double sub[2] = {k + log10(2.0), k + log10(5.0)};
            for (int i = 0; i < 2; i++)
                if (sub[i] >= a && sub[i] <= b) out[n++] = sub[i];
        }
    }
    return n;
}

static void format_tick(char* buf, double v, double step, int log_y) {
    if (log_y) { snprintf(buf, 32, "%g", pow(10, v)); return; }
    int decimals = step >= 1 ? 0 : (int)ceil(-log10(step) - 1e-9);
    if (fabs(v) >= 1e6 || decimals > 5) snprintf(buf, 32, "%.3g", v);
    else snprintf(buf, 32, "%.*f", decimals, v);
}

static double x_pixel(const Frame* f, double x) {
    double w = f->right - f->left - 2 * f->inset;
    return f->left + f->inset + (x - f->x0) / (f->x1 - f->x0) * w;
}

static double y_pixel(const Frame* f, double y) { // y already in axis units
    double h = f->bottom - f->top - 2 * f->inset;
    return f->bottom - f->inset - (y - f->y0) / (f->y1 - f->y0) * h;
}

// fits both axes to the data extent [xlo, xhi] x [ylo, yhi] (y in axis units) and lays out
// the plot area: the left margin grows with the y tick labels, the bottom one with the lines
// of x labels
static void setup_frame(Frame* f, const PlotOptions* opt, double xlo, double xhi,
                        double ylo, double yhi) {
    f->log_y = opt->log_y;
    fit_axis(xlo, xhi, opt->x_min, opt->x_max, &f->x0, &f->x1, &f->x_step);
    if (f->integer_x && f->x_step < 1) f->x_step = 1;
    if (f->log_y) {
        int fixed = opt->y_min > 0 && opt->y_min < opt->y_max;
        if (fixed) { ylo = log10(opt->y_min); yhi = log10(opt->y_max); }
        else if (ylo > yhi) { ylo = 0; yhi = 1; }
        f->y0 = fixed ? ylo : floor(ylo);
        f->y1 = fixed ? yhi : ceil(yhi);
        if (f->y1 <= f->y0) f->y1 = f->y0 + 1;
        f->n_y_ticks = log_ticks(f->y0, f->y1, f->y_ticks);
    } else {
        fit_axis(ylo, yhi, opt->y_min, opt->y_max, &f->y0, &f->y1, &f->y_step);
        f->n_y_ticks = linear_ticks(f->y0, f->y1, f->y_step, f->y_ticks);
    }
    f->n_x_ticks = linear_ticks(f->x0, f->x1, f->x_step, f->x_ticks);
    int label_w = 0;
    for (int i = 0; i < f->n_y_ticks; i++) {
        char buf[32];
        format_tick(buf, f->y_ticks[i], f->y_step, f->log_y);
        int w = text_width(buf, TEXT_SCALE);
        if (w > label_w) label_w = w;
    }
    f->left = 12 + 18 + 16 + label_w + 12; // y label, gap, tick labels, tick marks
    f->right = PLOT_WIDTH - 28;
    f->top = f->legend_on_top ? 82 : 52;
    f->bottom = PLOT_HEIGHT - 20 - 24 - 24 * (f->x_label_lines > 0 ? f->x_label_lines : 1);
}

// grid lines go under the data, so this is drawn first
static void draw_grid(Canvas* c, const Frame* f, int vertical_lines) {
    for (int i = 0; vertical_lines && i < f->n_x_ticks; i++) {
        int x = (int)lround(x_pixel(f, f->x_ticks[i]));
        fill_rect(c, x, f->top, x + 1, f->bottom, GRID);
    }
    for (int i = 0; i < f->n_y_ticks; i++) {
        int y = (int)lround(y_pixel(f, f->y_ticks[i]));
        fill_rect(c, f->left, y, f->right, y + 1, GRID);
    }
}

// frame, ticks, tick labels, axis labels and title; drawn after the data
static void draw_axes(Canvas* c, const Frame* f, const PlotOptions* opt, int x_tick_labels) {
    set_clip(c, 0, 0, c->width, c->height);
    fill_rect(c, f->left, f->top, f->right, f->top + 1, AXIS);
    fill_rect(c, f->left, f->bottom, f->right + 1, f->bottom + 1, AXIS);
    fill_rect(c, f->left, f->top, f->left + 1, f->bottom, AXIS);
    fill_rect(c, f->right, f->top, f->right + 1, f->bottom, AXIS);
    char buf[32];
    for (int i = 0; x_tick_labels && i < f->n_x_ticks; i++) {
        int x = (int)lround(x_pixel(f, f->x_ticks[i]));
        fill_rect(c, x, f->bottom, x + 1, f->bottom + 6, AXIS);
        format_tick(buf, f->x_ticks[i], f->x_step, 0);
        draw_text(c, x - text_width(buf, TEXT_SCALE) / 2, f->bottom + 10, buf, INK, TEXT_SCALE, 0);
    }
    for (int i = 0; i < f->n_y_ticks; i++) {
        int y = (int)lround(y_pixel(f, f->y_ticks[i]));
        fill_rect(c, f->left - 6, y, f->left, y + 1, AXIS);
        format_tick(buf, f->y_ticks[i], f->y_step, f->log_y);
        draw_text(c, f->left - 10 - text_width(buf, TEXT_SCALE), y - 8, buf, INK, TEXT_SCALE, 0);
    }
    if (opt->x_label)
        draw_text_centred(c, (f->left + f->right) / 2, PLOT_HEIGHT - 22, opt->x_label, INK, TEXT_SCALE);
    if (opt->y_label) {
        int y = (f->top + f->bottom) / 2 + text_width(opt->y_label, TEXT_SCALE) / 2;
        draw_text(c, 12, y, opt->y_label, INK, TEXT_SCALE, 1);
    }
    if (opt->title) { // bold: the same text twice, one pixel apart
        draw_text_centred(c, PLOT_WIDTH / 2, 26, opt->title, INK, TEXT_SCALE);
        draw_text_centred(c, PLOT_WIDTH / 2 + 1, 26, opt->title, INK, TEXT_SCALE);
    }
}

// ----------------------------------------------------------------------------
// legend: placed in whichever corner of the plot area holds the least ink

typedef enum { SWATCH_LINE, SWATCH_MARKER } SwatchKind;

typedef struct {
    const char* name;
    Color color;
    int shape; // marker shape, or -1 for none
} LegendEntry;

static long ink_in_box(const Canvas* c, int x0, int y0, int x1, int y1) {
    long ink = 0;
    for (int y = y0; y < y1; y++) {
        for (int x = x0; x < x1; x++) {
            const unsigned char* p = c->rgb + ((size_t)y * c->width + x) * 3;
            ink += !(p[0] == p[1] && p[1] == p[2] && p[0] >= GRID.r); // white and grid are free
        }
    }
    return ink;
}

static void draw_legend(Canvas* c, const Frame* f, const LegendEntry* e, int n, SwatchKind kind) {
    if (n <= 0) return;
    const int pad = 8, row = 24, swatch = 28;
    int w = 0;
    for (int i = 0; i < n; i++) {
        int tw = text_width(e[i].name ? e[i].name : "", TEXT_SCALE);
        if (tw > w) w = tw;
    }
    w += 2 * pad + swatch + 8;
    int h = 2 * pad + n * row - 6;
    int corners[4][2] = {{f->right - 8 - w, f->top + 8}, {f->left + 8, f->top + 8},
                         {f->right - 8 - w, f->bottom - 8 - h}, {f->left + 8, f->bottom - 8 - h}};
    int best = 0;
    long best_ink = -1;
    for (int k = 0; k < 4; k++) {
        int x0 = corners[k][0] < 0 ? 0 : corners[k][0], y0 = corners[k][1] < 0 ? 0 : corners[k][1];
        long ink = ink_in_box(c, x0, y0, x0 + w > c->width ? c->width : x0 + w,
                              y0 + h > c->height ? c->height : y0 + h);
        if (best_ink < 0 || ink < best_ink) { best_ink = ink; best = k; }
    }
    int x = corners[best][0], y = corners[best][1];
    fill_rect(c, x, y, x + w, y + h, BORDER);
    fill_rect(c, x + 1, y + 1, x + w - 1, y + h - 1, WHITE);
    for (int i = 0; i < n; i++) {
        int cy = y + pad + i * row + 8; // centre of this row's text
        int sx = x + pad;
        if (kind == SWATCH_LINE) draw_line(c, sx, cy, sx + swatch, cy, e[i].color, 2);
        if (e[i].shape >= 0) draw_marker(c, sx + swatch / 2, cy, e[i].shape, 5, e[i].color);
        draw_text(c, sx + swatch + 8, cy - 8, e[i].name ? e[i].name : "", INK, TEXT_SCALE, 0);
    }
}

// bar charts fill their plot area, so their legend is one centred row above it
static void draw_legend_row(Canvas* c, const Frame* f, const LegendEntry* e, int n) {
    const int swatch = 16, gap = 8, spacing = 28;
    // many or long names: the row would run off the canvas, so fall back to the small font
    int scale = TEXT_SCALE, total;
    for (;;) {
        total = 0;
        for (int i = 0; i < n; i++) total += swatch + gap + text_width(e[i].name ? e[i].name : "", scale) + spacing;
        if (total - spacing <= c->width - 16 || scale == 1) break;
        scale = 1;
    }
    int x = (f->left + f->right - (total - spacing)) / 2, cy = f->top - 22;
    if (x < 8) x = 8;
    for (int i = 0; i < n; i++) {
        fill_rect(c, x, cy - 8, x + swatch, cy + 8, e[i].color);
        x += swatch + gap;
        draw_text(c, x, cy - 4 * scale, e[i].name ? e[i].name : "", INK, scale, 0);
        x += text_width(e[i].name ? e[i].name : "", scale) + spacing;
    }
}

// ----------------------------------------------------------------------------
// PNG output: encode into a growing buffer, then one atomic write

typedef struct {
    unsigned char* data;
    size_t len, cap;
    int failed;
} ByteBuffer;

static void png_append(void* context, void* data, int size) {
    ByteBuffer* b = context;
    if (b->failed || size <= 0) return;
    if (b->len + size > b->cap) {
        size_t cap = b->cap ? b->cap : 65536;
        while (cap < b->len + size) cap *= 2;
        unsigned char* grown = realloc(b->data, cap);
        if (!grown) { b->failed = 1; return; }
        b->data = grown;
        b->cap = cap;
    }
    memcpy(b->data + b->len, data, size);
    b->len += size;
}

static int write_canvas_png(const Canvas* c, const char* path) {
    ByteBuffer png = {0};
    int ok = stbi_write_png_to_func(png_append, &png, c->width, c->height, 3, c->rgb, c->width * 3);
    if (!ok || png.failed) {
        error_msg("%s: cannot encode the PNG (out of memory)", path);
        free(png.data);
        return 1;
    }
    AtomicFile af;
    if (atomic_open(&af, path) != 0) { free(png.data); return 1; }
    if (fwrite(png.data, 1, png.len, af.f) != png.len) {
        error_msg("%s: write failed", path);
        atomic_abort(&af);
        free(png.data);
        return 1;
    }
    free(png.data);
    return atomic_commit(&af);
}

// every chart ends here: the canvas is written out and freed
static int finish_figure(Canvas* c, const char* path) {
    int rc = write_canvas_png(c, path);
    free_canvas(c);
    return rc;
}

// ----------------------------------------------------------------------------
// the charts

static int finite2(double x, double y) { return isfinite(x) && isfinite(y); }

static void extend(double v, double* lo, double* hi) {
    if (v < *lo) *lo = v;
    if (v > *hi) *hi = v;
}

// common checks; returns non-zero (after error_msg) if the call cannot make a figure
static int check_args(const char* path, const PlotOptions* opt, int n_items, const char* what) {
    if (!path) { error_msg("plot: no output path given"); return 1; }
    if (!opt) { error_msg("%s: no plot options given", path); return 1; }
    if (n_items < 1 || n_items > PLOT_MAX_SERIES) {
        error_msg("%s: %d %s; a figure takes 1 to %d", path, n_items, what, PLOT_MAX_SERIES);
        return 1;
    }
    return 0;
}

// the y value on the axis: log10 on a log axis, NaN (skipped) if it cannot be shown there
static double axis_y(double y, int log_y) {
    if (!log_y) return y;
    return y > 0 ? log10(y) : NAN;
}

int plot_lines(const char* path, const PlotOptions* opt, const Series* series, int n_series) {
    if (check_args(path, opt, n_series, "series")) return 1;
    double xlo = INFINITY, xhi = -INFINITY, ylo = INFINITY, yhi = -INFINITY;
    int integer_x = 1, any_markers = 0;
    for (int s = 0; s < n_series; s++) {
        const Series* se = &series[s];
        any_markers |= se->n <= 40;
        if (se->n < 0 || (se->n > 0 && (!se->x || !se->y))) {
            error_msg("%s: series %d (%s) has no data arrays or n = %d", path, s,
                      se->name ? se->name : "unnamed", se->n);
            return 1;
        }
        for (int i = 0; i < se->n; i++) {
            double x = se->x[i], y = axis_y(se->y[i], opt->log_y);
            if (!finite2(x, y)) continue;
            extend(x, &xlo, &xhi);
            extend(y, &ylo, &yhi);
            integer_x &= x == floor(x);
        }
    }
    Canvas c;
    if (build_canvas(&c, path)) return 1;
    Frame f = {.inset = any_markers ? 6 : 0, .integer_x = integer_x};
    setup_frame(&f, opt, xlo, xhi, ylo, yhi);
    draw_grid(&c, &f, 1);
    LegendEntry legend[PLOT_MAX_SERIES];
    for (int s = 0; s < n_series; s++) {
        const Series* se = &series[s];
        Color col = PALETTE[s];
        set_clip(&c, f.left, f.top, f.right + 1, f.bottom + 1);
        // a non-finite point ends the line; it resumes at the next finite one
        double px = NAN, py = NAN;
        for (int i = 0; i < se->n; i++) {
            double x = x_pixel(&f, se->x[i]), y = y_pixel(&f, axis_y(se->y[i], f.log_y));
            if (!finite2(x, y)) { px = py = NAN; continue; }
            if (finite2(px, py)) draw_line(&c, px, py, x, y, col, 2);
            px = x; py = y;
        }
        if (se->n <= 40) {
            set_clip(&c, f.left - 6, f.top - 6, f.right + 7, f.bottom + 7);
            for (int i = 0; i < se->n; i++) {
                double x = x_pixel(&f, se->x[i]), y = y_pixel(&f, axis_y(se->y[i], f.log_y));
                if (finite2(x, y)) draw_marker(&c, x, y, s, 4, col);
            }
        }
        legend[s] = (LegendEntry){se->name, col, se->n <= 40 ? s : -1};
    }
    draw_axes(&c, &f, opt, 1);
    draw_legend(&c, &f, legend, n_series, SWATCH_LINE);
    return finish_figure(&c, path);
}

// markers get a white rim so that overlapping points stay distinguishable
static void draw_rimmed_marker(Canvas* c, double x, double y, int shape, int r, Color col) {
    draw_marker(c, x, y, shape, r + 1, WHITE);
    draw_marker(c, x, y, shape, r, col);
}

int plot_scatter(const char* path, const PlotOptions* opt, const float* xy, const int* class_of,
                 int n, const char* const* class_names, int n_classes) {
    if (check_args(path, opt, n_classes, "classes")) return 1;
    if (n < 0 || (n > 0 && (!xy || !class_of))) {
        error_msg("%s: scatter of %d points without point arrays", path, n);
        return 1;
    }
    double xlo = INFINITY, xhi = -INFINITY, ylo = INFINITY, yhi = -INFINITY;
    for (int i = 0; i < n; i++) {
        if (class_of[i] < 0 || class_of[i] >= n_classes) {
            error_msg("%s: point %d has class %d, outside [0, %d)", path, i, class_of[i], n_classes);
            return 1;
        }
        double x = xy[2 * i], y = axis_y(xy[2 * i + 1], opt->log_y);
        if (!finite2(x, y)) continue;
        extend(x, &xlo, &xhi);
        extend(y, &ylo, &yhi);
    }
    Canvas c;
    if (build_canvas(&c, path)) return 1;
    Frame f = {.inset = 8};
    setup_frame(&f, opt, xlo, xhi, ylo, yhi);
    draw_grid(&c, &f, 1);
    set_clip(&c, f.left + 1, f.top + 1, f.right, f.bottom);
    for (int i = 0; i < n; i++) {
        double x = x_pixel(&f, xy[2 * i]), y = y_pixel(&f, axis_y(xy[2 * i + 1], f.log_y));
        if (finite2(x, y)) draw_rimmed_marker(&c, x, y, class_of[i], 3, PALETTE[class_of[i]]);
    }
    LegendEntry legend[PLOT_MAX_SERIES];
    for (int k = 0; k < n_classes; k++)
        legend[k] = (LegendEntry){class_names ? class_names[k] : NULL, PALETTE[k], k};
    draw_axes(&c, &f, opt, 1);
    draw_legend(&c, &f, legend, n_classes, SWATCH_MARKER);
    return finish_figure(&c, path);
}

// a horizontal or vertical error bar from a to b (pixels) at position at, with end caps
static void draw_error_bar(Canvas* c, double at, double a, double b, int vertical) {
    if (vertical) {
        draw_line(c, at, a, at, b, INK, 2);
        draw_line(c, at - 5, a, at + 5, a, INK, 2);
        draw_line(c, at - 5, b, at + 5, b, INK, 2);
    } else {
        draw_line(c, a, at, b, at, INK, 2);
        draw_line(c, a, at - 5, a, at + 5, INK, 2);
        draw_line(c, b, at - 5, b, at + 5, INK, 2);
    }
}

// an error bar from lo to hi is drawn when both are finite and lo < hi
static int has_bar(float lo, float hi) {
    return isfinite(lo) && isfinite(hi) && lo < hi;
}

int plot_points(const char* path, const PlotOptions* opt, const LabelledPoint* points, int n) {
    if (check_args(path, opt, n, "points")) return 1;
    if (!points) { error_msg("%s: no points given", path); return 1; }
    double xlo = INFINITY, xhi = -INFINITY, ylo = INFINITY, yhi = -INFINITY;
    for (int i = 0; i < n; i++) {
        const LabelledPoint* p = &points[i];
        if (!finite2(p->x, axis_y(p->y, opt->log_y))) continue;
        extend(p->x, &xlo, &xhi);
        extend(axis_y(p->y, opt->log_y), &ylo, &yhi);
        if (has_bar(p->x_lo, p->x_hi)) {
            extend(p->x_lo, &xlo, &xhi);
            extend(p->x_hi, &xlo, &xhi);
        }
        if (has_bar(p->y_lo, p->y_hi)) {
            extend(axis_y(p->y_hi, opt->log_y), &ylo, &yhi);
            double y_low = axis_y(p->y_lo, opt->log_y);
            if (isfinite(y_low)) extend(y_low, &ylo, &yhi);
        }
    }
    Canvas c;
    if (build_canvas(&c, path)) return 1;
    Frame f = {.inset = 16};
    setup_frame(&f, opt, xlo, xhi, ylo, yhi);
    draw_grid(&c, &f, 1);
    LegendEntry legend[PLOT_MAX_SERIES];
    int placed[PLOT_MAX_SERIES][3], n_placed = 0; // the labels drawn so far: x, y, width
    for (int i = 0; i < n; i++) {
        const LabelledPoint* p = &points[i];
        legend[i] = (LegendEntry){p->label, PALETTE[i], i};
        double x = x_pixel(&f, p->x), y = y_pixel(&f, axis_y(p->y, f.log_y));
        if (!finite2(x, y)) continue;
        set_clip(&c, f.left + 1, f.top + 1, f.right, f.bottom);
        if (has_bar(p->x_lo, p->x_hi)) draw_error_bar(&c, y, x_pixel(&f, p->x_lo), x_pixel(&f, p->x_hi), 0);
        if (has_bar(p->y_lo, p->y_hi)) {
            double lo = y_pixel(&f, axis_y(p->y_lo, f.log_y));
            if (!isfinite(lo)) lo = f.bottom; // at or below zero on a log axis
            draw_error_bar(&c, x, lo, y_pixel(&f, axis_y(p->y_hi, f.log_y)), 1);
        }
        draw_rimmed_marker(&c, x, y, i, 6, PALETTE[i]);
        if (x < f.left || x > f.right || y < f.top || y > f.bottom) continue; // off the axes
        // the label goes above right of the point, moved left or down where it would leave
        // the plot area; then tried below, left and left-below while it overlaps a label placed before
        int w = text_width(p->label, TEXT_SCALE), h = 16;
        int right = x + 10 + w < f.right - 4, above = y - 24 > f.top + 2;
        int lx = 0, ly = 0;
        for (int attempt = 0; attempt < 4; attempt++) {
            int r = attempt < 2 ? right : !right, a = attempt % 2 == 0 ? above : !above;
            lx = r ? (int)x + 10 : (int)x - 10 - w;
            ly = a ? (int)y - 24 : (int)y + 10;
            int clash = lx < f.left + 2 || ly + h > f.bottom - 2;
            for (int j = 0; j < n_placed && !clash; j++)
                clash = lx < placed[j][0] + placed[j][2] && placed[j][0] < lx + w && ly < placed[j][1] + h &&
                        placed[j][1] < ly + h;
            if (!clash) break;
            if (attempt == 3) { lx = right ? (int)x + 10 : (int)x - 10 - w; ly = above ? (int)y - 24 : (int)y + 10; }
        }
        placed[n_placed][0] = lx, placed[n_placed][1] = ly, placed[n_placed][2] = w, n_placed++;
        draw_text(&c, lx, ly, p->label, PALETTE[i], TEXT_SCALE, 0);
    }
    draw_axes(&c, &f, opt, 1);
    draw_legend(&c, &f, legend, n, SWATCH_MARKER);
    return finish_figure(&c, path);
}

// a group name that does not fit under its group is broken at spaces, filling each line
// greedily (a single word wider than the group stays whole)
static void wrap_label(char* out, const char* name, int max_width) {
    sanitise_text(out, name);
    char* line = out;
    for (char* s = out; *s; s++) {
        if (*s != ' ') continue;
        char* next = strchr(s + 1, ' ');
        char saved = next ? *next : 0;
        if (next) *next = '\0'; // measure the line as it would be with the next word on it
        int fits = text_width(line, TEXT_SCALE) <= max_width;
        if (next) *next = saved;
        if (!fits) { *s = '\n'; line = s + 1; }
    }
}

int plot_bars(const char* path, const PlotOptions* opt, const BarChart* bars) {
    if (check_args(path, opt, bars ? bars->n_bars : 0, "bars per group")) return 1;
    if (bars->n_groups < 1 || !bars->mean) {
        error_msg("%s: bar chart with %d groups and %s", path, bars->n_groups,
                  bars->mean ? "means" : "no means");
        return 1;
    }
    int G = bars->n_groups, B = bars->n_bars;
    double ylo = opt->log_y ? INFINITY : 0, yhi = opt->log_y ? -INFINITY : 0;
    for (int i = 0; i < G * B; i++) {
        double m = bars->mean[i];
        double s = bars->spread && isfinite(bars->spread[i]) ? fabs(bars->spread[i]) : 0;
        double top = axis_y(m + s, opt->log_y), bottom = axis_y(m - s, opt->log_y);
        if (!isfinite(m) || !isfinite(top)) continue;
        extend(top, &ylo, &yhi);
        if (isfinite(bottom)) extend(bottom, &ylo, &yhi);
    }
    // the x axis is categorical: group g spans [g, g + 1]
    PlotOptions o = *opt;
    o.x_min = 0; o.x_max = G;
    int approx_group_w = (PLOT_WIDTH - 160) / G, label_lines = 1;
    char label[TEXT_MAX];
    for (int g = 0; g < G; g++) {
        wrap_label(label, bars->group_names ? bars->group_names[g] : "", approx_group_w - 8);
        int lines = text_lines(label);
        if (lines > label_lines) label_lines = lines > 4 ? 4 : lines;
    }
    Canvas c;
    if (build_canvas(&c, path)) return 1;
    Frame f = {.x_label_lines = label_lines, .legend_on_top = 1};
    setup_frame(&f, &o, 0, G, ylo, yhi);
    draw_grid(&c, &f, 0);
    double base = f.log_y ? f.y0 : fmin(fmax(0, f.y0), f.y1);
    double group_w = x_pixel(&f, 1) - x_pixel(&f, 0), bar_w = 0.8 * group_w / B;
    for (int g = 0; g < G; g++) {
        for (int b = 0; b < B; b++) {
            double m = bars->mean[g * B + b];
            double x0 = x_pixel(&f, g) + 0.1 * group_w + b * bar_w, y = y_pixel(&f, axis_y(m, f.log_y));
            if (!finite2(m, y)) continue;
            set_clip(&c, f.left + 1, f.top + 1, f.right, f.bottom);
            double yb = y_pixel(&f, base);
            fill_rect(&c, (int)lround(x0) + 1, (int)lround(fmin(y, yb)), (int)lround(x0 + bar_w) - 1,
                      (int)lround(fmax(y, yb)), PALETTE[b]);
            double s = bars->spread && isfinite(bars->spread[g * B + b]) ? fabs(bars->spread[g * B + b]) : 0;
            if (s > 0) {
                double lo = y_pixel(&f, axis_y(m - s, f.log_y));
                draw_error_bar(&c, x0 + bar_w / 2, isfinite(lo) ? lo : f.bottom,
                               y_pixel(&f, axis_y(m + s, f.log_y)), 1);
            }
        }
        set_clip(&c, 0, 0, c.width, c.height);
        wrap_label(label, bars->group_names ? bars->group_names[g] : "", approx_group_w - 8);
        int cx = (int)lround(x_pixel(&f, g + 0.5)), lines = text_lines(label);
        draw_text_centred(&c, cx, f.bottom + 10 + (24 * lines - 6) / 2, label, INK, TEXT_SCALE);
    }
    LegendEntry legend[PLOT_MAX_SERIES];
    for (int b = 0; b < B; b++)
        legend[b] = (LegendEntry){bars->bar_names ? bars->bar_names[b] : NULL, PALETTE[b], -1};
    draw_axes(&c, &f, &o, 0);
    draw_legend_row(&c, &f, legend, B);
    return finish_figure(&c, path);
}

// ----------------------------------------------------------------------------
// PCA, on the eigen-decomposition of a symmetric matrix by LAPACK's ssyev (OpenBLAS exports it;
// Debian ships no lapacke.h, so the Fortran routine is declared here, the one place that calls
// it). Fortran passes everything by reference, reads matrices column-major, and, from gfortran,
// takes the lengths of the character arguments as hidden trailing arguments.

void ssyev_(const char* jobz, const char* uplo, const int* n, float* a, const int* lda, float* w, float* work,
            const int* lwork, int* info, size_t jobz_len, size_t uplo_len);

int symmetric_eigen(float* eigenvalues, float* a, int n, int vectors) {
    // a symmetric matrix is its own transpose, so row-major in is column-major in; the eigenvectors
    // come back as Fortran's columns, i.e. as the rows of our row-major a
    const char jobz = vectors ? 'V' : 'N', uplo = 'U';
    int info = 0, lwork = -1;
    float query;
    ssyev_(&jobz, &uplo, &n, a, &n, eigenvalues, &query, &lwork, &info, 1, 1); // the workspace size
    lwork = info == 0 ? (int)query : 3 * n;
    float* work = malloc((size_t)(lwork > 1 ? lwork : 1) * sizeof(float));
    if (!work) {
        error_msg("symmetric_eigen: out of memory for a %d x %d matrix", n, n);
        return -1;
    }
    ssyev_(&jobz, &uplo, &n, a, &n, eigenvalues, work, &lwork, &info, 1, 1);
    free(work);
    if (info != 0) {
        error_msg("symmetric_eigen: LAPACK ssyev failed on a %d x %d matrix (info %d)", n, n, info);
        return -1;
    }
    return 0;
}

// the principal axes are the top eigenvectors of the covariance Xc^T Xc / n (Xc = X - mean)
int pca_axes(float* mean, float* axes, const float* x, int n, int d) {
    if (!x || n < 2 || d < 1) {
        error_msg("pca: needs at least 2 rows of at least 1 value (got n = %d, d = %d)", n, d);
        return 1;
    }
    for (size_t i = 0; i < (size_t)n * d; i++) {
        if (!isfinite(x[i])) {
            error_msg("pca: non-finite value at row %zu, column %zu", i / d, i % d);
            return 1;
        }
    }
    float* xc = malloc((size_t)n * d * sizeof(float)); // (n, d)
    float* cov = malloc((size_t)d * d * sizeof(float)); // (d, d), then its eigenvectors as rows
    float* eig = malloc(d * sizeof(float));             // ascending
    if (!xc || !cov || !eig) {
        error_msg("pca: out of memory for %d x %d data", n, d);
        free(xc); free(cov); free(eig);
        return 1;
    }
    for (int j = 0; j < d; j++) {
        double sum = 0.0;
        for (int i = 0; i < n; i++) sum += x[(size_t)i * d + j];
        mean[j] = (float)(sum / n);
    }
    for (size_t i = 0; i < (size_t)n * d; i++) xc[i] = x[i] - mean[i % d];
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, d, d, n, 1.0f / n, xc, d, xc, d, 0.0f, cov, d);
    int status = symmetric_eigen(eig, cov, d, 1);
    memset(axes, 0, (size_t)2 * d * sizeof(float));
    for (int k = 0; k < 2 && k < d && status == 0; k++) {
        const float* v = cov + (size_t)(d - 1 - k) * d;
        // rank < k + 1: no k-th direction of variance (rounding leaves a tiny eigenvalue)
        if (!(eig[d - 1 - k] > 1e-6f * eig[d - 1])) break;
        // a principal axis has no sign of its own: make its largest coefficient positive
        int jmax = 0;
        for (int j = 1; j < d; j++) if (fabsf(v[j]) > fabsf(v[jmax])) jmax = j;
        float sign = v[jmax] < 0 ? -1.0f : 1.0f;
        for (int j = 0; j < d; j++) axes[(size_t)k * d + j] = sign * v[j];
    }
    free(xc); free(cov); free(eig);
    return status;
}

void pca_project(float* xy, const float* x, int n, int d, const float* mean, const float* axes) {
    for (int i = 0; i < n; i++)
        for (int k = 0; k < 2; k++) {
            double dot = 0.0;
            for (int j = 0; j < d; j++) dot += ((double)x[(size_t)i * d + j] - mean[j]) * axes[(size_t)k * d + j];
            xy[2 * i + k] = (float)dot;
        }
}

int pca_2d(const float* data, int n, int d, float* out_xy) {
    if (d < 1) return pca_axes(NULL, NULL, data, n, d); // reports the sizes
    float* mean = malloc(d * sizeof(float));
    float* axes = malloc((size_t)2 * d * sizeof(float));
    int status = mean && axes ? pca_axes(mean, axes, data, n, d) : 1;
    if (status == 0) pca_project(out_xy, data, n, d, mean, axes);
    free(mean);
    free(axes);
    return status;
}
