// plot.h — PNG figures for mosr: line charts (loss curves, per-layer probe scores), class
// scatter plots (PCA of representations), labelled points (safety vs over-refusal) and grouped
// bars with error bars (the ablation table). Plus PCA, to project representations for the
// scatter, and the symmetric eigen-decomposition under it (LAPACK).
//
// Every figure is 800x560 RGB on white, with ticks at 1/2/5 x 10^k, axis labels, a title and a
// legend; colours come from the Okabe-Ito palette (safe for colour-blind readers), and classes /
// models also differ in marker shape. NaN and Inf values are skipped, never drawn.
// Every plot_* function renders in memory, writes the PNG atomically (util.h AtomicFile) and
// returns 0 on success, or non-zero after one error_msg line naming the file.
#ifndef MOSR_PLOT_H
#define MOSR_PLOT_H

#define PLOT_WIDTH 800
#define PLOT_HEIGHT 560
#define PLOT_MAX_SERIES 8 // colours in the palette; more series than this is an error

// what every figure has. Zero-initialise and fill in what you need: an axis range is used only
// if min < max, otherwise it is fitted to the data.
typedef struct {
    const char* title;
    const char* x_label;
    const char* y_label;
    int log_y;          // 1: logarithmic y axis (values <= 0 are skipped)
    float x_min, x_max; // fixed x range, or both 0 for automatic
    float y_min, y_max; // fixed y range, or both 0 for automatic
} PlotOptions;

// one named curve: point i is (x[i], y[i])
typedef struct {
    const char* name; // legend entry
    const float* x;   // (n,)
    const float* y;   // (n,)
    int n;
} Series;

// one named point with an optional error cross (e.g. a rate and its confidence interval, or a
// mean over seeds +- a spread)
typedef struct {
    const char* label;
    float x, y;
    float x_lo, x_hi, y_lo, y_hi; // the error bars' ends; a bar is drawn where lo < hi
} LabelledPoint;

// bars in groups: group g (an x-axis label, e.g. an ablation setting) holds one bar per metric
typedef struct {
    const char* const* group_names; // (n_groups,) x-axis labels
    const char* const* bar_names;   // (n_bars,) legend entries, one colour each
    const float* mean;              // (n_groups, n_bars) bar heights
    const float* spread;            // (n_groups, n_bars) error-bar half-widths, or NULL
    int n_groups, n_bars;
} BarChart;

// line chart of several series; lines break at non-finite points, and short series
// (<= 40 points) also get a marker at every point
int plot_lines(const char* path, const PlotOptions* opt, const Series* series, int n_series);

// scatter of n points in 2-D; point i belongs to class class_of[i] in [0, n_classes)
int plot_scatter(const char* path, const PlotOptions* opt,
                 const float* xy,      // (n, 2)
                 const int* class_of,  // (n,)
                 int n, const char* const* class_names, int n_classes);

// a few labelled points, each its own colour and marker, with optional error crosses
int plot_points(const char* path, const PlotOptions* opt, const LabelledPoint* points, int n);

// grouped bar chart with optional error bars; the y axis always includes 0
int plot_bars(const char* path, const PlotOptions* opt, const BarChart* bars);

// The eigen-decomposition of the symmetric matrix a (n, n), by LAPACK's ssyev: eigenvalues (n)
// out in ascending order; with vectors, a is overwritten by the eigenvectors, row k the unit
// eigenvector of eigenvalues[k] (without, a is destroyed). 0 on success, -1 after error_msg.
int symmetric_eigen(float* eigenvalues, float* a, int n, int vectors);

// PCA of n rows of d-dim data x (n, d): mean (d) out, and axes (2, d) out, the top two principal
// axes (unit eigenvectors of the covariance, by symmetric_eigen), each signed so that its
// largest-magnitude coefficient is positive; an axis without variance (rank < 2) is all zeros.
// pca_project gives xy (n, 2) = (x - mean) axes^T, for x or for other rows (other models' states
// drawn in the same coordinates); pca_2d is the two for x itself, out_xy (n, 2).
// Each returns 0 on success, non-zero (after error_msg) on bad sizes, non-finite data or out of memory.
int pca_axes(float* mean, float* axes, const float* x, int n, int d);
void pca_project(float* xy, const float* x, int n, int d, const float* mean, const float* axes);
int pca_2d(const float* data, int n, int d, float* out_xy);

#endif
