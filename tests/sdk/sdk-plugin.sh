#!/bin/sh
# The plugin SDK end to end: install the SDK (headers + vmbusd-vsp.pc) into a
# staging directory, build examples/echo-upper out of tree with pkg-config
# alone (its Makefile and its meson.build), have vmbusd load it
# (--check-config and a real run), and drive it from a simulated guest while
# vmbusctl inspects and controls it.
#
# usage: sdk-plugin.sh BUILD_ROOT SOURCE_ROOT VMBUSD VMBUSCTL SDK_GUEST MESON CC MAKE
set -eu
build=$1
src=$2
vmbusd=$3
vmbusctl=$4
guest=$5
meson=$6
CC=$7
make=$8
export CC
. "$src/tests/sdk/lib.sh"
sdk_tmp vmbusd-sdk
logs="$tmp/log $tmp/vmbusd.log"
ctl="$tmp/ctl.sock"
vu="$tmp/vu.sock"
step() { echo "== $*"; }

step "install the SDK into $tmp/dest"
"$meson" install -C "$build" --no-rebuild --tags devel --destdir "$tmp/dest" >"$tmp/log" 2>&1 ||
    fail "meson install --tags devel"
cat "$tmp/log"
pc=$(find "$tmp/dest" -name vmbusd-vsp.pc)
[ -n "$pc" ] || fail "vmbusd-vsp.pc was not installed"
# A staged SDK: pkg-config puts the staging directory before every path.
PKG_CONFIG_PATH=$(dirname "$pc")
PKG_CONFIG_SYSROOT_DIR=$tmp/dest
export PKG_CONFIG_PATH PKG_CONFIG_SYSROOT_DIR

