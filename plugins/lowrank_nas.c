/* lowrank_nas.c — AIQViT's architecture-informed low-rank compensation (specs/aiqvit.md §4, §5; specs/ALGORITHMS.md
 * §5) as a pass after calibration: per unit, in forward order, low-rank branches ΔW = B·A on the unit's
 * linear weights (lowrank_branch.h), their ranks searched DARTS-style or fixed, then a reconstruction of A,
 * B and the activation quantizers' trainables (DFQ's b1, b2 included) with a curriculum over the samples
 * (lowrank_cl.h); commit; next unit. A killed run resumes at the first uncommitted unit: a committed unit's
 * branches live in the float student's weights (pre_quant) or in the weights' post terms (fp_branch),
 * both in the session's state, and every stream is seeded from the cell's seed and the unit's name.
 *
 * Per reconstructed unit (§4.4, §4.5):
 *   1. branches on the unit's bound weights whose type `layers` lists (qkv, proj, fc1, fc2, reduction; the
 *      head and the patch embedding by their own switches; a fused qkv as one branch or, split_qkv, three
 *      over its row groups), A Kaiming-uniform, B = 0, α = 0;
 *   2. curriculum (cl = on): every image's loss under the initialised quantized unit (ΔW = 0), sorted
 *      ascending (easiest first);
 *   3. rank search (rank = 0 and more than one candidate): search_iters steps; the images split in two
 *      (search_split of them, the last ones of the cell's seeded order, update α; the rest A and B), one
 *      A,B step on a batch of the first part then one α step on a batch of the second (first-order DARTS),
 *      α frozen for the first alpha_warmup of the steps; search_split = 0: one joint step on one batch
 *      (single level). α: Adam lr alpha_lr, betas (alpha_beta1, 0.999), L2 weight decay alpha_wd (added to
 *      the gradient, torch.optim.Adam's form); A, B: Adam lr ab_lr, cosine to 0 over the search.
 *      Note (measured on vit-fmnist): with the shared mask a gate only scales B's column, which B itself can
 *      do, so on the training objective α is redundant with B; what moves α in the bi-level search is the
 *      other part's gradient, which there changed sign from step to step: α oscillates near 0 and its
 *      entropy stays near ln K (the curves <branch>/alpha_entropy show it); single level picks the largest;
 *   4. discretisation: the argmax candidate, the gates folded into B (lowrank_branch.h), per branch stored
 *      in the cell file (/pass/lowrank_nas/<branch>/...): rank, and after a search alpha_entropy (nats, at
 *      the switch), alpha_probs, candidates, fold_jump (‖ΔW before − after‖/‖ΔW before‖); the entropy over
 *      the search is the curve <branch>/alpha_entropy, the ranks and entropies by depth the curves
 *      <type>/rank_by_depth and <type>/alpha_entropy_by_depth (step = the block's index);
 *   5. reconstruction: recon_iters steps on batches drawn from the curriculum's first ⌈f(t)·N⌉ samples
 *      (cl = off: all), f(t) = min(1, cl_start + (1 − cl_start)·t/(cl_ramp·T)); A, B (Adam ab_lr, cosine) and
 *      every trainable tensor of the unit's activation quantizers (DFQ's b1 and b2 at lr_interval, the rest
 *      at lr_act, both cosine), then the quantizers' constraints (project);
 *   6. the final ΔW = B·A written for good: merge = pre_quant W ← W + ΔW in the float student, quantized from
 *      then on (no inference overhead); merge = fp_branch ΔW as the weight's float post term, W = Q(W) + ΔW
 *      (the extra float parameters, Σ r·(m + n), are stored as fp_params); then commit.
 * The loss (§4.5) is the mean squared error of the unit output against the teacher's (the head: KL of the
 * logits, as aph_recon); loss = qdrop mixes the unit input from Q_IN and FP_IN and keeps each activation
 * quantizer's output quantized with probability drop_prob (QDrop); loss = mse: Q_IN, everything quantized.
 * Weights: the weight quantizers keep their calibrated scales (§4.5: W and the weight scales frozen; their
 * learnable scales and AdaRound's alpha are not trained here, configure rounding = nearest); gradients reach
 * A and B through the weight quantizer's straight-through backward (pre_quant) or directly (fp_branch).
 * Units (§4.5): units = blocks (the literal reading: every transformer block and Swin patch merging, plus
 * the patch embedding / head when a branch sits on them) or all (every unit, as aph_recon).
 * Not implemented: recalib_after_merge (§4.3, re-running the weight quantizer's scale search on W + ΔW). */
#include "vitq_plugin.h"

#include "aph_loss.h"
#include "lowrank_branch.h"
#include "lowrank_cl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { MERGE_PRE_QUANT = 0, MERGE_FP_BRANCH = 1 };
enum { LOSS_MSE = 0, LOSS_QDROP = 1 };
enum { UNITS_BLOCKS = 0, UNITS_ALL = 1 };

typedef struct {
    int images, batch;
    int rank;
    char rank_candidates[VITQ_PARAM_STR_MAX];
    int relax;
    double tau, alpha_warmup, search_split;
    int search_iters;
    double alpha_lr, alpha_beta1, alpha_wd, ab_lr, rank_penalty;
    int recon_iters;
    int merge, loss;
    double drop_prob;
    int cl;
    double cl_start, cl_ramp, lr_act, lr_interval;
    char layers[VITQ_PARAM_STR_MAX];
    int split_qkv, include_head, include_patch_embed, units;
    int record_every;
} lrn_params;

