/* train/train.h — the train layer: AdamW, the learning-rate schedule, gradient clipping, train-time
 * augmentation and initialisation, the training configuration read from an INI file, and the training
 * loop with checkpoint/resume and its HDF5 record (what made the bundled model).
 *
 *   optim.c         AdamW, cosine schedule, gradient clipping
 *   train_cfg.c     the training INI's key table (through core's typed-value parser)
 *   augment.c       timm's initialisation, RandomCrop + RandomHorizontalFlip
 *   train_ckpt.c    the checkpoint (model + AdamW state + position) and resume
 *   train.c         the loop
 *   train_record.c  the per-epoch record (HDF5) and its curve (gnuplot)
 *   session.c session_data.c session_recon.c   the session a pass plugin sees (vitq_session_api):
 *                   reconstruction is training, of quantizers and a few weights, one unit at a time */
#ifndef VITQ_TRAIN_H
#define VITQ_TRAIN_H

#include "quant/quant.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- AdamW (optim.c), PyTorch's torch.optim.AdamW arithmetic ----------------------------------------
 *   p -= lr * wd * p;  m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;
 *   p -= (lr / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)                                    */
typedef struct vitq_adamw {
    float beta1, beta2, eps, weight_decay;
    int64_t t;        /* updates done so far */
    int64_t n;        /* floats of state */
    float *m, *v;     /* (n) moments; vitq_alloc */
} vitq_adamw;

VITQ_API int vitq_adamw_init(vitq_adamw *o, int64_t n, float beta1, float beta2, float eps, float weight_decay,
                             vitq_err *e);
VITQ_API void vitq_adamw_release(vitq_adamw *o);
/* Updates params[0..n) with grads[0..n) using moments m[off..off+n), v[off..off+n), at step t (1-based)
 * with learning rate lr and decoupled decay wd. */
VITQ_API void vitq_adamw_update(vitq_adamw *o, float *params, const float *grads, int64_t off, int64_t n,
                                float lr, float wd, int64_t t);
/* 1 if the tensor gets weight decay: matrices only, never cls_token / pos_embed (timm's no_weight_decay
 * plus its "1-D params and biases are not decayed" rule). */
VITQ_API int vitq_param_decays(const vitq_tensor_ref *r);
/* One step over the whole model (state laid out like m->slab): o->t++, then every tensor. */
VITQ_API void vitq_adamw_step_model(vitq_adamw *o, vitq_model *m, float lr);

/* Learning rate at optimizer step `step` (0-based): linear warm-up base*(step+1)/warmup for step < warmup,
 * then cosine from base to min_lr over the remaining steps (timm's CosineLRScheduler, per step). */
VITQ_API double vitq_lr_cosine(int64_t step, int64_t warmup, int64_t total, double base_lr, double min_lr);
/* Global L2 norm of g[0..n) (computed in double); if it exceeds max_norm > 0, g is scaled by
 * max_norm / (norm + 1e-6) (torch.nn.utils.clip_grad_norm_). Returns the norm before clipping. */
VITQ_API double vitq_grad_clip(float *g, int64_t n, double max_norm);

/* ---- Augmentation (train.c) ---------------------------------------------------------------------------
 * torchvision RandomCrop(S, padding=pad, fill=0) + RandomHorizontalFlip(0.5) on already-normalised
 * images: the padding value is (0 - mean) / std per channel, i.e. a black pixel. In-place on B images. */
VITQ_API void vitq_augment(float *images, int B, int Cin, int S, int pad, int hflip, const float *fill,
                           vitq_rng *r);

/* ---- Configuration (train.c) ------------------------------------------------------------------------ */
typedef struct vitq_train_cfg {
    vitq_arch arch;
    char train_data[512], test_data[512]; /* dataset specs (vitq_dataset_open), splits "train" / "test" */
    int64_t train_limit, test_limit;     /* use the first N images (0 = all) */
    int epochs, batch;
    float lr, min_lr, weight_decay, beta1, beta2, eps;
    float warmup_epochs;                 /* may be fractional */
    float label_smoothing, grad_clip;    /* grad_clip <= 0: off */
    int crop_padding, hflip;
    uint64_t seed;
    float init_std;
    char init_from[512];                 /* [init] from: start from this model's weights (a second stage,
                                            e.g. a warm restart of the schedule); "" = random init */
    char init_record[512];               /* [init] record: the earlier stage's HDF5 record, whose epochs
                                            are prepended to this run's record (numbering continues) */
    int64_t max_steps;                   /* stop (as if interrupted, checkpoint written) after this global
                                            step; 0 = never. For tests. */
    int eval_every;                      /* evaluate on the test set every N epochs (and at the end) */
    char out_model[512], out_record[512], out_plot[512], checkpoint[512];
    char source[512];                    /* the INI file */
} vitq_train_cfg;

