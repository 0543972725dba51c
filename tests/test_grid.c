/* test_grid.c — experiment INI validation and grid expansion (harness/run/grid.c, grid_keys.c, grid_bundle.c):
 * cartesian order, zips, ${axis} interpolation, bundles ([AXIS = VALUE] sections) and each of their errors,
 * every error with file:line, typed harness keys, cell ids, the config hash; and every tests/bad/NAME.ini
 * against their expected one-line .err messages. */
#include "test.h"

#include <dirent.h>
#include <stdlib.h>
#include <string.h>


static vitq_experiment *parse_ok(const char *text) {
    vitq_experiment *x = NULL;
    vitq_err e = {{0}};
    int rc = vitq_experiment_parse(text, "t.ini", &x, &e);
    CHECK_MSG(rc == 0 && x, "rc %d: %s", rc, e.msg);
    return x;
}

static void parse_err(const char *text, const char *expected) {
    vitq_experiment *x = NULL;
    vitq_err e = {{0}};
    int rc = vitq_experiment_parse(text, "t.ini", &x, &e);
    CHECK_MSG(rc == VITQ_EFORMAT && x == NULL, "rc %d for expected error '%s'", rc, expected);
    CHECK_MSG(strcmp(e.msg, expected) == 0, "got:\n%s\nexpected:\n%s", e.msg, expected);
    vitq_experiment_free(x);
}

#define MODEL "[model]\npath = m.safetensors\n"

TEST(grid_cartesian_order_first_axis_slowest) {
    vitq_experiment *x = parse_ok(MODEL "[quantizer w]\nbits = ${bits}\nplugin = ${p}\n"
                                        "[grid]\nbits = 8, 6,4\np = uniform, log2\n");
    if (!x) return;
    CHECK_EQ(x->n_axes, 2);
    CHECK_EQ(x->n_cells, 6);
    const char *ids[6] = {"bits=8,p=uniform", "bits=8,p=log2", "bits=6,p=uniform",
                          "bits=6,p=log2",    "bits=4,p=uniform", "bits=4,p=log2"};
    for (int i = 0; i < 6 && i < x->n_cells; i++) CHECK_MSG(strcmp(x->cells[i].id, ids[i]) == 0, "%d: %s", i, x->cells[i].id);
    CHECK_STREQ(x->cells[2].values[0], "6");
    CHECK_STREQ(x->cells[2].values[1], "uniform");
    /* interpolation in the resolved quantizer section, line numbers kept */
    const vitq_section *q = vitq_section_find(x->cells[5].secs, x->cells[5].n_secs, "quantizer w");
    CHECK(q);
    if (q) {
        CHECK_STREQ(vitq_section_get(q, "bits")->value, "4");
    }
    CHECK(q);
    if (q) {
        CHECK_STREQ(vitq_section_get(q, "plugin")->value, "log2");
        CHECK_EQ(vitq_section_get(q, "plugin")->line, 5);
    }
    CHECK(vitq_section_find(x->cells[0].secs, x->cells[0].n_secs, "grid") == NULL);
    vitq_experiment_free(x);
}

TEST(grid_zip_pairs_values) {
    vitq_experiment *x = parse_ok(MODEL "[quantizer w]\nbits = ${w}\n[quantizer a]\nbits = ${a}\nmode = ${sm}\n"
                                        "[grid]\nsm = uniform, log2\nw = 4, 3\na = 4, 3\nzip = w, a\n");
    if (!x) return;
    CHECK(x->n_cells == 4);
    const char *ids[4] = {"sm=uniform,w=4,a=4", "sm=uniform,w=3,a=3", "sm=log2,w=4,a=4", "sm=log2,w=3,a=3"};
    for (int i = 0; i < 4 && i < x->n_cells; i++) CHECK_MSG(strcmp(x->cells[i].id, ids[i]) == 0, "%d: %s", i, x->cells[i].id);
    vitq_experiment_free(x);
    /* a zip group placed first makes the zipped pair the slowest factor; '|' separates groups */
    x = parse_ok(MODEL "[quantizer w]\nx = ${w}${a}${b}${c}\n"
                       "[grid]\nw = 1, 2\na = 1, 2\nb = x, y, z\nc = p, q, r\nzip = w,a | b,c\n");
    if (!x) return;
    CHECK(x->n_cells == 6);
    CHECK(strcmp(x->cells[1].id, "w=1,a=1,b=y,c=q") == 0);
    CHECK(strcmp(x->cells[3].id, "w=2,a=2,b=x,c=p") == 0);
    vitq_experiment_free(x);
}

