/* test_plot.c — `vitq plot`'s figures: the .tsv and .gp of a curve and of a histogram against golden text,
 * the whole run (files in place, PNG signature when gnuplot is installed, no temp files), gnuplot missing
 * or failing, and option errors. Also `vitq results` through the built binary (VITQ_BIN). */
#include "test.h"

#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* A run with axes bits x softmax x seed; top1 = 10*bits + (log2 ? 1 : 0) + seed, one failed cell. */
static vitq_summary *make_run(const char *dir, int with_hist) {
    const char *axes[] = {"bits", "softmax", "seed"};
    vitq_err e = {{0}};
    vitq_results *r = NULL;
    if (vitq_results_open(dir, NULL, NULL, axes, 3, &r, &e)) {
        CHECK_MSG(0, "%s", e.msg);
        return NULL;
    }
    const char *bits[] = {"8", "4"}, *sm[] = {"uniform", "log2"}, *seeds[] = {"0", "2"};
    int64_t fc[4] = {0, 5, 100, 7}, qc[4] = {1, 0, 110, 1};
    vitq_hist h[2] = {
        {.tap = "blocks.0.attn.probs", .bins = 4, .lo = 0, .hi = 1, .float_counts = fc, .quant_counts = qc},
        {.tap = "blocks.0.mlp.fc2.input", .bins = 4, .lo = -1, .hi = 3, .float_counts = fc, .quant_counts = qc},
    };
    for (int b = 0; b < 2; b++)
        for (int s = 0; s < 2; s++)
            for (int k = 0; k < 2; k++) {
                char id[64];
                snprintf(id, sizeof id, "bits=%s,softmax=%s,seed=%s", bits[b], sm[s], seeds[k]);
                const char *av[] = {bits[b], sm[s], seeds[k]};
                int failed = b == 1 && s == 0 && k == 1;
                vitq_cell_result c = {.id = id, .axis_values = av, .config_hash = "h", .config_ini = "",
                                      .status = failed ? "failed" : "done", .error = failed ? "boom" : NULL,
                                      .top1 = 10.0 * atoi(bits[b]) + s + atoi(seeds[k]), .top5 = 99, .loss = 0.5,
                                      .n_eval = 10, .seconds_total = 2, .hists = h, .n_hists = with_hist ? 2 : 0};
                CHECK_MSG(vitq_results_write_cell(r, &c, &e) == 0, "%s", e.msg);
            }
    CHECK_MSG(vitq_results_write_index(r, NULL, 0, &e) == 0, "%s", e.msg);
    vitq_results_close(r);
    vitq_summary *s = NULL;
    CHECK_MSG(vitq_summary_read(dir, &s, &e) == 0, "%s", e.msg);
    return s;
}

static void check_text(const char *what, const char *got, const char *want) {
    if (got && !strcmp(got, want)) return;
    CHECK_MSG(0, "%s differs.\n--- got:\n%s\n--- expected:\n%s", what, got ? got : "(null)", want);
}

