/* image.c — decodes JPEG (libjpeg-turbo) and PNG (libpng) into 8-bit 'L' or 'RGB' pixels exactly as
 * PIL 9.4 opens them and then converts with convert('RGB') / convert('L') (torchvision's loader).
 *
 * Mirrors PIL: JPEG with libjpeg's defaults (islow DCT, fancy upsampling), gray JPEGs as 'L', every
 * 4-channel JPEG inverted (Pillow 9.4 decodes them all with rawmode "CMYK;I", Adobe marker or not) then
 * converted like PIL's cmyk2rgb; PNG gray 1/2/4-bit scaled to 0..255, palette looked up, alpha and tRNS
 * dropped (convert('RGB') does not composite), 16-bit samples reduced to their high byte (16-bit grey+alpha
 * too: PIL opens it as RGBA, rawmode "LA;16B"), except 16-bit gray without alpha, which PIL opens as mode
 * 'I' and CLIPS to 255 when converting (a PIL quirk, kept on purpose). EXIF orientation is not applied
 * (torchvision never calls exif_transpose).
 * RGB -> L is PIL's integer ITU-R 601 luma. Colour profiles and gamma are ignored, as PIL does.
 * Errors (unreadable, corrupt or truncated files) come back as one line naming the file; libjpeg and
 * libpng errors are caught with setjmp and never exit or print. Does NOT read other formats. */

#include "data/data.h"

#include <setjmp.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>
#include <jerror.h>
#include <png.h>

#define IMG_MAX_PIXELS ((int64_t)1 << 28) /* 16k x 16k */

void vitq_image_free(vitq_image *im) {
    if (!im) return;
    free(im->px);
    memset(im, 0, sizeof *im);
}

static uint8_t luma(const uint8_t *p) {
    return (uint8_t)(((uint32_t)p[0] * 19595 + (uint32_t)p[1] * 38470 + (uint32_t)p[2] * 7471 + 0x8000) >> 16);
}

int vitq_image_convert(vitq_image *im, int c, vitq_err *e) {
    if (c == im->c) return VITQ_OK;
    size_t n = (size_t)im->w * im->h;
    if (c == 1 && im->c == 3) {
        for (size_t i = 0; i < n; i++) im->px[i] = luma(im->px + 3 * i); /* in place, front to back */
        im->c = 1;
        return VITQ_OK;
    }
    if (c == 3 && im->c == 1) {
        uint8_t *p = malloc(n * 3);
        if (!p) return vitq_fail(e, VITQ_ENOMEM, "out of memory converting %dx%d gray to RGB", im->w, im->h);
        for (size_t i = 0; i < n; i++) p[3 * i] = p[3 * i + 1] = p[3 * i + 2] = im->px[i];
        free(im->px);
        im->px = p;
        im->c = 3;
        return VITQ_OK;
    }
    return vitq_fail(e, VITQ_EINVAL, "cannot convert a %d-channel image to %d channels", im->c, c);
}

/* ---- JPEG ------------------------------------------------------------------------------------ */
typedef struct jerr_mgr {
    struct jpeg_error_mgr pub;
    jmp_buf jb;
    char msg[JMSG_LENGTH_MAX];
} jerr_mgr;

static void jerr_exit(j_common_ptr ci) {
    jerr_mgr *m = (jerr_mgr *)ci->err;
    ci->err->format_message(ci, m->msg);
    longjmp(m->jb, 1);
}

/* Warnings are ignored like PIL does, except running out of data: PIL reports "image file is
 * truncated" there, where libjpeg would silently pad the image with gray. */
static void jerr_emit(j_common_ptr ci, int level) {
    jerr_mgr *m = (jerr_mgr *)ci->err;
    if (level < 0 && ci->err->msg_code == JWRN_JPEG_EOF) {
        snprintf(m->msg, sizeof m->msg, "truncated JPEG data (premature end of file)");
        longjmp(m->jb, 1);
    }
}

static void jerr_output(j_common_ptr ci) { (void)ci; }

/* PIL's cmyk2rgb with MULDIV255. */
static uint8_t muldiv255(int a, int b) {
    int t = a * b + 128;
    return (uint8_t)(((t >> 8) + t) >> 8);
}

