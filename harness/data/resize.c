/* resize.c — Pillow-exact bicubic and bilinear resize and timm's eval transform (Resize, CenterCrop,
 * ToTensor, Normalize) on 8-bit images.
 *
 * Mirrors Pillow 9.4's Image.resize(size, Image.BICUBIC / Image.BILINEAR) (libImaging/Resample.c): an
 * antialiased separable convolution with the cubic kernel a = -0.5 (support 2) or the triangle (support 1),
 * whose support grows with the downscale factor; per output pixel the weights are normalised to sum 1,
 * then turned into fixed point with 22 fraction bits; the horizontal pass runs first (only over the source
 * rows the vertical pass will read), each pass rounds and clamps to uint8, a pass whose dimension does not
 * change is skipped, and an unchanged size is a copy. The transform follows torchvision 0.14 as timm's
 * transforms_imagenet_eval uses it, with timm's arithmetic: floor(img_size / crop_pct) in double (crop_pct
 * is a Python float), the longer side int(size * long / short), the crop offsets int(round((h - S) / 2))
 * with Python's round (half to even), ToTensor's v / 255 in float32.
 * Does NOT handle 16-bit or float images, boxes (crop-while-resizing) or other filters. */
#include "data/data.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define RS_PRECISION_BITS (32 - 8 - 2)

static double bilinear(double x) {
    if (x < 0.0) x = -x;
    return x < 1.0 ? 1.0 - x : 0.0;
}

static double cubic(double x) {
    const double a = -0.5;
    if (x < 0.0) x = -x;
    if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0;
    if (x < 2.0) return (((x - 5.0) * x + 8.0) * x - 4.0) * a;
    return 0.0;
}

/* Per output position: first source index, tap count, and ksize fixed-point weights. */
typedef struct rs_coeffs {
    int ksize;
    int *first, *count;
    int32_t *w;
} rs_coeffs;

static void coeffs_free(rs_coeffs *c) {
    free(c->first);
    free(c->count);
    free(c->w);
}

/* Pillow's precompute_coeffs for filter (support fsupport 2 bicubic, 1 bilinear). */
static int coeffs_make(rs_coeffs *c, int in_size, int out_size, int interp) {
    double (*filter)(double) = interp == VITQ_INTERP_BILINEAR ? bilinear : cubic;
    double scale = (double)in_size / out_size;
    double fscale = scale < 1.0 ? 1.0 : scale;
    double support = (interp == VITQ_INTERP_BILINEAR ? 1.0 : 2.0) * fscale;
    c->ksize = (int)ceil(support) * 2 + 1;
    c->first = malloc(sizeof(int) * (size_t)out_size);
    c->count = malloc(sizeof(int) * (size_t)out_size);
    c->w = calloc((size_t)out_size * (size_t)c->ksize, sizeof(int32_t));
    double *k = malloc(sizeof(double) * (size_t)c->ksize);
    if (!c->first || !c->count || !c->w || !k) {
        free(k);
        coeffs_free(c);
        return VITQ_ENOMEM;
    }
    for (int o = 0; o < out_size; o++) {
        double center = (o + 0.5) * scale;
        int lo = (int)(center - support + 0.5);
        if (lo < 0) lo = 0;
        int hi = (int)(center + support + 0.5);
        if (hi > in_size) hi = in_size;
        int n = hi - lo;
        double sum = 0.0, inv = 1.0 / fscale;
        for (int i = 0; i < n; i++) {
            k[i] = filter((i + lo - center + 0.5) * inv);
            sum += k[i];
        }
        int32_t *w = c->w + (size_t)o * c->ksize;
        for (int i = 0; i < n; i++) {
            double v = sum != 0.0 ? k[i] / sum : k[i];
            w[i] = (int32_t)(v < 0 ? -0.5 + v * (1 << RS_PRECISION_BITS) : 0.5 + v * (1 << RS_PRECISION_BITS));
        }
        c->first[o] = lo;
        c->count[o] = n;
    }
    free(k);
    return VITQ_OK;
}