#define P_(f) offsetof(lrn_params, f)
static const vitq_param lrn_param_table[] = {
    {.name = "images", .type = VITQ_P_INT, .offset = P_(images), .def = "1024", .min = 2, .max = 1e8,
     .help = "reconstruction images: the first N of the cell's seeded calib_split order (§4.5: 1024)"},
    {.name = "batch", .type = VITQ_P_INT, .offset = P_(batch), .def = "32", .min = 1, .max = 65536,
     .help = "samples per step, distinct (§4.5: 32)"},
    {.name = "rank", .type = VITQ_P_INT, .offset = P_(rank), .def = "0", .min = 0, .max = 1e6,
     .help = "0: search the rank among rank_candidates (§4.4); N: fixed rank N for every branch (clipped to min(m, n))"},
    {.name = "rank_candidates", .type = VITQ_P_STRING, .offset = P_(rank_candidates), .def = "20,40,60,80,100",
     .help = "the search's ranks, comma-separated, each clipped to min(m, n); 0 = no compensation (§4.4)"},
    {.name = "relax", .type = VITQ_P_ENUM, .offset = P_(relax), .def = "shared_mask", .choices = "shared_mask|independent",
     .help = "shared_mask: one B, A and gates g_j = mass of ranks > j; independent: one pair per rank (§4.4)"},
    {.name = "tau", .type = VITQ_P_FLOAT, .offset = P_(tau), .def = "1", .min = 1e-3, .max = 1e3,
     .help = "softmax temperature of alpha (§4.4)"},
    {.name = "alpha_warmup", .type = VITQ_P_FLOAT, .offset = P_(alpha_warmup), .def = "0.2", .min = 0, .max = 1,
     .help = "share of the search steps with alpha frozen, A and B alone (§4.4)"},
    {.name = "search_split", .type = VITQ_P_FLOAT, .offset = P_(search_split), .def = "0.5", .min = 0, .max = 0.9,
     .help = "share of the images that update alpha (bi-level, first-order DARTS); 0 = single level (§4.4)"},
    {.name = "search_iters", .type = VITQ_P_INT, .offset = P_(search_iters), .def = "2000", .min = 1, .max = 1e9,
     .help = "search steps per unit (§4.4: 2000)"},
    {.name = "alpha_lr", .type = VITQ_P_FLOAT, .offset = P_(alpha_lr), .def = "3e-4", .min = 0, .max = 10,
     .help = "Adam learning rate of alpha, constant (DARTS, §4.4)"},
    {.name = "alpha_beta1", .type = VITQ_P_FLOAT, .offset = P_(alpha_beta1), .def = "0.5", .min = 0, .max = 0.9999,
     .help = "Adam beta1 of alpha (DARTS: 0.5; beta2 0.999)"},
    {.name = "alpha_wd", .type = VITQ_P_FLOAT, .offset = P_(alpha_wd), .def = "1e-3", .min = 0, .max = 10,
     .help = "L2 weight decay of alpha, added to its gradient (DARTS: 1e-3)"},
    {.name = "ab_lr", .type = VITQ_P_FLOAT, .offset = P_(ab_lr), .def = "1e-3", .min = 0, .max = 10,
     .help = "Adam learning rate of A and B, cosine to 0 over each phase (§4.4)"},
    {.name = "rank_penalty", .type = VITQ_P_FLOAT, .offset = P_(rank_penalty), .def = "0", .min = 0, .max = 1e6,
     .help = "lambda of lambda*E[r]/r_max added to the alpha objective (§4.4)"},
    {.name = "recon_iters", .type = VITQ_P_INT, .offset = P_(recon_iters), .def = "20000", .min = 0, .max = 1e9,
     .help = "reconstruction steps per unit after the ranks are fixed (§4.5: 20000; fast profile 2000)"},
    {.name = "merge", .type = VITQ_P_ENUM, .offset = P_(merge), .def = "pre_quant", .choices = "pre_quant|fp_branch",
     .help = "pre_quant: W_q = Q(W + BA), merged after; fp_branch: Q(W) + BA, BA kept in float (§4.3)"},
    {.name = "loss", .type = VITQ_P_ENUM, .offset = P_(loss), .def = "mse", .choices = "mse|qdrop",
     .help = "mse: Q_IN, everything quantized; qdrop: input and activations quantized with prob. drop_prob (§4.5)"},
    {.name = "drop_prob", .type = VITQ_P_FLOAT, .offset = P_(drop_prob), .def = "0.5", .min = 0, .max = 1,
     .help = "loss = qdrop: probability that an element takes its quantized value"},
    {.name = "cl", .type = VITQ_P_BOOL, .offset = P_(cl), .def = "on",
     .help = "curriculum: samples by ascending initial loss, the share in use growing (§4.5); off: all samples"},
    {.name = "cl_start", .type = VITQ_P_FLOAT, .offset = P_(cl_start), .def = "0.3", .min = 0, .max = 1,
     .help = "curriculum: share of the samples in use at the first reconstruction step (§4.5)"},
    {.name = "cl_ramp", .type = VITQ_P_FLOAT, .offset = P_(cl_ramp), .def = "0.5", .min = 0, .max = 1,
     .help = "curriculum: share of the reconstruction steps after which every sample is in use (§4.5)"},
    {.name = "lr_act", .type = VITQ_P_FLOAT, .offset = P_(lr_act), .def = "4e-5", .min = 0, .max = 10,
     .help = "Adam learning rate of the activation quantizers' trainables (scales), cosine to 0 (§4.5)"},
    {.name = "lr_interval", .type = VITQ_P_FLOAT, .offset = P_(lr_interval), .def = "4e-5", .min = 0, .max = 10,
     .help = "Adam learning rate of DFQ's b1 and b2, cosine to 0 (§3.4)"},
    {.name = "layers", .type = VITQ_P_STRING, .offset = P_(layers), .def = "qkv,proj,fc1,fc2,reduction",
     .help = "layer types that get a branch: qkv, proj, fc1, fc2, reduction (Swin); none: no branch, the activation "
             "quantizers alone are reconstructed (§4.2)"},
    {.name = "split_qkv", .type = VITQ_P_BOOL, .offset = P_(split_qkv), .def = "false",
     .help = "three branches on the fused qkv weight (one per row group) instead of one (§4.2)"},
    {.name = "include_head", .type = VITQ_P_BOOL, .offset = P_(include_head), .def = "false",
     .help = "a branch on the classifier head too (§4.2)"},
    {.name = "include_patch_embed", .type = VITQ_P_BOOL, .offset = P_(include_patch_embed), .def = "false",
     .help = "a branch on the patch-embedding conv too, as an (out, in*P*P) matrix (§4.2)"},
    {.name = "units", .type = VITQ_P_ENUM, .offset = P_(units), .def = "blocks", .choices = "blocks|all",
     .help = "blocks: blocks and patch mergings (+ units carrying a branch) (§4.5); all: every unit, as aph_recon"},
    {.name = "record_every", .type = VITQ_P_INT, .offset = P_(record_every), .def = "10", .min = 1, .max = 1e9,
     .help = "curves <unit>/loss, <unit>/search_loss, <branch>/alpha_entropy: one point per this many steps"},
};
#undef P_

