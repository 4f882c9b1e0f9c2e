#!/bin/sh
# vmbusd refuses a plugin built for another VSP API version, and says so.
# usage: api-version.sh VMBUSD BAD_API_PLUGIN.so
set -eu
vmbusd=$1
plugin=$2
tmp=$(mktemp -d "${TMPDIR:-/tmp}/vmbusd-api.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
fail() {
    echo "FAIL: $*" >&2
    cat "$tmp/log" >&2 2>/dev/null || true
    exit 1
}
mkdir "$tmp/plugins"
cp "$plugin" "$tmp/plugins/bad-api.so"
so="$tmp/plugins/bad-api.so"
refusal="plugin $so: built for VSP API version [0-9]*, vmbusd provides [0-9]*; not loaded"

echo "== a VM configured to get the plugin: the configuration is refused"
printf '[vm sdk]\nvsp = bad-api\n' >"$tmp/conf"
set +e
"$vmbusd" -c "$tmp/conf" --plugin-dir "$tmp/plugins" --check-config >"$tmp/out" 2>"$tmp/log"
rc=$?
set -e
cat "$tmp/out" "$tmp/log"
[ $rc = 1 ] || fail "--check-config exited with $rc, expected 1"
grep -q "$refusal" "$tmp/log" || fail "no API-version refusal in the log"
grep -q "\[vm sdk\] names VSP 'bad-api', which no plugin provides" "$tmp/log" ||
    fail "no error naming the VM and the VSP"

echo "== nobody wants it: vmbusd runs, but still logs the refusal"
set +e
"$vmbusd" --plugin-dir "$tmp/plugins" --check-config >"$tmp/out" 2>"$tmp/log"
rc=$?
set -e
cat "$tmp/out" "$tmp/log"
[ $rc = 0 ] || fail "--check-config exited with $rc, expected 0"
grep -q "$refusal" "$tmp/log" || fail "no API-version refusal in the log"
echo "PASS"
