/* test_plugin.c — the plugin loader (harness/quant/plugin.c, params.c): search path, every load error with a small broken
 * .so from tests/plugins/, parameter parsing and its one-line errors, the `vitq plugins` listing. */
#include "test.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *broken(const char *name) {
    static char path[1024];
    snprintf(path, sizeof path, "%s/tests/plugins/%s.so", test_build_dir(), name);
    return path;
}

/* Loads a broken plugin by path and returns the error text ("" if it loaded). */
static const char *load_err(const char *name) {
    static vitq_err e;
    const vitq_plugin *p = NULL;
    e.msg[0] = 0;
    int rc = vitq_plugin_load(broken(name), "exp.ini:7", &p, &e);
    if (rc == 0) return "";
    CHECK(rc == VITQ_EPLUGIN);
    CHECK(p == NULL);
    CHECK(strchr(e.msg, '\n') == NULL);
    return e.msg;
}

TEST(plugin_load_uniform) {
    const vitq_plugin *p = NULL, *p2 = NULL;
    vitq_err e = {{0}};
    CHECK_MSG(vitq_plugin_load("uniform", NULL, &p, &e) == 0, "%s", e.msg);
    if (!p) return;
    CHECK(strcmp(p->name, "uniform") == 0);
    CHECK(p->kind == VITQ_PLUGIN_QUANTIZER);
    CHECK(p->abi == VITQ_PLUGIN_ABI);
    CHECK(vitq_plugin_load("uniform", NULL, &p2, &e) == 0);
    CHECK(p2 == p); /* loaded once */
    const char *f = vitq_plugin_file(p);
    CHECK(f);
    if (f) {
        CHECK(strstr(f, "/uniform.so"));
    }
    CHECK(vitq_plugin_load("log2", NULL, &p2, &e) == 0);
    CHECK(p2);
    CHECK_STREQ(p2->name, "log2");
}

TEST(plugin_not_found) {
    const vitq_plugin *p = NULL;
    vitq_err e = {{0}};
    CHECK(vitq_plugin_load("nosuch", "exp.ini:12", &p, &e) == VITQ_EPLUGIN);
    CHECK_STR_CONTAINS(e.msg, "exp.ini:12: plugin 'nosuch' not found (searched ");
    CHECK_STR_CONTAINS(e.msg, "/plugins");
    CHECK(vitq_plugin_load("/no/such/dir/x.so", NULL, &p, &e) == VITQ_EPLUGIN);
    CHECK_STR_CONTAINS(e.msg, "plugin file '/no/such/dir/x.so' not found");
    CHECK(vitq_plugin_load("bad name!", NULL, &p, &e) == VITQ_EPLUGIN);
    CHECK_STR_CONTAINS(e.msg, "bad plugin name");
}

TEST(plugin_broken_no_entry) {
    const char *m = load_err("no_entry");
    CHECK_STR_CONTAINS(m, "exp.ini:7: plugin 'no_entry' (");
    CHECK_STR_CONTAINS(m, "no symbol 'vitq_plugin_entry'");
}

TEST(plugin_broken_wrong_abi) {
    char want[128];
    snprintf(want, sizeof want, "built for plugin ABI %d, this vitq speaks %d; rebuild it", VITQ_PLUGIN_ABI + 1,
             VITQ_PLUGIN_ABI);
    CHECK_STR_CONTAINS(load_err("wrong_abi"), want);
}

TEST(plugin_broken_short_size) {
    char want[128];
    snprintf(want, sizeof want, "descriptor size 16 is smaller than ABI %d's", VITQ_PLUGIN_ABI);
    CHECK_STR_CONTAINS(load_err("short_size"), want);
}

TEST(plugin_broken_short_ops) {
    char want[128];
    snprintf(want, sizeof want, "quantizer ops table size 8 is smaller than ABI %d's", VITQ_PLUGIN_ABI);
    CHECK_STR_CONTAINS(load_err("short_ops"), want);
}

TEST(plugin_broken_null_op) {
    CHECK_STR_CONTAINS(load_err("null_op"), "plugin 'null_op' (");
    CHECK_STR_CONTAINS(load_err("null_op"), "required quantizer op 'forward' is NULL");
}