pkg-config --exists vmbusd-vsp || fail "pkg-config does not find vmbusd-vsp"
cflags=$(pkg-config --cflags vmbusd-vsp)
libs=$(pkg-config --libs vmbusd-vsp)
plugindir=$(pkg-config --variable=plugindir vmbusd-vsp)
api=$(pkg-config --variable=vsp_api_version vmbusd-vsp)
echo "cflags: $cflags"
echo "libs: '$libs'"
echo "plugindir: $plugindir"
echo "vsp_api_version: $api"
incdir=${cflags#-I}
incdir=${incdir%% *}
[ -f "$incdir/vmbusd/vsp.h" ] && [ -f "$incdir/vmbusd/hv_wire.h" ] ||
    fail "Cflags ($cflags) do not point at the installed headers"
cmp -s "$incdir/vmbusd/vsp.h" "$src/include/vmbusd/vsp.h" || fail "installed vsp.h differs"
cmp -s "$incdir/vmbusd/hv_wire.h" "$src/include/vmbusd/hv_wire.h" || fail "installed hv_wire.h differs"
cmp -s "$incdir/vmbusd/vmbus_user.h" "$src/include/vmbusd/vmbus_user.h" ||
    fail "vmbus_user.h (for other VMMs) not installed, or differs"
cmp -s "$incdir/vmbusd/hv_guids.h" "$src/include/vmbusd/hv_guids.h" || fail "installed hv_guids.h differs"
[ -z "$(echo "$libs" | tr -d ' ')" ] || fail "vmbusd-vsp.pc has Libs ($libs); plugins link against nothing"
case $plugindir in
"$tmp/dest"/*/vmbusd/vsp) ;;
*) fail "plugindir $plugindir is not <libdir>/vmbusd/vsp" ;;
esac
hdr_api=$(sed -n 's/^#define VSP_API_VERSION *\([0-9]*\).*/\1/p' "$src/include/vmbusd/vsp.h")
[ "$api" = "$hdr_api" ] || fail "vsp_api_version $api, vsp.h says $hdr_api"
printf '#include <vmbusd/vsp.h>\nint main(void) { return VSP_API_VERSION; }\n' >"$tmp/inc.c"
# shellcheck disable=SC2086
$CC -std=gnu11 -Wall -Wextra -Werror -fsyntax-only $cflags "$tmp/inc.c" ||
    fail "the installed vsp.h does not compile on its own"
printf '#include <vmbusd/vmbus_user.h>\nint main(void) { return VU_PROTOCOL_MAJOR; }\n' >"$tmp/vu.c"
# shellcheck disable=SC2086
$CC -std=gnu11 -Wall -Wextra -Werror -fsyntax-only $cflags "$tmp/vu.c" ||
    fail "the installed vmbus_user.h does not compile on its own"

step "build examples/echo-upper with its Makefile"
cp -R "$src/examples/echo-upper" "$tmp/src-make"
rm -rf "$tmp/src-make/echo-upper.so" "$tmp/src-make/build"
"$make" -C "$tmp/src-make" CC="$CC" || fail "make"
"$make" -C "$tmp/src-make" install DESTDIR="$tmp/inst" || fail "make install"
[ -f "$tmp/inst$plugindir/echo-upper.so" ] || fail "make install did not use plugindir"
# vmbusd refuses plugin files and directories others may write: set
# the modes rather than trust the caller's umask.
mkdir -m 0755 "$tmp/plugins-make"
install -m 0755 "$tmp/src-make/echo-upper.so" "$tmp/plugins-make/"

step "build examples/echo-upper with its meson.build"
cp -R "$src/examples/echo-upper" "$tmp/src-meson"
rm -rf "$tmp/src-meson/echo-upper.so" "$tmp/src-meson/build"
"$meson" setup "$tmp/build-meson" "$tmp/src-meson" >"$tmp/log" 2>&1 || fail "meson setup"
"$meson" compile -C "$tmp/build-meson" >"$tmp/log" 2>&1 || fail "meson compile"
so="$tmp/build-meson/echo-upper.so"
[ -f "$so" ] || fail "meson built no echo-upper.so"
command -v nm >/dev/null 2>&1 || fail "nm not found (binutils): cannot check the exports"
nm -D --defined-only "$so" | grep -qw vmbusd_vsp_plugin || fail "vmbusd_vsp_plugin not exported"
nm -D --defined-only "$so" | grep -q ' T eu_' && fail "internal functions exported"
mkdir -m 0755 "$tmp/plugins"
install -m 0755 "$so" "$tmp/plugins/"

cat >"$tmp/vmbusd.conf" <<CONF
[daemon]
log-level = debug

[vm sdk]
vsp = echo-upper heartbeat shutdown kvp

[vsp echo-upper]
prefix = up:
max_payload = 1024
CONF

check_loads() { # plugin-dir
    step "vmbusd --check-config loads $1/echo-upper.so"
    "$vmbusd" -c "$tmp/vmbusd.conf" --plugin-dir "$1" --check-config >"$tmp/out" 2>"$tmp/log" ||
        fail "vmbusd --check-config failed"
    cat "$tmp/out" "$tmp/log"
    grep -q "VSP echo-upper loaded from $1/echo-upper.so" "$tmp/log" ||
        fail "vmbusd did not log loading echo-upper"
    grep -q "configuration OK" "$tmp/out" || fail "no 'configuration OK'"
}
check_loads "$tmp/plugins"
check_loads "$tmp/plugins-make"

step "a bad parameter is refused"
sed 's/^max_payload = 1024/colour = blue/' "$tmp/vmbusd.conf" >"$tmp/bad.conf"
if "$vmbusd" -c "$tmp/bad.conf" --plugin-dir "$tmp/plugins" --check-config >"$tmp/out" 2>"$tmp/log"; then
    fail "vmbusd accepted an unknown echo-upper parameter"
fi
cat "$tmp/log"
grep -q "echo-upper: unknown parameter 'colour'" "$tmp/log" || fail "no reason from the plugin"
grep -q "VSP echo-upper refused its configuration" "$tmp/log" || fail "no refusal from vmbusd"

step "without --plugin-dir the VSP is missing"
if "$vmbusd" -c "$tmp/vmbusd.conf" --check-config >"$tmp/out" 2>"$tmp/log"; then
    fail "vmbusd accepted a VM naming a VSP no plugin provides"
fi
grep -q "\[vm sdk\] names VSP 'echo-upper', which no plugin provides" "$tmp/log" ||
    fail "no error naming the VM and the VSP"

step "real run: a simulated guest talks to echo-upper, vmbusctl watches"
start_vmbusd "$tmp/vmbusd.log" -c "$tmp/vmbusd.conf" --plugin-dir "$tmp/plugins" \
    --socket "$vu" --control "$ctl"
"$guest" "$vu" sdk "up:" 1024 -- \
    "$src/tests/sdk/connected.sh" "$vmbusctl" "$ctl" || fail "guest or vmbusctl checks"
grep -q "echo-upper: channel open" "$tmp/vmbusd.log" || fail "no 'channel open' log line"
grep -q "dropping message longer than max_payload (1025)" "$tmp/vmbusd.log" ||
    fail "the oversized packet was not logged"

step "after the guest left"
"$vmbusctl" --socket "$ctl" --json list >"$tmp/out" || fail "vmbusctl list"
i=0
while ! grep -q '^{"ok":true,"partitions":\[\]}$' "$tmp/out"; do
    i=$((i + 1))
    [ $i -lt 100 ] || fail "partition still listed: $(cat "$tmp/out")"
    sleep 0.05
    "$vmbusctl" --socket "$ctl" --json list >"$tmp/out" || fail "vmbusctl list"
done
echo "PASS"
