/* grid.h — an experiment INI (sections [run] [model] [data] [quantizer NAME]... [hist] [grid]) validated
 * and expanded into cells (grid.c).
 *
 * [grid]: every key is an axis with comma-separated values; the special key `zip` holds groups separated
 * by '|', each a comma-separated list of axis names paired value by value (all of one length). Cells are
 * the cartesian product over factors (each zip group, each free axis), ordered by each factor's first
 * axis in the INI, the first factor varying slowest. `${axis}` in any other value is replaced by the
 * cell's value. Every axis must be used by some ${axis}.
 *
 * Harness keys ([run], [model], [data], [hist]) are typed by the table vitq_grid_keys() (the same
 * vitq_param rows plugins use), checked per cell after interpolation. [quantizer NAME] sections are
 * interpolated only: the quant module checks their keys and plugin parameters.
 * All errors (up to 20, one per INI line) come back at once, sorted by line, joined with '\n'.
 *
 * Relative paths (model path, dataset folder, output) are relative to the current working directory.
 * Does NOT load models, datasets or plugins (cmd_run.c does). */
#ifndef VITQ_GRID_H
#define VITQ_GRID_H

#include "vitq.h"
#include "vitq_plugin.h"

#ifdef __cplusplus
extern "C" {
#endif

/* One harness key: the plugin parameter row plus the section it belongs to. `def` NULL = required;
 * for [run] output the default "results/<name>" and for [run] name the INI's base name are computed. */
typedef struct vitq_grid_key {
    const char *section;
    vitq_param p; /* p.offset unused */
} vitq_grid_key;

/* The harness key table (for validation and for the README's INI reference). */
VITQ_API const vitq_grid_key *vitq_grid_keys(int *n);

/* Typed harness configuration of one cell (after interpolation). Strings point into the cell's resolved
 * sections or to static defaults; valid while the experiment lives. */
typedef struct vitq_run_cfg {
    char name[128];            /* [run] name (default: the INI file's base name) */
    char output[1024];         /* [run] output (default results/<name>) */
    uint64_t seed;             /* [run] seed */
    int threads;               /* [run] threads, 0 = all CPUs */
    int baseline;              /* [run] baseline: also evaluate the float model as cell "fp32" */
    const char *calib_mode;    /* [run] calib_mode: "sequential" | "float" */
    const char *model_path;    /* [model] path */
    const char *arch;          /* [model] arch ("" = from the file's metadata) */
    const char *dataset;       /* [data] dataset */
    const char *eval_split;    /* [data] eval_split */
    int64_t eval_limit;        /* [data] eval_limit, 0 = all */
    int batch;                 /* [data] batch */
    const char *calib_split;   /* [data] calib_split */
    int calib_size;            /* [data] calib_size */
    int convert_channels;      /* [data] convert_channels */
    const char *hist_taps;     /* [hist] taps: comma-separated globs ("" = none) */
    int hist_bins;             /* [hist] bins */
} vitq_run_cfg;

typedef struct vitq_grid_axis {
    char *name;
    char **values;
    int n_values;
    int line;   /* of its key in [grid] */
    int zip;    /* zip group index, -1 when free */
} vitq_grid_axis;

typedef struct vitq_grid_cell {
    char id[128];              /* "bits=4,softmax=log2" sanitised; "default" without axes */
    const char **values;       /* [n_axes] pointers into the axes' values */
    vitq_section *secs;        /* resolved sections ([grid] left out), ${...} replaced */
    int n_secs;
    vitq_run_cfg cfg;
    char *config_text;         /* canonical resolved configuration (INI text; keys sorted) */
    char hash[17];             /* FNV-1a 64 of config_text, 16 hex digits: the resume key */
} vitq_grid_cell;

typedef struct vitq_experiment {
    char *path;                /* the INI file (or the name given to vitq_experiment_parse) */
    char *text;                /* its text */
    vitq_section *secs;        /* as read */
    int n_secs;
    vitq_grid_axis *axes;      /* [grid] order */
    int n_axes;
    const char **axis_names;   /* [n_axes] */
    vitq_grid_cell *cells;     /* expansion order */
    int n_cells;
} vitq_experiment;

/* Reads, validates and expands. On failure *out = NULL and e holds every error ("FILE:LINE: ..." lines). */
VITQ_API int vitq_experiment_load(const char *path, vitq_experiment **out, vitq_err *e);
VITQ_API int vitq_experiment_parse(const char *text, const char *name, vitq_experiment **out, vitq_err *e);
VITQ_API void vitq_experiment_free(vitq_experiment *x);

/* FNV-1a 64-bit over n bytes, continuing from h (start with VITQ_FNV1A64_INIT). */
#define VITQ_FNV1A64_INIT 0xcbf29ce484222325ULL
VITQ_API uint64_t vitq_fnv1a64(const void *data, size_t n, uint64_t h);

/* Builds a file-name-safe id "name=value,name=value" into out (cap >= 128): characters outside
 * [A-Za-z0-9._=,+-] become '_' and, when anything was replaced or the id is longer than 100 bytes, the id
 * is cut to 83 bytes and "-<16 hex digits of FNV-1a of the raw id>" appended. n == 0 gives "default". */
VITQ_API void vitq_grid_cell_id(const char *const *names, const char *const *values, int n, char *out, size_t cap);

/* Parses typed values exactly as for harness keys (and plugin parameters): bool is true/false/yes/no/1/0. */
VITQ_API int vitq_parse_bool(const char *s, int *out);

#ifdef __cplusplus
}
#endif
#endif