TEST(plugin_broken_param_table) {
    CHECK_STR_CONTAINS(load_err("bad_default"), "bad parameter table: default 'four' of 'bits' does not parse");
    CHECK_STR_CONTAINS(load_err("bad_default"), "expected an integer in [2, 16]");
    CHECK_STR_CONTAINS(load_err("bad_type"), "bad parameter table: 'bits' has unknown type 42");
}

TEST(plugin_broken_name_mismatch) {
    CHECK_STR_CONTAINS(load_err("misnamed"), "calls itself 'uniform'; a plugin's name must equal its file name");
}

TEST(plugin_broken_dlopen) {
    const char *m = load_err("undefined_sym");
    CHECK_STR_CONTAINS(m, "cannot load: ");
    CHECK_STR_CONTAINS(m, "vitq_symbol_that_does_not_exist");
}

static int copy_file(const char *from, const char *to) {
    size_t n = 0;
    vitq_err e;
    char *d = vitq_read_file(from, &n, &e);
    if (!d) return -1;
    FILE *f = fopen(to, "wb");
    int ok = f && fwrite(d, 1, n, f) == n;
    if (f) fclose(f);
    free(d);
    return ok ? 0 : -1;
}

TEST(plugin_duplicate_in_path) {
    const char *tmp = test_tmpdir();
    char a[512], b[512], fa[600], fb[600], src[600], env[1600];
    snprintf(a, sizeof a, "%s/a", tmp);
    snprintf(b, sizeof b, "%s/b", tmp);
    mkdir(a, 0755);
    mkdir(b, 0755);
    snprintf(src, sizeof src, "%s/plugins/log2.so", test_build_dir());
    snprintf(fa, sizeof fa, "%s/dupe.so", a);
    snprintf(fb, sizeof fb, "%s/dupe.so", b);
    CHECK_EQ(copy_file(src, fa), 0);
    CHECK_EQ(copy_file(src, fb), 0);
    const char *old = getenv("VITQ_PLUGIN_PATH");
    char *saved = old ? strdup(old) : NULL;
    snprintf(env, sizeof env, "%s:%s:%s", a, a, b); /* the same folder twice is not a duplicate */
    setenv("VITQ_PLUGIN_PATH", env, 1);
    const vitq_plugin *p = NULL;
    vitq_err e = {{0}};
    CHECK(vitq_plugin_load("dupe", "x.ini:3", &p, &e) == VITQ_EPLUGIN);
    CHECK_STR_CONTAINS(e.msg, "x.ini:3: plugin 'dupe' found twice: ");
    CHECK_STR_CONTAINS(e.msg, fa);
    CHECK_STR_CONTAINS(e.msg, fb);
    /* the folders are searched first, in order */
    const char *dirs[8];
    int nd = vitq_plugin_dirs(dirs, 8);
    CHECK(nd >= 4);
    CHECK_STREQ(dirs[0], a);
    CHECK_STREQ(dirs[2], b);
    CHECK(nd >= 1);
    CHECK(strstr(dirs[nd - 1], "/vitq/plugins"));
    vitq_plugin_found *found = NULL;
    int n = 0;
    CHECK(vitq_plugin_scan(&found, &n, &e) == 0);
    int dupes = 0;
    for (int i = 0; i < n; i++) dupes += strcmp(found[i].name, "dupe") == 0;
    CHECK(dupes == 2);
    free(found);
    if (saved) {
        setenv("VITQ_PLUGIN_PATH", saved, 1);
        free(saved);
    } else {
        unsetenv("VITQ_PLUGIN_PATH");
    }
}

TEST(plugin_scan_finds_builtins) {
    vitq_plugin_found *found = NULL;
    int n = 0, have_uniform = 0, have_log2 = 0;
    vitq_err e;
    CHECK(vitq_plugin_scan(&found, &n, &e) == 0);
    for (int i = 0; i < n; i++) {
        have_uniform += strcmp(found[i].name, "uniform") == 0;
        have_log2 += strcmp(found[i].name, "log2") == 0;
    }
    CHECK_EQ(have_uniform, 1);
    CHECK_EQ(have_log2, 1);
    free(found);
}

/* --- parameters ------------------------------------------------------------------------------ */
typedef struct {
    int bits, symmetric, granularity, init;
    double pct;
    int search_steps;
    double search_lo;
    int learnable, grad_scale, max_samples, rounding, max_values;
} uniform_params_mirror; /* plugins/uniform.c's struct, for reading parsed values back */