TEST(grid_zip_length_mismatch) {
    parse_err(MODEL "[quantizer w]\nb = ${w}${a}\n[grid]\nw = 4, 3, 2\na = 4, 3\nzip = w, a\n",
              "t.ini:8: [grid] zip: axes 'w' (3 values) and 'a' (2 values) differ in length");
    parse_err(MODEL "[quantizer w]\nb = ${w}\n[grid]\nw = 4, 3\nzip = w, nope\n",
              "t.ini:7: [grid] zip: 'nope' is not an axis of [grid]");
}

TEST(grid_interpolation_in_harness_keys_is_typed) {
    vitq_experiment *x = parse_ok("[run]\nseed = ${s}\noutput = out/${s}\n" MODEL
                                  "[data]\ncalib_size = ${n}\n[grid]\ns = 1, 2\nn = 32, 64\nzip = s, n\n");
    if (!x) return;
    CHECK(x->n_cells == 2);
    CHECK_EQ(x->cells[1].cfg.seed, 2);
    CHECK_EQ(x->cells[1].cfg.calib_size, 64);
    CHECK(strcmp(x->cells[1].cfg.output, "out/2") == 0);
    CHECK(strcmp(x->cells[0].cfg.name, "t") == 0); /* default name: the INI base name */
    vitq_experiment_free(x);
    parse_err("[run]\nseed = ${s}\n" MODEL "[grid]\ns = 1, x\n",
              "t.ini:2: [run] seed: expected an integer in [0, 4294967295], got 'x' (in cell s=x); "
              "${s} is 'x' from t.ini:6 ([grid])");
}

TEST(grid_defaults_and_types) {
    vitq_experiment *x = parse_ok("[run]\nname = demo\nbaseline = no\n" MODEL "[hist]\ntaps = blocks.*.attn.probs\n");
    if (!x) return;
    CHECK_EQ(x->n_cells, 1);
    CHECK_STREQ(x->cells[0].id, "default");
    const vitq_run_cfg *c = &x->cells[0].cfg;
    CHECK_STREQ(c->name, "demo");
    CHECK_STREQ(c->output, "results/demo");
    CHECK_EQ(c->seed, 0);
    CHECK_EQ(c->threads, 0);
    CHECK_EQ(c->baseline, 0);
    CHECK_STREQ(c->calib_mode, "sequential");
    CHECK_STREQ(c->model_path, "m.safetensors");
    CHECK_STREQ(c->arch, "");
    CHECK_STREQ(c->dataset, "fashion-mnist");
    CHECK_STREQ(c->eval_split, "test");
    CHECK_EQ(c->eval_limit, 0);
    CHECK_EQ(c->batch, 128);
    CHECK_STREQ(c->calib_split, "train");
    CHECK_EQ(c->calib_size, 128);
    CHECK_EQ(c->convert_channels, 0);
    CHECK_STREQ(c->hist_taps, "blocks.*.attn.probs");
    CHECK_EQ(c->hist_bins, 128);
    vitq_experiment_free(x);
}