/* ---- layers and branches ---------------------------------------------------------------------------- */
#define LRN_MAX_LAYERS 16
#define LRN_MAX_T 512

typedef struct {
    vitq_weight w;
    char name[128];     /* the weight's name without ".weight" */
    const char *type;   /* qkv, proj, fc1, fc2, reduction, head, patch_embed */
    int64_t m, n;       /* the weight as a matrix: rows x (numel / rows) */
    int groups;         /* branches over equal row groups: 1, or 3 (split qkv) */
    lr_branch br[3];
    float *w0;          /* pre_quant: the float weights before any branch */
    float *dw;          /* m x n: ΔW of the whole weight */
} lrn_layer;

typedef struct {
    const lrn_params *p;
    vitq_session *s;
    const vitq_session_api *api;
    const vitq_host *host;
    vitq_unit_info ui;
    int u, head;
    int ranks[LR_MAX_CAND], n_ranks;
    lrn_layer L[LRN_MAX_LAYERS];
    int nL;
    vitq_opt *opt_ab, *opt_alpha, *opt_act;
    int n_ab, n_alpha, n_act;
    double act_lr[LRN_MAX_T];
    int64_t N, n_train;                  /* images; the search's A,B part [0, n_train), α part [n_train, N) */
    int64_t *perm, *perm_val, *idx, *order;
    float *xq, *xf, *x, *y, *yh, *dy;
    aph_rng batches, vbatches, mix;
} lrn_job;

/* The branch type of a weight name, or NULL when it gets none under p. */
static const char *layer_type(const lrn_params *p, const char *name) {
    static const struct {
        const char *suffix, *type;
    } T[] = {{"attn.qkv.weight", "qkv"}, {"attn.proj.weight", "proj"}, {"mlp.fc1.weight", "fc1"},
             {"mlp.fc2.weight", "fc2"}, {"downsample.reduction.weight", "reduction"}};
    const size_t ln = strlen(name);
    if (!strcmp(name, "head.weight") || !strcmp(name, "head.fc.weight")) return p->include_head ? "head" : NULL;
    if (!strcmp(name, "patch_embed.proj.weight")) return p->include_patch_embed ? "patch_embed" : NULL;
    for (size_t i = 0; i < sizeof T / sizeof T[0]; i++) {
        const size_t ls = strlen(T[i].suffix);
        if (ln < ls || strcmp(name + ln - ls, T[i].suffix) || (ln > ls && name[ln - ls - 1] != '.')) continue;
        /* is T[i].type in the comma list p->layers? */
        const char *s = p->layers;
        const size_t lt = strlen(T[i].type);
        while (*s) {
            while (*s == ' ' || *s == ',') s++;
            size_t k = strcspn(s, ", ");
            if (k == lt && !strncmp(s, T[i].type, lt)) return T[i].type;
            s += k;
        }
        return NULL;
    }
    return NULL;
}

/* Checks `layers` (every entry a known type; "none" alone: no branch). */
static int check_layers(const lrn_params *p, const vitq_host *h) {
    static const char *known[] = {"qkv", "proj", "fc1", "fc2", "reduction"};
    const char *s = p->layers;
    if (!strcmp(s, "none")) return VITQ_OK;
    while (*s) {
        while (*s == ' ' || *s == ',') s++;
        size_t k = strcspn(s, ", "), ok = 0;
        for (int i = 0; i < 5 && k; i++) ok |= strlen(known[i]) == k && !strncmp(s, known[i], k);
        if (k && !ok)
            return h->fail(h, VITQ_EINVAL, "layers: unknown layer type '%.*s' (known: qkv, proj, fc1, fc2, reduction; or none)",
                           (int)k, s);
        s += k;
    }
    return VITQ_OK;
}

static void layer_free(lrn_layer *l) {
    for (int g = 0; g < l->groups; g++) lr_branch_free(&l->br[g]);
    free(l->w0), free(l->dw);
    l->w0 = l->dw = NULL;
}

