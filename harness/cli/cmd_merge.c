/* cmd_merge.c — `vitq merge OUT RUN...`: run folders of one experiment (the shards of a Slurm array, runs
 * of parts of one grid on other machines) combined into the run folder OUT, through run/merge.c: the
 * runs must come from the same INI text, vitq version and checkpoints (else one line naming the
 * difference, exit 1), every cell file is copied whole, OUT's index is rebuilt; merging again changes
 * nothing. Exit 0 merged, 1 refused or failed (or a cell file could not be read), 2 usage error,
 * 130 interrupted (the copies made so far are whole; merge again). */
#include "cli/cli.h"

#include <stdlib.h>
#include <string.h>

static void usage(FILE *to) {
    fprintf(to,
            "usage: vitq merge OUT RUN... [-q]\n\n"
            "Copies the cell files of the run folders RUN... into the run folder OUT (created if needed) and\n"
            "rebuilds OUT/run.h5, as if one `vitq run` had computed every cell. The runs must come from the\n"
            "same INI text, the same vitq version and the same checkpoints: otherwise nothing is written and\n"
            "one line names the two runs and the difference.\n\n"
            "  - a cell present in several runs: a done one is kept over a failed one; among equals the one\n"
            "    already in OUT, else the first RUN's (a rerun cell has the same configuration hash)\n"
            "  - every file is copied whole (temp file, fsync, rename); a cell OUT already holds with the same\n"
            "    bytes is not rewritten, so merging again is harmless (idempotent)\n"
            "  - OUT may already be a run of the same experiment (an earlier merge, or a folder shards wrote\n"
            "    into); `vitq merge OUT OUT` just rebuilds its index\n"
            "  - a RUN folder that is empty (a shard killed before it finished a cell) is skipped\n\n"
            "  -q             no summary line on stderr\n\n"
            "Typical: vitq merge results/exp results/exp.shards/shard-*-of-16\n");
}

int cmd_merge(int argc, char **argv) {
    int help = 0, quiet = 0, n_pos = 0;
    const char **pos = calloc((size_t)argc + 1, sizeof *pos);
    if (!pos) {
        cli_error("out of memory");
        return 1;
    }
    const cli_opt opts[] = {{"--quiet", "-q", CLI_FLAG, &quiet, 0, 0}};
    const cli_spec spec = {"merge", opts, 1, "OUT", argc, 0};
    int code = cli_parse(&spec, argc, argv, pos, &n_pos, &help);
    if (!code && help) {
        usage(stdout);
    } else if (!code && n_pos < 2) {
        cli_error(n_pos ? "merge: no RUN folder given after OUT '%s' (vitq merge --help)" :
                          "merge: expected OUT and at least one RUN folder (vitq merge --help)%s", n_pos ? pos[0] : "");
        code = 2;
    } else if (!code) {
        vitq_merge_report rep;
        vitq_err e;
        int rc = vitq_merge(pos[0], pos + 1, n_pos - 1, &rep, &e);
        if (rc) {
            cli_error("%s", e.msg);
            code = cli_exit_code(rc);
        } else {
            if (rep.note[0]) fprintf(stderr, "vitq merge: warning: %s\n", rep.note);
            if (!quiet)
                fprintf(stderr, "vitq merge: %d run%s -> %s: %d cells (%d done, %d failed): %d copied, %d already there%s%s\n",
                        rep.runs, rep.runs == 1 ? "" : "s", pos[0], rep.cells, rep.done, rep.failed, rep.copied, rep.kept,
                        rep.duplicates ? ", duplicates resolved" : "", rep.unreadable ? ", unreadable files skipped" : "");
            code = rep.unreadable ? 1 : 0;
        }
    }
    free(pos);
    return code;
}
