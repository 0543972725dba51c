/* test_passes.c — [pass NAME] sections bound to pass plugins (harness/run/grid_pass.c, vitq_passes_bind):
 * order kept, parameters parsed per cell after ${...} and bundles, `enabled`, and every error at once
 * with its file:line (plugin missing, a quantizer named as a pass, a bad or unknown parameter, a
 * before-calibration pass after an after-calibration one, a plugin clashing with `enabled`). The test
 * passes are tests/plugins/noop_pass.c (after calibration), noop_prepass.c (before) and odd_pass.c,
 * found through VITQ_PLUGIN_PATH. */
#include "test.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
    int importance;
    double drop_prob;
} noop_params_mirror; /* tests/plugins/noop_pass.c's struct */

static void use_test_plugins(void) {
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/tests/plugins", test_build_dir());
    setenv("VITQ_PLUGIN_PATH", dir, 1); /* each test runs in its own process */
}

static vitq_experiment *parse(const char *text) {
    vitq_experiment *x = NULL;
    vitq_err e = {{0}};
    int rc = vitq_experiment_parse(text, "t.ini", &x, &e);
    CHECK_MSG(rc == 0 && x, "rc %d: %s", rc, e.msg);
    return x;
}

/* Binds cell i of the INI text; returns vitq_passes_bind's code, its error text in e. */
static int bind_cell(const char *text, int i, vitq_pass_binding **b, int *n, vitq_err *e) {
    use_test_plugins();
    vitq_experiment *x = parse(text);
    if (!x) return -100;
    int rc = vitq_passes_bind(x->cells[i].secs, x->cells[i].n_secs, b, n, e);
    vitq_experiment_free(x);
    return rc;
}

#define MODEL "[model]\npath = m.safetensors\n"

TEST(passes_bound_in_file_order_with_parameters) {
    use_test_plugins();
    vitq_experiment *x = parse(MODEL "[quantizer w]\ntaps = *\nplugin = uniform\n"
                                     "[pass noop_prepass]\niters = ${it}\n[pass noop_pass]\ndrop_prob = 0.25\n"
                                     "importance = fisher\n[grid]\nit = 7, 8\n");
    if (!x) return;
    vitq_pass_binding *b = NULL;
    int n = 0;
    vitq_err e = {{0}};
    CHECK_MSG(vitq_passes_bind(x->cells[1].secs, x->cells[1].n_secs, &b, &n, &e) == 0, "%s", e.msg);
    CHECK_EQ(n, 2);
    if (n == 2) {
        CHECK_STREQ(b[0].name, "noop_prepass");
        CHECK_STREQ(b[0].plugin->name, "noop_prepass");
        CHECK_EQ(b[0].when, VITQ_PASS_BEFORE_CALIB);
        CHECK_EQ(b[0].enabled, 1);
        CHECK_EQ(*(const int *)b[0].params, 8); /* ${it} of cell 1 */
        CHECK_STREQ(b[0].params_text, "iters=8");
        CHECK_EQ(b[0].section->line, 6);
        CHECK_STREQ(b[1].name, "noop_pass");
        CHECK_EQ(b[1].when, VITQ_PASS_AFTER_CALIB);
        CHECK(b[1].plugin->kind == VITQ_PLUGIN_PASS && b[1].plugin->pass->run != NULL);
        const noop_params_mirror *p = b[1].params;
        CHECK_EQ(p->importance, 1);
        CHECK_EQ(p->drop_prob, 0.25);
        CHECK_STREQ(b[1].params_text, "importance=fisher drop_prob=0.25");
    }
    vitq_passes_free(b, n);
    /* no [pass] section: nothing, no error */
    CHECK_EQ(vitq_passes_bind(x->cells[0].secs, 1, &b, &n, &e), 0);
    CHECK(b == NULL);
    CHECK_EQ(n, 0);
    vitq_experiment_free(x);
}

TEST(passes_bundles_and_enabled_per_cell) {
    use_test_plugins();
    vitq_experiment *x = parse(MODEL "[pass noop_pass]\nenabled = ${on}\nimportance = ${imp}\ndrop_prob = ${drop}\n"
                                     "[grid]\nrecon = none, qdrop, brecq\n"
                                     "[recon = none]\non = false\nimp = none\ndrop = 1\n"
                                     "[recon = qdrop]\non = true\nimp = none\ndrop = 0.5\n"
                                     "[recon = brecq]\non = true\nimp = fisher\ndrop = 1\n");
    if (!x) return;
    const int on[3] = {0, 1, 1}, imp[3] = {0, 0, 1};
    const double drop[3] = {1, 0.5, 1};
    for (int i = 0; i < 3 && i < x->n_cells; i++) {
        vitq_pass_binding *b = NULL;
        int n = 0;
        vitq_err e = {{0}};
        CHECK_MSG(vitq_passes_bind(x->cells[i].secs, x->cells[i].n_secs, &b, &n, &e) == 0, "%s", e.msg);
        CHECK_EQ(n, 1);
        if (n != 1) continue;
        CHECK_EQ(b[0].enabled, on[i]); /* a disabled pass is still bound (and checked) */
        CHECK_EQ(((const noop_params_mirror *)b[0].params)->importance, imp[i]);
        CHECK_EQ(((const noop_params_mirror *)b[0].params)->drop_prob, drop[i]);
        vitq_passes_free(b, n);
    }
    vitq_experiment_free(x);
}