static const vitq_plugin *uniform(void) {
    const vitq_plugin *p = NULL;
    vitq_err e;
    if (vitq_plugin_load("uniform", NULL, &p, &e)) test_failf(__FILE__, __LINE__, "%s", e.msg);
    return p;
}

TEST(plugin_params_defaults_and_values) {
    const vitq_plugin *p = uniform();
    if (!p) return;
    CHECK(p->params_size == sizeof(uniform_params_mirror));
    uniform_params_mirror u;
    vitq_err e;
    CHECK(vitq_plugin_params_parse(p, "quantizer w", NULL, 0, &u, &e) == 0);
    CHECK_EQ(u.bits, 8);
    CHECK_EQ(u.symmetric, 0);
    CHECK_EQ(u.granularity, 0);
    CHECK_EQ(u.init, 0);
    CHECK_EQ(u.pct, 0.9999);
    CHECK_EQ(u.search_steps, 100);
    CHECK_EQ(u.max_samples, 1000000);
    CHECK_EQ(u.grad_scale, 0); /* auto */
    CHECK_EQ(u.rounding, 0);   /* nearest */
    CHECK_EQ(u.max_values, 268435456);
    vitq_kv kv[] = {
        {"bits", "4", "a.ini", 3},        {"symmetric", "true", "a.ini", 4}, {"granularity", "per_channel", "a.ini", 5},
        {"init", "mse", "a.ini", 6},      {"pct", "0.99", "a.ini", 7},       {"learnable", "yes", "a.ini", 8},
    };
    CHECK_MSG(vitq_plugin_params_parse(p, "quantizer w", kv, 6, &u, &e) == 0, "%s", e.msg);
    CHECK_EQ(u.bits, 4);
    CHECK_EQ(u.symmetric, 1);
    CHECK_EQ(u.granularity, 1);
    CHECK_EQ(u.init, 2);
    CHECK_EQ(u.pct, 0.99);
    CHECK_EQ(u.learnable, 1);
    char buf[512];
    vitq_plugin_params_format(p, &u, buf, sizeof buf);
    CHECK_STR_CONTAINS(buf, "bits=4 symmetric=true granularity=per_channel init=mse pct=0.99");
    vitq_kv kv2[] = {{"init", "aphq", "a.ini", 9}, {"rounding", "adaround", "a.ini", 10}, {"grad_scale", "false", "a.ini", 11}};
    CHECK_MSG(vitq_plugin_params_parse(p, "quantizer w", kv2, 3, &u, &e) == 0, "%s", e.msg);
    CHECK_EQ(u.init, 3);
    CHECK_EQ(u.rounding, 1);
    CHECK_EQ(u.grad_scale, 2);
}

TEST(plugin_params_errors) {
    const vitq_plugin *p = uniform();
    if (!p) return;
    uniform_params_mirror u;
    vitq_err e;
    vitq_kv k1 = {"bitz", "4", "exp.ini", 12};
    CHECK(vitq_plugin_params_parse(p, "quantizer w", &k1, 1, &u, &e) == VITQ_EINVAL);
    CHECK_STR_CONTAINS(e.msg, "exp.ini:12: [quantizer w] bitz: plugin 'uniform' has no such parameter (known: bits, symmetric, granularity");
    vitq_kv k2 = {"bits", "four", "exp.ini", 13};
    CHECK(vitq_plugin_params_parse(p, "quantizer w", &k2, 1, &u, &e) == VITQ_EINVAL);
    CHECK_STR_CONTAINS(e.msg, "exp.ini:13: [quantizer w] bits: expected an integer in [2, 16], got 'four' (plugin 'uniform')");
    vitq_kv k3 = {"bits", "17", "exp.ini", 14};
    CHECK(vitq_plugin_params_parse(p, "quantizer w", &k3, 1, &u, &e) == VITQ_EINVAL);
    CHECK_STR_CONTAINS(e.msg, "got '17'");
    vitq_kv k4 = {"pct", "1.5", "exp.ini", 15};
    CHECK(vitq_plugin_params_parse(p, "quantizer w", &k4, 1, &u, &e) == VITQ_EINVAL);
    CHECK_STR_CONTAINS(e.msg, "exp.ini:15: [quantizer w] pct: expected a number in [0.5, 1], got '1.5' (plugin 'uniform')");
    vitq_kv k5 = {"granularity", "per_row", "exp.ini", 16};
    CHECK(vitq_plugin_params_parse(p, "quantizer w", &k5, 1, &u, &e) == VITQ_EINVAL);
    CHECK_STR_CONTAINS(e.msg, "expected one of per_tensor|per_channel|per_token|per_head, got 'per_row'");
    vitq_kv k6 = {"symmetric", "maybe", "exp.ini", 17};
    CHECK(vitq_plugin_params_parse(p, "quantizer w", &k6, 1, &u, &e) == VITQ_EINVAL);
    CHECK_STR_CONTAINS(e.msg, "[quantizer w] symmetric: expected true/false, yes/no, on/off or 1/0, got 'maybe'");
    vitq_kv k7 = {"bits", "8x", "exp.ini", 18};
    CHECK(vitq_plugin_params_parse(p, "quantizer w", &k7, 1, &u, &e) == VITQ_EINVAL);
}