TEST(plot_curve_tsv_and_gp_golden) {
    const char *dir = test_tmpdir();
    vitq_summary *s = make_run(dir, 0);
    if (!s) return;
    vitq_plot_opts o = {.series = "softmax", .command = "vitq plot RUN --series softmax"};
    char fig[256], *tsv = NULL, *gp = NULL;
    vitq_err e = {{0}};
    CHECK_MSG(vitq_plot_curve_text(s, &o, "results/demo", fig, sizeof fig, &tsv, &gp, &e) == 0, "%s", e.msg);
    CHECK(!strcmp(fig, "top1_vs_bits"));
    /* bits sorted numerically; series in order of first appearance (cells sorted by id: log2 first);
     * seeds 0 and 2 averaged; (4, uniform) has only seed 0 (seed 2 failed). */
    check_text("tsv", tsv,
               "bits\tsoftmax=log2\tsoftmax=uniform\n"
               "4\t42\t40\n"
               "8\t82\t81\n");
    char want[4096];
    snprintf(want, sizeof want,
             "# top1_vs_bits.gp — top-1 accuracy versus bits, one line per softmax\n"
             "# run: results/demo (git %s), drawn by vitq " VITQ_VERSION "\n"
             "# cells: 7 done of 8\n"
             "# averaged over cells that share bits and the series: seed\n"
             "# command: vitq plot RUN --series softmax\n"
             "# redraw: gnuplot -c top1_vs_bits.gp top1_vs_bits.tsv top1_vs_bits.png\n"
             "set terminal pngcairo noenhanced size 1200,800 font \"DejaVu Sans,11\"\n"
             "set output ARG2\n"
             "set datafile separator \"\\t\"\n"
             "set datafile missing \"NaN\"\n"
             "set key autotitle columnhead outside right top\n"
             "set grid\n"
             "set title \"top-1 accuracy versus bits — results/demo\"\n"
             "set xlabel \"bit width (bits)\"\n"
             "set ylabel \"top-1 accuracy (%%)\"\n"
             "set xtics (4, 8)\n"
             "set offsets graph 0.03, graph 0.03, graph 0.05, graph 0.05\n"
             "plot for [c=2:*] ARG1 using 1:c with linespoints linewidth 2 pointtype 7 pointsize 1.3\n",
             s->git_rev);
    check_text("gp", gp, want);
    free(tsv), free(gp);

    /* Default series: every other axis; loss; a missing point is NaN. */
    o = (vitq_plot_opts){.metric = "loss", .x_axis = "bits"};
    CHECK_MSG(vitq_plot_curve_text(s, &o, "r", fig, sizeof fig, &tsv, &gp, &e) == 0, "%s", e.msg);
    CHECK(!strcmp(fig, "loss_vs_bits"));
    check_text("tsv", tsv,
               "bits\tsoftmax=log2, seed=0\tsoftmax=log2, seed=2\tsoftmax=uniform, seed=0\tsoftmax=uniform, seed=2\n"
               "4\t0.5\t0.5\t0.5\tNaN\n"
               "8\t0.5\t0.5\t0.5\t0.5\n");
    CHECK_STR_CONTAINS(gp, "set ylabel \"loss (nats, mean cross-entropy)\"\n");
    CHECK(gp);
    if (gp) {
        CHECK(!strstr(gp, "averaged"));
    }
    free(tsv), free(gp);
    vitq_summary_free(s);
}

TEST(plot_hist_tsv_and_gp_golden) {
    int64_t fc[4] = {0, 5, 100, 7}, qc[4] = {1, 0, 110, 1};
    vitq_hist h = {.tap = "blocks.0.attn.probs", .bins = 4, .lo = -1, .hi = 1, .float_counts = fc, .quant_counts = qc};
    vitq_plot_opts o = {.command = "vitq plot r --hist 'blocks.*'"};
    char fig[256], *tsv = NULL, *gp = NULL;
    vitq_err e = {{0}};
    CHECK_MSG(vitq_plot_hist_text(&h, "bits=4,sm=log2", "r", &o, "abc1234", fig, sizeof fig, &tsv, &gp, &e) == 0,
              "%s", e.msg);
    CHECK(!strcmp(fig, "hist_bits=4_sm=log2__blocks.0.attn.probs"));
    check_text("tsv", tsv,
               "value\tfloat\tquantized\n"
               "-0.75\t0\t1\n"
               "-0.25\t5\t0\n"
               "0.25\t100\t110\n"
               "0.75\t7\t1\n");
    check_text("gp", gp,
               "# hist_bits=4_sm=log2__blocks.0.attn.probs.gp — activation histogram of tap blocks.0.attn.probs, "
               "float versus quantized\n"
               "# run: r (git abc1234), drawn by vitq " VITQ_VERSION "\n"
               "# cell: bits=4,sm=log2\n"
               "# bins: 4 over [-1, 1] (values outside were clamped into the end bins); 112 float and 112 quantized "
               "values\n"
               "# command: vitq plot r --hist 'blocks.*'\n"
               "# redraw: gnuplot -c hist_bits=4_sm=log2__blocks.0.attn.probs.gp "
               "hist_bits=4_sm=log2__blocks.0.attn.probs.tsv hist_bits=4_sm=log2__blocks.0.attn.probs.png\n"
               "set terminal pngcairo noenhanced size 1200,800 font \"DejaVu Sans,11\"\n"
               "set output ARG2\n"
               "set datafile separator \"\\t\"\n"
               "set key autotitle columnhead top right\n"
               "set grid\n"
               "set logscale y\n"
               "set title \"blocks.0.attn.probs — bits=4,sm=log2\"\n"
               "set xlabel \"activation value\"\n"
               "set ylabel \"count (log scale)\"\n"
               "set xrange [-1:1]\n"
               "set boxwidth 0.5 absolute\n"
               "set style fill transparent solid 0.35 border\n"
               "# empty bins have no bar (log scale)\n"
               "plot for [c=2:*] ARG1 using 1:(column(c) > 0 ? column(c) : NaN) with boxes title columnhead(c)\n");
    free(tsv), free(gp);
}