TEST(passes_unknown_plugin_and_quantizer_as_pass) {
    vitq_pass_binding *b = NULL;
    int n = 0;
    vitq_err e = {{0}};
    CHECK_EQ(bind_cell(MODEL "[pass nosuch]\n[pass uniform]\nbits = 4\n", 0, &b, &n, &e), VITQ_EINVAL);
    CHECK(b == NULL);
    char *nl = strchr(e.msg, '\n');
    const char *want = "t.ini:3: [pass nosuch]: plugin 'nosuch' not found (searched ";
    CHECK_MSG(nl && strncmp(e.msg, want, strlen(want)) == 0, "%s", e.msg);
    CHECK_STREQ(nl ? nl + 1 : NULL, "t.ini:4: [pass uniform]: plugin 'uniform' is a quantizer, not a pass (use it as "
                                    "`plugin = uniform` in a [quantizer NAME] section)");
}

TEST(passes_every_bad_parameter_at_once) {
    vitq_pass_binding *b = NULL;
    int n = 0;
    vitq_err e = {{0}};
    /* a disabled pass is checked too; every bad key of every section, each on its line */
    CHECK_EQ(bind_cell(MODEL "[pass noop_prepass]\nenabled = false\niters = 0\n"
                             "[pass noop_pass]\ndrop_prob = ${d}\nimportance = fish\ndropprob = 1\n[grid]\nd = 0.5, 2\n",
                       1, &b, &n, &e),
             VITQ_EINVAL);
    CHECK_STREQ(e.msg, "t.ini:5: [pass noop_prepass] iters: expected an integer in [1, 100000], got '0' (plugin "
                       "'noop_prepass')\n"
                       "t.ini:7: [pass noop_pass] drop_prob: expected a number in [0, 1], got '2' (plugin 'noop_pass')\n"
                       "t.ini:8: [pass noop_pass] importance: expected one of none|fisher, got 'fish' (plugin 'noop_pass')\n"
                       "t.ini:9: [pass noop_pass] dropprob: plugin 'noop_pass' has no such parameter (known: importance, "
                       "drop_prob)");
    CHECK(b == NULL);
}

TEST(passes_order_must_follow_when) {
    vitq_pass_binding *b = NULL;
    int n = 0;
    vitq_err e = {{0}};
    CHECK_EQ(bind_cell(MODEL "[pass noop_pass]\n[pass noop_prepass]\n", 0, &b, &n, &e), VITQ_EINVAL);
    CHECK_STREQ(e.msg, "t.ini:4: [pass noop_prepass]: plugin 'noop_prepass' runs before calibration, so its section must "
                       "come before [pass noop_pass] (line 3), which runs after it (passes run in file order)");
}

TEST(passes_plugin_clashing_with_the_harness) {
    vitq_pass_binding *b = NULL;
    int n = 0;
    vitq_err e = {{0}};
    CHECK_EQ(bind_cell(MODEL "[pass odd_pass]\n", 0, &b, &n, &e), VITQ_EINVAL);
    CHECK_STREQ(e.msg, "t.ini:3: [pass odd_pass]: plugin 'odd_pass' declares an unknown `when` (7; expected before or "
                       "after calibration)\n"
                       "t.ini:3: [pass odd_pass]: plugin 'odd_pass' declares a parameter 'enabled', a key [pass] sections "
                       "keep for the harness; rename it in the plugin");
}

TEST(passes_enabled_bad_value_when_bound_directly) {
    /* vitq_experiment_parse refuses it first (test_grid.c); sections made by hand reach the binder */
    use_test_plugins();
    vitq_section *s = NULL;
    int ns = 0;
    vitq_err e = {{0}};
    CHECK(vitq_ini_parse_string("[pass noop_pass]\nenabled = maybe\n", "h.ini", &s, &ns, &e) == 0);
    vitq_pass_binding *b = NULL;
    int n = 0;
    CHECK_EQ(vitq_passes_bind(s, ns, &b, &n, &e), VITQ_EINVAL);
    CHECK_STREQ(e.msg, "h.ini:2: [pass noop_pass] enabled: expected true/false, yes/no, on/off or 1/0, got 'maybe'");
    vitq_sections_free(s, ns);
}