/* --- the command ----------------------------------------------------------------------------- */
static int run_capture(const char *cmd, char *out, size_t n) {
    FILE *f = popen(cmd, "r");
    if (!f) return -1;
    size_t got = fread(out, 1, n - 1, f);
    out[got] = 0;
    int st = pclose(f);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

TEST(plugin_cmd_listing) {
    const char *bin = getenv("VITQ_BIN");
    if (!bin) test_skip("VITQ_BIN not set (the runner sets it)");
    char cmd[1024], out[16384];
    snprintf(cmd, sizeof cmd, "%s plugins 2>&1", bin);
    CHECK(run_capture(cmd, out, sizeof out) == 0);
    CHECK_STR_CONTAINS(out, "uniform");
    CHECK_STR_CONTAINS(out, "quantizer");
    CHECK_STR_CONTAINS(out, "log2");
    snprintf(cmd, sizeof cmd, "%s plugins uniform 2>&1", bin);
    CHECK(run_capture(cmd, out, sizeof out) == 0);
    CHECK_STR_CONTAINS(out, "bits");
    CHECK_STR_CONTAINS(out, "int");
    CHECK_STR_CONTAINS(out, "[2, 16]");
    CHECK_STR_CONTAINS(out, "per_tensor|per_channel|per_token|per_head");
    snprintf(cmd, sizeof cmd, "%s plugins nosuch 2>&1", bin);
    CHECK(run_capture(cmd, out, sizeof out) == 1);
    CHECK_STR_CONTAINS(out, "vitq: error: plugin 'nosuch' not found");
}

TEST(plugin_example_round) {
    const vitq_plugin *p = NULL;
    vitq_err e;
    CHECK_MSG(vitq_plugin_load("example_round", NULL, &p, &e) == 0, "%s", e.msg);
    if (!p) return;
    int params[4];
    vitq_kv kv = {"bits", "3", "r.ini", 2};
    CHECK(p->params_size <= sizeof params);
    CHECK_EQ(vitq_plugin_params_parse(p, "quantizer w", &kv, 1, params, &e), 0);
    vitq_host h;
    vitq_host_ctx hc;
    vitq_host_init(&h, &hc, "example", "t", 1);
    vitq_tap t = {.name = "t", .kind = VITQ_TAPK_ACT, .ndim = 1};
    void *q = p->quantizer->create(params, &t, &h);
    float cal[] = {-1.5f, 0.5f}; /* amax 1.5, L = 3 -> s = 0.5 */
    float x[] = {0.25f, 0.75f, -2.0f, 1.4f}, want[] = {0, 1.0f, -1.5f, 1.5f};
    vitq_view vc = {.data = cal, .ndim = 1, .shape = {2}}, vx = {.data = x, .ndim = 1, .shape = {4}};
    CHECK_EQ(p->quantizer->observe(q, &vc), 0);
    CHECK_EQ(p->quantizer->finalize(q), 0);
    CHECK(p->quantizer->forward(q, &vx, &vx) == 0);
    CHECK_ALLCLOSE(x, want, 4, 0, 0);
    p->quantizer->destroy(q);
}