TEST(grid_undefined_reference_has_file_and_line) {
    parse_err(MODEL "[quantizer w]\nbits = ${bitz}\n[grid]\nbits = 4, 8\n",
              "t.ini:4: [quantizer w] bits: undefined ${bitz} ([grid] axes: bits)\n"
              "t.ini:6: [grid] axis 'bits' is never used as ${bits} in any other section");
    parse_err(MODEL "[quantizer w]\nbits = ${x\n", "t.ini:4: [quantizer w] bits: '${' without a closing '}'");
}

TEST(grid_unknown_sections_and_keys) {
    parse_err("[run]\nsed = 1\n" MODEL "[runn]\n[quantizer bad name]\n",
              "t.ini:2: [run] unknown key 'sed' (known: name, output, seed, threads, baseline, calib_mode, search_rounds, data_parallel)\n"
              "t.ini:5: unknown section [runn] (known: run, model, data, hist, grid, quantizer NAME, pass NAME, AXIS = "
              "VALUE)\n"
              "t.ini:6: [quantizer bad name]: a quantizer name is one word of [A-Za-z0-9_.-]");
    parse_err("[run]\nseed = 1\n", "t.ini: missing section [model] (path = the checkpoint to quantize)");
}

TEST(grid_bad_bool_and_int_values_all_reported) {
    parse_err("[run]\nbaseline = maybe\nthreads = -1\ncalib_mode = fast\n" MODEL "[data]\nbatch = 12x\n",
              "t.ini:2: [run] baseline: expected true/false, yes/no, on/off or 1/0, got 'maybe'\n"
              "t.ini:3: [run] threads: expected an integer in [0, 1024], got '-1'\n"
              "t.ini:4: [run] calib_mode: expected one of sequential|float|search, got 'fast'\n"
              "t.ini:8: [data] batch: expected an integer in [1, 4096], got '12x'");
    /* the one boolean vocabulary, any case, as for plugin parameters and training keys */
    vitq_experiment *x = NULL;
    vitq_err e;
    CHECK_MSG(vitq_experiment_parse("[run]\nbaseline = ON\n" MODEL "[data]\nconvert_channels = Yes\n", "t.ini", &x, &e) == 0,
              "%s", e.msg);
    if (x) {
        CHECK_EQ(x->cells[0].cfg.baseline, 1);
        CHECK_EQ(x->cells[0].cfg.convert_channels, 1);
        CHECK_STR_CONTAINS(x->cells[0].config_text, "convert_channels = true\n"); /* canonical in the hash */
    }
    vitq_experiment_free(x);
}

TEST(grid_cell_ids_sanitised) {
    const char *names[2] = {"model", "bits"};
    const char *vals[2] = {"models/a b.safetensors", "4"};
    char id[128];
    vitq_grid_cell_id(names, vals, 2, id, sizeof id);
    /* replaced characters get a hash suffix so that distinct values cannot collide */
    CHECK_MSG(strncmp(id, "model=models_a_b.safetensors,bits=4-", 36) == 0 && strlen(id) == 36 + 16, "%s", id);
    const char *vals2[2] = {"models/a_b.safetensors", "4"};
    char id2[128];
    vitq_grid_cell_id(names, vals2, 2, id2, sizeof id2);
    CHECK(strcmp(id2, "model=models_a_b.safetensors,bits=4-") != 0);
    CHECK(strcmp(id, id2) != 0);
    char longv[200];
    memset(longv, 'v', 150);
    longv[150] = 0;
    const char *vals3[2] = {longv, "4"};
    vitq_grid_cell_id(names, vals3, 2, id, sizeof id);
    CHECK_EQ(strlen(id), 100);
    CHECK_EQ(id[83], '-');
    for (const char *p = id; *p; p++) CHECK(strchr("=,-_.+", *p) || (*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'z'));
    const char *vals4[2] = {"x", "4.5+1e-3"};
    vitq_grid_cell_id(names, vals4, 2, id, sizeof id);
    CHECK(strcmp(id, "model=x,bits=4.5+1e-3") == 0);
}

