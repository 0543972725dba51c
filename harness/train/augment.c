/* augment.c — what training adds to a forward pass's input and start: timm's initialisation of a ViT
 * and torchvision's RandomCrop(padding) + RandomHorizontalFlip on already-normalised images, both driven
 * by core's seeded xoshiro256** streams. */
#include "train/train.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void vitq_model_init_train(vitq_model *m, uint64_t seed, float std) {
    vitq_rng r;
    vitq_rng_seed(&r, vitq_rng_derive(seed, 0));
    const vitq_arch *a = &m->arch;
    for (int i = 0; i < m->n_table; i++) {
        vitq_tensor_ref *t = &m->table[i];
        const char *nm = t->name;
        size_t len = strlen(nm);
        int is_bias = len > 5 && !strcmp(nm + len - 5, ".bias");
        int is_norm = strstr(nm, "norm") != NULL;
        if (!strncmp(nm, "patch_embed.proj.", 17)) {
            // PyTorch Conv2d default: kaiming_uniform(a=sqrt 5) -> U(+-1/sqrt(fan_in)), bias likewise
            double bound = 1.0 / sqrt((double)a->in_chans * a->patch_size * a->patch_size);
            for (int64_t j = 0; j < t->numel; j++) t->data[j] = (float)((2.0 * vitq_rng_uniform(&r) - 1.0) * bound);
        } else if (is_norm) {
            for (int64_t j = 0; j < t->numel; j++) t->data[j] = is_bias ? 0.0f : 1.0f;
        } else if (is_bias) {
            memset(t->data, 0, sizeof(float) * (size_t)t->numel);
        } else { // linear weights, pos_embed, cls_token
            for (int64_t j = 0; j < t->numel; j++) t->data[j] = vitq_rng_trunc_normal(&r, std);
        }
    }
    for (int l = 0; l < a->depth; l++) m->mlp_act[l] = VITQ_ACT_GELU;
}

void vitq_augment(float *images, int B, int Cin, int S, int pad, int hflip, const float *fill, vitq_rng *r) {
    const int64_t plane = (int64_t)S * S;
    float *tmp = malloc(sizeof(float) * (size_t)plane);
    if (!tmp) return;
    for (int b = 0; b < B; b++) {
        // torchvision draws the crop's top-left corner in the padded image, then the flip
        int oy = pad > 0 ? (int)vitq_rng_below(r, 2 * pad + 1) - pad : 0;
        int ox = pad > 0 ? (int)vitq_rng_below(r, 2 * pad + 1) - pad : 0;
        int flip = hflip ? vitq_rng_uniform(r) < 0.5 : 0;
        for (int c = 0; c < Cin; c++) {
            float *img = images + ((int64_t)b * Cin + c) * plane;
            for (int y = 0; y < S; y++)
                for (int x = 0; x < S; x++) {
                    int sy = y + oy, sx = x + ox;
                    float v = (sy >= 0 && sy < S && sx >= 0 && sx < S) ? img[sy * S + sx] : fill[c];
                    tmp[y * S + (flip ? S - 1 - x : x)] = v;
                }
            memcpy(img, tmp, sizeof(float) * (size_t)plane);
        }
    }
    free(tmp);
}