/* The branches of weight w (rng: A's initialisation). */
static int layer_init(lrn_job *j, const vitq_weight *w, aph_rng *rng) {
    const lrn_params *p = j->p;
    lrn_layer *l = &j->L[j->nL];
    memset(l, 0, sizeof *l);
    l->w = *w;
    snprintf(l->name, sizeof l->name, "%.*s", (int)(strlen(w->name) - 7), w->name); /* strip ".weight" */
    l->m = w->shape[0], l->n = w->numel / w->shape[0];
    l->groups = p->split_qkv && strstr(w->name, "attn.qkv.") && l->m % 3 == 0 ? 3 : 1;
    j->nL++;
    const int64_t rows = l->m / l->groups;
    int cand[LR_MAX_CAND];
    for (int g = 0; g < l->groups; g++) {
        int K = lr_candidates(j->ranks, j->n_ranks, rows, l->n, cand);
        if (lr_branch_init(&l->br[g], rows, l->n, cand, K, p->relax, p->tau, rng))
            return j->host->fail(j->host, VITQ_ENOMEM, "%s: out of memory for the branch", l->name);
    }
    l->dw = malloc(sizeof(float) * (size_t)(l->m * l->n));
    if (!l->dw) return j->host->fail(j->host, VITQ_ENOMEM, "%s: out of memory", l->name);
    if (p->merge == MERGE_PRE_QUANT) {
        if (!(l->w0 = malloc(sizeof(float) * (size_t)(l->m * l->n))))
            return j->host->fail(j->host, VITQ_ENOMEM, "%s: out of memory", l->name);
        memcpy(l->w0, w->src, sizeof(float) * (size_t)(l->m * l->n));
        return VITQ_OK;
    }
    int rc = j->api->enable_post(j->s, w->name);
    vitq_weight again[LRN_MAX_LAYERS * 2];
    int nw = rc ? rc : j->api->weights(j->s, j->u, again, LRN_MAX_LAYERS * 2);
    for (int i = 0; i < nw; i++)
        if (!strcmp(again[i].name, w->name)) l->w = again[i]; /* now with its post term */
    if (nw < 0) return nw;
    if (!l->w.post) return j->host->fail(j->host, VITQ_EINVAL, "%s: the session gave no post term", w->name);
    memset(l->w.post, 0, sizeof(float) * (size_t)(l->m * l->n));
    return VITQ_OK;
}

/* Branch name for storage: the layer's, plus .q/.k/.v for a split qkv. */
static void branch_name(const lrn_layer *l, int g, char *out, size_t n) {
    static const char *qkv[] = {"q", "k", "v"};
    if (l->groups == 1) snprintf(out, n, "%s", l->name);
    else snprintf(out, n, "%s.%s", l->name, qkv[g]);
}

/* ΔW of every layer written where the forward reads it (pre_quant: src = W0 + ΔW; fp_branch: post = ΔW). */
static void apply_branches(lrn_job *j) {
    for (int i = 0; i < j->nL; i++) {
        lrn_layer *l = &j->L[i];
        const int64_t rows = l->m / l->groups, mn = l->m * l->n;
        for (int g = 0; g < l->groups; g++) lr_delta(&l->br[g], j->api->gemm, l->dw + g * rows * l->n);
        if (j->p->merge == MERGE_FP_BRANCH) {
            memcpy(l->w.post, l->dw, sizeof(float) * (size_t)mn);
            continue;
        }
        for (int64_t k = 0; k < mn; k++) l->w.src[k] = l->w0[k] + l->dw[k];
    }
}

/* The branches' gradients from the session's weight gradients after backward. */
static void branch_grads(lrn_job *j, int want_ab, int want_alpha) {
    for (int i = 0; i < j->nL; i++) {
        lrn_layer *l = &j->L[i];
        const float *G = j->p->merge == MERGE_FP_BRANCH ? l->w.used_grad : l->w.src_grad;
        const int64_t rows = l->m / l->groups;
        for (int g = 0; g < l->groups; g++) {
            lr_zero_grad(&l->br[g]);
            lr_backward(&l->br[g], j->api->gemm, G + g * rows * l->n, want_ab, want_alpha);
        }
    }
}

/* ---- one batch --------------------------------------------------------------------------------------- */
/* Mean squared error (the head: KL, batchmean) of B outputs, its gradient into dy; per-sample values into
 * per (may be NULL). */
static double unit_loss(lrn_job *j, int B, double *per) {
    const int64_t P = j->ui.out_numel;
    double total = 0;
    for (int b = 0; b < B; b++) {
        const float *yh = j->yh + b * P, *y = j->y + b * P;
        double l = j->head ? aph_kl_sum(yh, y, 1, P, j->dy + b * P) : aph_wse(yh, y, NULL, P) / (double)P;
        if (per) per[b] = l;
        total += l;
    }
    if (j->head)
        for (int64_t i = 0; i < B * P; i++) j->dy[i] = (float)(j->dy[i] / B);
    else
        aph_wse_grad(j->yh, j->y, NULL, B * P, 1.0 / ((double)B * (double)P), j->dy);
    return total / B;
}

/* Forward of B samples idx[] (the branches applied), the loss, and with `back` the backward into the
 * session's gradients (zeroed first). drop: QDrop's probability (1 = everything quantized). */
static int unit_batch(lrn_job *j, int B, double drop, int back, double *loss, double *per) {
    const vitq_session_api *api = j->api;
    const int u = j->u;
    const int64_t in = B * j->ui.in_numel;
    int rc = api->io(j->s, u, VITQ_IO_Q_IN, j->idx, B, j->xq);
    if (!rc && drop < 1) rc = api->io(j->s, u, VITQ_IO_FP_IN, j->idx, B, j->xf);
    if (!rc) rc = api->io(j->s, u, VITQ_IO_FP_OUT, j->idx, B, j->y);
    if (rc) return rc;
    aph_mix_input(&j->mix, drop, j->xq, j->xf, j->x, in, j->host->parallel_for);
    apply_branches(j);
    if ((rc = api->zero_grad(j->s, u)) || (rc = api->forward(j->s, u, j->x, B, drop, j->yh))) return rc;
    *loss = unit_loss(j, B, per);
    return back ? api->backward(j->s, u, j->dy, B, NULL) : VITQ_OK;
}

/* ---- optimisers ----------------------------------------------------------------------------------- */
/* Adam over every branch's A and B (no weight decay); and, while searching, over the α's (betas
 * (alpha_beta1, 0.999), decay added to the gradient by the caller). */
