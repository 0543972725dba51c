/* core/core.h — the bottom layer of libvitq: what every other layer builds on, knowing nothing of models,
 * data or quantizers.
 *
 *   errors, allocation, whole files        err.c        one-line errors; 64-byte aligned allocation
 *   atomic files and folders                atomic.c     temp + fsync + rename + fsync of the folder
 *   threads                                 pool.c       the one process-wide pool (vitq_parallel_for)
 *   progress, time, Ctrl-C                  progress.c
 *   random numbers and hashing              rng.c hash.c splitmix64 / xoshiro256**, FNV-1a 64
 *   checkpoint content keys                 sha256.c     SHA-256 through OpenSSL's libcrypto
 *   strings                                 strbuf.c list.c   growable strings; comma lists and globs
 *   INI files                               ini.c        sections of (key, value, file, line) over inih
 *   typed values                            value.c      the one parser of INI values, key tables, one error format
 *   HDF5 helpers                            h5.c         attributes, datasets, one-line errors, atomic files
 *   gnuplot                                 gnuplot.c    the one way figures are drawn
 *   NumPy .npy                              npy.c
 *
 * Conventions for the whole library (llm.c's): everything computes in float32; kernels take outputs first,
 * then inputs, then weights, then integer dimensions; backward kernels ACCUMULATE (+=).
 * Dimension vocabulary: B batch, N tokens (class token included), C embedding width, H heads, D head
 * width (C/H), F MLP hidden width, P patch size, K classes, R rows (= B*N for token-wise ops).
 * Errors: functions return 0 (VITQ_OK) or a negative VITQ_E* (vitq_plugin.h) and fill a caller-provided
 * vitq_err with ONE line naming the file / tensor / key at fault. The library never exits; it prints only
 * progress and warnings on stderr. */
#ifndef VITQ_CORE_H
#define VITQ_CORE_H

#include "vitq_plugin.h" /* the error codes and the parameter-table types core parses against */

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

#define VITQ_VERSION "0.1.0"
#define VITQ_API __attribute__((visibility("default")))

/* ---------------------------------------------------------------------------------------------
 * Errors, allocation, whole files (err.c)
 * ------------------------------------------------------------------------------------------- */
typedef struct vitq_err {
    char msg[1024];
} vitq_err;

