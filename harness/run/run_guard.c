/* run_guard.c — a run folder holds one experiment: before `vitq run` writes into (or --dry-run lists for) a
 * folder whose index run.h5 already exists, the index's experiment must be this one: the same [run] name
 * and the same grid axes, in order. Otherwise a cell of the other experiment with the same id would be
 * replaced and the index would list both experiments' cells under this INI's text and axes (a table with
 * blank columns, plots over mixed cells). An edited INI of the same experiment (values added to an axis,
 * a setting changed) still runs: cells whose configuration hash changed are recomputed, as before.
 * What cannot be told is let through (the run then rebuilds the index): an index that does not open, lacks
 * the attributes, or whose INI text no longer parses (a vitq upgrade) is compared on what it has.
 * Does not: refuse other INI texts (vitq merge does, since it combines runs that must be one), or read cells. */
#include <hdf5.h> /* before run.h: its HDF5 helpers are declared for files that include <hdf5.h> */

#include "run/run.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* "a, b, c" into buf. */
static const char *join(const char *const *v, int n, char *buf, size_t cap) {
    size_t k = 0;
    buf[0] = 0;
    for (int i = 0; i < n && k < cap; i++) k += (size_t)snprintf(buf + k, cap - k, "%s%s", i ? ", " : "", v[i]);
    return n ? buf : "no axes";
}

static int same_axes(const char *const *a, int na, const char *const *b, int nb) {
    if (na != nb) return 0;
    for (int i = 0; i < na; i++)
        if (strcmp(a[i], b[i])) return 0;
    return 1;
}

/* What the index says of its experiment: its [run] name (parsed from ini_text, the default from ini_path, as
 * at its run; "" when absent or no longer parsing) and its axes (the axis_names attribute; NULL when
 * absent). Returns 0 when the INI text is this run's own (nothing to compare), else 1. */
static int index_identity(const char *index, const char *own_text, char *name, size_t cap, char ***axes,
                          int *n_axes) {
    name[0] = 0, *axes = NULL, *n_axes = 0;
    vitq_h5_quiet();
    hid_t f = H5Fopen(index, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) return 0; /* unreadable: the run rebuilds it, and there is nothing to compare against */
    char *text = vitq_h5_read_str(f, ".", "ini_text"), *path = vitq_h5_read_str(f, ".", "ini_path");
    int differs = !text || strcmp(text, own_text);
    if (differs) *axes = vitq_h5_read_strs(f, "axis_names", n_axes);
    H5Fclose(f);
    H5Eclear2(H5E_DEFAULT);
    vitq_experiment *x = NULL;
    vitq_err pe;
    if (differs && text && path && !vitq_experiment_parse(text, path, &x, &pe) && x->n_cells)
        snprintf(name, cap, "%s", x->cells[0].cfg.name);
    vitq_experiment_free(x);
    free(text);
    free(path);
    return differs;
}

int vitq_run_check_output(const vitq_run *r, vitq_err *e) {
    const char *dir = vitq_run_output(r);
    char index[1100], old_name[128], a[512], b[512];
    snprintf(index, sizeof index, "%s/run.h5", dir);
    struct stat st;
    if (stat(index, &st) != 0) return VITQ_OK; /* a new folder, or one no run has indexed yet */
    const vitq_experiment *x = r->x;
    char **old_axes = NULL;
    int n_old = 0;
    if (!index_identity(index, x->text ? x->text : "", old_name, sizeof old_name, &old_axes, &n_old)) return VITQ_OK;
    const char *name = x->n_cells ? x->cells[0].cfg.name : "";
    int rc = VITQ_OK;
    if (old_name[0] && strcmp(name, old_name))
        rc = vitq_fail(e, VITQ_EINVAL, "%s: holds the results of experiment '%s', not '%s' (%s): use another "
                       "--output (or [run] output), or remove the folder", dir, old_name, name, x->path);
    else if (old_axes && !same_axes(x->axis_names, x->n_axes, (const char *const *)old_axes, n_old))
        rc = vitq_fail(e, VITQ_EINVAL, "%s: holds a grid of experiment '%s' over (%s), and %s's grid is over (%s): one "
                       "folder holds one grid; use another --output (or [run] output)", dir, name,
                       join((const char *const *)old_axes, n_old, a, sizeof a), x->path,
                       join(x->axis_names, x->n_axes, b, sizeof b));
    vitq_strs_free(old_axes, n_old);
    return rc;
}
