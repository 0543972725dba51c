/* test_streams.c — the random streams results depend on, pinned to the values they have always had
 * (computed independently from their definitions): a plugin instance's host->rng (splitmix64 seeded from
 * the cell seed and the tap name) and the calibration subset. Moving code between files must not move
 * a single number of `make demo`. */
#include "test.h"

#include <stdlib.h>

TEST(streams_host_rng_pinned) {
    vitq_host h;
    vitq_host_ctx c;
    vitq_host_init(&h, &c, "p", "blocks.0.attn.probs", 7);
    CHECK_EQ(h.rng(&h), 0x5c8264ab2ec6ea67ULL);
    CHECK_EQ(h.rng(&h), 0x9735431fd7421f1eULL);
    CHECK_EQ(h.rng(&h), 0xee3fc999cec11c02ULL);
}

TEST(streams_calibration_subset_pinned) {
    int64_t *p = vitq_calib_subset(0, 60000, 5);
    const int64_t want[5] = {39792, 11431, 49953, 31677, 59266};
    CHECK(p != NULL);
    for (int i = 0; p && i < 5; i++) CHECK_EQ(p[i], want[i]);
    free(p);
    p = vitq_calib_subset(3407, 1000, 4);
    const int64_t want2[4] = {609, 969, 524, 650};
    for (int i = 0; p && i < 4; i++) CHECK_EQ(p[i], want2[i]);
    free(p);
}
