/* vectorize.h — PLUGIN_VECTORIZE, for a plugin's element-wise loops: O3 and an AVX-512 clone (the harness's
 * kernels have VITQ_VECTORIZE, which plugins do not include). GCC 12's -O2 vectorises no loop that needs an
 * epilogue. The same bits: each value gets the same operations, no sum is reordered (GCC never reassociates
 * float arithmetic without -ffast-math) and no FMA is contracted (ISO C). `unused`: the headers that use it
 * are included by files that do not call every function. */
#ifndef PLUGIN_VECTORIZE_H
#define PLUGIN_VECTORIZE_H

#define PLUGIN_VECTORIZE __attribute__((target_clones("avx512f", "default"), optimize("O3"), unused))

#endif