/* The recipe of the issue (AdamW 1e-3, wd 0.05, cosine with one warm-up epoch, label smoothing 0.1,
 * batch 128, crop + flip, 20 epochs) on Fashion-MNIST; what vitq_train_cfg_read starts from. */
VITQ_API void vitq_train_cfg_defaults(vitq_train_cfg *c);
/* Reads the training INI ([model] [data] [recipe] [init] [output]); every error names file:line. */
VITQ_API int vitq_train_cfg_read(const char *path, vitq_train_cfg *c, vitq_err *e);

/* Initialises the parameters: trunc-normal(init_std) for linear weights, pos_embed and cls_token,
 * PyTorch's Conv2d default (uniform +-1/sqrt(fan_in)) for the patch embedding, LayerNorm weight 1 bias 0,
 * linear biases 0. Deterministic in `seed`. */
VITQ_API void vitq_model_init_train(vitq_model *m, uint64_t seed, float std);

/* One epoch's line of the training record. */
typedef struct vitq_train_epoch {
    int epoch;               /* 1-based */
    double train_loss;       /* mean smoothed loss over the epoch's batches */
    double test_top1;        /* percent; negative when not evaluated */
    double lr;               /* at the epoch's last step */
    double seconds;          /* wall time of the epoch (training + evaluation) */
} vitq_train_epoch;

typedef struct vitq_train_opts {
    int resume;              /* continue from cfg->checkpoint if it exists */
    const char *command;     /* the command line, recorded in the model's metadata */
    int quiet;
} vitq_train_opts;

typedef struct vitq_train_result {
    int epochs_done;
    int64_t steps_done;
    double test_top1, train_seconds;
    int stopped;             /* 1: stopped early (Ctrl-C or max_steps); checkpoint written */
} vitq_train_result;

/* Trains per cfg; writes the checkpoint every epoch (and when stopped), and at the end the model, the
 * HDF5 record and the PNG. Returns VITQ_ECANCELLED after writing the checkpoint on Ctrl-C. */
VITQ_API int vitq_train_run(const vitq_train_cfg *cfg, const vitq_train_opts *opts, vitq_train_result *res,
                            vitq_err *e);

/* ---- Training record (train_record.c) --------------------------------------------------------------- */
/* Writes the per-epoch record as HDF5 (datasets epoch, train_loss, test_top1, lr, seconds; root attributes
 * from (keys, vals)) to h5_path atomically. */
VITQ_API int vitq_train_record_write_h5(const char *h5_path, const vitq_train_epoch *ep, int n,
                                        const char *const *keys, const char *const *vals, int n_attr,
                                        vitq_err *e);
/* Reads a record written by the function above; *out (malloc, *n_out rows) is NULL when it is empty. */
VITQ_API int vitq_train_record_read_h5(const char *h5_path, vitq_train_epoch **out, int *n_out, vitq_err *e);
/* Writes PNG_PATH with gnuplot: the .tsv and .gp are written beside it (same stem) and `gnuplot -c` run.
 * If gnuplot is missing the .tsv and .gp are still written and VITQ_EIO is returned naming it. */
VITQ_API int vitq_train_record_plot(const char *png_path, const vitq_train_epoch *ep, int n, const char *title,
                                    vitq_err *e);


/* ---- The pass session (session*.c) ------------------------------------------------------------------
 * What a pass plugin works through (vitq_plugin.h, "Passes"): the teacher, the float student, the
 * quantized student (NULL before calibration), the cell's calibration split in its seeded order, and
 * caches, training, optimiser and output services over them. One session per cell; passes run in turn. */