TEST(plot_loss_families_and_text) {
    char f[160];
    const char *cases[][2] = {{"blocks.3/loss", "loss"}, {"patch_embed/loss", "loss"}, {"head/round", "round"},
                              {"blocks.11.mlp/loss", "mlp_loss"}, {"blocks.0.mlp/clamp", "mlp_clamp"},
                              {"layers.1.blocks.0/loss", "loss"}, {"plain", "plain"}};
    for (int i = 0; i < 7; i++) {
        vitq_plot_curve_family(cases[i][0], f, sizeof f);
        CHECK_STREQ(f, cases[i][1]);
    }
    int64_t st[2] = {10, 20};
    double v0[2] = {0.5, 0.25}, v1[2] = {2, 1}, v2[2] = {0.125, 0.0625};
    vitq_curve c[3] = {{.name = "blocks.0.mlp/loss", .step = st, .value = v0, .n = 2},
                       {.name = "blocks.0/loss", .step = st, .value = v1, .n = 2},
                       {.name = "blocks.1.mlp/loss", .step = st, .value = v2, .n = 2}};
    vitq_plot_opts o = {.command = "vitq plot r"};
    char fig[256], *tsv = NULL, *gp = NULL;
    vitq_err e = {{0}};
    CHECK_MSG(vitq_plot_loss_text(c, 3, "mlp_loss", "bits=4,mr=on", "r", &o, "abc1234", fig, sizeof fig, &tsv, &gp,
                                  &e) == 0, "%s", e.msg);
    CHECK_STREQ(fig, "curves_bits=4_mr=on__mlp_loss");
    check_text("tsv", tsv,
               "step\tblocks.0.mlp/loss\n10\t0.5\n20\t0.25\n\n\n"
               "step\tblocks.1.mlp/loss\n10\t0.125\n20\t0.0625\n");
    CHECK_STR_CONTAINS(gp, "set logscale y\n");
    CHECK_STR_CONTAINS(gp, "set title \"mlp_loss — bits=4,mr=on\"\n");
    CHECK_STR_CONTAINS(gp, "plot for [i=0:1] ARG1 index i using 1:2 with lines lw 2 title columnhead(2)\n");
    CHECK_STR_CONTAINS(gp, "set xlabel \"iteration\"\n");
    free(tsv), free(gp);
    /* a per-block curve (lowrank_nas's ranks): the block on x */
    vitq_curve r[1] = {{.name = "qkv/rank_by_depth", .step = st, .value = v1, .n = 2}};
    CHECK(vitq_plot_loss_text(r, 1, "rank_by_depth", "x", "r", &o, "", fig, sizeof fig, &tsv, &gp, &e) == 0);
    CHECK_STR_CONTAINS(gp, "set xlabel \"block (depth)\"\n");
    free(tsv), free(gp);
    v1[0] = -1; /* a non-positive value: linear y */
    CHECK(vitq_plot_loss_text(c, 3, "loss", "x", "r", &o, "", fig, sizeof fig, &tsv, &gp, &e) == 0);
    CHECK(gp && !strstr(gp, "logscale"));
    CHECK_STR_CONTAINS(gp, "plot for [i=0:0] ARG1");
    free(tsv), free(gp);
    CHECK_EQ(vitq_plot_loss_text(c, 3, "round", "x", "r", &o, "", fig, sizeof fig, &tsv, &gp, &e), VITQ_EINVAL);
    CHECK_STR_CONTAINS(e.msg, "no curve of family 'round'");
}

