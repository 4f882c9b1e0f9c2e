#!/bin/sh
# vmbusd refuses a plugin built for another VSP API version, newer or older
# than its own, and says so.
# usage: api-version.sh VMBUSD API_VERSION NEWER_PLUGIN.so OLDER_PLUGIN.so
set -eu
vmbusd=$1
api=$2
newer=$3
older=$4
. "$(dirname "$0")/lib.sh"
sdk_tmp vmbusd-api
logs="$tmp/log"

check() { # plugin built-for-version
    rm -rf "$tmp/plugins"
    mkdir -m 0755 "$tmp/plugins"
    install -m 0755 "$1" "$tmp/plugins/bad-api.so"
    so="$tmp/plugins/bad-api.so"
    refusal="plugin $so: built for VSP API version $2, vmbusd provides $api; not loaded"

    echo "== API version $2, a VM configured to get the plugin: the configuration is refused"
    printf '[vm sdk]\nvsp = bad-api\n' >"$tmp/conf"
    set +e
    "$vmbusd" -c "$tmp/conf" --plugin-dir "$tmp/plugins" --check-config >"$tmp/out" 2>"$tmp/log"
    rc=$?
    set -e
    cat "$tmp/out" "$tmp/log"
    [ $rc = 1 ] || fail "--check-config exited with $rc, expected 1"
    grep -qF "$refusal" "$tmp/log" || fail "no refusal '$refusal' in the log"
    grep -q "\[vm sdk\] names VSP 'bad-api', which no plugin provides" "$tmp/log" ||
        fail "no error naming the VM and the VSP"

    echo "== API version $2, nobody wants it: vmbusd does not even open it"
    set +e
    "$vmbusd" --plugin-dir "$tmp/plugins" --check-config >"$tmp/out" 2>"$tmp/log"
    rc=$?
    set -e
    cat "$tmp/out" "$tmp/log"
    [ $rc = 0 ] || fail "--check-config exited with $rc, expected 0"
    if grep -q "bad-api" "$tmp/log"; then
        fail "vmbusd looked at a plugin no [vm] section names"
    fi
}

check "$newer" $((api + 1))
check "$older" $((api - 1))
echo "PASS"
