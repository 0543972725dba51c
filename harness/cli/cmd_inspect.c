/* cmd_inspect.c — `vitq inspect FILE.safetensors [--arch NAME]`: what a checkpoint holds and whether
 * vitq can load it. Prints the file's SHA-256 (as `sha256sum`; the key results are stored under), the
 * architecture (every field of its family, the timm variants included, and whether it came from
 * `__metadata__`, the built-in table, the tensor names or timm's defaults), every tensor in the file (name,
 * dtype, shape; tensors the model does not use are marked, and so are the buffers of old Swin files it
 * checks; tensors it needs but the file lacks are listed), the parameter count and the `__metadata__` keys.
 * Exit 0 when the file loads as a model, 1 when it does not (after printing what it could), 2 on a usage
 * error. Does not evaluate or modify anything. */
#include "cli/cli.h"

#include <stdlib.h>
#include <string.h>

static void usage(FILE *to) {
    fprintf(to, "usage: vitq inspect FILE.safetensors [--arch NAME]\n\n"
                "Prints a checkpoint's architecture (and where each field came from), every tensor\n"
                "(name, dtype, shape; unused and missing ones marked), the parameter count and the\n"
                "__metadata__ keys. Exit status 0 if the file loads as a model, 1 if not.\n\n"
                "  --arch NAME   built-in architecture for a checkpoint without __metadata__:\n");
    for (int i = 0; vitq_arch_builtin_name(i); i++) fprintf(to, "                  %s\n", vitq_arch_builtin_name(i));
}

/* 5717416 -> "5,717,416" */
static const char *thousands(long long v, char *buf, size_t n) {
    char digits[32];
    int len = snprintf(digits, sizeof digits, "%lld", v < 0 ? -v : v), k = 0;
    if (v < 0 && (size_t)k + 1 < n) buf[k++] = '-';
    for (int i = 0; i < len && (size_t)k + 2 < n; i++) {
        if (i && (len - i) % 3 == 0) buf[k++] = ',';
        buf[k++] = digits[i];
    }
    buf[k] = 0;
    return buf;
}

static const char *shape_text(int ndim, const int64_t *shape, char *buf, size_t n) {
    size_t k = (size_t)snprintf(buf, n, "[");
    for (int d = 0; d < ndim && k < n; d++) k += (size_t)snprintf(buf + k, n - k, "%s%lld", d ? ", " : "", (long long)shape[d]);
    if (k < n) snprintf(buf + k, n - k, "]");
    return buf;
}

static void print_arch(const vitq_arch *a, const vitq_arch_origin *o, const vitq_st_file *f) {
    char val[128], from[96], derived[512];
    printf("architecture: %s\n", a->name);
    int width = 14; /* the longest key of the family (ViT's representation_size: 19) */
    for (int k = 0; k < vitq_arch_nkeys(a); k++) {
        const int l = (int)strlen(vitq_arch_key_of(a, k));
        width = l > width ? l : width;
    }
    for (int k = 0; k < vitq_arch_nkeys(a); k++) {
        if (!strcmp(o->from[k], "built-in"))
            snprintf(from, sizeof from, "built-in %s", o->builtin);
        else
            snprintf(from, sizeof from, "%s", o->from[k]);
        printf("  %-*s %-24s (%s)\n", width, vitq_arch_key_of(a, k), vitq_arch_value_of(a, k, val, sizeof val), from);
    }
    const char *acts = vitq_st_meta(f, "mlp_act");
    printf("  %-*s %-24s (%s)\n", width, "mlp_act", acts ? acts : "gelu", acts ? "metadata" : "default");
    printf("  derived: %s\n", vitq_arch_derived(a, derived, sizeof derived));
}