static int has_png_signature(const char *path) {
    unsigned char b[8] = {0};
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    size_t n = fread(b, 1, 8, f);
    fclose(f);
    static const unsigned char sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    return n == 8 && !memcmp(b, sig, 8);
}

static int no_tmp_files(const char *dir) {
    DIR *d = opendir(dir);
    int ok = d != NULL;
    for (struct dirent *de; d && (de = readdir(d));)
        if (strstr(de->d_name, ".tmp.")) ok = 0;
    if (d) closedir(d);
    return ok;
}

static int exists(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && st.st_size > 0;
}

TEST(plot_run_writes_three_files_per_figure) {
    const char *dir = test_tmpdir();
    vitq_summary *s = make_run(dir, 1);
    vitq_summary_free(s);
    vitq_plot_opts o = {.hist = "blocks.*.attn.probs", .cell = "bits=4,softmax=log2,*", .command = "vitq plot x"};
    vitq_plot_report rep;
    vitq_err e = {{0}};
    CHECK_MSG(vitq_plot_run(dir, &o, &rep, &e) == 0, "%s", e.msg);
    CHECK(rep.n_figures == 3); /* the curve + 2 cells x 1 matching tap */
    const char *names[] = {"top1_vs_bits", "hist_bits=4_softmax=log2_seed=0__blocks.0.attn.probs",
                           "hist_bits=4_softmax=log2_seed=2__blocks.0.attn.probs"};
    char p[1024];
    for (int i = 0; i < 3; i++) {
        if (i < rep.n_figures) {
            snprintf(p, sizeof p, "%s/plots/%s", dir, names[i]);
            CHECK_MSG(!strcmp(rep.figures[i], p), "figure %d: %s", i, rep.figures[i]);
        }
        snprintf(p, sizeof p, "%s/plots/%s.tsv", dir, names[i]);
        CHECK_MSG(exists(p), "%s missing", p);
        snprintf(p, sizeof p, "%s/plots/%s.gp", dir, names[i]);
        CHECK_MSG(exists(p), "%s missing", p);
        snprintf(p, sizeof p, "%s/plots/%s.png", dir, names[i]);
        if (!rep.gnuplot_missing) CHECK_MSG(has_png_signature(p), "%s is not a PNG", p);
    }
    vitq_plot_report_free(&rep);
    snprintf(p, sizeof p, "%s/plots", dir);
    CHECK(no_tmp_files(p));

    /* gnuplot missing: .tsv and .gp only, and the report says so. By default every recorded histogram of
     * every done cell is drawn too: 1 curve + 7 cells x 2 taps. */
    char out[512];
    snprintf(out, sizeof out, "%s/nognuplot", dir);
    o = (vitq_plot_opts){.out_dir = out, .gnuplot = "/nonexistent/gnuplot"};
    CHECK_MSG(vitq_plot_run(dir, &o, &rep, &e) == 0, "%s", e.msg);
    CHECK_EQ(rep.gnuplot_missing, 1);
    CHECK_EQ(rep.n_figures, 15);
    vitq_plot_report_free(&rep);
    snprintf(p, sizeof p, "%s/top1_vs_bits.gp", out);
    CHECK(exists(p));
    snprintf(p, sizeof p, "%s/top1_vs_bits.png", out);
    CHECK(!exists(p));

    /* gnuplot failing: an error naming the script, no PNG, no temp file. */
    snprintf(out, sizeof out, "%s/failing", dir);
    o = (vitq_plot_opts){.out_dir = out, .gnuplot = "/bin/false", .no_hists = 1};
    CHECK(vitq_plot_run(dir, &o, &rep, &e) == VITQ_EIO);
    CHECK_STR_CONTAINS(e.msg, "top1_vs_bits.gp: gnuplot failed (exit status 1)");
    snprintf(p, sizeof p, "%s/top1_vs_bits.png", out);
    CHECK(!exists(p));
    CHECK(no_tmp_files(out));
}

