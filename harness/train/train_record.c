/* train_record.c — the training record of `vitq train`: per-epoch train loss, test top-1, learning rate
 * and seconds as an HDF5 file (1-D float64 datasets of one length, published atomically by core),
 * and a PNG curve drawn by core's gnuplot runner from a .tsv + .gp written beside it (STYLE.md §6: the script takes
 * the data as ARG1 and the output as ARG2, so a user restyles it by editing the .gp and re-running
 * `gnuplot -c NAME.gp NAME.tsv NAME.png`).
 * Reads a record back (a later training stage prepends its predecessor's epochs). Does not plot anything
 * but the training curves. */
#include <hdf5.h>

#include "train/train.h"

#include <stdlib.h>
#include <string.h>

int vitq_train_record_write_h5(const char *h5_path, const vitq_train_epoch *ep, int n, const char *const *keys,
                               const char *const *vals, int n_attr, vitq_err *e) {
    double *cols = malloc(sizeof(double) * (size_t)(5 * (n > 0 ? n : 1)));
    if (!cols) return vitq_fail(e, VITQ_ENOMEM, "out of memory writing %s", h5_path);
    for (int i = 0; i < n; i++) {
        cols[0 * n + i] = ep[i].epoch;
        cols[1 * n + i] = ep[i].train_loss;
        cols[2 * n + i] = ep[i].test_top1;
        cols[3 * n + i] = ep[i].lr;
        cols[4 * n + i] = ep[i].seconds;
    }
    static const char *const names[5] = {"epoch", "train_loss", "test_top1", "lr", "seconds"};
    vitq_atomic a;
    int rc = vitq_atomic_begin(&a, h5_path, e);
    hid_t f = rc ? -1 : vitq_h5_create(&a, e);
    if (f < 0) {
        free(cols);
        return rc ? rc : VITQ_EIO;
    }
    int bad = 0;
    for (int c = 0; c < 5 && !bad; c++)
        bad = vitq_h5_dset(f, names[c], H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, (hsize_t)n, cols + (size_t)c * (size_t)n);
    bad = bad || vitq_h5_attr_str(f, "creator", "vitq " VITQ_VERSION);
    bad = bad || vitq_h5_attr_str(f, "units", "train_loss: mean label-smoothed cross-entropy; test_top1: percent "
                                              "(-1 = not evaluated); lr: at the epoch's last step; seconds: wall time");
    for (int i = 0; i < n_attr && !bad; i++) bad = vitq_h5_attr_str(f, keys[i], vals[i]);
    free(cols);
    rc = bad ? vitq_h5_fail(e, VITQ_EIO, h5_path, "/", "writing the training record failed") : VITQ_OK;
    return vitq_h5_publish(&a, f, rc, e);
}

int vitq_train_record_read_h5(const char *h5_path, vitq_train_epoch **out, int *n_out, vitq_err *e) {
    *out = NULL;
    *n_out = 0;
    vitq_h5_quiet();
    hid_t f = H5Fopen(h5_path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) return vitq_fail(e, VITQ_EIO, "%s: cannot open as HDF5 (a training record?)", h5_path);
    static const char *const names[5] = {"epoch", "train_loss", "test_top1", "lr", "seconds"};
    double *cols[5] = {0};
    hssize_t n = -1;
    int rc = VITQ_OK;
    for (int c = 0; c < 5 && !rc; c++) {
        hid_t d = H5Dopen2(f, names[c], H5P_DEFAULT);
        hid_t sp = d < 0 ? -1 : H5Dget_space(d);
        hssize_t k = sp < 0 ? -1 : H5Sget_simple_extent_npoints(sp);
        if (k < 0 || (n >= 0 && k != n)) {
            rc = vitq_fail(e, VITQ_EFORMAT, "%s: dataset '%s' missing or of another length", h5_path, names[c]);
        } else {
            n = k;
            cols[c] = malloc(sizeof(double) * (size_t)(n > 0 ? n : 1));
            if (!cols[c] || H5Dread(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, cols[c]) < 0)
                rc = vitq_fail(e, VITQ_EFORMAT, "%s: cannot read dataset '%s'", h5_path, names[c]);
        }
        if (sp >= 0) H5Sclose(sp);
        if (d >= 0) H5Dclose(d);
    }
    H5Fclose(f);
    vitq_train_epoch *ep = NULL;
    if (!rc && n > 0) {
        ep = calloc((size_t)n, sizeof *ep);
        if (!ep) rc = vitq_fail(e, VITQ_ENOMEM, "out of memory reading %s", h5_path);
        for (hssize_t i = 0; ep && i < n; i++)
            ep[i] = (vitq_train_epoch){.epoch = (int)cols[0][i], .train_loss = cols[1][i], .test_top1 = cols[2][i],
                                       .lr = cols[3][i], .seconds = cols[4][i]};
    }
    for (int c = 0; c < 5; c++) free(cols[c]);
    if (rc) return rc;
    *out = ep;
    *n_out = (int)(n > 0 ? n : 0);
    return VITQ_OK;
}

