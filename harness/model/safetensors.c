/* safetensors.c — reads and writes the safetensors format (huggingface/safetensors, the format timm's
 * `save_file` writes): an 8-byte little-endian header length N, N bytes of JSON (parsed with cJSON)
 * mapping tensor names to {dtype, shape, data_offsets} plus an optional string->string "__metadata__",
 * then the data section the offsets point into.
 *
 * The reader checks every length and offset against the file before anything is used — the data section
 * tiled exactly by the tensors, nothing after it, as the reference parser — and reports each problem as
 * one line naming the file (and tensor). It computes the file's SHA-256 on the way (libcrypto). It reads
 * F32, F16 and BF16 and converts to float32; I64 (the index buffers old Swin checkpoints carry) converts
 * exactly or is refused by value; other dtypes (I32, F64, ...) are refused by name. The writer writes F32
 * only, atomically.
 * Does not: memory-map (the data section is read into one buffer), handle big-endian hosts. */
#include "model/model.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors.c assumes a little-endian host"
#endif

#define MAX_HEADER (100u << 20) /* the safetensors reference refuses headers over 100 MB too */
#define MAX_EXACT 9007199254740992.0 /* 2^53: JSON numbers above this are not exact in a double */

static const struct {
    const char *name;
    int size;
} dtypes[] = {
    [VITQ_DT_F32] = {"F32", 4},
    [VITQ_DT_F16] = {"F16", 2},
    [VITQ_DT_BF16] = {"BF16", 2},
    [VITQ_DT_I64] = {"I64", 8},
};

const char *vitq_dtype_name(vitq_dtype t) { return (unsigned)t <= VITQ_DT_I64 ? dtypes[t].name : "?"; }
int vitq_dtype_size(vitq_dtype t) { return (unsigned)t <= VITQ_DT_I64 ? dtypes[t].size : 0; }

float vitq_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, exp = (h >> 10) & 0x1fu, man = h & 0x3ffu, bits;
    if (exp == 0) { /* zero or subnormal: man * 2^-24, exact in float32 */
        float v = ldexpf((float)man, -24);
        return sign ? -v : v;
    }
    if (exp == 31)
        bits = sign | 0x7f800000u | (man << 13); /* inf, or NaN with its payload */
    else
        bits = sign | ((exp + 112u) << 23) | (man << 13); /* rebias 15 -> 127 */
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