typedef struct vitq_session_cfg {
    const vitq_model *teacher;   /* the checkpoint as loaded (read only) */
    vitq_model *student;         /* the float student (the caller's; passes change it) */
    vitq_dataset *data;          /* the calibration split */
    const int64_t *order;        /* the cell's seeded order of its images (indices into data) */
    int64_t n_order;
    uint64_t seed;               /* the cell's seed */
    int batch;                   /* batch of the cache computations (images per forward) */
    const char *state_path;      /* where committed units are saved for resume (NULL: none) */
    const char *state_key;       /* what must match for a saved state to be resumed (a configuration hash) */
    const char *out_dir;         /* the run's output folder: save_student's relative paths (NULL: as given) */
    int data_parallel;           /* reconstruction steps split by images over the pool's threads (session_parts.c) */
} vitq_session_cfg;

typedef struct vitq_curve {
    char name[128];              /* "blocks.3/loss" */
    int64_t *step;
    double *value;
    int64_t n, cap;
} vitq_curve;

typedef struct vitq_stored {
    char name[192];              /* "<pass>/<name>" */
    float *data;
    int64_t n;
} vitq_stored;

VITQ_API int vitq_session_create(const vitq_session_cfg *c, vitq_session **out, vitq_err *e);
VITQ_API void vitq_session_free(vitq_session *s);
/* The quantized student, once calibration made it (the session does not own it). */
VITQ_API void vitq_session_set_qmodel(vitq_session *s, vitq_qmodel *q);
/* Runs pass plugin p with its parsed parameters; label prefixes progress and errors. A resumable state
 * at cfg->state_path whose key matches is loaded first (the pass then skips committed units). */
VITQ_API int vitq_session_run(vitq_session *s, const vitq_plugin *p, const void *params, const char *label,
                              vitq_err *e);
/* What the passes recorded, for the cell file. */
VITQ_API void vitq_session_curves(const vitq_session *s, const vitq_curve **out, int *n);
VITQ_API void vitq_session_stored(const vitq_session *s, const vitq_stored **out, int *n);
/* The services, as the plugin sees them. */
VITQ_API const vitq_session_api *vitq_session_services(void);

/* ---- Layer-internal: the session's state, shared by session.c, session_data.c, session_recon.c ------- */
/* A model run unit by unit over the session's images: in = the input of unit `unit`, out = its output
 * once out_ok. */
typedef struct vitq_chain {
    vitq_model *m;
    float *in, *out;
    int unit, ok, out_ok;
    vitq_acts *acts;                /* eval, batch c.batch */
} vitq_chain;

struct vitq_session {
    vitq_session_cfg c;
    vitq_qmodel *q;                 /* the quantized student (not owned) */
    vitq_model *tm;                 /* a private copy of the teacher (its acts, its gradients for tails) */
    char err[1024];                 /* the last service failure, for the pass's caller */
    /* images and caches (session_data.c) */
    int64_t n;                      /* images selected (the first n of the order) */
    float *images;                  /* (n, unit 0 input) */
    int64_t most;                   /* the largest per-sample unit input/output */
    vitq_chain tc, sc;              /* the teacher's chain (FP_IN, FP_OUT) and the float student's */
    float *q_in, *q_out;            /* the quantized student's chain: Q_IN(q_unit), and scratch */
    int q_unit, q_ok;
    vitq_acts *qa_eval;             /* eval acts of the quantized chain (batch c.batch) */
    vitq_acts *tail_a;              /* the teacher's train-mode acts for tails, batch tail_b */
    vitq_grad_acts *tail_g;
    int tail_b;
    vitq_acts *tu_a;                /* teacher_forward's acts, batch tu_b */
    int tu_b;
    /* reconstruction (session_recon.c) */
    int unit, batch, committed;     /* the unit in training (-1: none), its batch; units committed */
    vitq_acts *ua;
    vitq_grad_acts *ug;
    struct vitq_ss_parts *parts;    /* data-parallel steps of the unit in training (session_parts.c), or NULL */
    int dp_parts, dp_whole;         /* this pass's units begun in parts / one batch at a time with data_parallel */
    char dp_why[200];               /* why the first of those went one batch at a time */
    char (*tnames)[160];            /* names of the last trainables() answer */
    int n_tnames;
    int float_grads;                /* a tensor() answer carried a gradient: backward computes every one */
    /* output (session.c) */
    vitq_curve *curves;
    int n_curves;
    vitq_stored *stored;
    int n_stored;
    const char *pass_name;          /* the pass running */
    vitq_progress prog;
    char prog_label[96];
    int prog_on;
};
/* session_data.c */
void vitq_session_data_free(vitq_session *s);
void vitq_session_chains_reset(vitq_session *s);
/* session_recon.c */
void vitq_session_recon_free(vitq_session *s);
VITQ_API int vitq_session_resume(vitq_session *s, vitq_err *e);
/* The units committed in the cell's saved state if a run of `pass` (NULL: "") resumes from it (a quantized
 * model is set, and the state's pass and configuration key are this session's), else -1. vitq_session_resume's rule. */
