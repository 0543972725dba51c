/* test_baselines.c — the names of a run's float baselines (run/cells.c): one baseline is "fp32"; several
 * (a grid over models or evaluation data) are named by the grid values that pick them, so that the table,
 * the CSV, the plots and --dry-run tell them apart; when no such values exist, "fp32", "fp32-2", ... */
#include "test.h"

#include <stdlib.h>
#include <string.h>

/* The cell ids of the run whose INI is a common head and `tail`, joined by spaces. */
static void run_ids(const char *tail, char *out, size_t n) {
    char text[2048];
    snprintf(text, sizeof text,
             "[run]\noutput = /nonexistent/out\nthreads = 1\n"
             "[model]\npath = ${mp}\n"
             "[data]\neval_limit = ${lim}\n"
             "[quantizer w]\ntaps = blocks.*.weight\nplugin = uniform\nbits = ${bits}\n%s",
             tail);
    vitq_err e = {{0}};
    vitq_experiment *x = NULL;
    vitq_run *r = NULL;
    vitq_run_opts o = {.threads = 1, .quiet = 1};
    out[0] = 0;
    if (vitq_experiment_parse(text, "t.ini", &x, &e) || vitq_run_open(x, &o, &r, &e)) {
        snprintf(out, n, "error: %.900s", e.msg);
    } else {
        size_t u = 0;
        for (int i = 0; i < vitq_run_count(r) && u < n; i++)
            u += (size_t)snprintf(out + u, n - u, "%s%s", i ? " " : "", vitq_run_cell_at(r, i)->id);
    }
    vitq_run_close(r);
    vitq_experiment_free(x);
}

TEST(baselines_one_model_is_fp32) {
    char ids[1024];
    run_ids("[grid]\nbits = 8, 4\nmp = a.safetensors\nlim = 10\n", ids, sizeof ids);
    CHECK_STREQ(ids, "fp32 bits=8,mp=a.safetensors,lim=10 bits=4,mp=a.safetensors,lim=10");
}

TEST(baselines_named_by_the_grid_value_of_their_model) {
    char ids[1024];
    run_ids("[grid]\nm = final, stage1\nbits = 8, 4\nlim = 10\n"
            "[m = final]\nmp = f.safetensors\n[m = stage1]\nmp = s.safetensors\n", ids, sizeof ids);
    CHECK_STREQ(ids, "fp32,m=final fp32,m=stage1 m=final,bits=8,lim=10 m=final,bits=4,lim=10 "
                     "m=stage1,bits=8,lim=10 m=stage1,bits=4,lim=10");
}

TEST(baselines_named_by_model_and_evaluation_data) {
    char ids[1024];
    run_ids("[grid]\nm = f, s\nlim = 10, 20\nbits = 8\n[m = f]\nmp = f.safetensors\n[m = s]\nmp = s.safetensors\n",
            ids, sizeof ids);
    CHECK_STR_CONTAINS(ids, "fp32,m=f,lim=10 fp32,m=f,lim=20 fp32,m=s,lim=10 fp32,m=s,lim=20 m=f,lim=10,bits=8");
}

/* Models picked by an axis that no baseline has one value of: the numbered names. */
TEST(baselines_without_a_telling_value_are_numbered) {
    char ids[1024];
    run_ids("[grid]\nx = 1, 2, 3, 4\nbits = 8\nlim = 10\n[x = 1]\nmp = a\n[x = 2]\nmp = a\n[x = 3]\nmp = b\n"
            "[x = 4]\nmp = b\n", ids, sizeof ids);
    CHECK_STREQ(ids, "fp32 fp32-2 x=1,bits=8,lim=10 x=2,bits=8,lim=10 x=3,bits=8,lim=10 x=4,bits=8,lim=10");
}
