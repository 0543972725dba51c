/* run_guard.c — a run folder holds one experiment: before `vitq run` writes into (or --dry-run lists for) a
 * folder whose index run.h5 already exists, the index's experiment must be this one. Otherwise a cell of the
 * other experiment with the same id would be replaced and the index would list both experiments' cells under
 * this INI's text and axes (a table with blank columns, plots over mixed cells).
 * An experiment is known by its [run] name as written (before ${...}: a name built from an axis names one
 * experiment, whatever the cell) or, without one, its INI file's base name; and by its grid axes, in order.
 * An edited INI of the same experiment (values added to an axis, a setting changed) still runs: cells whose
 * configuration hash changed are recomputed, as before. A copy of the INI under another file name, without a
 * [run] name, is another experiment.
 * What cannot be told is let through (the run then rebuilds the index): an index that does not open, or
 * lacks the attributes; its INI text is read as INI only (no grid expansion), so a vitq upgrade that changed
 * keys does not refuse an old folder.
 * Does not: refuse other INI texts of the same experiment (vitq merge does, since it combines runs that must
 * be one), tell apart two INI files of one base name in different folders (give them [run] names), or read
 * cells. */
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

/* The experiment's name as written: [run] name of the INI text, else its default for path; "" when the text
 * does not parse as INI. */
static void written_name(const char *text, const char *path, char *out, size_t cap) {
    vitq_section *s = NULL;
    int n = 0;
    vitq_err pe;
    out[0] = 0;
    if (vitq_ini_parse_string(text, path, &s, &n, &pe)) return;
    const vitq_kv *kv = vitq_section_get(vitq_section_find(s, n, "run"), "name");
    if (kv && kv->value && kv->value[0]) snprintf(out, cap, "%s", kv->value);
    else vitq_grid_default_name(path, out, cap);
    vitq_sections_free(s, n);
}

int vitq_run_check_output(const vitq_run *r, vitq_err *e) {
    const char *dir = vitq_run_output(r);
    char index[1100], name[256], old_name[256] = "", a[512], b[512];
    snprintf(index, sizeof index, "%s/run.h5", dir);
    struct stat st;
    if (stat(index, &st) != 0) return VITQ_OK; /* a new folder, or one no run has indexed yet */
    vitq_h5_quiet();
    hid_t f = H5Fopen(index, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) return VITQ_OK;
    char *text = vitq_h5_read_str(f, ".", "ini_text"), *path = vitq_h5_read_str(f, ".", "ini_path");
    int n_old = 0;
    char **old_axes = vitq_h5_read_strs(f, "axis_names", &n_old);
    H5Fclose(f);
    H5Eclear2(H5E_DEFAULT);
    if (text && path) written_name(text, path, old_name, sizeof old_name);
    const vitq_experiment *x = r->x;
    written_name(x->text ? x->text : "", x->path ? x->path : "", name, sizeof name);
    int rc = VITQ_OK;
    if (old_name[0] && name[0] && strcmp(name, old_name))
        rc = vitq_fail(e, VITQ_EINVAL, "%s: holds the results of experiment '%s', not '%s' (%s): use another "
                       "--output (or [run] output), or remove the folder", dir, old_name, name, x->path);
    else if (old_axes && !same_axes(x->axis_names, x->n_axes, (const char *const *)old_axes, n_old))
        rc = vitq_fail(e, VITQ_EINVAL, "%s: holds a grid of experiment '%s' over (%s), and %s's grid is over (%s): one "
                       "folder holds one grid; use another --output (or [run] output)", dir, name,
                       join((const char *const *)old_axes, n_old, a, sizeof a), x->path,
                       join(x->axis_names, x->n_axes, b, sizeof b));
    vitq_strs_free(old_axes, n_old);
    free(text);
    free(path);
    return rc;
}
