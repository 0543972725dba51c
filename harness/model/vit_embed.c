/* vit_embed.c — ViT's token sequence from the patch embeddings, with the prefix-token variants of timm's
 * VisionTransformer._pos_embed (vision_transformer.py) and deit.py's VisionTransformerDistilled:
 *
 *   prefix tokens: cls_token (unless class_token = False), then dist_token (distilled)
 *   default:          x = cat(prefix, patches) + pos_embed          pos_embed (1, P + Np, C)
 *   no_embed_class:   x = cat(prefix, patches + pos_embed)          pos_embed (1, Np, C): the prefix tokens
 *                                                                   enter the blocks exactly as stored
 *
 * The plain case (one class token, pos_embed over every token) goes through the embed kernel, so its
 * numbers are the kernel's bit for bit; the variants use the loops below (the same additions).
 * Backward: dpatch_out is written; dcls, ddist and dpos accumulate, summed over the batch in order. */
#include "model/model.h"

#include <string.h>

static int plain(const vitq_arch *a) { return !a->no_class_token && !a->distilled && !a->no_embed_class; }

void vitq_vit_embed_forward(const vitq_arch *a, const vitq_params *p, float *x, const float *patch_out, int64_t B,
                            int64_t N, int64_t C) {
    if (plain(a)) {
        vitq_embed_forward(x, patch_out, p->cls_token, p->pos_embed, B, N, C);
        return;
    }
    const int64_t P = vitq_arch_prefix(a), Np = N - P, pos0 = a->no_embed_class ? 0 : P;
    const float *prefix[2] = {a->no_class_token ? p->dist_token : p->cls_token, p->dist_token};
    for (int64_t b = 0; b < B; b++) {
        float *xb = x + b * N * C;
        for (int64_t t = 0; t < P; t++)
            for (int64_t c = 0; c < C; c++)
                xb[t * C + c] = a->no_embed_class ? prefix[t][c] : prefix[t][c] + p->pos_embed[t * C + c];
        const float *pb = patch_out + b * Np * C;
        for (int64_t i = 0; i < Np; i++)
            for (int64_t c = 0; c < C; c++) xb[(P + i) * C + c] = pb[i * C + c] + p->pos_embed[(pos0 + i) * C + c];
    }
}

void vitq_vit_embed_backward(const vitq_arch *a, vitq_params *g, float *dpatch_out, const float *dx, int64_t B,
                             int64_t N, int64_t C) {
    if (plain(a)) {
        memset(dpatch_out, 0, sizeof(float) * (size_t)(B * (N - 1) * C));
        vitq_embed_backward(dpatch_out, g->cls_token, g->pos_embed, dx, B, N, C);
        return;
    }
    const int64_t P = vitq_arch_prefix(a), Np = N - P, pos0 = a->no_embed_class ? 0 : P;
    float *dprefix[2] = {a->no_class_token ? g->dist_token : g->cls_token, g->dist_token};
    for (int64_t b = 0; b < B; b++) {
        const float *db = dx + b * N * C;
        for (int64_t t = 0; t < P; t++)
            for (int64_t c = 0; c < C; c++) {
                dprefix[t][c] += db[t * C + c];
                if (!a->no_embed_class) g->pos_embed[t * C + c] += db[t * C + c];
            }
        float *dp = dpatch_out + b * Np * C;
        for (int64_t i = 0; i < Np; i++)
            for (int64_t c = 0; c < C; c++) {
                dp[i * C + c] = db[(P + i) * C + c];
                g->pos_embed[(pos0 + i) * C + c] += db[(P + i) * C + c];
            }
    }
}