static int make_branch_opts(lrn_job *j, int with_alpha) {
    vitq_adam_group g[LRN_MAX_LAYERS * 6], ga[LRN_MAX_LAYERS * 3];
    int n = 0, na = 0;
    for (int i = 0; i < j->nL; i++)
        for (int k = 0; k < j->L[i].groups; k++) {
            lr_branch *b = &j->L[i].br[k];
            if (!b->A) continue;
            g[n++] = (vitq_adam_group){b->A, b->gA, b->nA, 0.9, 0.999, 1e-8, 0};
            g[n++] = (vitq_adam_group){b->B, b->gB, b->nB, 0.9, 0.999, 1e-8, 0};
            if (with_alpha && b->searching)
                ga[na++] = (vitq_adam_group){b->alpha, b->galpha, b->K, j->p->alpha_beta1, 0.999, 1e-8, 0};
        }
    if (j->opt_ab) j->api->adam_free(j->opt_ab);
    if (j->opt_alpha) j->api->adam_free(j->opt_alpha);
    j->opt_ab = j->opt_alpha = NULL;
    j->n_ab = n, j->n_alpha = na;
    if (n && !(j->opt_ab = j->api->adam_create(j->s, g, n))) return VITQ_ENOMEM;
    if (na && !(j->opt_alpha = j->api->adam_create(j->s, ga, na))) return VITQ_ENOMEM;
    return VITQ_OK;
}

/* Adam over the unit's activation-quantizer trainables: every trainable tensor not on a weight tap and
 * not AdaRound's alpha; b1/b2 at lr_interval, the rest at lr_act (each cosine-annealed by the caller). */
static int make_act_opt(lrn_job *j) {
    const vitq_session_api *api = j->api;
    vitq_qtensor t[LRN_MAX_T];
    vitq_adam_group g[LRN_MAX_T];
    vitq_weight w[64];
    int nw = api->weights(j->s, j->u, w, 64), n = nw < 0 ? nw : api->trainables(j->s, j->u, "*", t, LRN_MAX_T);
    if (n < 0) return n;
    if (n == LRN_MAX_T) return j->host->fail(j->host, VITQ_EINVAL, "%s: too many trainable tensors", j->ui.name);
    int k = 0, skipped_alpha = 0;
    for (int i = 0; i < n; i++) {
        const char *colon = strrchr(t[i].name, ':'), *tensor = colon ? colon + 1 : t[i].name;
        size_t len = colon ? (size_t)(colon - t[i].name) : strlen(t[i].name);
        int is_weight = 0;
        for (int q = 0; q < nw && !is_weight; q++) is_weight = strlen(w[q].name) == len && !strncmp(w[q].name, t[i].name, len);
        if (!strcmp(tensor, "alpha")) skipped_alpha = 1;
        if (is_weight || !strcmp(tensor, "alpha")) continue;
        j->act_lr[k] = !strcmp(tensor, "b1") || !strcmp(tensor, "b2") ? j->p->lr_interval : j->p->lr_act;
        g[k++] = (vitq_adam_group){t[i].value, t[i].grad, t[i].n, 0.9, 0.999, 1e-8, 0};
    }
    if (skipped_alpha)
        j->host->log(j->host, VITQ_LOG_WARN, "%s: AdaRound's alpha is not trained by lowrank_nas (use rounding = nearest)",
                     j->ui.name);
    j->n_act = k;
    if (k && !(j->opt_act = api->adam_create(j->s, g, k))) return VITQ_ENOMEM;
    return VITQ_OK;
}

/* ---- the phases -------------------------------------------------------------------------------------- */
static double drop_of(const lrn_params *p) { return p->loss == LOSS_QDROP ? p->drop_prob : 1.0; }

/* Curriculum order: every image's loss under the initialised unit (ΔW = 0), no QDrop; sorted ascending. */
static int curriculum_order(lrn_job *j) {
    double *loss = malloc(sizeof(double) * (size_t)j->N);
    double *pb = malloc(sizeof(double) * (size_t)j->p->batch);
    int rc = loss && pb ? VITQ_OK : j->host->fail(j->host, VITQ_ENOMEM, "%s: out of memory", j->ui.name);
    for (int64_t b0 = 0; !rc && b0 < j->N; b0 += j->p->batch) {
        const int B = (int)(j->N - b0 < j->p->batch ? j->N - b0 : j->p->batch);
        for (int b = 0; b < B; b++) j->idx[b] = b0 + b;
        double l;
        rc = unit_batch(j, B, 1.0, 0, &l, pb);
        for (int b = 0; !rc && b < B; b++) loss[b0 + b] = pb[b];
    }
    if (!rc && lr_cl_order(loss, j->N, j->order)) rc = j->host->fail(j->host, VITQ_ENOMEM, "out of memory");
    free(loss), free(pb);
    return rc;
}

/* Adam on the α's: L2 decay and the rank penalty added to their gradients first. */
static int alpha_step(lrn_job *j) {
    if (!j->opt_alpha) return VITQ_OK;
    double lr[LRN_MAX_LAYERS * 3];
    for (int i = 0; i < j->nL; i++)
        for (int g = 0; g < j->L[i].groups; g++) {
            lr_branch *b = &j->L[i].br[g];
            if (!b->searching) continue;
            lr_penalty(b, j->p->rank_penalty);
            for (int k = 0; k < b->K; k++) b->galpha[k] += (float)(j->p->alpha_wd * b->alpha[k]);
        }
    for (int i = 0; i < j->n_alpha; i++) lr[i] = j->p->alpha_lr;
    return j->api->adam_step(j->opt_alpha, lr);
}

static int ab_step(lrn_job *j, int64_t t, int64_t T) {
    double lr[LRN_MAX_LAYERS * 6];
    const double l = aph_cosine_lr(t - 1, T, j->p->ab_lr);
    for (int i = 0; i < j->n_ab; i++) lr[i] = l;
    return j->opt_ab ? j->api->adam_step(j->opt_ab, lr) : VITQ_OK;
}

