/* cmd_plugins.c — `vitq plugins [NAME] [--help]`: every plugin found on the search path with its kind,
 * version and summary; with NAME, each parameter's type, default, range or choices and help.
 * Generated from the descriptors (llama.cpp's QUANT_OPTIONS listing). Prints to stdout; errors to stderr. */
#include "cli/cli.h"

#include <stdlib.h>
#include <string.h>

static void usage(FILE *to) {
    fprintf(to, "usage: vitq plugins [NAME]\n\n"
                "Lists the plugins found in $VITQ_PLUGIN_PATH, <vitq's folder>/plugins, <vitq's folder>/../plugins\n"
                "and the installed plugin folder; with NAME (a name or a path to a .so) prints its parameters.\n");
}

static int list_all(void) {
    vitq_plugin_found *found = NULL;
    int n = 0, bad = 0;
    vitq_err e;
    if (vitq_plugin_scan(&found, &n, &e)) {
        cli_error("%s", e.msg);
        return 1;
    }
    const char *dirs[32];
    int nd = vitq_plugin_dirs(dirs, 32);
    printf("plugin folders:");
    for (int i = 0; i < nd && i < 32; i++) printf(" %s", dirs[i]);
    printf("\n\n%-14s %-9s %-8s %s\n", "NAME", "KIND", "VERSION", "SUMMARY");
    for (int i = 0; i < n; i++) {
        const vitq_plugin *p = NULL;
        /* by name, so that the same name in two folders is reported as such */
        if (vitq_plugin_load(found[i].name, NULL, &p, &e)) {
            printf("%-14s %-9s %-8s (unusable: %s)\n", found[i].name, "?", "?", e.msg);
            bad++;
            continue;
        }
        printf("%-14s %-9s %-8s %s\n", p->name, p->kind == VITQ_PLUGIN_QUANTIZER ? "quantizer" : "pass", p->version,
               p->summary);
    }
    if (n == 0) printf("(none found)\n");
    free(found);
    return 0;
}

static int show_one(const char *name) {
    const vitq_plugin *p = NULL;
    vitq_err e;
    if (vitq_plugin_load(name, NULL, &p, &e)) {
        cli_error("%s", e.msg);
        return 1;
    }
    printf("%s %s (%s) — %s\nfile: %s\n\n", p->name, p->version, p->kind == VITQ_PLUGIN_QUANTIZER ? "quantizer" : "pass",
           p->summary, vitq_plugin_file(p) ? vitq_plugin_file(p) : name);
    if (p->n_params == 0) {
        printf("no parameters\n");
        return 0;
    }
    printf("%-14s %-7s %-12s %-36s %s\n", "PARAMETER", "TYPE", "DEFAULT", "RANGE / CHOICES", "HELP");
    for (int i = 0; i < p->n_params; i++) {
        const vitq_param *q = &p->params[i];
        char range[256] = "";
        if (q->type == VITQ_P_INT || q->type == VITQ_P_FLOAT)
            snprintf(range, sizeof range, "[%.15g, %.15g]", q->min, q->max);
        else if (q->type == VITQ_P_ENUM)
            snprintf(range, sizeof range, "%s", q->choices);
        else if (q->type == VITQ_P_BOOL)
            snprintf(range, sizeof range, "true|false");
        printf("%-14s %-7s %-12s %-36s %s\n", q->name, vitq_ptype_name(q->type), q->def, range, q->help ? q->help : "");
    }
    return 0;
}

int cmd_plugins(int argc, char **argv) {
    const char *name = NULL;
    int help = 0, n_pos = 0;
    const cli_spec spec = {"plugins", NULL, 0, "NAME", 1, 0};
    if (cli_parse(&spec, argc, argv, &name, &n_pos, &help)) return 2;
    if (help && !name) {
        usage(stdout);
        return 0;
    }
    return name ? show_one(name) : list_all();
}