/* Tensors in the file (marking those `m` does not use), then those `m` needs but the file lacks. */
static void print_tensors(const vitq_st_file *f, const vitq_model *m) {
    int width = 4, unused = 0, missing = 0;
    long long values = 0;
    for (int i = 0; i < f->n_tensors; i++) {
        int l = (int)strlen(f->tensors[i].name);
        width = l > width ? l : width;
        values += vitq_st_numel(&f->tensors[i]);
        if (m && !vitq_model_uses_tensor(m, f->tensors[i].name)) unused++;
    }
    for (int i = 0; m && i < m->n_table; i++) missing += vitq_st_find(f, m->table[i].name) == NULL;
    char num[32], sh[160], want[160];
    printf("\ntensors: %d in the file, %s values", f->n_tensors, thousands(values, num, sizeof num));
    if (m) printf("; %d not used by the model, %d missing", unused, missing);
    printf("\n  %-*s  %-5s %s\n", width, "name", "dtype", "shape");
    for (int i = 0; i < f->n_tensors; i++) {
        const vitq_st_tensor *t = &f->tensors[i];
        const vitq_tensor_ref *r = m ? vitq_model_param(m, t->name) : NULL;
        char mark[600] = "";
        if (m && !r && vitq_model_uses_tensor(m, t->name)) {
            snprintf(mark, sizeof mark, "  (a buffer: checked against the one vitq computes, not a parameter)");
        } else if (m && !r) {
            char hint[400];
            snprintf(mark, sizeof mark, "  (NOT USED by the model: %s)", vitq_unused_hint(m, t->name, hint, sizeof hint));
        } else if (r) {
            int same = r->ndim == t->ndim;
            for (int d = 0; same && d < t->ndim; d++) same = r->shape[d] == t->shape[d];
            if (!same)
                snprintf(mark, sizeof mark, "  (WRONG SHAPE: the model needs %s)",
                         shape_text(r->ndim, r->shape, want, sizeof want));
        }
        printf("  %-*s  %-5s %s%s\n", width, t->name, vitq_dtype_name(t->dtype),
               shape_text(t->ndim, t->shape, sh, sizeof sh), mark);
    }
    for (int i = 0; m && i < m->n_table; i++)
        if (!vitq_st_find(f, m->table[i].name))
            printf("  %-*s  %-5s %s  (MISSING: the model needs it)\n", width, m->table[i].name, "-",
                   shape_text(m->table[i].ndim, m->table[i].shape, sh, sizeof sh));
}

static void print_meta(const vitq_st_file *f) {
    printf("\n__metadata__: %d key%s\n", f->n_meta, f->n_meta == 1 ? "" : "s");
    for (int i = 0; i < f->n_meta; i++) printf("  %s = %s\n", f->meta_keys[i], f->meta_vals[i]);
}

int cmd_inspect(int argc, char **argv) {
    const char *path = NULL, *arch_name = NULL;
    int help = 0, n_pos = 0;
    const cli_opt opts[] = {{"--arch", NULL, CLI_STR, &arch_name, 0, 0}};
    const cli_spec spec = {"inspect", opts, 1, "FILE", 1, 1};
    if (cli_parse(&spec, argc, argv, &path, &n_pos, &help)) return 2;
    if (help) {
        usage(stdout);
        return 0;
    }

    vitq_err e = {{0}};
    vitq_st_file *f = NULL;
    int rc = vitq_st_open(path, &f, &e);
    if (rc) {
        cli_error("%s", e.msg);
        return cli_exit_code(rc);
    }
    printf("file: %s (%d tensors, %d metadata keys)\n", path, f->n_tensors, f->n_meta);
    printf("sha256: %s\n", f->sha256);

    vitq_arch a;
    vitq_arch_origin o;
    vitq_model *m = NULL, *shape_only = NULL;
    rc = vitq_arch_from_st(f, arch_name, &a, &o, &e);
    if (rc) {
        printf("architecture: unknown\n");
        print_tensors(f, NULL);
        print_meta(f);
        cli_error("%s", e.msg);
        vitq_st_close(f);
        return 1;
    }
    print_arch(&a, &o, f);
    rc = vitq_model_load_st(f, arch_name, &m, &e);
    vitq_err load_err = e;
    /* Without a loaded model, an empty one of the same architecture still tells used from unused. */
    if (rc && vitq_model_create(&a, &shape_only, NULL) != VITQ_OK) shape_only = NULL;
    const vitq_model *ref = m ? m : shape_only;
    print_tensors(f, ref);
    char num[32];
    if (ref) {
        double kib = (double)ref->n_params * 4.0 / 1024.0;
        printf("\n%s parameters (%.1f %s as float32)\n", thousands(ref->n_params, num, sizeof num),
               kib >= 1024 ? kib / 1024 : kib, kib >= 1024 ? "MiB" : "KiB");
    }
    print_meta(f);
    if (rc) cli_error("%s", load_err.msg);
    vitq_model_free(m);
    vitq_model_free(shape_only);
    vitq_st_close(f);
    return rc ? 1 : 0;
}