TEST(grid_hash_stable_and_sensitive) {
    /* FNV-1a 64 known values */
    CHECK(vitq_fnv1a64("", 0, VITQ_FNV1A64_INIT) == 0xcbf29ce484222325ULL);
    CHECK(vitq_fnv1a64("a", 1, VITQ_FNV1A64_INIT) == 0xaf63dc4c8601ec8cULL);
    const char *a = MODEL "[quantizer w]\nplugin = uniform\nbits = ${b}\n[grid]\nb = 4, 8\n";
    /* same configuration written differently: key order, default made explicit, comments, threads */
    const char *b = "; same\n[run]\nseed = 0\nthreads = 2\n" MODEL "[quantizer w]\nbits = ${b}\nplugin = uniform\n"
                    "[grid]\nb = 4, 8\n";
    const char *c = MODEL "[quantizer w]\nplugin = uniform\nbits = ${b}\n[data]\ncalib_size = 64\n[grid]\nb = 4, 8\n";
    vitq_experiment *xa = parse_ok(a), *xb = parse_ok(b), *xc = parse_ok(c);
    if (xa && xb && xc) {
        CHECK(strlen(xa->cells[0].hash) == 16);
        CHECK(strcmp(xa->cells[0].hash, xb->cells[0].hash) == 0);
        CHECK(strcmp(xa->cells[1].hash, xb->cells[1].hash) == 0);
        CHECK(strcmp(xa->cells[0].hash, xa->cells[1].hash) != 0); /* bits differ */
        CHECK(strcmp(xa->cells[0].hash, xc->cells[0].hash) != 0); /* calib_size differs */
        CHECK_STR_CONTAINS(xa->cells[1].config_text, "[quantizer w]\nbits = 8\nplugin = uniform\n");
        CHECK_STR_CONTAINS(xa->cells[1].config_text, "[data]\ndataset = fashion-mnist\n");
        uint64_t h = vitq_fnv1a64(xa->cells[1].config_text, strlen(xa->cells[1].config_text), VITQ_FNV1A64_INIT);
        char hex[17];
        snprintf(hex, sizeof hex, "%016llx", (unsigned long long)h);
        CHECK(strcmp(hex, xa->cells[1].hash) == 0);
    }
    vitq_experiment_free(xa);
    vitq_experiment_free(xb);
    vitq_experiment_free(xc);
}

/* [run] data_parallel changes what passes compute: in the hash of a cell with a pass when on, nowhere else. */
TEST(grid_data_parallel_in_the_hash_of_pass_cells_only) {
    const char *pass = "[pass aph_recon]\niters = 10\n";
    char a[512], b[512], c[512], d[512], f[512];
    snprintf(a, sizeof a, MODEL "%s", pass);
    snprintf(b, sizeof b, "[run]\ndata_parallel = true\n" MODEL "%s", pass);
    snprintf(c, sizeof c, "[run]\ndata_parallel = false\n" MODEL "%s", pass);
    snprintf(d, sizeof d, MODEL "[quantizer w]\nplugin = uniform\n");
    snprintf(f, sizeof f, "[run]\ndata_parallel = true\n" MODEL "[quantizer w]\nplugin = uniform\n");
    vitq_experiment *xa = parse_ok(a), *xb = parse_ok(b), *xc = parse_ok(c), *xd = parse_ok(d), *xf = parse_ok(f);
    if (xa && xb && xc && xd && xf) {
        CHECK(strcmp(xa->cells[0].hash, xb->cells[0].hash) != 0);
        CHECK(strcmp(xa->cells[0].hash, xc->cells[0].hash) == 0); /* off: the text it had before the key */
        CHECK_STR_CONTAINS(xb->cells[0].config_text, "[pass aph_recon]\nenabled = true\niters = 10\n[run]\ndata_parallel = true\n");
        CHECK(strstr(xa->cells[0].config_text, "data_parallel") == NULL);
        CHECK(strcmp(xd->cells[0].hash, xf->cells[0].hash) == 0); /* no pass: nothing it changes */
        CHECK_EQ(xb->cells[0].cfg.data_parallel, 1);
        CHECK_EQ(xa->cells[0].cfg.data_parallel, 0);
    }
    vitq_experiment_free(xa), vitq_experiment_free(xb), vitq_experiment_free(xc);
    vitq_experiment_free(xd), vitq_experiment_free(xf);
}