static inline uint8_t clip8(int32_t s) {
    int32_t v = s >> RS_PRECISION_BITS; /* arithmetic shift: floor, as Pillow's lookup table */
    return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
}

int vitq_resize_bicubic(uint8_t *out, int ow, int oh, const uint8_t *in, int w, int h, int c) {
    return vitq_resize(out, ow, oh, in, w, h, c, VITQ_INTERP_BICUBIC);
}

int vitq_resize(uint8_t *out, int ow, int oh, const uint8_t *in, int w, int h, int c, int interp) {
    if (ow == w && oh == h) {
        memcpy(out, in, (size_t)w * h * c);
        return VITQ_OK;
    }
    rs_coeffs cv = {0}, ch = {0};
    /* Pillow computes the vertical coefficients even when only the width changes (for the row range). */
    int rc = coeffs_make(&cv, h, oh, interp);
    if (rc) return rc;
    int row0 = 0, rows = h;
    uint8_t *tmp = NULL;
    const uint8_t *src = in;
    if (ow != w) {
        if (oh != h) {
            row0 = cv.first[0];
            rows = cv.first[oh - 1] + cv.count[oh - 1] - row0;
        }
        rc = coeffs_make(&ch, w, ow, interp);
        uint8_t *dst = oh != h ? (tmp = malloc((size_t)ow * rows * c)) : out;
        if (rc || !dst) {
            coeffs_free(&cv);
            coeffs_free(&ch);
            return VITQ_ENOMEM;
        }
        for (int y = 0; y < rows; y++) {
            const uint8_t *srow = in + (size_t)(y + row0) * w * c;
            uint8_t *drow = dst + (size_t)y * ow * c;
            for (int x = 0; x < ow; x++) {
                const int32_t *k = ch.w + (size_t)x * ch.ksize;
                const uint8_t *s = srow + (size_t)ch.first[x] * c;
                const int n = ch.count[x];
                if (c == 3) { /* RGB: the three sums in one sweep over the taps */
                    int32_t a0 = 1 << (RS_PRECISION_BITS - 1), a1 = a0, a2 = a0;
                    for (int i = 0; i < n; i++) {
                        a0 += s[3 * i] * k[i];
                        a1 += s[3 * i + 1] * k[i];
                        a2 += s[3 * i + 2] * k[i];
                    }
                    drow[3 * x] = clip8(a0), drow[3 * x + 1] = clip8(a1), drow[3 * x + 2] = clip8(a2);
                    continue;
                }
                for (int ci = 0; ci < c; ci++) {
                    int32_t acc = 1 << (RS_PRECISION_BITS - 1);
                    for (int i = 0; i < n; i++) acc += s[i * c + ci] * k[i];
                    drow[x * c + ci] = clip8(acc);
                }
            }
        }
        coeffs_free(&ch);
        src = dst;
    }
    if (oh != h) {
        /* Tap-outer loop over a whole row of int32 sums: same per-pixel summation order as Pillow,
         * so the same integers, but the inner loop vectorises. */
        const int wc = ow * c;
        int32_t *acc = malloc(sizeof(int32_t) * (size_t)wc);
        if (!acc) {
            free(tmp);
            coeffs_free(&cv);
            return VITQ_ENOMEM;
        }
        for (int y = 0; y < oh; y++) {
            const int32_t *k = cv.w + (size_t)y * cv.ksize;
            const uint8_t *s = src + (size_t)(cv.first[y] - row0) * wc;
            uint8_t *drow = out + (size_t)y * wc;
            for (int x = 0; x < wc; x++) acc[x] = 1 << (RS_PRECISION_BITS - 1);
            for (int i = 0; i < cv.count[y]; i++) {
                const uint8_t *sr = s + (size_t)i * wc;
                const int32_t ki = k[i];
                for (int x = 0; x < wc; x++) acc[x] += sr[x] * ki;
            }
            for (int x = 0; x < wc; x++) drow[x] = clip8(acc[x]);
        }
        free(acc);
    }
    free(tmp);
    coeffs_free(&cv);
    return VITQ_OK;
}