/* Curve <branch>/alpha_entropy of every searching branch at step t. */
static int record_entropy(lrn_job *j, int64_t t) {
    for (int i = 0; i < j->nL; i++)
        for (int g = 0; g < j->L[i].groups; g++) {
            lr_branch *b = &j->L[i].br[g];
            if (!b->searching) continue;
            double p[LR_MAX_CAND];
            char name[160], bn[140];
            lr_probs(b, p);
            branch_name(&j->L[i], g, bn, sizeof bn);
            snprintf(name, sizeof name, "%s/alpha_entropy", bn);
            int rc = j->api->record(j->s, name, t, lr_entropy(p, b->K));
            if (rc) return rc;
        }
    return VITQ_OK;
}

/* One search step t of T: A,B on the train part (and α too at single level), then α on the other part. */
static int search_step(lrn_job *j, int64_t t, int64_t T, double *loss) {
    const lrn_params *p = j->p;
    const int B = p->batch, bilevel = j->n_train < j->N, alpha_on = (double)t > p->alpha_warmup * (double)T;
    aph_draw_batch(&j->batches, j->perm, j->n_train, B, j->idx);
    int rc = unit_batch(j, B, drop_of(p), 1, loss, NULL);
    if (rc) return rc;
    branch_grads(j, 1, !bilevel && alpha_on);
    if ((rc = ab_step(j, t, T))) return rc;
    if (!alpha_on) return VITQ_OK;
    if (bilevel) {
        double lv;
        aph_draw_batch(&j->vbatches, j->perm_val, j->N - j->n_train, B, j->idx);
        for (int b = 0; b < B; b++) j->idx[b] += j->n_train;
        if ((rc = unit_batch(j, B, drop_of(p), 1, &lv, NULL))) return rc;
        branch_grads(j, 0, 1);
    }
    return alpha_step(j);
}

static int search(lrn_job *j) {
    const int64_t T = j->p->search_iters;
    char label[200], name[160];
    snprintf(name, sizeof name, "%s/search_loss", j->ui.name);
    int rc = make_branch_opts(j, 1);
    double sum = 0;
    int64_t inw = 0;
    for (int64_t t = 1; !rc && t <= T; t++) {
        double l;
        if ((rc = search_step(j, t, T, &l))) break;
        sum += l, inw++;
        if (t % j->p->record_every == 0 || t == T) {
            rc = j->api->record(j->s, name, t, sum / (double)inw);
            if (!rc) rc = record_entropy(j, t);
            sum = 0, inw = 0;
        }
        snprintf(label, sizeof label, "%s search|loss %.4g", j->ui.name, l);
        if (!rc && j->host->progress(j->host, t, T, label)) rc = VITQ_ECANCELLED;
    }
    return rc;
}

/* Stores one float under <branch>/<what>. */
static int store1(lrn_job *j, const char *bn, const char *what, const float *v, int64_t n) {
    char name[200];
    snprintf(name, sizeof name, "%s/%s", bn, what);
    return j->api->store(j->s, name, v, n);
}

/* Curves by layer type over depth (step = the unit's block index, or its unit index outside the blocks):
 * <type>/rank_by_depth = the chosen rank, <type>/alpha_entropy_by_depth = α's entropy at the switch
 * (searched branches); a split qkv's branches are the types qkv.q, qkv.k, qkv.v. `vitq plot` draws each
 * kind as one figure with a line per type (its curve families), `vitq results --curves` lists them and
 * experiments/aiqvit-ranks.gp draws both side by side for one cell. */
static int record_rank(lrn_job *j, const lrn_layer *l, int g, float r, double entropy) {
    static const char *qkv[] = {"q", "k", "v"};
    char type[48], name[96];
    if (l->groups == 1) snprintf(type, sizeof type, "%s", l->type);
    else snprintf(type, sizeof type, "%s.%s", l->type, qkv[g]);
    const int64_t depth = j->ui.block >= 0 ? j->ui.block : j->u;
    snprintf(name, sizeof name, "%s/rank_by_depth", type);
    int rc = j->api->record(j->s, name, depth, r);
    snprintf(name, sizeof name, "%s/alpha_entropy_by_depth", type);
    if (!rc && !isnan(entropy)) rc = j->api->record(j->s, name, depth, entropy);
    return rc;
}

/* Discretises every branch and stores its rank (and, after a search, α's entropy, probabilities, the
 * candidates and the fold jump). */
static int discretise_all(lrn_job *j, int searched) {
    int rc = VITQ_OK;
    for (int i = 0; !rc && i < j->nL; i++) {
        lrn_layer *l = &j->L[i];
        const int64_t rows = l->m / l->groups;
        for (int g = 0; !rc && g < l->groups; g++) {
            lr_branch *b = &l->br[g];
            float *dw = l->dw + g * rows * l->n;
            const int was = b->searching;
            double p[LR_MAX_CAND], before = 0, diff = 0;
            lr_delta(b, j->api->gemm, dw);
            float *keep = malloc(sizeof(float) * (size_t)(rows * l->n));
            if (!keep || lr_discretise(b, p)) {
                free(keep);
                return j->host->fail(j->host, VITQ_ENOMEM, "%s: out of memory", l->name);
            }
            memcpy(keep, dw, sizeof(float) * (size_t)(rows * l->n));
            lr_delta(b, j->api->gemm, dw);
            for (int64_t k = 0; k < rows * l->n; k++)
                before += (double)keep[k] * keep[k], diff += ((double)keep[k] - dw[k]) * ((double)keep[k] - dw[k]);
            free(keep);
            char bn[140];
            branch_name(l, g, bn, sizeof bn);
            float r = (float)b->r, h = (float)lr_entropy(p, b->K), fj = before > 0 ? (float)sqrt(diff / before) : 0.0f;
            float pf[LR_MAX_CAND], cf[LR_MAX_CAND];
            for (int k = 0; k < b->K; k++) pf[k] = (float)p[k], cf[k] = (float)b->rank[k];
            rc = store1(j, bn, "rank", &r, 1);
            if (!rc) rc = record_rank(j, l, g, r, was ? h : NAN);
            if (!rc && searched && was) rc = store1(j, bn, "alpha_entropy", &h, 1);
            if (!rc && searched && was) rc = store1(j, bn, "alpha_probs", pf, b->K);
            if (!rc && searched && was) rc = store1(j, bn, "candidates", cf, b->K);
            if (!rc && searched && was) rc = store1(j, bn, "fold_jump", &fj, 1);
            if (!rc) j->host->log(j->host, VITQ_LOG_INFO, "%s: rank %d%s (entropy %.3f)", bn, b->r,
                                  was ? " searched" : "", was ? h : 0.0);
        }
    }
    return rc;
}