TEST(grid_harness_key_table) {
    int n = 0;
    const vitq_key *k = vitq_grid_keys(&n);
    CHECK(n >= 17);
    int seen_path = 0;
    for (int i = 0; i < n; i++) {
        CHECK(k[i].section);
        CHECK(k[i].p.name);
        CHECK(k[i].p.help && k[i].p.help[0]);
        if (!strcmp(k[i].section, "model") && !strcmp(k[i].p.name, "path")) seen_path = k[i].p.def == NULL;
    }
    CHECK(seen_path);
}

/* Each tests/bad/NAME.ini must fail with exactly the message in tests/bad/NAME.err (path as "tests/bad/NAME.ini"). */
TEST(grid_bad_ini_files) {
    DIR *d = opendir("tests/bad");
    CHECK_MSG(d != NULL, "tests/bad not found (run from the repository root)");
    if (!d) return;
    int n = 0;
    for (struct dirent *de; (de = readdir(d));) {
        size_t l = strlen(de->d_name);
        if (l < 5 || strcmp(de->d_name + l - 4, ".ini") != 0) continue;
        char ini[512], errp[512];
        snprintf(ini, sizeof ini, "tests/bad/%s", de->d_name);
        snprintf(errp, sizeof errp, "tests/bad/%.*s.err", (int)(l - 4), de->d_name);
        vitq_err ee = {{0}};
        char *want = vitq_read_file(errp, NULL, &ee);
        CHECK_MSG(want != NULL, "%s", ee.msg);
        if (!want) continue;
        size_t wl = strlen(want);
        while (wl > 0 && want[wl - 1] == '\n') want[--wl] = 0;
        vitq_experiment *x = NULL;
        vitq_err e = {{0}};
        int rc = vitq_experiment_load(ini, &x, &e);
        CHECK_MSG(rc != 0 && x == NULL, "%s: accepted", ini);
        CHECK_MSG(strcmp(e.msg, want) == 0, "%s:\n  got:      %s\n  expected: %s", ini, e.msg, want);
        vitq_experiment_free(x);
        free(want);
        n++;
    }
    closedir(d);
    CHECK(n >= 5);
}

/* ---- bundles ------------------------------------------------------------------------------------ */
/* The issue's example: recon = none | qdrop | brecq, each a bundle of three settings of one pass. */
#define BUNDLES                                                                                          \
    "[grid]\nbits = 4, 3\nrecon = none, qdrop, brecq\n"                                              \
    "[recon = none]\nrecon_enabled = false\nimportance = none\ndrop_prob = 1.0\n"                  \
    "[recon=qdrop]\nrecon_enabled = true\nimportance = none\ndrop_prob = 0.5\n"                    \
    "[ recon = brecq ]\nrecon_enabled = true\nimportance = fisher\ndrop_prob = 1.0\n"
#define RECON_PASS "[pass noop_pass]\nenabled = ${recon_enabled}\nimportance = ${importance}\ndrop_prob = ${drop_prob}\n"