TEST(plot_option_errors) {
    const char *dir = test_tmpdir();
    vitq_summary *s = make_run(dir, 1);
    vitq_summary_free(s);
    vitq_plot_report rep;
    vitq_err e = {{0}};
    vitq_plot_opts o = {.x_axis = "nope", .gnuplot = ""};
    CHECK(vitq_plot_run(dir, &o, &rep, &e) == VITQ_EINVAL);
    CHECK_STR_CONTAINS(e.msg, "no axis 'nope' (axes: bits, softmax, seed)");
    o = (vitq_plot_opts){.x_axis = "softmax", .gnuplot = ""};
    CHECK(vitq_plot_run(dir, &o, &rep, &e) == VITQ_EINVAL);
    CHECK_STR_CONTAINS(e.msg, "axis 'softmax' is not numeric");
    o = (vitq_plot_opts){.series = "bits", .gnuplot = ""};
    CHECK(vitq_plot_run(dir, &o, &rep, &e) == VITQ_EINVAL);
    CHECK_STR_CONTAINS(e.msg, "x axis cannot also be a series");
    o = (vitq_plot_opts){.metric = "top3", .gnuplot = ""};
    CHECK(vitq_plot_run(dir, &o, &rep, &e) == VITQ_EINVAL);
    CHECK_STR_CONTAINS(e.msg, "--metric");
    o = (vitq_plot_opts){.hist = "blocks.*.nothing", .gnuplot = ""};
    CHECK(vitq_plot_run(dir, &o, &rep, &e) == VITQ_EINVAL);
    CHECK_STR_CONTAINS(e.msg, "no histogram matches --hist 'blocks.*.nothing' in 7 cell(s)");
    o = (vitq_plot_opts){.hist = "*", .cell = "zzz", .gnuplot = ""};
    CHECK(vitq_plot_run(dir, &o, &rep, &e) == VITQ_EINVAL);
    CHECK_STR_CONTAINS(e.msg, "no done cell matches --cell 'zzz'");
    /* refused before anything is written: not even the curve every run would have */
    char refused[1100];
    snprintf(refused, sizeof refused, "%s/refused", dir);
    o = (vitq_plot_opts){.cell = "zzz", .out_dir = refused, .gnuplot = ""};
    CHECK(vitq_plot_run(dir, &o, &rep, &e) == VITQ_EINVAL);
    CHECK_STR_CONTAINS(e.msg, "no done cell matches --cell 'zzz'");
    CHECK(!exists(refused));
    o = (vitq_plot_opts){.hist = "blocks.*.nothing", .out_dir = refused, .gnuplot = ""};
    CHECK(vitq_plot_run(dir, &o, &rep, &e) == VITQ_EINVAL);
    CHECK(!exists(refused));

    /* No numeric axis: an error when nothing else can be drawn; with a histogram, the curve is skipped. */
    char d2[1024];
    snprintf(d2, sizeof d2, "%s/words", dir);
    const char *axes[] = {"softmax"}, *av[] = {"log2"};
    vitq_results *r = NULL;
    CHECK_MSG(vitq_results_open(d2, NULL, NULL, axes, 1, &r, &e) == 0, "%s", e.msg);
    if (!r) return;
    int64_t fc[2] = {1, 2};
    vitq_hist h = {.tap = "t", .bins = 2, .lo = 0, .hi = 1, .float_counts = fc, .quant_counts = fc};
    vitq_cell_result c = {.id = "softmax=log2", .axis_values = av, .status = "done", .hists = &h, .n_hists = 0};
    CHECK_MSG(vitq_results_write_cell(r, &c, &e) == 0, "%s", e.msg);
    CHECK_MSG(vitq_results_write_index(r, NULL, 0, &e) == 0, "%s", e.msg);
    o = (vitq_plot_opts){.gnuplot = ""};
    CHECK(vitq_plot_run(d2, &o, &rep, &e) == VITQ_EINVAL);
    CHECK_STR_CONTAINS(e.msg, "no axis has numeric values in every done cell (axes: softmax)");
    c.n_hists = 1;
    CHECK_MSG(vitq_results_write_cell(r, &c, &e) == 0, "%s", e.msg);
    CHECK_MSG(vitq_results_write_index(r, NULL, 0, &e) == 0, "%s", e.msg);
    vitq_results_close(r);
    CHECK_MSG(vitq_plot_run(d2, &o, &rep, &e) == 0, "%s", e.msg);
    CHECK_EQ(rep.curves_skipped, 1);
    CHECK_EQ(rep.n_figures, 1);
    vitq_plot_report_free(&rep);
    o = (vitq_plot_opts){.gnuplot = "", .x_axis = "softmax"}; /* asked for explicitly: an error */
    CHECK(vitq_plot_run(d2, &o, &rep, &e) == VITQ_EINVAL);
    CHECK_STR_CONTAINS(e.msg, "axis 'softmax' is not numeric");

    /* a run whose only cell failed: said as such, not as a missing numeric axis */
    char d3[1024];
    snprintf(d3, sizeof d3, "%s/none_done", dir);
    vitq_results *r3 = NULL;
    CHECK_MSG(vitq_results_open(d3, NULL, NULL, axes, 1, &r3, &e) == 0, "%s", e.msg);
    if (!r3) return;
    vitq_cell_result f = {.id = "softmax=log2", .axis_values = av, .status = "failed", .error = "boom"};
    CHECK_MSG(vitq_results_write_cell(r3, &f, &e) == 0, "%s", e.msg);
    CHECK_MSG(vitq_results_write_index(r3, NULL, 0, &e) == 0, "%s", e.msg);
    vitq_results_close(r3);
    snprintf(refused, sizeof refused, "%s/plots", d3);
    o = (vitq_plot_opts){.gnuplot = ""};
    CHECK(vitq_plot_run(d3, &o, &rep, &e) == VITQ_EINVAL);
    CHECK_STR_CONTAINS(e.msg, "has no done cell yet");
    CHECK(!exists(refused));
}

