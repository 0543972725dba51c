/* cellcmp.c — test helper: are two run folders the same results, cell by cell, bit for bit?
 *
 *   build/tests/tools/cellcmp RUN_A RUN_B
 *
 * Both folders must hold the same cell ids (RUN/cells/<id>.h5). For each cell every object (groups,
 * datasets) and every attribute is compared as raw bytes in its stored type — metrics, per-layer errors,
 * histograms, calibration indices, configuration hash — except attributes named seconds_* (timings).
 * Prints one line per difference ("CELL: /metrics top1 differs") and a last line "N cells, M differ";
 * exit 0 when identical, 1 when anything differs, 2 on usage or an unreadable file. Not part of vitq:
 * the end-to-end tests compare sharded, merged, MPI and Slurm runs against a single run with it. */
#include <hdf5.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct cmp_ctx {
    hid_t other;          /* the same cell in run B */
    const char *cell;
    int diffs;
} cmp_ctx;

/* Raw bytes of attribute `name` of object loc (in its file type); NULL if absent. */
static unsigned char *attr_bytes(hid_t loc, const char *name, size_t *n) {
    *n = 0;
    if (H5Aexists(loc, name) <= 0) return NULL;
    hid_t a = H5Aopen(loc, name, H5P_DEFAULT);
    hid_t t = H5Aget_type(a), sp = H5Aget_space(a);
    hssize_t k = H5Sget_simple_extent_npoints(sp);
    size_t sz = H5Tget_size(t) * (size_t)(k > 0 ? k : 1);
    unsigned char *b = calloc(sz ? sz : 1, 1);
    if (b && H5Tis_variable_str(t) <= 0 && H5Aread(a, t, b) >= 0) *n = sz;
    H5Sclose(sp), H5Tclose(t), H5Aclose(a);
    return b;
}

static herr_t cmp_attr(hid_t loc, const char *name, const H5A_info_t *info, void *op) {
    (void)info;
    cmp_ctx *c = op;
    if (!strncmp(name, "seconds_", 8)) return 0;
    size_t na, nb;
    unsigned char *a = attr_bytes(loc, name, &na), *b = attr_bytes(c->other, name, &nb);
    if (!b || na != nb || memcmp(a, b, na) != 0) {
        char where[512] = "";
        H5Iget_name(loc, where, sizeof where);
        printf("%s: %s attribute %s %s\n", c->cell, where, name, b ? "differs" : "missing in B");
        c->diffs++;
    }
    free(a), free(b);
    return 0;
}

/* Every attribute of object path in A against B (and the attribute counts). */
static void cmp_attrs(hid_t fa, hid_t fb, const char *path, cmp_ctx *c) {
    hid_t oa = H5Oopen(fa, path, H5P_DEFAULT), ob = H5Oopen(fb, path, H5P_DEFAULT);
    if (oa < 0 || ob < 0) {
        printf("%s: %s missing in %s\n", c->cell, path, oa < 0 ? "A" : "B");
        c->diffs++;
    } else {
        H5O_info_t ia, ib;
        H5Oget_info(oa, &ia);
        H5Oget_info(ob, &ib);
        if (ia.num_attrs != ib.num_attrs) {
            printf("%s: %s has %d vs %d attributes\n", c->cell, path, (int)ia.num_attrs, (int)ib.num_attrs);
            c->diffs++;
        }
        cmp_ctx sub = {ob, c->cell, 0};
        hsize_t idx = 0;
        H5Aiterate2(oa, H5_INDEX_NAME, H5_ITER_INC, &idx, cmp_attr, &sub);
        c->diffs += sub.diffs;
    }
    if (oa >= 0) H5Oclose(oa);
    if (ob >= 0) H5Oclose(ob);
}

static void cmp_dataset(hid_t fa, hid_t fb, const char *path, cmp_ctx *c) {
    hid_t da = H5Dopen2(fa, path, H5P_DEFAULT), db = H5Dopen2(fb, path, H5P_DEFAULT);
    if (da < 0 || db < 0) {
        printf("%s: dataset %s missing in %s\n", c->cell, path, da < 0 ? "A" : "B");
        c->diffs++;
    } else {
        hid_t ta = H5Dget_type(da), tb = H5Dget_type(db);
        hsize_t sa = H5Dget_storage_size(da), sb = H5Dget_storage_size(db);
        hid_t spa = H5Dget_space(da);
        size_t n = H5Tget_size(ta) * (size_t)H5Sget_simple_extent_npoints(spa);
        H5Sclose(spa);
        unsigned char *a = calloc(n + 1, 1), *b = calloc(n + 1, 1);
        int same = H5Tequal(ta, tb) > 0 && sa == sb && a && b && H5Dread(da, ta, H5S_ALL, H5S_ALL, H5P_DEFAULT, a) >= 0 &&
                   H5Dread(db, ta, H5S_ALL, H5S_ALL, H5P_DEFAULT, b) >= 0 && !memcmp(a, b, n);
        if (!same) {
            printf("%s: dataset %s differs\n", c->cell, path);
            c->diffs++;
        }
        free(a), free(b);
        H5Tclose(ta), H5Tclose(tb);
    }
    if (da >= 0) H5Dclose(da);
    if (db >= 0) H5Dclose(db);
}