static int read_jpeg(const char *path, const unsigned char *buf, size_t n, int header_only, int *is_gray,
                     vitq_image *out, vitq_err *e) {
    struct jpeg_decompress_struct ci;
    jerr_mgr jm;
    /* volatile: modified between setjmp and longjmp */
    uint8_t *volatile px = NULL;
    uint8_t *volatile row = NULL;
    memset(&ci, 0, sizeof ci);
    ci.err = jpeg_std_error(&jm.pub);
    jm.pub.error_exit = jerr_exit;
    jm.pub.emit_message = jerr_emit;
    jm.pub.output_message = jerr_output;
    jm.msg[0] = 0;
    if (setjmp(jm.jb)) {
        jpeg_destroy_decompress(&ci);
        free(px);
        free(row);
        return vitq_fail(e, VITQ_EFORMAT, "%s: bad JPEG: %s", path, jm.msg);
    }
    jpeg_create_decompress(&ci);
    jpeg_mem_src(&ci, buf, (unsigned long)n);
    jpeg_read_header(&ci, TRUE);
    int gray = ci.jpeg_color_space == JCS_GRAYSCALE;
    int cmyk = ci.jpeg_color_space == JCS_CMYK || ci.jpeg_color_space == JCS_YCCK;
    if (is_gray) *is_gray = gray;
    if (header_only) {
        jpeg_destroy_decompress(&ci);
        return VITQ_OK;
    }
    if ((int64_t)ci.image_width * ci.image_height > IMG_MAX_PIXELS || ci.image_width == 0 || ci.image_height == 0) {
        int w = (int)ci.image_width, h = (int)ci.image_height;
        jpeg_destroy_decompress(&ci);
        return vitq_fail(e, VITQ_EFORMAT, "%s: JPEG size %dx%d is out of range", path, w, h);
    }
    ci.out_color_space = gray ? JCS_GRAYSCALE : cmyk ? JCS_CMYK : JCS_RGB;
    jpeg_start_decompress(&ci);
    const int w = (int)ci.output_width, h = (int)ci.output_height, oc = gray ? 1 : 3;
    const int nc = ci.output_components;
    px = malloc((size_t)w * h * oc);
    row = malloc((size_t)w * nc);
    if (!px || !row) {
        snprintf(jm.msg, sizeof jm.msg, "out of memory for %dx%d pixels", w, h);
        longjmp(jm.jb, 1);
    }
    /* Pillow 9.4 reads every CMYK/YCCK JPEG as "CMYK;I" (inverted), Adobe marker or not (JpegImagePlugin);
     * libjpeg gives the stored values. */
    const int inverted = cmyk;
    while (ci.output_scanline < ci.output_height) {
        int y = (int)ci.output_scanline;
        JSAMPROW r = row;
        jpeg_read_scanlines(&ci, &r, 1);
        uint8_t *d = px + (size_t)y * w * oc;
        if (!cmyk) {
            memcpy(d, row, (size_t)w * oc);
            continue;
        }
        for (int x = 0; x < w; x++) {
            int v[4];
            for (int k = 0; k < 4; k++) v[k] = inverted ? 255 - row[4 * x + k] : row[4 * x + k];
            int nk = 255 - v[3];
            for (int k = 0; k < 3; k++) {
                int t = nk - muldiv255(v[k], nk);
                d[3 * x + k] = (uint8_t)(t < 0 ? 0 : t > 255 ? 255 : t);
            }
        }
    }
    jpeg_finish_decompress(&ci);
    jpeg_destroy_decompress(&ci);
    free(row);
    out->w = w;
    out->h = h;
    out->c = oc;
    out->px = px;
    return VITQ_OK;
}

/* ---- PNG ------------------------------------------------------------------------------------- */
typedef struct png_src {
    const unsigned char *buf;
    size_t n, pos;
    jmp_buf jb;
    char msg[256];
} png_src;

static void png_err(png_structp p, png_const_charp msg) {
    png_src *s = png_get_error_ptr(p);
    snprintf(s->msg, sizeof s->msg, "%s", msg);
    longjmp(s->jb, 1);
}

static void png_warn(png_structp p, png_const_charp msg) { (void)p, (void)msg; }

static void png_read_mem(png_structp p, png_bytep data, size_t len) {
    png_src *s = png_get_io_ptr(p);
    if (len > s->n - s->pos) {
        snprintf(s->msg, sizeof s->msg, "truncated PNG data (premature end of file)");
        longjmp(s->jb, 1);
    }
    memcpy(data, s->buf + s->pos, len);
    s->pos += len;
}