/* One reconstruction step t of T (1-based) on the curriculum's share. */
static int recon_step(lrn_job *j, int64_t t, int64_t T, double *loss, double *share) {
    const lrn_params *p = j->p;
    const int B = p->batch;
    *share = p->cl ? lr_cl_share(t - 1, T, p->cl_start, p->cl_ramp) : 1.0;
    const int64_t count = lr_cl_count(*share, j->N, B);
    lr_cl_draw(&j->batches, j->perm, count, B, p->cl ? j->order : NULL, j->idx);
    int rc = unit_batch(j, B, drop_of(p), 1, loss, NULL);
    if (rc) return rc;
    branch_grads(j, 1, 0);
    if ((rc = ab_step(j, t, T))) return rc;
    double lr[LRN_MAX_T];
    for (int i = 0; i < j->n_act; i++) lr[i] = aph_cosine_lr(t - 1, T, j->act_lr[i]);
    if (j->opt_act && (rc = j->api->adam_step(j->opt_act, lr))) return rc;
    return j->api->project(j->s, j->u);
}

static int reconstruct(lrn_job *j) {
    const int64_t T = j->p->recon_iters;
    char label[200], name[160], name_cl[160];
    snprintf(name, sizeof name, "%s/loss", j->ui.name);
    snprintf(name_cl, sizeof name_cl, "%s/cl_share", j->ui.name);
    int rc = make_branch_opts(j, 0);
    if (!rc) rc = make_act_opt(j);
    if (!rc && j->n_ab + j->n_act == 0) {
        j->host->log(j->host, VITQ_LOG_INFO, "%s: nothing trains (no branch, no trainable activation tensor)", j->ui.name);
        return VITQ_OK;
    }
    for (int64_t i = 0; i < j->N; i++) j->perm[i] = i; /* a fresh permutation: the curriculum's positions */
    double sum = 0, share = 1;
    int64_t inw = 0;
    for (int64_t t = 1; !rc && t <= T; t++) {
        double l;
        if ((rc = recon_step(j, t, T, &l, &share))) break;
        sum += l, inw++;
        if (t % j->p->record_every == 0 || t == T) {
            rc = j->api->record(j->s, name, t, sum / (double)inw);
            if (!rc && j->p->cl) rc = j->api->record(j->s, name_cl, t, share);
            sum = 0, inw = 0;
        }
        snprintf(label, sizeof label, "%s recon|loss %.4g", j->ui.name, l);
        if (!rc && j->host->progress(j->host, t, T, label)) rc = VITQ_ECANCELLED;
    }
    return rc;
}

/* ---- one unit ----------------------------------------------------------------------------------------- */
static int alloc_job(lrn_job *j) {
    const int B = j->p->batch;
    const int64_t in = B * j->ui.in_numel, out = B * j->ui.out_numel;
    j->perm = malloc(sizeof(int64_t) * (size_t)j->N), j->perm_val = malloc(sizeof(int64_t) * (size_t)j->N);
    j->idx = malloc(sizeof(int64_t) * (size_t)B), j->order = malloc(sizeof(int64_t) * (size_t)j->N);
    j->xq = malloc(sizeof(float) * (size_t)in), j->xf = malloc(sizeof(float) * (size_t)in);
    j->x = malloc(sizeof(float) * (size_t)in);
    j->y = malloc(sizeof(float) * (size_t)out), j->yh = malloc(sizeof(float) * (size_t)out);
    j->dy = malloc(sizeof(float) * (size_t)out);
    if (!j->perm || !j->perm_val || !j->idx || !j->order || !j->xq || !j->xf || !j->x || !j->y || !j->yh || !j->dy)
        return j->host->fail(j->host, VITQ_ENOMEM, "%s: out of memory for batch %d", j->ui.name, B);
    for (int64_t i = 0; i < j->N; i++) j->perm[i] = j->perm_val[i] = j->order[i] = i;
    return VITQ_OK;
}

static void free_job(lrn_job *j) {
    const vitq_session_api *api = j->api;
    if (j->opt_ab) api->adam_free(j->opt_ab);
    if (j->opt_alpha) api->adam_free(j->opt_alpha);
    if (j->opt_act) api->adam_free(j->opt_act);
    for (int i = 0; i < j->nL; i++) layer_free(&j->L[i]);
    free(j->perm), free(j->perm_val), free(j->idx), free(j->order);
    free(j->xq), free(j->xf), free(j->x), free(j->y), free(j->yh), free(j->dy);
}