TEST(grid_bundles_expand_per_cell) {
    vitq_experiment *x = parse_ok(MODEL "[quantizer w]\nbits = ${bits}\n" RECON_PASS BUNDLES);
    if (!x) return;
    CHECK_EQ(x->n_axes, 2);
    CHECK_EQ(x->n_cells, 6);
    CHECK_EQ(x->n_vars, 3);
    const char *ids[6] = {"bits=4,recon=none", "bits=4,recon=qdrop", "bits=4,recon=brecq",
                          "bits=3,recon=none", "bits=3,recon=qdrop", "bits=3,recon=brecq"};
    for (int i = 0; i < 6 && i < x->n_cells; i++) CHECK_STREQ(x->cells[i].id, ids[i]);
    const char *imp[3] = {"none", "none", "fisher"}, *drop[3] = {"1.0", "0.5", "1.0"}, *on[3] = {"false", "true", "true"};
    for (int i = 0; i < x->n_cells && i < 6; i++) {
        const vitq_grid_cell *c = &x->cells[i];
        CHECK_STREQ(c->values[1], ids[i] + 13); /* the axis keeps the bundle's name: "none", ... */
        const vitq_section *ps = vitq_section_find(c->secs, c->n_secs, "pass noop_pass");
        CHECK(ps);
        if (!ps) continue;
        CHECK_STREQ(vitq_section_get(ps, "enabled")->value, on[i % 3]);
        CHECK_STREQ(vitq_section_get(ps, "importance")->value, imp[i % 3]);
        CHECK_STREQ(vitq_section_get(ps, "drop_prob")->value, drop[i % 3]);
        CHECK_EQ(vitq_section_get(ps, "drop_prob")->line, 8); /* the line of the ${...} it came from */
        /* bundles and [grid] are not part of the resolved configuration */
        for (int k = 0; k < c->n_secs; k++) CHECK_MSG(!strchr(c->secs[k].name, '='), "cell keeps [%s]", c->secs[k].name);
    }
    /* every cell its own hash; the bundle's settings are in the configuration text */
    for (int i = 0; i < x->n_cells; i++)
        for (int j = 0; j < i; j++) CHECK_MSG(strcmp(x->cells[i].hash, x->cells[j].hash) != 0, "cells %d and %d", i, j);
    CHECK_STR_CONTAINS(x->cells[1].config_text, "[pass noop_pass]\nenabled = true\ndrop_prob = 0.5\nimportance = none\n");
    CHECK_STR_CONTAINS(x->cells[2].config_text, "[pass noop_pass]\nenabled = true\ndrop_prob = 1.0\nimportance = fisher\n");
    CHECK_STR_CONTAINS(x->cells[0].config_text, "[pass noop_pass]\nenabled = false\n"); /* a skipped pass: no parameters */
    CHECK(!strstr(x->cells[0].config_text, "drop_prob"));
    vitq_experiment_free(x);
}

TEST(grid_bundle_axis_also_usable_directly_and_in_harness_keys) {
    /* a bundled axis may also be read as ${recon}; a bundle value typed as a harness key names the cell */
    vitq_experiment *x = parse_ok(MODEL "[data]\ncalib_size = ${n}\n[quantizer w]\nmode = ${recon}\n"
                                        "[grid]\nrecon = a, b\n[recon = a]\nn = 32\n[recon = b]\nn = 64\n");
    if (x) {
        CHECK_EQ(x->cells[1].cfg.calib_size, 64);
        CHECK_STREQ(vitq_section_get(vitq_section_find(x->cells[1].secs, x->cells[1].n_secs, "quantizer w"), "mode")->value, "b");
    }
    vitq_experiment_free(x);
    parse_err(MODEL "[data]\ncalib_size = ${n}\n[grid]\nrecon = a, b\n[recon = a]\nn = 32\n[recon = b]\nn = many\n",
              "t.ini:4: [data] calib_size: expected an integer in [1, 1000000], got 'many' (in cell recon=b); "
              "${n} is 'many' from t.ini:10 ([recon = b])");
}