/* A float baseline cell (every axis "-") is a flat column; a cell without an x value is left out. */
TEST(plot_curve_baseline_column) {
    const char *dir = test_tmpdir();
    const char *axes[] = {"bits", "softmax"};
    vitq_err e = {{0}};
    vitq_results *r = NULL;
    CHECK_MSG(vitq_results_open(dir, NULL, NULL, axes, 2, &r, &e) == 0, "%s", e.msg);
    if (!r) return;
    const char *v[][2] = {{"-", "-"}, {"8", "log2"}, {"3", "log2"}, {"-", "uniform"}};
    const char *ids[] = {"fp32", "bits=8,softmax=log2", "bits=3,softmax=log2", "odd"};
    const double top1[] = {91.5, 90.25, 60, 1};
    const char *order[4];
    for (int i = 0; i < 4; i++) {
        vitq_cell_result c = {.id = ids[i], .axis_values = v[i], .status = "done", .top1 = top1[i]};
        CHECK_MSG(vitq_results_write_cell(r, &c, &e) == 0, "%s", e.msg);
        order[i] = ids[i];
    }
    CHECK_MSG(vitq_results_write_index(r, order, 4, &e) == 0, "%s", e.msg);
    vitq_results_close(r);
    vitq_summary *s = NULL;
    CHECK_MSG(vitq_summary_read(dir, &s, &e) == 0, "%s", e.msg);
    if (!s) return;
    vitq_plot_opts o = {0};
    char fig[256], *tsv = NULL, *gp = NULL;
    CHECK_MSG(vitq_plot_curve_text(s, &o, "r", fig, sizeof fig, &tsv, &gp, &e) == 0, "%s", e.msg);
    check_text("tsv", tsv,
               "bits\tsoftmax=log2\tfp32\n"
               "3\t60\t91.5\n"
               "8\t90.25\t91.5\n");
    CHECK_STR_CONTAINS(gp, "# cells: 4 done of 4; 1 baseline drawn flat; 1 without a value of bits left out\n");
    free(tsv), free(gp);
    vitq_summary_free(s);
}