/* Formats one line into e (if e is non-NULL) and returns `code`. */
VITQ_API int vitq_fail(vitq_err *e, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Like malloc/calloc, but 64-byte aligned and zeroed; NULL on failure. Free with vitq_free. */
VITQ_API void *vitq_alloc(size_t bytes);
VITQ_API void vitq_free(void *p);
/* Reads a whole file into memory (NUL-terminated); NULL + error naming the path on failure. */
VITQ_API char *vitq_read_file(const char *path, size_t *size, vitq_err *e);

/* Many errors of one file reported at once: at most one per line (line 0: one per distinct message), up
 * to VITQ_ERRS_MAX, joined sorted by line as "FILE:LINE: msg" lines (then "... and N more errors"). */
#define VITQ_ERRS_MAX 20
typedef struct vitq_errs {
    const char *file;
    int line[VITQ_ERRS_MAX];
    char msg[VITQ_ERRS_MAX][240];
    int n, dropped, oom; /* oom: set by the caller; finish then reports out of memory */
} vitq_errs;
VITQ_API void vitq_errs_add(vitq_errs *E, int line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* 0 if nothing was added; else VITQ_EFORMAT (or VITQ_ENOMEM) with the joined lines in e. */
VITQ_API int vitq_errs_finish(const vitq_errs *E, vitq_err *e);

/* ---------------------------------------------------------------------------------------------
 * Atomic files (atomic.c): every file vitq writes appears whole or not at all. A writer gets a
 * temporary name PATH.tmp.<pid>@<host> in the same folder (stray ones of dead processes of this host
 * are removed by the results layer; the host part keeps two machines writing one shared folder from
 * colliding on a pid or removing each other's files), writes it by any means (stdio, HDF5, gnuplot),
 * then commits: fsync of the file, rename over PATH, fsync of the folder. On failure the temporary file
 * is removed and PATH untouched.
 * ------------------------------------------------------------------------------------------- */
typedef struct vitq_atomic {
    char path[4096]; /* the final name */
    char tmp[4200];  /* where to write meanwhile: PATH.tmp.<pid>@<host> */
} vitq_atomic;

/* This machine's short host name as used in temporary names: [A-Za-z0-9-] only, cut at the first '.',
 * at most 63 bytes ("localhost" if it has none). */
VITQ_API const char *vitq_host_tag(void);

/* Fills a (removing an old temporary file of this process); VITQ_EINVAL if the path is too long. */
VITQ_API int vitq_atomic_begin(vitq_atomic *a, const char *path, vitq_err *e);
/* fsync(tmp), rename(tmp, path), fsync(folder). Errors name the path. */
VITQ_API int vitq_atomic_commit(vitq_atomic *a, vitq_err *e);
/* Removes the temporary file (after a failed write). */
VITQ_API void vitq_atomic_abort(vitq_atomic *a);
/* Writes `size` bytes to path through the three calls above. */
VITQ_API int vitq_write_file_atomic(const char *path, const void *data, size_t size, vitq_err *e);

/* Folders: 1 if path is a folder / a regular file. */
VITQ_API int vitq_is_dir(const char *path);
VITQ_API int vitq_is_file(const char *path);
/* mkdir -p; errors name the part that could not be made. */
VITQ_API int vitq_mkdir_p(const char *dir, vitq_err *e);

/* 1 when the CPU runs AVX-512F. The kernels' 16-lane loops (qtrain.c's QDrop selects, optim.c's AdamW) are
 * chosen by it; each has an SSE2 or scalar twin that gives its bits. */
static inline int vitq_cpu_avx512f(void) {
#if defined(__x86_64__) && defined(__GNUC__)
    return __builtin_cpu_supports("avx512f");
#else
    return 0;
#endif
}

/* ---------------------------------------------------------------------------------------------
 * Threads (pool.c). One process-wide pool; OpenBLAS is kept single-threaded and GEMMs are split
 * across the pool's threads by rows, so there is exactly one threading model.
 * ------------------------------------------------------------------------------------------- */
VITQ_API void vitq_threads_set(int n); /* n <= 0: number of online CPUs */
VITQ_API int vitq_threads_get(void);
/* Calls fn(ctx, begin, end) on disjoint contiguous chunks covering [0, n), in parallel; the chunking
 * depends only on n and the thread count, so results are reproducible for a given thread count. */
typedef vitq_plugin_range_fn vitq_range_fn;
VITQ_API void vitq_parallel_for(int64_t n, vitq_range_fn fn, void *ctx);
/* The same, but stays on the calling thread when n * work_per_item (roughly flops) is too small for a
 * pool dispatch (~µs) to pay off. What every kernel uses. */
/* Inside a pool task: on = every vitq_parallel_for this thread makes runs fn(ctx, 0, n) at once, one chunk
 * (a task that is one of T independent jobs, each on its own thread: no chunking overhead); off = the pool's
 * chunks, inline (the default). Thread-local; set it back before the task returns. */
VITQ_API void vitq_parallel_solo(int on);
VITQ_API void vitq_parallel_for_work(int64_t n, int64_t work_per_item, vitq_range_fn fn, void *ctx);

/* ---------------------------------------------------------------------------------------------
 * Progress on stderr (progress.c): one line rewritten with \r on a TTY, a line every ~10 s otherwise.
 * ------------------------------------------------------------------------------------------- */
typedef struct vitq_progress {
    char label[64];
    int64_t total, done;
    double t0, last_print;
    int tty, quiet;
} vitq_progress;

VITQ_API void vitq_progress_start(vitq_progress *p, const char *label, int64_t total);
/* `extra` is appended (e.g. "loss 0.43"); may be NULL. */
VITQ_API void vitq_progress_update(vitq_progress *p, int64_t done, const char *extra);
VITQ_API void vitq_progress_finish(vitq_progress *p, const char *extra);
VITQ_API void vitq_set_quiet(int quiet);
VITQ_API int vitq_quiet(void);
VITQ_API double vitq_now(void); /* monotonic seconds */
/* Set by the SIGINT handler of the command line; long loops check it and return VITQ_ECANCELLED. */
VITQ_API extern volatile int vitq_interrupted;

/* ---------------------------------------------------------------------------------------------
 * Random numbers (rng.c): splitmix64 is the one mixer; xoshiro256** (seeded through it) the one
 * stream generator. Same seed, same stream on every machine.
 * ------------------------------------------------------------------------------------------- */
/* Advances *state by the golden gamma and returns the mixed value (Steele et al.'s splitmix64). */
VITQ_API uint64_t vitq_splitmix64(uint64_t *state);

typedef struct vitq_rng {
    uint64_t s[4];
} vitq_rng;

VITQ_API void vitq_rng_seed(vitq_rng *r, uint64_t seed);
VITQ_API uint64_t vitq_rng_next(vitq_rng *r);
VITQ_API double vitq_rng_uniform(vitq_rng *r);          /* [0, 1), 53 bits */
VITQ_API int64_t vitq_rng_below(vitq_rng *r, int64_t n); /* [0, n), unbiased */
VITQ_API double vitq_rng_normal(vitq_rng *r);           /* standard normal (Box-Muller, no caching) */
/* Standard normal times std, redrawn until within +-2 std (timm's trunc_normal_ with a=-2std, b=2std). */
VITQ_API float vitq_rng_trunc_normal(vitq_rng *r, float std);
/* Fisher-Yates permutation of 0..n-1. */
VITQ_API void vitq_rng_permutation(vitq_rng *r, int64_t *out, int64_t n);
/* A seed for stream `k` derived from `seed` (splitmix64 of both), for per-epoch / per-batch streams. */
VITQ_API uint64_t vitq_rng_derive(uint64_t seed, uint64_t k);

/* ---------------------------------------------------------------------------------------------
 * Hashing (hash.c): FNV-1a 64, the one non-cryptographic hash (configuration hashes, cell ids,
 * per-instance seeds).
 * ------------------------------------------------------------------------------------------- */
#define VITQ_FNV1A64_INIT 0xcbf29ce484222325ULL
/* FNV-1a 64-bit over n bytes, continuing from h (start with VITQ_FNV1A64_INIT). */
VITQ_API uint64_t vitq_fnv1a64(const void *data, size_t n, uint64_t h);
/* SHA-256 (sha256.c, OpenSSL libcrypto), the content key of checkpoint files: incremental (new, update any
 * number of times, final writes 64 lower-case hex digits + NUL as `sha256sum` prints them and frees the
 * state; new returns NULL when out of memory, final VITQ_ENOMEM / VITQ_EIO on failure), or a whole file. */
typedef struct vitq_sha256 vitq_sha256;
VITQ_API vitq_sha256 *vitq_sha256_new(void);
VITQ_API void vitq_sha256_update(vitq_sha256 *h, const void *data, size_t n);
VITQ_API int vitq_sha256_final(vitq_sha256 *h, char hex[65]);
VITQ_API int vitq_sha256_file(const char *path, char hex[65], vitq_err *e);

/* ---------------------------------------------------------------------------------------------
 * Strings (strbuf.c, list.c)
 * ------------------------------------------------------------------------------------------- */
/* A growable NUL-terminated string; after any allocation failure `oom` is set and appends do nothing. */
typedef struct vitq_sb {
    char *s;
    size_t n, cap;
    int oom;
} vitq_sb;

VITQ_API void vitq_sb_add(vitq_sb *b, const char *s, size_t n);
VITQ_API void vitq_sb_str(vitq_sb *b, const char *s);
VITQ_API void vitq_sb_fmt(vitq_sb *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The string (malloc'd, "" when nothing was added), or NULL after an allocation failure (freed). */
VITQ_API char *vitq_sb_take(vitq_sb *b);

enum { VITQ_LIST_DROP_EMPTY = 1 };
/* Splits s at every `sep` into whitespace-trimmed, malloc'd items (any length); with
 * VITQ_LIST_DROP_EMPTY empty items are left out. *out is malloc'd (vitq_strs_free). VITQ_ENOMEM or 0. */
VITQ_API int vitq_list_split(const char *s, char sep, int flags, char ***out, int *n);
VITQ_API void vitq_strs_free(char **v, int n);
/* 1 if name matches any of the n fnmatch(3) globs. */
VITQ_API int vitq_glob_any(char *const *globs, int n, const char *name);
/* 1 if name matches any glob of the comma-separated list (parsed on each call); -1 out of memory. */
VITQ_API int vitq_globs_match(const char *list, const char *name);

/* ---------------------------------------------------------------------------------------------
 * INI files (ini.c): sections of (key, value) pairs, each carrying the file and line it came from.
 * Built on Debian's inih r55 (<ini.h>). What this adds to inih, and why (STYLE.md §1.4, §9):
 *   - every section and value carries its file and line (the r55 handler never sees a line number);
 *   - a line longer than 199 bytes is an error, never a silent truncation;
 *   - a continuation line (indented, right after a key) appends to the previous value, joined by one space;
 *   - a key given twice in a section, a section given twice, a key before any [section], a line that is
 *     neither a comment, a [section] nor 'key = value', and names longer than inih's 49-byte limit are errors;
 *   - ALL errors are collected (up to 20), sorted by line, and returned joined with '\n' in vitq_err, each
 *     one "FILE:LINE: message".
 * Values are kept as text (value.c types them). Sections appear in file order (empty ones included).
 * ------------------------------------------------------------------------------------------- */
typedef struct vitq_kv {
    char *key, *value;
    const char *file;
    int line;
} vitq_kv;

typedef struct vitq_section {
    char *name;          /* as written between the brackets, e.g. "quantizer softmax" */
    vitq_kv *kv;
    int n_kv;
    const char *file;
    int line;
} vitq_section;

/* Reads and parses the INI file at `path`. On success *out holds *n_out sections (free with
 * vitq_sections_free). On failure returns VITQ_EIO (cannot read) or VITQ_EFORMAT (syntax) and *out = NULL. */
VITQ_API int vitq_ini_read(const char *path, vitq_section **out, int *n_out, vitq_err *e);
/* Same, from text in memory; `name` stands for the file in messages and in every vitq_kv.file. */
VITQ_API int vitq_ini_parse_string(const char *text, const char *name, vitq_section **out, int *n_out,
                                   vitq_err *e);
/* Frees what the two functions above return (and copies). NULL is fine. */
VITQ_API void vitq_sections_free(vitq_section *s, int n);
/* First section named `name` (exact), or NULL. */
VITQ_API const vitq_section *vitq_section_find(const vitq_section *s, int n, const char *name);
/* The kv of `key` in section s (NULL-safe), or NULL. */
VITQ_API const vitq_kv *vitq_section_get(const vitq_section *s, const char *key);
/* Deep copy of n sections (every string owned by the copy); NULL on out-of-memory. */
VITQ_API vitq_section *vitq_sections_copy(const vitq_section *s, int n);

/* ---------------------------------------------------------------------------------------------
 * Typed values (value.c): the ONE parser of INI values — plugin parameters, experiment keys and
 * training keys alike — and the one error format for them:
 *     FILE:LINE: [SECTION] KEY: expected ..., got 'TEXT'
 * Types are vitq_plugin.h's vitq_ptype: INT (decimal, within [min, max]), FLOAT (finite, within
 * [min, max]), BOOL (true/false, yes/no, on/off, 1/0, any case), ENUM (one of the '|'-separated choices,
 * exact), STRING (any text).
 * ------------------------------------------------------------------------------------------- */
typedef struct vitq_value {
    int64_t i;     /* INT (when min < 0), BOOL (0/1), ENUM (choice index) */
    uint64_t u;    /* INT with min >= 0 (seeds reach 2^64 - 1) */
    double f;      /* FLOAT */
    const char *s; /* every type: the text parsed */
} vitq_value;

/* Parses text as p->type within p's bounds; on failure writes "expected ..." into why (>= 128 bytes). */
VITQ_API int vitq_value_parse(const vitq_param *p, const char *text, vitq_value *v, char *why, size_t nwhy);
/* The boolean vocabulary alone: 0 and *out set, or VITQ_EINVAL. */
VITQ_API int vitq_bool_parse(const char *s, int *out);
/* Canonical text of a parsed value: INT decimal, FLOAT the shortest text that reads back exactly,
 * BOOL true/false, ENUM and STRING as written. Returns buf. */
VITQ_API const char *vitq_value_text(const vitq_param *p, const vitq_value *v, char *buf, size_t n);
/* "expected an integer in [2, 16]" etc.: what p accepts. */
VITQ_API const char *vitq_value_expected(const vitq_param *p, char *buf, size_t n);

/* How a key's value is stored at p.offset of the caller's struct. */
typedef enum {
    VITQ_C_NATURAL = 0, /* by p.type, as for plugins: int, double, int, int, char[VITQ_PARAM_STR_MAX] */
    VITQ_C_I64,         /* INT as int64_t */
    VITQ_C_U64,         /* INT as uint64_t (min >= 0) */
    VITQ_C_F32,         /* FLOAT as float */
    VITQ_C_F32X3,       /* STRING "a, b, c" or "a": three floats within [min, max] (one value repeated) */
    VITQ_C_CHARS,       /* STRING into char[cap] */
    VITQ_C_TEXT,        /* STRING or ENUM: a const char * to the text itself (it must outlive the struct) */
} vitq_ctype;

enum { VITQ_KEY_NOHASH = 1, VITQ_KEY_NONEMPTY = 2 };

/* A row of a key table: section, the parameter row (p.def NULL = required where defaults apply), how it
 * is stored, and flags (NOHASH: not part of the configuration's identity; NONEMPTY: "" refused). */
typedef struct vitq_key {
    const char *section;
    vitq_param p;
    vitq_ctype ctype;
    size_t cap;
    unsigned flags;
} vitq_key;

/* Parses text for key k and stores it at base + k->p.offset (v, if non-NULL, receives the value);
 * on failure "expected ..." in why. */
VITQ_API int vitq_key_store(const vitq_key *k, const char *text, void *base, vitq_value *v, char *why,
                            size_t nwhy);
/* The message part of the one error format: "[SECTION] KEY: WHAT" (section NULL: "KEY: WHAT"). */
VITQ_API const char *vitq_key_msg(char *buf, size_t n, const char *section, const char *key, const char *what);
/* "FILE:LINE: [SECTION] KEY: <fmt>" into e; returns code. */
VITQ_API int vitq_kv_fail(vitq_err *e, int code, const vitq_kv *kv, const char *section, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
/* Stores every kv of secs through the table keys[0..n) into base (defaults are the caller's: whatever base
 * held). A section or key without a row is an error ("FILE:LINE: [S] unknown key 'K' (known: ...)").
 * Stops at the first error. */
VITQ_API int vitq_keys_apply(const vitq_key *keys, int n, const vitq_section *secs, int n_secs, void *base,
                             vitq_err *e);
/* "a, b, c": the names of section's rows, into buf. */
VITQ_API const char *vitq_keys_known(const vitq_key *keys, int n, const char *section, char *buf, size_t cap);

/* ---------------------------------------------------------------------------------------------
 * gnuplot (gnuplot.c): the one way a figure is drawn. A figure is FIG.tsv (data) + FIG.gp (a script
 * taking the data as ARG1 and the output as ARG2) + FIG.png beside them.
 * ------------------------------------------------------------------------------------------- */
/* Runs `gnuplot -c GP TSV PNG.tmp.<pid>` in `dir` (GP, TSV, PNG relative to it), stdin/stdout on
 * /dev/null, stderr captured; renames the PNG into place. `program` NULL: "gnuplot" from PATH. If the
 * program is not found, *missing = 1 and 0 is returned (the caller decides whether that is an error).
 * A failure is one line quoting gnuplot's first stderr line. */
VITQ_API int vitq_gnuplot_run(const char *dir, const char *gp, const char *tsv, const char *png, const char *program,
                              int *missing, vitq_err *e);

/* ---------------------------------------------------------------------------------------------
 * NumPy (npy.c): a float32 array as a .npy file (v1.0, '<f4', C order), written atomically.
 * ------------------------------------------------------------------------------------------- */
VITQ_API int vitq_npy_write(const char *path, const float *data, int ndim, const int64_t *shape, vitq_err *e);

/* ---------------------------------------------------------------------------------------------
 * HDF5 helpers (h5.c), declared for files that include <hdf5.h> before this header. Writers return
 * < 0 on failure (HDF5's error stack keeps the reason; vitq_h5_fail turns it into one line).
 * ------------------------------------------------------------------------------------------- */
#ifdef H5_VERS_MAJOR
/* Turns HDF5's automatic error printing off (every reader and writer calls it first). */
VITQ_API void vitq_h5_quiet(void);
/* One line "FILE: OBJECT: WHAT (HDF5: innermost error)"; clears the HDF5 error stack; returns code. */
VITQ_API int vitq_h5_fail(vitq_err *e, int code, const char *file, const char *obj, const char *what);
/* A fixed-length UTF-8 string type of len bytes (null-padded or null-terminated). */
VITQ_API hid_t vitq_h5_str_type(size_t len, int nullpad);
VITQ_API int vitq_h5_attr_f64(hid_t loc, const char *name, double v);
VITQ_API int vitq_h5_attr_i64(hid_t loc, const char *name, int64_t v);
VITQ_API int vitq_h5_attr_u64(hid_t loc, const char *name, uint64_t v);
VITQ_API int vitq_h5_attr_int(hid_t loc, const char *name, int v);
VITQ_API int vitq_h5_attr_str(hid_t loc, const char *name, const char *val);
/* A 1-D attribute of n fixed-length strings (the longest + 1 bytes each). */
VITQ_API int vitq_h5_attr_strs(hid_t loc, const char *name, const char *const *v, int n);
/* A 1-D dataset of n elements (n may be 0). */
VITQ_API int vitq_h5_dset(hid_t loc, const char *name, hid_t ftype, hid_t mtype, hsize_t n, const void *buf);
/* Readers: a scalar string attribute of loc/obj as a malloc'd string (NULL if absent or bad); a 1-D
 * array of fixed-length strings (*n its length); a scalar number converted to mtype (< 0 if absent). */
VITQ_API char *vitq_h5_read_str(hid_t loc, const char *obj, const char *name);
VITQ_API char **vitq_h5_read_strs(hid_t loc, const char *name, int *n);
VITQ_API int vitq_h5_read_num(hid_t loc, const char *obj, const char *name, hid_t mtype, void *v);
/* Creates a's temporary file (vitq_atomic_begin first) with HDF5 1.8 object headers (attributes over
 * 64 KiB allowed); < 0 with e naming the path. */
VITQ_API hid_t vitq_h5_create(vitq_atomic *a, vitq_err *e);
/* Closes f and commits a (or aborts it when rc != 0 or anything fails); returns the final status. */
VITQ_API int vitq_h5_publish(vitq_atomic *a, hid_t f, int rc, vitq_err *e);
#endif

#ifdef __cplusplus
}
#endif
#endif