typedef struct visit_ctx {
    hid_t fa, fb;
    cmp_ctx *c;
    int objects;
} visit_ctx;

static herr_t visit(hid_t root, const char *name, const H5O_info_t *info, void *op) {
    (void)root;
    visit_ctx *v = op;
    v->objects++;
    cmp_attrs(v->fa, v->fb, name, v->c);
    if (info->type == H5O_TYPE_DATASET) cmp_dataset(v->fa, v->fb, name, v->c);
    return 0;
}

static herr_t count(hid_t root, const char *name, const H5O_info_t *info, void *op) {
    (void)root, (void)name, (void)info;
    (*(int *)op)++;
    return 0;
}

/* Compares one cell file of A with B's; the number of differences (-1: unreadable). */
static int cmp_cell(const char *pa, const char *pb, const char *cell) {
    hid_t fa = H5Fopen(pa, H5F_ACC_RDONLY, H5P_DEFAULT), fb = H5Fopen(pb, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (fa < 0 || fb < 0) {
        printf("%s: cannot open %s\n", cell, fa < 0 ? pa : pb);
        if (fa >= 0) H5Fclose(fa);
        if (fb >= 0) H5Fclose(fb);
        return -1;
    }
    cmp_ctx c = {fb, cell, 0};
    visit_ctx v = {fa, fb, &c, 0};
    H5Ovisit(fa, H5_INDEX_NAME, H5_ITER_INC, visit, &v);
    int nb = 0;
    H5Ovisit(fb, H5_INDEX_NAME, H5_ITER_INC, count, &nb);
    if (nb != v.objects) {
        printf("%s: %d objects in A, %d in B\n", cell, v.objects, nb);
        c.diffs++;
    }
    H5Fclose(fa), H5Fclose(fb);
    return c.diffs;
}

static int cmp_names(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Sorted ids of RUN/cells/<id>.h5. */
static char **cells_of(const char *run, int *n) {
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/cells", run);
    DIR *d = opendir(dir);
    *n = 0;
    if (!d) return NULL;
    char **v = NULL;
    for (struct dirent *de; (de = readdir(d));) {
        size_t l = strlen(de->d_name);
        if (l <= 3 || strcmp(de->d_name + l - 3, ".h5") || de->d_name[0] == '.') continue;
        v = realloc(v, sizeof(char *) * (size_t)(*n + 1));
        v[(*n)++] = strndup(de->d_name, l - 3);
    }
    closedir(d);
    if (*n) qsort(v, (size_t)*n, sizeof(char *), cmp_names);
    return v;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: cellcmp RUN_A RUN_B\n");
        return 2;
    }
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    int na = 0, nb = 0, differ = 0, bad = 0;
    char **a = cells_of(argv[1], &na), **b = cells_of(argv[2], &nb);
    int i = 0, j = 0;
    while (i < na || j < nb) {
        int c = i >= na ? 1 : j >= nb ? -1 : strcmp(a[i], b[j]);
        if (c) {
            printf("%s: only in %s\n", c < 0 ? a[i] : b[j], c < 0 ? argv[1] : argv[2]);
            differ++;
            c < 0 ? i++ : j++;
            continue;
        }
        char pa[4200], pb[4200];
        snprintf(pa, sizeof pa, "%s/cells/%s.h5", argv[1], a[i]);
        snprintf(pb, sizeof pb, "%s/cells/%s.h5", argv[2], b[j]);
        int d = cmp_cell(pa, pb, a[i]);
        if (d < 0) bad++;
        if (d) differ++;
        i++, j++;
    }
    printf("%d cells in A, %d in B, %d differ\n", na, nb, differ);
    for (int k = 0; k < na; k++) free(a[k]);
    for (int k = 0; k < nb; k++) free(b[k]);
    free(a), free(b);
    return bad ? 2 : differ ? 1 : 0;
}