VITQ_API int vitq_session_resumable(const vitq_session *s, const char *pass);
/* The services, by file (the table in session.c gathers them). */
int vitq_ss_images(vitq_session *s, int n);
int vitq_ss_io(vitq_session *s, int u, vitq_io_kind which, const int64_t *idx, int B, float *out);
int vitq_ss_capture(vitq_session *s, const char *tap, int student, float *out, int64_t *numel);
int vitq_ss_tail_forward(vitq_session *s, int u0, const float *x, int B, float *logits);
int vitq_ss_tail_backward(vitq_session *s, int u0, const float *dlogits, int B, float *dx);
int vitq_ss_teacher_forward(vitq_session *s, int u, const float *x, int B, float *y);
int vitq_ss_begin(vitq_session *s, int u, int batch);
int vitq_ss_forward(vitq_session *s, int u, const float *x, int B, double drop_prob, float *y);
int vitq_ss_backward(vitq_session *s, int u, const float *dy, int B, float *dx);
int vitq_ss_zero_grad(vitq_session *s, int u);
int vitq_ss_trainables(vitq_session *s, int u, const char *glob, vitq_qtensor *out, int max);
int vitq_ss_regularize(vitq_session *s, int u, const vitq_reg *r, double *loss);
int vitq_ss_project(vitq_session *s, int u);
int vitq_ss_commit(vitq_session *s, int u);
int vitq_ss_resume_unit(vitq_session *s);
/* session_parts.c: data-parallel steps (VITQ_DATA_PARALLEL=1) of the unit in training */
#define VITQ_MAX_PARTS VITQ_MAX_QPARTS
int vitq_ss_parts_begin(vitq_session *s, int u, int batch, vitq_err *e); /* off: vitq_ss_parts_active = 0 */
VITQ_API int vitq_ss_parts_active(const vitq_session *s);
void vitq_ss_parts_end(vitq_session *s); /* the unit's parts freed (before its quantizers leave training) */
int vitq_ss_parts_forward(vitq_session *s, int u, const float *x, int B, float *y, vitq_err *e);
int vitq_ss_parts_backward(vitq_session *s, int u, const float *dy, int B, float *dx, unsigned skip, vitq_err *e);
void vitq_ss_parts_free(vitq_session *s);
/* Records a failure of a service as the session's last error; returns code. */
int vitq_ss_fail(vitq_session *s, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* ---- Layer-internal: the training position, shared by train.c and train_ckpt.c ---------------------- */
typedef struct vitq_train_state {
    int epoch;           /* epochs completed */
    int64_t step_in_epoch, step; /* position: next step to run in `epoch`, global steps done */
    double loss_sum;     /* of the current epoch so far (sum of loss * batch) */
    int64_t loss_count;
    double seconds;      /* training wall time so far (all sessions) */
    double epoch_seconds;/* of the current epoch so far */
    vitq_train_epoch *hist;
    int n_hist;
} vitq_train_state;

/* A short fingerprint of what must not change across a resume (n_train: training images used). */
void vitq_train_fingerprint(const vitq_train_cfg *c, int64_t n_train, char *buf, size_t n);
/* Writes / reads the checkpoint at path; reading refuses another fingerprint, naming both. */
int vitq_train_ckpt_write(const char *path, const vitq_model *m, const vitq_adamw *o, const vitq_train_state *s,
                          const char *fingerprint, uint64_t seed, vitq_err *e);
int vitq_train_ckpt_read(const char *path, vitq_model *m, vitq_adamw *o, vitq_train_state *s, const char *fingerprint,
                         vitq_err *e);

#ifdef __cplusplus
}
#endif
#endif