float vitq_bf16_to_f32(uint16_t b) {
    uint32_t bits = (uint32_t)b << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

int64_t vitq_st_numel(const vitq_st_tensor *t) {
    int64_t n = 1;
    for (int d = 0; d < t->ndim; d++) n *= t->shape[d];
    return n;
}

/* "[2, 3, 4]" */
static const char *shape_str(char *buf, size_t n, int ndim, const int64_t *shape) {
    size_t k = (size_t)snprintf(buf, n, "[");
    for (int d = 0; d < ndim && k < n; d++) k += (size_t)snprintf(buf + k, n - k, "%s%lld", d ? ", " : "", (long long)shape[d]);
    if (k < n) snprintf(buf + k, n - k, "]");
    return buf;
}

void vitq_st_close(vitq_st_file *f) {
    if (!f) return;
    for (int i = 0; i < f->n_meta; i++) {
        free(f->meta_keys[i]);
        free(f->meta_vals[i]);
    }
    free(f->meta_keys);
    free(f->meta_vals);
    free(f->tensors);
    vitq_free(f->data);
    free(f);
}

/* A JSON number that is a non-negative integer exactly representable; -1 otherwise. */
static int json_uint(const cJSON *j, uint64_t *out) {
    if (!cJSON_IsNumber(j)) return -1;
    double v = j->valuedouble;
    if (!(v >= 0 && v <= MAX_EXACT) || v != floor(v)) return -1;
    *out = (uint64_t)v;
    return 0;
}

/* Short printable excerpt of a JSON value for messages. */
static const char *json_excerpt(const cJSON *j, char *buf, size_t n) {
    char *s = cJSON_PrintUnformatted(j);
    snprintf(buf, n, "%s", s ? s : "?");
    if (s && strlen(s) >= n && n > 4) memcpy(buf + n - 4, "...", 4);
    free(s);
    return buf;
}

static int parse_metadata(vitq_st_file *f, const cJSON *meta, vitq_err *e) {
    if (!cJSON_IsObject(meta))
        return vitq_fail(e, VITQ_EFORMAT, "%s: __metadata__ must be an object of strings", f->path);
    int n = cJSON_GetArraySize(meta);
    f->meta_keys = calloc((size_t)n + 1, sizeof(char *));
    f->meta_vals = calloc((size_t)n + 1, sizeof(char *));
    if (!f->meta_keys || !f->meta_vals) return vitq_fail(e, VITQ_ENOMEM, "%s: out of memory", f->path);
    for (const cJSON *kv = meta->child; kv; kv = kv->next) {
        if (!cJSON_IsString(kv))
            return vitq_fail(e, VITQ_EFORMAT, "%s: __metadata__ key '%s': value must be a string", f->path,
                             kv->string);
        for (int i = 0; i < f->n_meta; i++)
            if (!strcmp(f->meta_keys[i], kv->string))
                return vitq_fail(e, VITQ_EFORMAT, "%s: __metadata__ key '%s' appears twice", f->path, kv->string);
        f->meta_keys[f->n_meta] = strdup(kv->string);
        f->meta_vals[f->n_meta] = strdup(kv->valuestring);
        f->n_meta++;
        if (!f->meta_keys[f->n_meta - 1] || !f->meta_vals[f->n_meta - 1])
            return vitq_fail(e, VITQ_ENOMEM, "%s: out of memory", f->path);
    }
    return VITQ_OK;
}

/* Parses one tensor entry and checks it against the data section. */
static int parse_tensor(vitq_st_file *f, const cJSON *j, vitq_st_tensor *t, uint64_t file_size, vitq_err *e) {
    const char *p = f->path, *name = j->string;
    char buf[96];
    if (strlen(name) >= sizeof t->name)
        return vitq_fail(e, VITQ_EFORMAT, "%s: tensor name '%.40s...' is longer than %zu bytes", p, name,
                         sizeof t->name - 1);
    snprintf(t->name, sizeof t->name, "%s", name);
    if (!cJSON_IsObject(j))
        return vitq_fail(e, VITQ_EFORMAT, "%s: tensor '%s': entry must be an object with dtype, shape and "
                         "data_offsets, got %s", p, name, json_excerpt(j, buf, 40));
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(j, "dtype");
    const cJSON *sh = cJSON_GetObjectItemCaseSensitive(j, "shape");
    const cJSON *off = cJSON_GetObjectItemCaseSensitive(j, "data_offsets");
    const char *missing = !dt ? "dtype" : !sh ? "shape" : !off ? "data_offsets" : NULL;
    if (missing) return vitq_fail(e, VITQ_EFORMAT, "%s: tensor '%s': entry has no '%s'", p, name, missing);

    if (!cJSON_IsString(dt))
        return vitq_fail(e, VITQ_EFORMAT, "%s: tensor '%s': dtype must be a string, got %s", p, name,
                         json_excerpt(dt, buf, 40));
    int found = -1;
    for (int k = 0; k <= VITQ_DT_I64; k++)
        if (!strcmp(dt->valuestring, dtypes[k].name)) found = k;
    if (found < 0)
        return vitq_fail(e, VITQ_EFORMAT, "%s: tensor '%s': unsupported dtype '%.20s' (vitq reads F32, F16, BF16 and I64)",
                         p, name, dt->valuestring);
    t->dtype = (vitq_dtype)found;

    if (!cJSON_IsArray(sh))
        return vitq_fail(e, VITQ_EFORMAT, "%s: tensor '%s': shape must be an array of integers, got %s", p, name,
                         json_excerpt(sh, buf, 40));
    t->ndim = cJSON_GetArraySize(sh);
    if (t->ndim > 8)
        return vitq_fail(e, VITQ_EFORMAT, "%s: tensor '%s': %d dimensions, at most 8 supported", p, name, t->ndim);
    uint64_t numel = 1;
    int overflow = 0;
    for (int d = 0; d < t->ndim; d++) {
        const cJSON *s = cJSON_GetArrayItem(sh, d);
        uint64_t v;
        if (json_uint(s, &v))
            return vitq_fail(e, VITQ_EFORMAT, "%s: tensor '%s': shape[%d] is %s, expected a non-negative integer",
                             p, name, d, json_excerpt(s, buf, 40));
        t->shape[d] = (int64_t)v;
        overflow |= __builtin_mul_overflow(numel, v, &numel);
    }
    uint64_t need;
    overflow |= __builtin_mul_overflow(numel, (uint64_t)dtypes[t->dtype].size, &need);

    if (!cJSON_IsArray(off) || cJSON_GetArraySize(off) != 2 || json_uint(off->child, &t->begin) ||
        json_uint(off->child->next, &t->end))
        return vitq_fail(e, VITQ_EFORMAT, "%s: tensor '%s': data_offsets must be [begin, end] with non-negative "
                         "integers, got %s", p, name, json_excerpt(off, buf, 60));
    if (t->begin > t->end)
        return vitq_fail(e, VITQ_EFORMAT, "%s: tensor '%s': data offsets [%llu, %llu) are reversed", p, name,
                         (unsigned long long)t->begin, (unsigned long long)t->end);
    if (t->end > f->data_size)
        return vitq_fail(e, VITQ_EFORMAT, "%s: tensor '%s': data offsets [%llu, %llu) run past the data section, "
                         "which holds only %llu bytes (the file's %llu less its header; truncated download?)", p,
                         name, (unsigned long long)t->begin, (unsigned long long)t->end,
                         (unsigned long long)f->data_size, (unsigned long long)file_size);
    if (overflow || t->end - t->begin != need) {
        char sb[160];
        return vitq_fail(e, VITQ_EFORMAT, "%s: tensor '%s': data offsets [%llu, %llu) hold %llu bytes, but %s %s "
                         "needs %llu", p, name, (unsigned long long)t->begin, (unsigned long long)t->end,
                         (unsigned long long)(t->end - t->begin), dtypes[t->dtype].name,
                         shape_str(sb, sizeof sb, t->ndim, t->shape), (unsigned long long)need);
    }
    return VITQ_OK;
}

static int cmp_begin(const void *a, const void *b) {
    const vitq_st_tensor *x = *(vitq_st_tensor *const *)a, *y = *(vitq_st_tensor *const *)b;
    return x->begin < y->begin ? -1 : x->begin > y->begin ? 1 : (x->end > y->end) - (x->end < y->end);
}

/* The data section is tiled exactly, as the reference parser (huggingface/safetensors, Rust) requires:
 * tensors sorted by offset start where the one before ends (no overlap: shared bytes; no gap: InvalidOffset),
 * the first at 0, and the last ends at the end of the file (bytes after it: MetadataIncompleteBuffer — a
 * "polyglot" file carrying something else after its data). */
static int check_tiling(const vitq_st_file *f, vitq_err *e) {
    vitq_st_tensor **s = malloc(sizeof *s * (size_t)(f->n_tensors + 1));
    if (!s) return vitq_fail(e, VITQ_ENOMEM, "%s: out of memory", f->path);
    for (int i = 0; i < f->n_tensors; i++) s[i] = &f->tensors[i];
    qsort(s, (size_t)f->n_tensors, sizeof *s, cmp_begin);
    int rc = VITQ_OK;
    uint64_t at = 0;
    for (int i = 0; i < f->n_tensors && !rc; i++) {
        const vitq_st_tensor *t = s[i], *prev = i ? s[i - 1] : NULL;
        if (t->begin < at)
            rc = vitq_fail(e, VITQ_EFORMAT, "%s: tensors '%s' [%llu, %llu) and '%s' [%llu, %llu) overlap", f->path,
                           prev->name, (unsigned long long)prev->begin, (unsigned long long)prev->end, t->name,
                           (unsigned long long)t->begin, (unsigned long long)t->end);
        else if (t->begin > at)
            rc = vitq_fail(e, VITQ_EFORMAT, "%s: tensor '%s' starts at byte %llu of the data section, but %s%s%s ends at "
                           "%llu: the data offsets leave a hole (the safetensors reference parser refuses it: "
                           "InvalidOffset)", f->path, t->name, (unsigned long long)t->begin,
                           prev ? "the tensor before it, '" : "the section starts at 0", prev ? prev->name : "",
                           prev ? "'," : " and", (unsigned long long)at);
        at = t->end;
    }
    if (!rc && at != f->data_size)
        rc = vitq_fail(e, VITQ_EFORMAT, "%s: the file has %llu bytes after its data section (the tensors end at byte %llu "
                       "of %llu; the safetensors reference parser refuses such files: MetadataIncompleteBuffer)",
                       f->path, (unsigned long long)(f->data_size - at), (unsigned long long)at,
                       (unsigned long long)f->data_size);
    free(s);
    return rc;
}

/* The header JSON: names -> entries, "__metadata__" -> strings. */
static int parse_header(vitq_st_file *f, const char *hdr, uint64_t n, vitq_err *e) {
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(hdr, (size_t)n, &end, 0);
    if (!root || (end && (size_t)(end - hdr) < n && strspn(end, " \t\r\n") < n - (size_t)(end - hdr))) {
        size_t at = end && end >= hdr && (size_t)(end - hdr) <= n ? (size_t)(end - hdr) : 0;
        char near[24];
        size_t k = 0;
        for (size_t i = at; i < n && k < sizeof near - 1; i++) near[k++] = hdr[i] >= 32 && hdr[i] < 127 ? hdr[i] : '?';
        near[k] = 0;
        cJSON_Delete(root);
        return vitq_fail(e, VITQ_EFORMAT, "%s: malformed JSON in the safetensors header at byte %zu of %llu, near '%s'",
                         f->path, at, (unsigned long long)n, near);
    }
    int rc = VITQ_OK;
    if (!cJSON_IsObject(root)) {
        rc = vitq_fail(e, VITQ_EFORMAT, "%s: the safetensors header must be a JSON object", f->path);
        goto done;
    }
    int count = cJSON_GetArraySize(root);
    f->tensors = calloc((size_t)count + 1, sizeof *f->tensors);
    if (!f->tensors) {
        rc = vitq_fail(e, VITQ_ENOMEM, "%s: out of memory", f->path);
        goto done;
    }
    for (const cJSON *j = root->child; j && !rc; j = j->next) {
        if (!strcmp(j->string, "__metadata__")) {
            if (f->meta_keys)
                rc = vitq_fail(e, VITQ_EFORMAT, "%s: __metadata__ appears twice", f->path);
            else
                rc = parse_metadata(f, j, e);
            continue;
        }
        if (vitq_st_find(f, j->string)) {
            rc = vitq_fail(e, VITQ_EFORMAT, "%s: tensor '%s' appears twice in the header", f->path, j->string);
            break;
        }
        rc = parse_tensor(f, j, &f->tensors[f->n_tensors], 8 + n + f->data_size, e);
        if (!rc) f->n_tensors++;
    }
    if (!rc) rc = check_tiling(f, e);
done:
    cJSON_Delete(root);
    return rc;
}

static int read_exact(FILE *fp, void *dst, uint64_t n) {
    unsigned char *p = dst;
    while (n > 0) {
        size_t chunk = n > (1u << 30) ? (1u << 30) : (size_t)n;
        size_t got = fread(p, 1, chunk, fp);
        if (got != chunk) return -1;
        p += got;
        n -= got;
    }
    return 0;
}

int vitq_st_open(const char *path, vitq_st_file **out, vitq_err *e) {
    *out = NULL;
    vitq_st_file *f = calloc(1, sizeof *f);
    if (!f) return vitq_fail(e, VITQ_ENOMEM, "%s: out of memory", path);
    snprintf(f->path, sizeof f->path, "%s", path);
    char *hdr = NULL;
    int rc = VITQ_OK;
    FILE *fp = fopen(path, "rb");
    struct stat st;
    if (!fp) {
        rc = vitq_fail(e, VITQ_EIO, "%s: cannot open: %s", path, strerror(errno));
        goto fail;
    }
    if (fstat(fileno(fp), &st) != 0 || !S_ISREG(st.st_mode)) {
        rc = vitq_fail(e, VITQ_EIO, "%s: not a regular file", path);
        goto fail;
    }
    uint64_t size = (uint64_t)st.st_size;
    unsigned char len8[8];
    if (size < 8) {
        rc = vitq_fail(e, VITQ_EFORMAT, "%s: file is %llu bytes, shorter than the 8-byte safetensors header length "
                       "(truncated or not a safetensors file)", path, (unsigned long long)size);
        goto fail;
    }
    if (read_exact(fp, len8, 8)) {
        rc = vitq_fail(e, VITQ_EIO, "%s: read error", path);
        goto fail;
    }
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = n << 8 | len8[i];
    if (n > size - 8) {
        rc = vitq_fail(e, VITQ_EFORMAT, "%s: header length %llu runs past the end of the file (%llu bytes; truncated, "
                       "or not a safetensors file)", path, (unsigned long long)n, (unsigned long long)size);
        goto fail;
    }
    if (n > MAX_HEADER) {
        rc = vitq_fail(e, VITQ_EFORMAT, "%s: header length %llu is over the 100 MB limit (not a safetensors file?)",
                       path, (unsigned long long)n);
        goto fail;
    }
    hdr = malloc((size_t)n + 1);
    f->data_size = size - 8 - n;
    f->data = vitq_alloc((size_t)f->data_size);
    if (!hdr || !f->data) {
        rc = vitq_fail(e, VITQ_ENOMEM, "%s: out of memory reading %llu bytes", path, (unsigned long long)size);
        goto fail;
    }
    if (read_exact(fp, hdr, n) || read_exact(fp, f->data, f->data_size)) {
        rc = vitq_fail(e, VITQ_EIO, "%s: read error", path);
        goto fail;
    }
    vitq_sha256 *h = vitq_sha256_new(); /* of the bytes read: the key of exactly what is loaded */
    vitq_sha256_update(h, len8, 8);
    vitq_sha256_update(h, hdr, n);
    vitq_sha256_update(h, f->data, f->data_size);
    if ((rc = vitq_sha256_final(h, f->sha256))) {
        rc = vitq_fail(e, rc, "%s: SHA-256 of the file failed (libcrypto)", path);
        goto fail;
    }
    hdr[n] = 0;
    fclose(fp);
    fp = NULL;
    rc = parse_header(f, hdr, n, e);
    if (rc) goto fail;
    free(hdr);
    *out = f;
    return VITQ_OK;
fail:
    if (fp) fclose(fp);
    free(hdr);
    vitq_st_close(f);
    return rc;
}

const vitq_st_tensor *vitq_st_find(const vitq_st_file *f, const char *name) {
    for (int i = 0; i < f->n_tensors; i++)
        if (!strcmp(f->tensors[i].name, name)) return &f->tensors[i];
    return NULL;
}

const char *vitq_st_meta(const vitq_st_file *f, const char *key) {
    for (int i = 0; i < f->n_meta; i++)
        if (!strcmp(f->meta_keys[i], key)) return f->meta_vals[i];
    return NULL;
}

int vitq_st_read_f32(const vitq_st_file *f, const char *name, float *dst, int ndim, const int64_t *shape,
                     vitq_err *e) {
    const vitq_st_tensor *t = vitq_st_find(f, name);
    if (!t) return vitq_fail(e, VITQ_EFORMAT, "%s: missing tensor '%s' (the file holds %d tensors)", f->path, name,
                             f->n_tensors);
    int same = t->ndim == ndim;
    for (int d = 0; same && d < ndim; d++) same = t->shape[d] == shape[d];
    if (!same) {
        char got[160], want[160];
        return vitq_fail(e, VITQ_EFORMAT, "%s: tensor '%s' has shape %s, expected %s", f->path, name,
                         shape_str(got, sizeof got, t->ndim, t->shape), shape_str(want, sizeof want, ndim, shape));
    }
    const unsigned char *src = f->data + t->begin;
    int64_t n = vitq_st_numel(t);
    switch (t->dtype) {
    case VITQ_DT_F32:
        memcpy(dst, src, (size_t)n * 4);
        break;
    case VITQ_DT_F16:
    case VITQ_DT_BF16:
        for (int64_t i = 0; i < n; i++) {
            uint16_t h = (uint16_t)(src[2 * i] | src[2 * i + 1] << 8);
            dst[i] = t->dtype == VITQ_DT_F16 ? vitq_f16_to_f32(h) : vitq_bf16_to_f32(h);
        }
        break;
    case VITQ_DT_I64:
        for (int64_t i = 0; i < n; i++) {
            int64_t v;
            memcpy(&v, src + 8 * i, 8);
            if (v > (1 << 24) || v < -(1 << 24))
                return vitq_fail(e, VITQ_EFORMAT, "%s: tensor '%s' (I64) holds %lld at flat index %lld, not exact "
                                 "as float32", f->path, name, (long long)v, (long long)i);
            dst[i] = (float)v;
        }
        break;
    }
    return VITQ_OK;
}

/* A cJSON raw integer (cJSON's own number printing goes through double and %g). */
static cJSON *raw_int(uint64_t v) {
    char s[32];
    snprintf(s, sizeof s, "%llu", (unsigned long long)v);
    return cJSON_CreateRaw(s);
}

int vitq_st_write(const char *path, const vitq_st_entry *t, int n, const char *const *meta_keys,
                  const char *const *meta_vals, int n_meta, vitq_err *e) {
    int rc = VITQ_OK;
    char *json = NULL;
    unsigned char *buf = NULL;
    cJSON *root = cJSON_CreateObject();
    if (!root) return vitq_fail(e, VITQ_ENOMEM, "%s: out of memory", path);
    if (n_meta > 0) {
        cJSON *meta = cJSON_AddObjectToObject(root, "__metadata__");
        for (int i = 0; meta && i < n_meta; i++) {
            if (cJSON_GetObjectItemCaseSensitive(meta, meta_keys[i])) {
                rc = vitq_fail(e, VITQ_EINVAL, "%s: metadata key '%s' given twice", path, meta_keys[i]);
                goto done;
            }
            if (!cJSON_AddStringToObject(meta, meta_keys[i], meta_vals[i])) meta = NULL;
        }
        if (!meta) {
            rc = vitq_fail(e, VITQ_ENOMEM, "%s: out of memory", path);
            goto done;
        }
    }
    uint64_t off = 0;
    for (int i = 0; i < n; i++) {
        vitq_st_tensor probe = {.ndim = t[i].ndim};
        if (!t[i].name || !*t[i].name || strlen(t[i].name) >= sizeof probe.name || !strcmp(t[i].name, "__metadata__")) {
            rc = vitq_fail(e, VITQ_EINVAL, "%s: tensor %d: bad name '%s'", path, i, t[i].name ? t[i].name : "");
            goto done;
        }
        if (cJSON_GetObjectItemCaseSensitive(root, t[i].name)) {
            rc = vitq_fail(e, VITQ_EINVAL, "%s: tensor '%s' given twice", path, t[i].name);
            goto done;
        }
        if (t[i].ndim < 0 || t[i].ndim > 8) {
            rc = vitq_fail(e, VITQ_EINVAL, "%s: tensor '%s': %d dimensions", path, t[i].name, t[i].ndim);
            goto done;
        }
        cJSON *ent = cJSON_AddObjectToObject(root, t[i].name);
        cJSON *shape = ent ? cJSON_AddArrayToObject(ent, "shape") : NULL;
        cJSON *offs = shape ? cJSON_CreateArray() : NULL;
        if (!ent || !shape || !offs || !cJSON_AddStringToObject(ent, "dtype", "F32")) {
            cJSON_Delete(offs);
            rc = vitq_fail(e, VITQ_ENOMEM, "%s: out of memory", path);
            goto done;
        }
        for (int d = 0; d < t[i].ndim; d++) {
            if (t[i].shape[d] < 0) {
                cJSON_Delete(offs);
                rc = vitq_fail(e, VITQ_EINVAL, "%s: tensor '%s': negative shape", path, t[i].name);
                goto done;
            }
            probe.shape[d] = t[i].shape[d];
            cJSON_AddItemToArray(shape, raw_int((uint64_t)t[i].shape[d]));
        }
        uint64_t bytes = (uint64_t)vitq_st_numel(&probe) * 4;
        if (bytes && !t[i].data) {
            cJSON_Delete(offs);
            rc = vitq_fail(e, VITQ_EINVAL, "%s: tensor '%s': no data", path, t[i].name);
            goto done;
        }
        cJSON_AddItemToArray(offs, raw_int(off));
        cJSON_AddItemToArray(offs, raw_int(off + bytes));
        cJSON_AddItemToObject(ent, "data_offsets", offs);
        off += bytes;
    }
    json = cJSON_PrintUnformatted(root);
    if (!json) {
        rc = vitq_fail(e, VITQ_ENOMEM, "%s: out of memory", path);
        goto done;
    }
    size_t hlen = strlen(json), padded = (hlen + 7) & ~(size_t)7;
    size_t total = 8 + padded + (size_t)off;
    buf = malloc(total);
    if (!buf) {
        rc = vitq_fail(e, VITQ_ENOMEM, "%s: out of memory (%zu bytes)", path, total);
        goto done;
    }
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)((uint64_t)padded >> (8 * i));
    memcpy(buf + 8, json, hlen);
    memset(buf + 8 + hlen, ' ', padded - hlen);
    unsigned char *p = buf + 8 + padded;
    for (int i = 0; i < n; i++) {
        vitq_st_tensor probe = {.ndim = t[i].ndim};
        memcpy(probe.shape, t[i].shape, sizeof probe.shape);
        size_t bytes = (size_t)vitq_st_numel(&probe) * 4;
        if (bytes) memcpy(p, t[i].data, bytes);
        p += bytes;
    }
    rc = vitq_write_file_atomic(path, buf, total, e);
done:
    free(buf);
    free(json);
    cJSON_Delete(root);
    return rc;
}
