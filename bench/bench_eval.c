/* bench_eval.c — float32 eval throughput of vitq's forward pass against OpenBLAS sgemm measured in the
 * same run on the same GEMM shapes (issue 2's targets), and the peak memory of `vitq eval`.
 *
 * Throughput: a DeiT-Tiny-shaped random model (224x224x3, patch 16, dim 192, depth 12, heads 3, 1000
 * classes) at batch 32 and a 28x28x1 model (patch 4, dim 96, depth 6, heads 3, 10 classes) at batch
 * 256, at 1 and 2 pool threads. The reference is every GEMM of one forward (patch embedding, qkv,
 * q·k^T and att·v per (image, head), proj, fc1, fc2, head) timed alone with cblas_sgemm at OpenBLAS's own
 * 1 and 2 threads — what sgemm alone can do; "x% of sgemm" = summed GEMM time / forward time.
 * Memory: writes the DeiT-Tiny model (vitq_model_save) and 64 random 256x256 images (PNG and JPEG via
 * libpng/libjpeg) under /tmp, runs BUILD/vitq eval --batch 32 as a child and reads its max RSS and
 * minor page faults from getrusage(RUSAGE_CHILDREN). */
#include "bench.h"

#include <cblas.h>
#include <jpeglib.h>
#include <math.h>
#include <png.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>


/* Median forward time of B images at `threads` pool threads. */
static double time_forward(vitq_model *m, vitq_acts *a, const float *images, int B, int threads, int reps) {
    vitq_threads_set(threads);
    vitq_err e = {{0}};
    double t[16];
    for (int r = -1; r < reps; r++) {
        double t0 = bench_now();
        if (vitq_forward(m, a, images, B, &e)) {
            printf("forward failed: %s\n", e.msg);
            return -1;
        }
        if (r >= 0) t[r] = bench_now() - t0;
    }
    return bench_median(t, reps);
}

static int bench_model(const char *label, const vitq_arch *ar, int B, int reps) {
    vitq_model *m = bench_random_model(ar);
    if (!m) return 1;
    vitq_acts *a = NULL;
    vitq_err e = {{0}};
    if (vitq_acts_create(m, B, 0, &a, &e)) {
        printf("%s\n", e.msg);
        vitq_model_free(m);
        return 1;
    }
    int64_t nimg = (int64_t)B * ar->in_chans * ar->img_size * ar->img_size;
    float *images = malloc(sizeof(float) * (size_t)nimg);
    for (int64_t i = 0; i < nimg; i++) images[i] = bench_nrand();
    gemm_shape s[16];
    int ns = bench_forward_gemms(ar, B, s);
    double flops = bench_gemm_flops(s, ns);
    printf("%s: batch %d, %.1f GFLOP of GEMMs per forward, activations %.0f MB\n", label, B, flops * 1e-9,
           (double)a->bytes / 1048576.0);
    int saved = vitq_threads_get();
    for (int th = 1; th <= 2; th++) {
        double tf = time_forward(m, a, images, B, th, reps);
        double tg = bench_time_gemms(s, ns, th, reps);
        if (tf <= 0) break;
        printf("  %d thread%s: %8.1f images/s  forward %7.1f ms (%5.1f GFLOP/s) | sgemm alone %7.1f ms "
               "(%5.1f GFLOP/s, OpenBLAS %d thread%s) -> %.0f%% of sgemm throughput\n",
               th, th > 1 ? "s" : " ", B / tf, tf * 1e3, flops / tf * 1e-9, tg * 1e3, flops / tg * 1e-9, th,
               th > 1 ? "s" : "", 100.0 * tg / tf);
        fflush(stdout);
    }
    vitq_threads_set(saved);
    free(images);
    vitq_acts_free(a);
    vitq_model_free(m);
    return 0;
}

int bench_eval_throughput(void) {
    vitq_arch deit;
    vitq_err e = {{0}};
    if (vitq_arch_builtin("deit_tiny_patch16_224", &deit, &e)) {
        printf("%s\n", e.msg);
        return 1;
    }
    vitq_arch fm = {.name = "custom", .img_size = 28, .patch_size = 4, .in_chans = 1, .num_classes = 10,
                    .embed_dim = 96, .depth = 6, .num_heads = 3, .mlp_ratio = 4.0f, .qkv_bias = 1,
                    .mean = {0.2860f}, .std = {0.3530f}, .crop_pct = 1.0f, .interpolation = "bicubic"};
    int rc = bench_model("deit_tiny_patch16_224 (random weights)", &deit, 32, 5);
    rc |= bench_model("vit-fmnist shape 28x28x1 p4 d96 x6 h3", &fm, 256, 5);
    return rc;
}

/* ---- memory of `vitq eval` ------------------------------------------------------------------ */

