/* run_guard.c — a run folder holds one experiment: before `vitq run` writes into (or --dry-run lists for) a
 * folder whose index run.h5 already exists, the index's experiment must be this one: the same [run] name
 * and the same grid axes, in order. Otherwise a cell of the other experiment with the same id would be
 * replaced and the index would list both experiments' cells under this INI's text and axes (a table with
 * blank columns, plots over mixed cells). An edited INI of the same experiment (values added to an axis,
 * a setting changed) still runs: cells whose configuration hash changed are recomputed, as before.
 * Does not: compare INI texts (vitq merge does, since it combines runs that must be one), or read cells. */
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

/* The index's experiment, parsed from its ini_text (the default name from its ini_path, as at its run);
 * NULL with *why set when the index cannot be read as a vitq run index. */
static vitq_experiment *index_experiment(const char *index, const char **why) {
    vitq_h5_quiet();
    hid_t f = H5Fopen(index, H5F_ACC_RDONLY, H5P_DEFAULT);
    char *text = f < 0 ? NULL : vitq_h5_read_str(f, ".", "ini_text");
    char *path = f < 0 ? NULL : vitq_h5_read_str(f, ".", "ini_path");
    if (f >= 0) H5Fclose(f);
    H5Eclear2(H5E_DEFAULT);
    vitq_experiment *x = NULL;
    vitq_err pe;
    *why = f < 0 ? "cannot be opened as HDF5" : !text || !path ? "has no ini_text / ini_path attribute" : NULL;
    if (!*why && vitq_experiment_parse(text, path, &x, &pe)) *why = "holds an INI text that no longer parses";
    free(text);
    free(path);
    return x;
}

int vitq_run_check_output(const vitq_run *r, vitq_err *e) {
    const char *dir = vitq_run_output(r);
    char index[1100];
    snprintf(index, sizeof index, "%s/run.h5", dir);
    struct stat st;
    if (stat(index, &st) != 0) return VITQ_OK; /* a new folder, or one no run has indexed yet */
    const char *why = NULL;
    vitq_experiment *old = index_experiment(index, &why);
    if (!old)
        return vitq_fail(e, VITQ_EINVAL, "%s: %s, so the folder's experiment is unknown: use another --output (or "
                         "[run] output), or remove the folder", index, why);
    const vitq_experiment *x = r->x;
    const char *name = x->n_cells ? x->cells[0].cfg.name : "", *old_name = old->n_cells ? old->cells[0].cfg.name : "";
    int rc = VITQ_OK;
    char a[512], b[512];
    if (strcmp(name, old_name))
        rc = vitq_fail(e, VITQ_EINVAL, "%s: holds the results of experiment '%s' (%s), not '%s' (%s): use another "
                       "--output (or [run] output), or remove the folder", dir, old_name, old->path, name, x->path);
    else if (!same_axes(x->axis_names, x->n_axes, old->axis_names, old->n_axes))
        rc = vitq_fail(e, VITQ_EINVAL, "%s: holds a grid of experiment '%s' over (%s), and %s's grid is over (%s): one "
                       "folder holds one grid; use another --output (or [run] output)", dir, name,
                       join(old->axis_names, old->n_axes, a, sizeof a), x->path,
                       join(x->axis_names, x->n_axes, b, sizeof b));
    vitq_experiment_free(old);
    return rc;
}