TEST(grid_bundle_errors_each_with_file_and_line) {
    const char *use = MODEL "[quantizer w]\nx = ${v}\n"; /* lines 1-4 */
    char ini[1024];
    /* 1. the axis exists */
    snprintf(ini, sizeof ini, "%s[grid]\nrecon = a, b\n[recn = a]\nv = 1\n", use);
    parse_err(ini, "t.ini:4: [quantizer w] x: undefined ${v} ([grid] axes: recon)\n"
                   "t.ini:6: [grid] axis 'recon' is never used as ${recon} in any other section\n"
                   "t.ini:7: [recn = a]: 'recn' is not an axis of [grid] (axes: recon)");
    parse_err(MODEL "[recon = a]\nv = 1\n", "t.ini:3: [recon = a]: 'recon' is not an axis of [grid] (no [grid] axes)");
    /* 2. the value is one of the axis's */
    snprintf(ini, sizeof ini, "%s[grid]\nrecon = a, b\n[recon = a]\nv = 1\n[recon = c]\nv = 2\n", use);
    parse_err(ini, "t.ini:6: [grid] recon: value 'b' has no bundle [recon = b] (every value of an axis with bundles needs one)\n"
                   "t.ini:9: [recon = c]: 'c' is not a value of axis 'recon' (values: a, b)");
    /* 3. every value has a bundle (all missing ones in one line) */
    snprintf(ini, sizeof ini, "%s[grid]\nrecon = a, b, c\n[recon = b]\nv = 1\n", use);
    parse_err(ini, "t.ini:6: [grid] recon: values 'a', 'c' have no bundle [recon = VALUE] (every value of an axis with "
                   "bundles needs one)");
    /* 4. the same variables in every bundle: the one lacking names what it lacks and where it is defined */
    snprintf(ini, sizeof ini, "%s[quantizer y]\nz = ${w}${u}\n[grid]\nrecon = a, b\n[recon = a]\nv = 1\nw = 2\nu = 3\n"
                              "[recon = b]\nv = 1\n", use);
    parse_err(ini, "t.ini:13: [recon = b]: does not define w, u (defined in [recon = a], line 11); every bundle of axis "
                   "'recon' defines the same variables");
    /* 5. a variable is an identifier, not an axis's name, not another axis's variable; values are literal */
    snprintf(ini, sizeof ini, "%s[grid]\nrecon = a\nbits = 4\n[recon = a]\nv = ${bits}\nbits = 3\nx-y = 1\n"
                              "[bits = 4]\nv = 2\n", use);
    parse_err(ini, "t.ini:7: [grid] axis 'bits' is never used as ${bits} in any other section\n" /* v was refused */
                   "t.ini:9: [recon = a] v: a bundle value cannot use ${...}\n"
                   "t.ini:10: [recon = a] bits: a bundle variable cannot have the name of the axis 'bits'\n"
                   "t.ini:11: [recon = a] x-y: a bundle variable is an identifier ([A-Za-z_][A-Za-z0-9_]*)\n"
                   "t.ini:13: [bits = 4] v: also a variable of the bundles of axis 'recon' ([recon = a], line 9)");
    /* 6. every variable is used (the bundled axis is used through them) */
    snprintf(ini, sizeof ini, "%s[grid]\nrecon = a\n[recon = a]\nv = 1\nunused = 2\n", use);
    parse_err(ini, "t.ini:9: [recon = a] unused: bundle variable 'unused' is never used as ${unused} in any other section");
    /* 7. one bundle per (axis, value), however it is spelt; malformed names */
    snprintf(ini, sizeof ini, "%s[grid]\nrecon = a\n[recon = a]\nv = 1\n[recon=a]\nv = 1\n[ = a]\n", use);
    parse_err(ini, "t.ini:9: [recon=a]: a second bundle for recon = a (first: [recon = a], line 7)\n"
                   "t.ini:11: [ = a]: a bundle section is [AXIS = VALUE], e.g. [recon = qdrop]");
    /* 8. an undefined ${...} lists the bundle variables too */
    snprintf(ini, sizeof ini, "%s[quantizer y]\nz = ${vv}\n[grid]\nrecon = a\n[recon = a]\nv = 1\n", use);
    parse_err(ini, "t.ini:6: [quantizer y] z: undefined ${vv} ([grid] axes: recon; bundle variables: v)");
}