/* Python's int(round(d / 2.0)) for an integer d >= 0: halves round to even. */
static int half_round_even(int d) {
    int q = d / 2;
    if (d % 2 == 0) return q;
    return (q % 2 == 0) ? q : q + 1;
}

int vitq_resize_size(int img_size, double crop_pct) {
    int scale = (int)floor((double)img_size / crop_pct); /* timm: math.floor(img_size / crop_pct), Python floats */
    return scale < 1 ? 1 : scale;
}

int vitq_eval_transform(float *out, const uint8_t *px, int w, int h, int src_c, const vitq_data_opts *o,
                        const char *name, vitq_err *e) {
    const int c = src_c, S = o->img_size;
    if (src_c != 1 && src_c != o->in_chans)
        return vitq_fail(e, VITQ_EINVAL, "%s: %d-channel pixels for a %d-channel model", name, src_c, o->in_chans);
    if (w <= 0 || h <= 0) return vitq_fail(e, VITQ_EFORMAT, "%s: empty image", name);
    if (!(o->crop_pct > 0.0) || S <= 0) return vitq_fail(e, VITQ_EINVAL, "%s: bad img_size %d / crop_pct %g", name, S, o->crop_pct);
    /* torchvision Resize(int): the shorter side to floor(img_size / crop_pct). */
    const int scale = vitq_resize_size(S, o->crop_pct);
    int rw = w, rh = h;
    int sh = w < h ? w : h, lg = w < h ? h : w;
    if (sh != scale) {
        int nl = (int)((double)scale * lg / sh);
        if (w <= h) {
            rw = scale;
            rh = nl;
        } else {
            rh = scale;
            rw = nl;
        }
    }
    if ((int64_t)rw * rh > ((int64_t)1 << 28))
        return vitq_fail(e, VITQ_EINVAL, "%s: resized image %dx%d is too large", name, rw, rh);
    uint8_t *r = NULL;
    const uint8_t *img = px;
    if (rw != w || rh != h) {
        r = malloc((size_t)rw * rh * c);
        if (!r || vitq_resize(r, rw, rh, px, w, h, c, o->interpolation)) {
            free(r);
            return vitq_fail(e, VITQ_ENOMEM, "%s: out of memory resizing to %dx%d", name, rw, rh);
        }
        img = r;
    }
    /* torchvision CenterCrop: pad with zeros (left/top get the floor half) if the crop is larger,
     * then top = int(round((h - S) / 2.0)), left likewise. */
    int pad_l = S > rw ? (S - rw) / 2 : 0, pad_t = S > rh ? (S - rh) / 2 : 0;
    int pw = rw + (S > rw ? S - rw : 0), ph = rh + (S > rh ? S - rh : 0);
    int left = half_round_even(pw - S), top = half_round_even(ph - S);
    for (int oci = 0; oci < o->in_chans; oci++) {
        /* ToTensor then Normalize in float32, (v / 255 - mean) / std, tabulated per level: the same
         * divisions torchvision performs, so the same bits. */
        float lut[256];
        for (int v = 0; v < 256; v++) lut[v] = ((float)v / 255.0f - o->mean[oci]) / o->std[oci];
        const int ci = c == 1 ? 0 : oci; /* gray replicated into RGB: resize once, normalise per channel */
        float *oc = out + (size_t)oci * S * S;
        for (int y = 0; y < S; y++) {
            int sy = y + top - pad_t;
            for (int x = 0; x < S; x++) {
                int sx = x + left - pad_l;
                uint8_t v = (sy >= 0 && sy < rh && sx >= 0 && sx < rw) ? img[((size_t)sy * rw + sx) * c + ci] : 0;
                oc[(size_t)y * S + x] = lut[v];
            }
        }
    }
    free(r);
    return VITQ_OK;
}
