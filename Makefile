# vitq — the only build file (GNU make). Everything built goes under $(BUILD)/; the source tree is
# never written. `make SANITIZE=1` builds an AddressSanitizer + UBSan tree in build-san/.
#
#   make            libvitq.so, the vitq command, every plugins/*.c as a .so
#   make check      install missing Debian packages, build, run the test suite
#   make demo       install, build, quantize the bundled model (experiments/demo.ini)
#   make bench      throughput and memory against OpenBLAS sgemm measured in the same run
#                   (SECTIONS="recon eval": only those; build/bench/bench --help lists them)
#   make bench-shard     the speed-up of 2 shards over 1 on an 8-cell grid (bench/shard_bench.sh)
#   make install    PREFIX=/usr/local: vitq, libvitq.so, vitq_plugin.h, vitq.h + layer headers, plugins, vitq.pc
#   make MPI=1      the same with `mpirun -np R vitq run` (OpenMPI or any `pkg-config mpi-c`), in build-mpi/
#   make deps-scaleout   also the packages of the scale-out tests: OpenMPI, Slurm, MUNGE (CI does this)

# MPI=1: the vitq command (only it; libvitq.so stays MPI-free) links MPI; its own build folder, so the
# default build never sees libmpi. SANITIZE=1 MPI=1 gives build-san-mpi/.
MPI ?=
MPI_SUFFIX := $(if $(filter 1,$(MPI)),-mpi,)
SANITIZE ?=
ifeq ($(SANITIZE),)
BUILD ?= build$(MPI_SUFFIX)
SAN_FLAGS :=
else
BUILD ?= build-san$(MPI_SUFFIX)
SAN_FLAGS := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
endif

# `make V=1` shows every command; by default one short line per file.
ifeq ($(V),1)
Q :=
say = @true
else
Q := @
say = @printf '  %-6s %s\n' $(1) $(2)
endif

PREFIX ?= /usr/local
bindir ?= $(PREFIX)/bin
libdir ?= $(PREFIX)/lib
includedir ?= $(PREFIX)/include
DESTDIR ?=

# Debian packages the build, the tests and the demo need (checked and installed by `make deps`).
DEB_PACKAGES := build-essential pkg-config libopenblas-dev libinih-dev libhdf5-dev libcjson-dev \
	zlib1g-dev libjpeg-dev libpng-dev libssl-dev gnuplot-nox dataset-fashion-mnist
PKGS := openblas inih hdf5 libcjson zlib libpng libjpeg libcrypto
# Scale-out (README "Scale-out"): not in the default list, because the default build needs none of it and
# installing slurm-wlm and munge on a developer's machine enables system daemons (on a systemd host the
# packages start munged and slurmd services). `make deps MPI=1` adds OpenMPI; `make deps-scaleout` (CI) adds
# everything the scale-out tests use; without them those tests are skipped with the reason printed.
MPI_DEB_PACKAGES := openmpi-bin libopenmpi-dev
SCALEOUT_DEB_PACKAGES := $(MPI_DEB_PACKAGES) slurm-wlm munge
ifeq ($(MPI),1)
DEB_PACKAGES += $(MPI_DEB_PACKAGES)
MPI_CFLAGS := -DVITQ_MPI=1 $(shell pkg-config --cflags mpi-c 2>/dev/null)
MPI_LIBS := $(shell pkg-config --libs mpi-c 2>/dev/null)
endif

CC ?= cc
CFLAGS ?= -O2 -g
WARN := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wvla
BASE_CFLAGS = -std=c11 -D_GNU_SOURCE $(WARN) -MMD -MP $(SAN_FLAGS) $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
DEP_LIBS = $(shell pkg-config --libs $(PKGS) 2>/dev/null) -ldl -lpthread -lm