static int write_png(const char *path, const unsigned char *rgb, int w, int h) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    png_structp p = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(p);
    if (setjmp(png_jmpbuf(p))) {
        png_destroy_write_struct(&p, &info);
        fclose(f);
        return -1;
    }
    png_init_io(p, f);
    png_set_IHDR(p, info, (png_uint_32)w, (png_uint_32)h, 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(p, info);
    for (int y = 0; y < h; y++) png_write_row(p, (png_const_bytep)(rgb + (size_t)y * w * 3));
    png_write_end(p, NULL);
    png_destroy_write_struct(&p, &info);
    return fclose(f);
}

static int write_jpeg(const char *path, const unsigned char *rgb, int w, int h) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    struct jpeg_compress_struct c;
    struct jpeg_error_mgr err;
    c.err = jpeg_std_error(&err);
    jpeg_create_compress(&c);
    jpeg_stdio_dest(&c, f);
    c.image_width = (JDIMENSION)w;
    c.image_height = (JDIMENSION)h;
    c.input_components = 3;
    c.in_color_space = JCS_RGB;
    jpeg_set_defaults(&c);
    jpeg_set_quality(&c, 90, TRUE);
    jpeg_start_compress(&c, TRUE);
    while (c.next_scanline < c.image_height) {
        JSAMPROW row = (JSAMPROW)(rgb + (size_t)c.next_scanline * w * 3);
        jpeg_write_scanlines(&c, &row, 1);
    }
    jpeg_finish_compress(&c);
    jpeg_destroy_compress(&c);
    return fclose(f);
}

int bench_eval_memory(void) {
    char dir[] = "/tmp/vitq-bench-XXXXXX";
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    vitq_arch deit;
    vitq_err e = {{0}};
    if (vitq_arch_builtin("deit_tiny_patch16_224", &deit, &e)) return 1;
    vitq_model *m = bench_random_model(&deit);
    if (!m) return 1;
    char model[512], data[512], path[600], vitq[4096];
    snprintf(model, sizeof model, "%s/deit_tiny_random.safetensors", dir);
    snprintf(data, sizeof data, "%s/images", dir);
    int rc = vitq_model_save(m, model, NULL, NULL, 0, &e);
    vitq_model_free(m);
    if (rc) {
        printf("%s\n", e.msg);
        return 1;
    }
    mkdir(data, 0755);
    const int S = 256;
    unsigned char *rgb = malloc((size_t)S * S * 3);
    for (int cls = 0; cls < 2; cls++) {
        snprintf(path, sizeof path, "%s/class%d", data, cls);
        mkdir(path, 0755);
        for (int i = 0; i < 32; i++) {
            for (int k = 0; k < S * S * 3; k++) rgb[k] = (unsigned char)(bench_urand() * 256);
            snprintf(path, sizeof path, "%s/class%d/img%02d.%s", data, cls, i, cls ? "jpg" : "png");
            if ((cls ? write_jpeg(path, rgb, S, S) : write_png(path, rgb, S, S)) != 0) {
                printf("cannot write %s\n", path);
                free(rgb);
                return 1;
            }
        }
    }
    free(rgb);
    bench_vitq_path(vitq, sizeof vitq);
    printf("running: %s eval --model %s --data %s --batch 32 -q\n", vitq, model, data);
    fflush(stdout);
    double t0 = bench_now();
    pid_t pid = fork();
    if (pid == 0) {
        execl(vitq, vitq, "eval", "--model", model, "--data", data, "--batch", "32", "-q", (char *)NULL);
        perror(vitq);
        _exit(127);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    double wall = bench_now() - t0;
    struct rusage ru;
    getrusage(RUSAGE_CHILDREN, &ru);
    int ok = WIFEXITED(st) && WEXITSTATUS(st) == 0;
    printf("vitq eval (64 images 256x256, batch 32): %s, wall %.2f s, peak RSS %.0f MB (target < 1024 MB), "
           "minor page faults %ld, user %.2f s, system %.2f s\n",
           ok ? "ok" : "FAILED", wall, (double)ru.ru_maxrss / 1024.0, ru.ru_minflt,
           (double)ru.ru_utime.tv_sec + 1e-6 * (double)ru.ru_utime.tv_usec,
           (double)ru.ru_stime.tv_sec + 1e-6 * (double)ru.ru_stime.tv_usec);
    /* clean up the temporary files */
    for (int cls = 0; cls < 2; cls++) {
        for (int i = 0; i < 32; i++) {
            snprintf(path, sizeof path, "%s/class%d/img%02d.%s", data, cls, i, cls ? "jpg" : "png");
            unlink(path);
        }
        snprintf(path, sizeof path, "%s/class%d", data, cls);
        rmdir(path);
    }
    rmdir(data);
    unlink(model);
    rmdir(dir);
    return ok ? 0 : 1;
}