/* ---- [pass NAME] sections at parse time (binding to plugins: test_passes.c) ----------------------------- */
TEST(grid_pass_sections_names_and_enabled) {
    parse_err(MODEL "[pass]\n[pass a b]\n[pass noop_pass]\n[pass  noop_pass]\n",
              "t.ini:3: [pass]: name the pass plugin: [pass NAME] (`vitq plugins` lists them)\n"
              "t.ini:4: [pass a b]: a pass name is one word of [A-Za-z0-9_.-] (the plugin's name)\n"
              "t.ini:6: [pass  noop_pass]: pass 'noop_pass' given twice (first on line 5); a pass runs once per cell");
    parse_err(MODEL "[pass noop_pass]\nenabled = ${on}\n[grid]\non = yes, maybe\n",
              "t.ini:4: [pass noop_pass] enabled: expected true/false, yes/no, on/off or 1/0, got 'maybe' "
              "(in cell on=maybe); "
              "${on} is 'maybe' from t.ini:6 ([grid])");
    vitq_experiment *x = parse_ok(MODEL "[pass noop_pass]\nenabled = ${on}\n[grid]\non = yes, OFF\n");
    if (x) {
        CHECK_STR_CONTAINS(x->cells[0].config_text, "[pass noop_pass]\nenabled = true\n");
        CHECK_STR_CONTAINS(x->cells[1].config_text, "[pass noop_pass]\nenabled = false\n");
    }
    vitq_experiment_free(x);
}

TEST(grid_pass_sections_in_the_hash) {
    const char *base = MODEL "[quantizer w]\nplugin = uniform\n";
    char a[512], b[512], c[512], d[512], f[512];
    snprintf(a, sizeof a, "%s[pass p1]\nk = 1\nj = 2\n[pass p2]\n", base);
    snprintf(b, sizeof b, "%s[pass p1]\nj = 2\nenabled = yes\nk = 1\n[pass p2]\n", base); /* same, written otherwise */
    snprintf(c, sizeof c, "%s[pass p2]\n[pass p1]\nk = 1\nj = 2\n", base);                 /* order is the pipeline's */
    snprintf(d, sizeof d, "%s[pass p1]\nk = 1\nj = 3\n[pass p2]\n", base);                 /* a parameter */
    snprintf(f, sizeof f, "%s[pass p1]\nenabled = false\nk = 9\n[pass p2]\n", base);       /* skipped: k is moot */
    vitq_experiment *xa = parse_ok(a), *xb = parse_ok(b), *xc = parse_ok(c), *xd = parse_ok(d), *xf = parse_ok(f);
    vitq_experiment *x0 = parse_ok(base);
    if (xa && xb && xc && xd && xf && x0) {
        CHECK_STR_CONTAINS(xa->cells[0].config_text, "[pass p1]\nenabled = true\nj = 2\nk = 1\n[pass p2]\nenabled = true\n");
        CHECK_STREQ(xa->cells[0].hash, xb->cells[0].hash);
        CHECK(strcmp(xa->cells[0].hash, xc->cells[0].hash) != 0);
        CHECK(strcmp(xa->cells[0].hash, xd->cells[0].hash) != 0);
        CHECK(strcmp(xa->cells[0].hash, xf->cells[0].hash) != 0);
        CHECK_STR_CONTAINS(xf->cells[0].config_text, "[pass p1]\nenabled = false\n[pass p2]\n");
        CHECK(!strstr(x0->cells[0].config_text, "[pass")); /* no pass: the text (and hash) of before */
    }
    vitq_experiment_free(xa);
    vitq_experiment_free(xb);
    vitq_experiment_free(xc);
    vitq_experiment_free(xd);
    vitq_experiment_free(xf);
    vitq_experiment_free(x0);
}
