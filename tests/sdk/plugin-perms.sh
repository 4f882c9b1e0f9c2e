#!/bin/sh
# vmbusd opens only the plugins a [vm] section names (NAME.so in a plugin
# directory) and refuses plugin files and directories that others could
# write or that another user owns.
# usage: plugin-perms.sh VMBUSD MARKER_PLUGIN.so
set -eu
vmbusd=$1
plugin=$2
tmp=$(mktemp -d "${TMPDIR:-/tmp}/vmbusd-perms.XXXXXX")
trap 'chmod -R u+w "$tmp" 2>/dev/null; rm -rf "$tmp"' EXIT
fail() {
    echo "FAIL: $*" >&2
    cat "$tmp/log" >&2 2>/dev/null || true
    exit 1
}
dir=$tmp/plugins
mkdir "$dir"
chmod 0755 "$dir"
install -m 0755 "$plugin" "$dir/marker.so"
install -m 0755 "$plugin" "$dir/unused.so"
export VMBUSD_TEST_MARKER="$tmp/opened"
printf '[vm t]\nvsp = marker\n' >"$tmp/conf"

check() { # expected-exit-status
    rm -f "$VMBUSD_TEST_MARKER"
    set +e
    "$vmbusd" -c "$tmp/conf" --plugin-dir "$dir" --check-config >"$tmp/out" 2>"$tmp/log"
    rc=$?
    set -e
    cat "$tmp/out" "$tmp/log"
    [ "$rc" = "$1" ] || fail "--check-config exited with $rc, expected $1"
}

echo "== the named plugin is loaded, the unnamed one is not even opened"
check 0
grep -q "VSP marker loaded from $dir/marker.so" "$tmp/log" || fail "marker.so not loaded"
grep -qx "$dir/marker.so" "$VMBUSD_TEST_MARKER" || fail "marker.so was not opened"
if grep -q unused.so "$VMBUSD_TEST_MARKER"; then
    fail "unused.so, which no [vm] names, was opened (its constructor ran)"
fi

echo "== a world-writable plugin file is refused"
chmod 0757 "$dir/marker.so"
check 1
grep -q "plugin $dir/marker.so is writable by group or others (mode 0757); refused" "$tmp/log" ||
    fail "no refusal naming the file and its mode"
[ ! -e "$VMBUSD_TEST_MARKER" ] || fail "the refused plugin was opened"
chmod 0755 "$dir/marker.so"

echo "== a group-writable plugin directory is refused"
chmod 0775 "$dir"
check 1
grep -q "plugin directory $dir is writable by group or others (mode 0775); refused" "$tmp/log" ||
    fail "no refusal naming the directory and its mode"
[ ! -e "$VMBUSD_TEST_MARKER" ] || fail "a plugin of the refused directory was opened"
chmod 0755 "$dir"

if [ "$(id -u)" = 0 ] && id nobody >/dev/null 2>&1; then
    echo "== a plugin owned by another user is refused"
    chown nobody "$dir/marker.so"
    check 1
    grep -q "plugin $dir/marker.so is owned by uid $(id -u nobody), not by root" "$tmp/log" ||
        fail "no refusal naming the owner"
    chown 0 "$dir/marker.so"
else
    echo "== (not root: the owner check needs chown and is not exercised here)"
fi

echo "== a plugin whose VSP has another name than its file is not loaded"
mv "$dir/marker.so" "$dir/other.so"
printf '[vm t]\nvsp = other\n' >"$tmp/conf"
check 1
grep -q "plugin $dir/other.so calls its VSP 'marker', not 'other'; not loaded" "$tmp/log" ||
    fail "no error for the name mismatch"
echo "PASS"