/* The unit's branches (on its bound weights of a listed type). */
static int make_layers(lrn_job *j) {
    vitq_weight w[LRN_MAX_LAYERS * 2];
    int nw = j->api->weights(j->s, j->u, w, LRN_MAX_LAYERS * 2);
    if (nw < 0) return nw;
    char key[160];
    snprintf(key, sizeof key, "%s/lowrank_init", j->ui.name);
    aph_rng rng = {j->api->seed(j->s, key)};
    for (int i = 0; i < nw; i++) {
        const char *type = layer_type(j->p, w[i].name);
        if (!type) continue;
        if (j->nL == LRN_MAX_LAYERS) return j->host->fail(j->host, VITQ_EINVAL, "%s: too many layers", j->ui.name);
        int rc = layer_init(j, &w[i], &rng);
        if (rc) return rc;
        j->L[j->nL - 1].type = type;
    }
    return VITQ_OK;
}

/* Float parameters a fp_branch keeps at inference: Σ r·(rows + n) of the unit's branches. */
static float fp_params(const lrn_job *j) {
    double n = 0;
    for (int i = 0; i < j->nL; i++)
        for (int g = 0; g < j->L[i].groups; g++) n += (double)j->L[i].br[g].r * (double)(j->L[i].br[g].m + j->L[i].n);
    return (float)n;
}

/* Whether unit u is reconstructed at all. */
static int wanted(const lrn_params *p, const vitq_unit_info *ui) {
    if (p->units == UNITS_ALL || ui->kind == VITQ_UNITK_BLOCK || ui->kind == VITQ_UNITK_MERGE) return 1;
    return (ui->kind == VITQ_UNITK_HEAD && p->include_head) || (ui->kind == VITQ_UNITK_PATCH_EMBED && p->include_patch_embed);
}

static int run_unit(lrn_job *j) {
    const lrn_params *p = j->p;
    char key[160];
    int rc = j->api->begin(j->s, j->u, p->batch);
    if (!rc) rc = alloc_job(j);
    if (!rc) rc = make_layers(j);
    snprintf(key, sizeof key, "%s/batches", j->ui.name), j->batches.s = j->api->seed(j->s, key);
    snprintf(key, sizeof key, "%s/alpha_batches", j->ui.name), j->vbatches.s = j->api->seed(j->s, key);
    snprintf(key, sizeof key, "%s/input_qdrop", j->ui.name), j->mix.s = j->api->seed(j->s, key);
    int searching = 0;
    for (int i = 0; i < j->nL; i++)
        for (int g = 0; g < j->L[i].groups; g++) searching |= j->L[i].br[g].searching;
    if (!rc && p->cl && p->recon_iters > 0) rc = curriculum_order(j);
    if (!rc && searching) rc = search(j);
    if (!rc) rc = discretise_all(j, searching);
    if (!rc && p->merge == MERGE_FP_BRANCH && j->nL) {
        float n = fp_params(j);
        rc = j->api->store(j->s, (snprintf(key, sizeof key, "%s/fp_params", j->ui.name), key), &n, 1);
    }
    if (!rc && p->recon_iters > 0) rc = reconstruct(j);
    if (!rc) apply_branches(j); /* the final ΔW = B·A, merged or kept as the post term */
    if (!rc) rc = j->api->commit(j->s, j->u);
    return rc;
}

/* ---- the pass ---------------------------------------------------------------------------------------- */
static int lrn_run(const void *params, vitq_session *s, const vitq_session_api *api, const vitq_host *host) {
    const lrn_params *p = params;
    if (api->size < sizeof(vitq_session_api))
        return host->fail(host, VITQ_EINVAL, "the session's services are older than this plugin's ABI");
    char why[200];
    int req[LR_MAX_CAND], nreq = p->rank ? 1 : lr_parse_ranks(p->rank_candidates, req, LR_MAX_CAND, why, sizeof why);
    if (nreq < 0) return host->fail(host, VITQ_EINVAL, "rank_candidates: %s", why);
    if (p->rank) req[0] = p->rank;
    int rc = check_layers(p, host);
    if (rc) return rc;
    const int64_t n_val = p->rank ? 0 : (int64_t)(p->search_split * p->images + 0.5);
    if (p->batch > p->images - n_val || (n_val && p->batch > n_val))
        return host->fail(host, VITQ_EINVAL, "batch %d is larger than a part of the %d images (search_split %g)",
                          p->batch, p->images, p->search_split);
    const int U = api->n_units(s), start = api->resume_unit(s);
    if (start >= U) return VITQ_OK;
    if (start > 0) host->log(host, VITQ_LOG_INFO, "resuming at unit %d of %d", start, U);
    if ((rc = api->images(s, p->images))) return rc;
    for (int u = start; !rc && u < U; u++) {
        lrn_job j = {.p = p, .s = s, .api = api, .host = host, .u = u, .N = p->images, .n_train = p->images - n_val};
        memcpy(j.ranks, req, sizeof req), j.n_ranks = nreq;
        if ((rc = api->unit(s, u, &j.ui))) break;
        j.head = j.ui.kind == VITQ_UNITK_HEAD;
        if (wanted(p, &j.ui)) rc = run_unit(&j);
        free_job(&j);
    }
    return rc;
}

static const vitq_pass_ops lrn_ops = {.size = sizeof(vitq_pass_ops), .when = VITQ_PASS_AFTER_CALIB, .run = lrn_run};

static const vitq_plugin lrn_plugin = {
    .abi = VITQ_PLUGIN_ABI,
    .size = sizeof(vitq_plugin),
    .name = "lowrank_nas",
    .version = "1.0",
    .summary = "AIQViT's low-rank compensation: branches B*A on the linear weights, ranks by a DARTS search or "
               "fixed, block reconstruction with a curriculum (specs/aiqvit.md §4)",
    .kind = VITQ_PLUGIN_PASS,
    .params = lrn_param_table,
    .n_params = (int)(sizeof lrn_param_table / sizeof lrn_param_table[0]),
    .params_size = sizeof(lrn_params),
    .pass = &lrn_ops,
};

VITQ_PLUGIN_EXPORT const vitq_plugin *vitq_plugin_entry(void) { return &lrn_plugin; }