static int read_png(const char *path, const unsigned char *buf, size_t n, int header_only, int *is_gray,
                    vitq_image *out, vitq_err *e) {
    png_src s = {.buf = buf, .n = n};
    png_structp p = png_create_read_struct(PNG_LIBPNG_VER_STRING, &s, png_err, png_warn);
    png_infop info = p ? png_create_info_struct(p) : NULL;
    if (!p || !info) {
        png_destroy_read_struct(&p, NULL, NULL);
        return vitq_fail(e, VITQ_ENOMEM, "%s: out of memory", path);
    }
    uint8_t *volatile px = NULL;
    png_bytep *volatile rows = NULL;
    uint8_t *volatile raw = NULL;
    if (setjmp(s.jb)) {
        png_destroy_read_struct(&p, &info, NULL);
        free(px);
        free(rows);
        free(raw);
        return vitq_fail(e, VITQ_EFORMAT, "%s: bad PNG: %s", path, s.msg);
    }
    png_set_read_fn(p, &s, png_read_mem);
    png_set_user_limits(p, 1 << 16, 1 << 16);
    png_read_info(p, info);
    const int ct = png_get_color_type(p, info), depth = png_get_bit_depth(p, info);
    const int gray = (ct & PNG_COLOR_MASK_COLOR) == 0;
    if (is_gray) *is_gray = gray;
    if (header_only) {
        png_destroy_read_struct(&p, &info, NULL);
        return VITQ_OK;
    }
    const int w = (int)png_get_image_width(p, info), h = (int)png_get_image_height(p, info);
    if ((int64_t)w * h > IMG_MAX_PIXELS) {
        snprintf(s.msg, sizeof s.msg, "size %dx%d is too large", w, h);
        longjmp(s.jb, 1);
    }
    if (ct == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(p);
    if (gray && depth < 8) png_set_expand_gray_1_2_4_to_8(p);
    png_set_interlace_handling(p);
    png_read_update_info(p, info);
    const int nc = png_get_channels(p, info), bytes = png_get_bit_depth(p, info) == 16 ? 2 : 1;
    const size_t rowbytes = png_get_rowbytes(p, info);
    if (rowbytes < (size_t)w * nc * bytes) {
        snprintf(s.msg, sizeof s.msg, "unexpected row size %zu", rowbytes);
        longjmp(s.jb, 1);
    }
    raw = malloc(rowbytes * (size_t)h);
    rows = malloc(sizeof(png_bytep) * (size_t)h);
    const int oc = gray ? 1 : 3;
    px = malloc((size_t)w * h * oc);
    if (!raw || !rows || !px) {
        snprintf(s.msg, sizeof s.msg, "out of memory for %dx%d pixels", w, h);
        longjmp(s.jb, 1);
    }
    for (int y = 0; y < h; y++) rows[y] = raw + rowbytes * (size_t)y;
    png_read_image(p, rows);
    png_read_end(p, NULL);
    /* Colour channels come first in every libpng layout (G, GA, RGB, RGBA); alpha is dropped. */
    const int clip16 = gray && depth == 16 && !(ct & PNG_COLOR_MASK_ALPHA); /* PIL mode 'I': convert clips to 255 */
    for (int y = 0; y < h; y++) {
        const uint8_t *r = rows[y];
        uint8_t *d = px + (size_t)y * w * oc;
        for (int x = 0; x < w; x++)
            for (int k = 0; k < oc; k++) {
                const uint8_t *q = r + ((size_t)x * nc + k) * bytes;
                if (bytes == 1) d[x * oc + k] = q[0];
                else if (clip16) {
                    unsigned v = (unsigned)q[0] << 8 | q[1];
                    d[x * oc + k] = (uint8_t)(v > 255 ? 255 : v);
                } else d[x * oc + k] = q[0];
            }
    }
    png_destroy_read_struct(&p, &info, NULL);
    free(rows);
    free(raw);
    out->w = w;
    out->h = h;
    out->c = oc;
    out->px = px;
    return VITQ_OK;
}

/* ---- dispatch -------------------------------------------------------------------------------- */
static int decode(const char *path, int header_only, int *is_gray, vitq_image *out, vitq_err *e) {
    size_t n = 0;
    unsigned char *buf = (unsigned char *)vitq_read_file(path, &n, e);
    if (!buf) return VITQ_EIO;
    int rc;
    static const unsigned char png_sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    if (n >= 3 && buf[0] == 0xff && buf[1] == 0xd8 && buf[2] == 0xff)
        rc = read_jpeg(path, buf, n, header_only, is_gray, out, e);
    else if (n >= 8 && memcmp(buf, png_sig, 8) == 0)
        rc = read_png(path, buf, n, header_only, is_gray, out, e);
    else if (n == 0)
        rc = vitq_fail(e, VITQ_EFORMAT, "%s: empty file", path);
    else
        rc = vitq_fail(e, VITQ_EFORMAT, "%s: not a JPEG or PNG file (unrecognised signature)", path);
    free(buf);
    return rc;
}

int vitq_image_probe_gray(const char *path, int *is_gray, vitq_err *e) {
    return decode(path, 1, is_gray, NULL, e);
}

int vitq_image_read(const char *path, int want_c, vitq_image *out, vitq_err *e) {
    memset(out, 0, sizeof *out);
    if (want_c != 0 && want_c != 1 && want_c != 3)
        return vitq_fail(e, VITQ_EINVAL, "%s: cannot decode to %d channels", path, want_c);
    int rc = decode(path, 0, NULL, out, e);
    if (rc) return rc;
    if (want_c && want_c != out->c) {
        rc = vitq_image_convert(out, want_c, e);
        if (rc) {
            vitq_image_free(out);
            return vitq_fail(e, rc, "%s: out of memory converting to %d channels", path, want_c);
        }
    }
    return VITQ_OK;
}
