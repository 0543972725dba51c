/* test_progress.c — the progress line's rate and ETA: none until half a second has passed (the first update
 * prints at once, and a count over microseconds gave rates like 2584398.4/s with "ETA 0s"), then the count
 * over the elapsed time; the final line says how long it took. stderr is captured in a file. */
#include "test.h"

#include "core/core.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Runs fn with stderr in a file; its text into out. */
static void capture_stderr(void (*fn)(void), char *out, size_t n) {
    char path[512];
    snprintf(path, sizeof path, "%s/stderr.txt", test_tmpdir());
    fflush(stderr);
    int saved = dup(STDERR_FILENO);
    FILE *f = fopen(path, "w+");
    CHECK(f && saved >= 0);
    if (!f || saved < 0) return;
    dup2(fileno(f), STDERR_FILENO);
    fn();
    fflush(stderr);
    dup2(saved, STDERR_FILENO);
    close(saved);
    rewind(f);
    size_t k = fread(out, 1, n - 1, f);
    out[k] = 0;
    fclose(f);
}

static void early_then_later(void) {
    vitq_progress p;
    vitq_set_quiet(0);
    vitq_progress_start(&p, "unit", 100);
    vitq_progress_update(&p, 1, "loss 0.5"); /* prints at once: no rate yet */
    p.t0 -= 2.0;                             /* two seconds later, 40 of 100 done */
    p.last_print = 0;
    vitq_progress_update(&p, 40, NULL);
    vitq_progress_finish(&p, NULL);
}

TEST(progress_no_rate_before_half_a_second) {
    char text[4096] = "";
    capture_stderr(early_then_later, text, sizeof text);
    char *l1 = text, *l2 = strchr(l1, '\n'), *l3 = l2 ? strchr(l2 + 1, '\n') : NULL;
    CHECK_MSG(l2 && l3, "expected three lines (not a TTY: each update is a line), got: %s", text);
    if (!l2 || !l3) return;
    *l2++ = 0, *l3++ = 0;
    CHECK_STR_CONTAINS(l1, "unit [....................] 1/100 -/s ETA ? loss 0.5");
    /* 40 in ~2 s: ~20/s, the other 60 in ~3 s */
    double rate = 0;
    const char *r = strstr(l2, "40/100 ");
    CHECK_MSG(r && sscanf(r + 7, "%lf/s", &rate) == 1 && rate > 15 && rate < 20.5, "line: %s", l2);
    CHECK_STR_CONTAINS(l2, "ETA 3s");
    CHECK_STR_CONTAINS(l3, "40/100 ");
    CHECK_STR_CONTAINS(l3, " in 2s");
}
