# install_out_of_tree.sh — `make install` into a DESTDIR, then what a user outside the tree does: build
# plugins/example_round.c with `cc -shared -fPIC $(pkg-config --cflags vitq) myq.c -o myq.so` against the
# installed headers alone and load it with the installed vitq; the plugin header compiles on its own
# (standard headers only) and so does a program using the umbrella vitq.h.
set -euo pipefail
BUILD=${BUILD:-build}
fail() {
    echo "FAIL: $*" >&2
    exit 1
}
T=$(mktemp -d "${TMPDIR:-/tmp}/vitq-e2e-install.XXXXXX")
trap 'rm -rf "$T"' EXIT
san=
[ "$BUILD" = build-san ] && san=SANITIZE=1
# a make of its own (not the one running the tests), quiet; everything is built already
env -u MAKEFLAGS -u MAKELEVEL make --no-print-directory -s install DESTDIR="$T/root" PREFIX=/usr BUILD="$BUILD" $san \
    >"$T/install.log" 2>&1 || { cat "$T/install.log"; fail "make install failed"; }
for f in usr/bin/vitq usr/lib/libvitq.so usr/lib/pkgconfig/vitq.pc usr/include/vitq/vitq_plugin.h \
    usr/include/vitq/vitq.h usr/include/vitq/run/run.h usr/lib/vitq/plugins/uniform.so; do
    [ -e "$T/root/$f" ] || fail "make install did not install $f"
done

export PKG_CONFIG_PATH="$T/root/usr/lib/pkgconfig" PKG_CONFIG_SYSROOT_DIR="$T/root"
cflags=$(echo $(pkg-config --cflags vitq)) # (pkg-config ends it with a space)
[ "$cflags" = "-I$T/root/usr/include/vitq" ] || fail "pkg-config --cflags vitq gave '$cflags'"
mkdir "$T/src" "$T/plugins"
cp plugins/example_round.c "$T/src/myq.c" # out of the tree: only the installed headers are reachable
(cd "$T/src" && cc -shared -fPIC $cflags myq.c -o "$T/plugins/example_round.so") || fail "out-of-tree plugin build failed"
echo '#include "vitq_plugin.h"' | cc -std=c11 -Wall -Wextra -Werror -pedantic -fsyntax-only $cflags -x c - ||
    fail "vitq_plugin.h does not compile on its own"
printf '#include "vitq.h"\nint main(void) { return vitq_threads_get() > 0 ? 0 : 1; }\n' |
    cc -std=c11 -Wall -Wextra -Werror -fsyntax-only $cflags -x c - || fail "vitq.h does not compile in a program"

LD_LIBRARY_PATH="$T/root/usr/lib" VITQ_PLUGIN_PATH="$T/plugins" "$T/root/usr/bin/vitq" plugins example_round \
    >"$T/out" 2>&1 || { cat "$T/out"; fail "the installed vitq cannot load the out-of-tree plugin"; }
grep -q "^example_round " "$T/out" || { cat "$T/out"; fail "plugin listing"; }
grep -q "file: $T/plugins/example_round.so" "$T/out" || { cat "$T/out"; fail "loaded from elsewhere"; }
echo ok