# The library's layers, bottom up (README "How it is built"); harness/cli/ is the command.
LAYERS := core kernels model data quant train run
LIB_SRC := $(foreach l,$(LAYERS),$(wildcard harness/$(l)/*.c))
CLI_SRC := $(wildcard harness/cli/*.c)
LIB_HEADERS := harness/vitq.h harness/vitq_plugin.h $(foreach l,$(LAYERS),harness/$(l)/$(l).h)
PLUGIN_SRC := $(wildcard plugins/*.c)
TEST_SRC := $(wildcard tests/*.c)
TEST_PLUGIN_SRC := $(wildcard tests/plugins/*.c)
BENCH_SRC := $(wildcard bench/*.c)

LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/%.o)
CLI_OBJ := $(CLI_SRC:%.c=$(BUILD)/%.o)
TEST_OBJ := $(TEST_SRC:%.c=$(BUILD)/%.o)
BENCH_OBJ := $(BENCH_SRC:%.c=$(BUILD)/%.o)
PLUGINS := $(PLUGIN_SRC:plugins/%.c=$(BUILD)/plugins/%.so)
TEST_PLUGINS := $(TEST_PLUGIN_SRC:tests/plugins/%.c=$(BUILD)/tests/plugins/%.so)

TOOL_SRC := $(wildcard tests/tools/*.c)
TOOLS := $(TOOL_SRC:tests/tools/%.c=$(BUILD)/tests/tools/%)

LIB := $(BUILD)/libvitq.so
VITQ := $(BUILD)/vitq
TESTS := $(BUILD)/tests/run
BENCH := $(BUILD)/bench/bench

.PHONY: all check test demo bench bench-shard install uninstall clean deps deps-scaleout require-deps
all: require-deps $(LIB) $(VITQ) $(PLUGINS)

# --- dependencies ----------------------------------------------------------------------------
deps-scaleout:
	@$(MAKE) --no-print-directory deps DEB_PACKAGES="$(DEB_PACKAGES) $(SCALEOUT_DEB_PACKAGES)"

deps:
	@missing=$$(for p in $(DEB_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "vitq: installing missing Debian packages:" $$missing; \
	  if [ "$$(id -u)" != 0 ]; then echo "vitq: run as root, or: sudo apt-get install" $$missing; exit 1; fi; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; \
	fi

require-deps:
	@for p in $(PKGS); do pkg-config --exists $$p || { echo "vitq: missing pkg-config package '$$p' (run 'make deps' as root)"; exit 1; }; done
	@if [ "$(MPI)" = 1 ] && ! pkg-config --exists mpi-c; then echo "vitq: MPI=1: missing pkg-config package 'mpi-c' (run 'make deps MPI=1' as root: libopenmpi-dev)"; exit 1; fi

# --- objects ---------------------------------------------------------------------------------
$(BUILD)/harness/%.o: harness/%.c
	@mkdir -p $(@D)
	$(call say,CC,$<)
	$(Q)$(CC) $(BASE_CFLAGS) $(CFLAGS) $(OBJ_CFLAGS) -Iharness -DVITQ_LIBDIR='"$(libdir)"' -fPIC -fvisibility=hidden -c $< -o $@

# Only the command's objects see MPI (and only in MPI=1 builds).
$(CLI_OBJ): OBJ_CFLAGS := $(MPI_CFLAGS)

$(BUILD)/tests/%.o: tests/%.c
	@mkdir -p $(@D)
	$(call say,CC,$<)
	$(Q)$(CC) $(BASE_CFLAGS) $(CFLAGS) -Iharness -c $< -o $@

$(BUILD)/bench/%.o: bench/%.c
	@mkdir -p $(@D)
	$(call say,CC,$<)
	$(Q)$(CC) $(BASE_CFLAGS) $(CFLAGS) -Iharness -c $< -o $@

$(LIB): $(LIB_OBJ)
	$(call say,LD,$@)
	$(Q)$(CC) -shared $(SAN_FLAGS) -o $@ $^ $(DEP_LIBS)

$(VITQ): $(CLI_OBJ) $(LIB)
	$(call say,LD,$@)
	$(Q)$(CC) $(SAN_FLAGS) -o $@ $(CLI_OBJ) -L$(BUILD) -lvitq -Wl,-rpath,'$$ORIGIN' $(DEP_LIBS) $(MPI_LIBS)

# Helpers of the end-to-end tests (tests/tools/NAME.c -> $(BUILD)/tests/tools/NAME), on the HDF5 C API.
$(BUILD)/tests/tools/%: tests/tools/%.c
	@mkdir -p $(@D)
	$(call say,CC,$<)
	$(Q)$(CC) $(BASE_CFLAGS) $(CFLAGS) -o $@ $< $(DEP_LIBS)

# Every plugins/NAME.c becomes NAME.so. A plugin sees vitq_plugin.h only (no library symbol), so it links
# against nothing but libm; -z defs makes an unresolved symbol a link error, not a dlopen one. A plugin may
# include a header of its own under plugins/ (plugins/aphq_grid.h); -MMD's $(BUILD)/plugins/NAME.d tracks it.
$(BUILD)/plugins/%.so: plugins/%.c harness/vitq_plugin.h
	@mkdir -p $(@D)
	$(call say,PLUGIN,$@)
	$(Q)$(CC) $(BASE_CFLAGS) $(CFLAGS) -Iharness -fPIC -shared -fvisibility=hidden -Wl,-z,defs -o $@ $< -lm

# Test plugins are deliberately broken in various ways; no -z defs for them.
$(BUILD)/tests/plugins/%.so: tests/plugins/%.c tests/plugins/common_ops.h harness/vitq_plugin.h
	@mkdir -p $(@D)
	$(Q)$(CC) -std=c11 -O1 -Iharness -fPIC -shared -w -o $@ $<

$(TESTS): $(TEST_OBJ) $(LIB)
	$(call say,LD,$@)
	$(Q)$(CC) $(SAN_FLAGS) -o $@ $(TEST_OBJ) -L$(BUILD) -lvitq -Wl,-rpath,'$$ORIGIN/..' $(DEP_LIBS)

$(BENCH): $(BENCH_OBJ) $(LIB)
	$(call say,LD,$@)
	$(Q)$(CC) $(SAN_FLAGS) -o $@ $(BENCH_OBJ) -L$(BUILD) -lvitq -Wl,-rpath,'$$ORIGIN/..' $(DEP_LIBS)

# --- user targets ----------------------------------------------------------------------------
check: deps
	@$(MAKE) --no-print-directory test

test: all $(TESTS) $(TEST_PLUGINS) $(TOOLS)
	BUILD=$(BUILD) VITQ_BIN=$(VITQ) $(if $(SAN_FLAGS),ASAN_OPTIONS=detect_leaks=1 VITQ_NO_DLCLOSE=1,) $(TESTS) $(T)

# `vitq run` prints the table too; here it is printed once, last, after the figures are drawn.
demo: deps
	@$(MAKE) --no-print-directory all
	$(VITQ) run experiments/demo.ini > /dev/null
	@$(VITQ) plot results/demo > $(BUILD)/demo-figures.txt
	@echo "figures: results/demo/plots/ ($$(wc -l < $(BUILD)/demo-figures.txt) figures, each as .tsv + .gp + .png)"
	@echo
	@$(VITQ) results results/demo

bench: deps
	@$(MAKE) --no-print-directory all $(BENCH)
	$(BENCH) $(SECTIONS)

# The speed-up of 2 shards over 1 on an 8-cell grid (README "Scale-out").
bench-shard: deps
	@$(MAKE) --no-print-directory all $(TOOLS)
	VITQ=$(VITQ) bench/shard_bench.sh

# vitq.pc is written at install time, so that it always names this PREFIX.
install: all
	install -d $(DESTDIR)$(bindir) $(DESTDIR)$(libdir)/vitq/plugins $(DESTDIR)$(includedir)/vitq $(DESTDIR)$(libdir)/pkgconfig
	install -m 755 $(VITQ) $(DESTDIR)$(bindir)/vitq
	install -m 755 $(LIB) $(DESTDIR)$(libdir)/libvitq.so
	install -m 644 harness/vitq.h harness/vitq_plugin.h $(DESTDIR)$(includedir)/vitq/
	for l in $(LAYERS); do install -d $(DESTDIR)$(includedir)/vitq/$$l && \
		install -m 644 harness/$$l/$$l.h $(DESTDIR)$(includedir)/vitq/$$l/ || exit 1; done
	$(if $(PLUGINS),install -m 755 $(PLUGINS) $(DESTDIR)$(libdir)/vitq/plugins/)
	printf 'prefix=%s\nlibdir=%s\nincludedir=%s\n\nName: vitq\nDescription: ViT post-training quantization harness\nVersion: %s\nCflags: -I$${includedir}/vitq\nLibs: -L$${libdir} -lvitq\n' \
		'$(PREFIX)' '$(libdir)' '$(includedir)' "$$(sed -n 's/^#define VITQ_VERSION "\(.*\)"/\1/p' harness/core/core.h)" \
		> $(DESTDIR)$(libdir)/pkgconfig/vitq.pc
	if [ -z "$(DESTDIR)" ]; then ldconfig; fi

uninstall:
	rm -f $(DESTDIR)$(bindir)/vitq $(DESTDIR)$(libdir)/libvitq.so $(DESTDIR)$(libdir)/pkgconfig/vitq.pc
	rm -rf $(DESTDIR)$(includedir)/vitq $(DESTDIR)$(libdir)/vitq

clean:
	rm -rf $(BUILD)

-include $(LIB_OBJ:.o=.d) $(CLI_OBJ:.o=.d) $(TEST_OBJ:.o=.d) $(BENCH_OBJ:.o=.d) $(PLUGINS:.so=.d) $(TOOLS:=.d)