/* path's folder ("." when it has none) and its base name */
static void split_path(const char *path, char *dir, size_t nd, char *base, size_t nb) {
    const char *slash = strrchr(path, '/');
    if (!slash) snprintf(dir, nd, ".");
    else if (slash == path) snprintf(dir, nd, "/");
    else snprintf(dir, nd, "%.*s", (int)(slash - path), path);
    snprintf(base, nb, "%s", slash ? slash + 1 : path);
}

/* path with its extension replaced by ext (".tsv") */
static void with_ext(char *out, size_t n, const char *path, const char *ext) {
    const char *dot = strrchr(path, '.'), *slash = strrchr(path, '/');
    int stem = (dot && (!slash || dot > slash)) ? (int)(dot - path) : (int)strlen(path);
    snprintf(out, n, "%.*s%s", stem, path, ext);
}

int vitq_train_record_plot(const char *png_path, const vitq_train_epoch *ep, int n, const char *title,
                           vitq_err *e) {
    char tsv[600], gp[600];
    with_ext(tsv, sizeof tsv, png_path, ".tsv");
    with_ext(gp, sizeof gp, png_path, ".gp");
    // data
    size_t cap = 128 + (size_t)n * 96, len = 0;
    char *t = malloc(cap);
    if (!t) return vitq_fail(e, VITQ_ENOMEM, "out of memory writing %s", tsv);
    len += (size_t)snprintf(t + len, cap - len, "epoch\ttrain_loss\ttest_top1\tlr\tseconds\n");
    for (int i = 0; i < n; i++)
        len += (size_t)snprintf(t + len, cap - len, "%d\t%.6f\t%.2f\t%.6g\t%.1f\n", ep[i].epoch, ep[i].train_loss,
                                ep[i].test_top1, ep[i].lr, ep[i].seconds);
    int rc = vitq_write_file_atomic(tsv, t, len, e);
    free(t);
    if (rc) return rc;
    // script: loss on the left axis, accuracy on the right
    char script[2048];
    int sl = snprintf(script, sizeof script,
                      "# %s — training curve written by vitq %s (vitq train); data: ARG1, output: ARG2\n"
                      "# re-draw: gnuplot -c %s %s %s\n"
                      "set terminal pngcairo size 1000,600 font \"DejaVu Sans,11\"\n"
                      "set output ARG2\n"
                      "set datafile separator \"\\t\"\n"
                      "set title \"%s\" noenhanced\n"
                      "set xlabel \"epoch\"\n"
                      "set ylabel \"train loss (label-smoothed cross-entropy)\"\n"
                      "set y2label \"test top-1 (%%)\"\n"
                      "set ytics nomirror\n"
                      "set y2tics\n"
                      "set grid\n"
                      "set key center right\n"
                      "plot ARG1 using 1:2 with linespoints lw 2 title \"train loss\" axes x1y1, \\\n"
                      "     ARG1 using 1:($3 >= 0 ? $3 : NaN) with linespoints lw 2 title \"test top-1\" axes x1y2\n",
                      png_path, VITQ_VERSION, gp, tsv, png_path, title);
    rc = vitq_write_file_atomic(gp, script, (size_t)sl, e);
    if (rc) return rc;
    char dir[600], base_gp[600], base_tsv[600], base_png[600];
    split_path(png_path, dir, sizeof dir, base_png, sizeof base_png);
    split_path(gp, dir, sizeof dir, base_gp, sizeof base_gp);
    split_path(tsv, dir, sizeof dir, base_tsv, sizeof base_tsv);
    int missing = 0;
    rc = vitq_gnuplot_run(dir, base_gp, base_tsv, base_png, NULL, &missing, e);
    if (!rc && missing)
        rc = vitq_fail(e, VITQ_EIO, "%s: gnuplot not found (not installed?); the .tsv and .gp are written", png_path);
    return rc;
}
