/* config.c — timm's data config of a model and its one-line description.
 *
 * Mirrors timm 0.9 data/config.py resolve_data_config and validate.py: the pretrained config (vitq's built-in
 * table) < the checkpoint's metadata (both already merged into vitq_arch) < the command line / INI overrides
 * (--img-size, --crop-pct, --interpolation, --mean, --std). A single mean or std value repeats over the
 * channels, as resolve_data_config does. crop_pct stays a double throughout (timm's Python float).
 * Does not: resample pos_embed for another --img-size (refused: a ViT is built for one size). */
#include "data/data.h"

#include <stdlib.h>
#include <string.h>

vitq_data_opts vitq_data_opts_for(const vitq_arch *a, int convert_channels) {
    vitq_data_opts o;
    memset(&o, 0, sizeof o);
    o.img_size = a->img_size;
    o.in_chans = a->in_chans;
    memcpy(o.mean, a->mean, sizeof o.mean);
    memcpy(o.std, a->std, sizeof o.std);
    o.crop_pct = a->crop_pct;
    o.interpolation = vitq_interp_parse(a->interpolation) == VITQ_INTERP_BILINEAR ? VITQ_INTERP_BILINEAR
                                                                                  : VITQ_INTERP_BICUBIC;
    o.convert_channels = convert_channels;
    return o;
}

int vitq_interp_parse(const char *s) {
    if (!s) return -1;
    if (!strcmp(s, "bicubic")) return VITQ_INTERP_BICUBIC;
    if (!strcmp(s, "bilinear")) return VITQ_INTERP_BILINEAR;
    return -1;
}

const char *vitq_interp_name(int interp) { return interp == VITQ_INTERP_BILINEAR ? "bilinear" : "bicubic"; }

int vitq_floats_parse(const char *s, float v[3]) {
    char **items = NULL;
    int n = 0, bad = vitq_list_split(s, ',', 0, &items, &n) != 0 || n < 1 || n > 3;
    for (int i = 0; !bad && i < n; i++) {
        char *end = NULL;
        double d = strtod(items[i], &end);
        bad = !*items[i] || *end || d != d;
        if (!bad) v[i] = (float)d;
    }
    vitq_strs_free(items, n);
    return bad ? -1 : n;
}

/* n values (1: repeated) into out[in_chans]. */
static int channels(const char *what, const char *key, const float *v, int n, int in_chans, float out[3], vitq_err *e) {
    if (n != 1 && n != in_chans)
        return vitq_fail(e, VITQ_EINVAL, "%s%s: %d values for a %d-channel model (give 1 or %d)", what, key, n, in_chans,
                         in_chans);
    for (int c = 0; c < 3; c++) out[c] = v[n == 1 ? 0 : c < n ? c : 0];
    return VITQ_OK;
}

int vitq_data_config(const vitq_arch *a, const vitq_data_overrides *ov, int convert_channels, vitq_data_opts *out,
                     const char *what, vitq_err *e) {
    *out = vitq_data_opts_for(a, convert_channels);
    if (!ov) return VITQ_OK;
    const char *w = what ? what : "";
    if (ov->img_size && ov->img_size != a->img_size)
        return vitq_fail(e, VITQ_EINVAL, "%simg_size: %d, but the model %s takes %dx%d images (vitq does not "
                         "resample pos_embed for another size)", w, ov->img_size, a->name, a->img_size, a->img_size);
    if (ov->crop_pct != 0.0) {
        if (!(ov->crop_pct > 0.0 && ov->crop_pct <= 1.0))
            return vitq_fail(e, VITQ_EINVAL, "%scrop_pct: expected a number in (0, 1], got %g", w, ov->crop_pct);
        out->crop_pct = ov->crop_pct;
        out->crop = 1; /* asked for: IDX images at the model's size are resized and cropped too */
    }
    if (ov->interpolation) {
        int i = vitq_interp_parse(ov->interpolation);
        if (i < 0)
            return vitq_fail(e, VITQ_EINVAL, "%sinterpolation: expected bicubic or bilinear, got '%s'", w,
                             ov->interpolation);
        out->interpolation = i;
    }
    int rc = VITQ_OK;
    if (ov->n_mean && (rc = channels(w, "mean", ov->mean, ov->n_mean, a->in_chans, out->mean, e))) return rc;
    if (ov->n_std && (rc = channels(w, "std", ov->std, ov->n_std, a->in_chans, out->std, e))) return rc;
    for (int c = 0; c < a->in_chans; c++)
        if (!(out->std[c] > 0.0f))
            return vitq_fail(e, VITQ_EINVAL, "%sstd: channel %d is %g, expected a positive number", w, c, (double)out->std[c]);
    return VITQ_OK;
}

/* "(0.485, 0.456, 0.406)": the shortest text of each float that reads back exactly. */
static size_t floats_text(char *buf, size_t n, const float *v, int k) {
    size_t u = (size_t)snprintf(buf, n, "(");
    for (int c = 0; c < k && u < n; c++) {
        char one[32];
        for (int prec = 1; prec <= 9; prec++) {
            snprintf(one, sizeof one, "%.*g", prec, (double)v[c]);
            if (strtof(one, NULL) == v[c]) break;
        }
        u += (size_t)snprintf(buf + u, n - u, "%s%s", c ? ", " : "", one);
    }
    if (u < n) u += (size_t)snprintf(buf + u, n - u, ")");
    return u;
}

const char *vitq_transform_text(const vitq_data_opts *o, int as_is, int w, int h, char *buf, size_t n) {
    size_t u;
    if (as_is)
        u = (size_t)snprintf(buf, n, "none (%dx%d IDX images as they are), ", w, h);
    else
        u = (size_t)snprintf(buf, n, "resize %d %s, centre crop %d, ", vitq_resize_size(o->img_size, o->crop_pct),
                             vitq_interp_name(o->interpolation), o->img_size);
    if (u < n) u += (size_t)snprintf(buf + u, n - u, "mean ");
    if (u < n) u += floats_text(buf + u, n - u, o->mean, o->in_chans);
    if (u < n) u += (size_t)snprintf(buf + u, n - u, " std ");
    if (u < n) floats_text(buf + u, n - u, o->std, o->in_chans);
    return buf;
}