/* `vitq results` through the binary (skipped when VITQ_BIN is not set, e.g. a partial build). */
TEST(results_cli_markdown_and_csv) {
    const char *bin = getenv("VITQ_BIN");
    if (!bin || access(bin, X_OK) != 0) test_skip("VITQ_BIN is not an executable vitq");
    const char *dir = test_tmpdir();
    vitq_summary *s = make_run(dir, 0);
    vitq_summary_free(s);
    char cmd[2048], out[1024];
    snprintf(out, sizeof out, "%s/table.md", dir);
    snprintf(cmd, sizeof cmd, "'%s' results '%s' > '%s' 2>/dev/null", bin, dir, out);
    CHECK(system(cmd) == 0);
    vitq_err e = {{0}};
    char *md = vitq_read_file(out, NULL, &e);
    check_text("markdown", md,
               "| bits | softmax | seed | status | top-1 % | top-5 % | loss   | images | seconds |\n"
               "|------|---------|------|--------|--------:|--------:|-------:|-------:|--------:|\n"
               "| 4    | log2    | 0    | done   |   41.00 |   99.00 | 0.5000 |     10 |     2.0 |\n"
               "| 4    | log2    | 2    | done   |   43.00 |   99.00 | 0.5000 |     10 |     2.0 |\n"
               "| 4    | uniform | 0    | done   |   40.00 |   99.00 | 0.5000 |     10 |     2.0 |\n"
               "| 4    | uniform | 2    | failed |       - |       - |      - |      - |       - |\n"
               "| 8    | log2    | 0    | done   |   81.00 |   99.00 | 0.5000 |     10 |     2.0 |\n"
               "| 8    | log2    | 2    | done   |   83.00 |   99.00 | 0.5000 |     10 |     2.0 |\n"
               "| 8    | uniform | 0    | done   |   80.00 |   99.00 | 0.5000 |     10 |     2.0 |\n"
               "| 8    | uniform | 2    | done   |   82.00 |   99.00 | 0.5000 |     10 |     2.0 |\n");
    free(md);
    snprintf(cmd, sizeof cmd, "'%s' results '%s/run.h5' --csv > '%s' 2>/dev/null", bin, dir, out);
    CHECK(system(cmd) == 0);
    char *csv = vitq_read_file(out, NULL, &e);
    CHECK_STR_CONTAINS(csv, "bits,softmax,seed,cell_id,status,top1,top5,loss,n_eval,seconds,error\n"
                            "4,log2,0,\"bits=4,softmax=log2,seed=0\",done,41,99,0.5,10,2.000,\n");
    CHECK_STR_CONTAINS(csv, "4,uniform,2,\"bits=4,softmax=uniform,seed=2\",failed,,,,,,boom\n");
    free(csv);
    snprintf(cmd, sizeof cmd, "'%s' results '%s/nothing-here' > /dev/null 2>&1", bin, dir);
    int st = system(cmd);
    CHECK(st != -1);
    CHECK(WIFEXITED(st));
    CHECK_EQ(WEXITSTATUS(st), 1);
}
