/* vitq.h — the umbrella header of libvitq: every layer's header, for programs built on the library
 * (the `vitq` command's own files include their layer's header instead; tests and bench include this).
 * A plugin includes vitq_plugin.h alone.
 *
 * The layers, each with one header, each including only the one below (harness/README: "How it is
 * built"): core < kernels < model < data < quant < train < run (< cli, the command, not in the library). */
#ifndef VITQ_H
#define VITQ_H

#include "run/run.h" /* and through it train/, quant/, data/, model/, kernels/, core/, vitq_plugin.h */

#endif
