#!/usr/bin/env bash
# `make test-openstack`: Stalecast against the real Keystone, Glance and Cinder API.
# Builds (or reuses) the virtualenv, starts the cloud on free loopback ports (cloud.py,
# which records the services' process ids), runs the `openstack` test binary against it
# and stops the cloud by those ids whatever happened. Needs STALECAST_BIN (the binary whose
# simulator plays Nova and Neutron).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
target=${CARGO_TARGET_DIR:-$root/target}
cargo=${CARGO:-cargo}
venv="$target/openstack-venv"
: "${STALECAST_BIN:?set STALECAST_BIN to the stalecast binary}"

"$here/venv.sh" "$venv"
run=$(mktemp -d "$target/openstack-run.XXXXXX")
stop() {
  status=$?
  "$venv/bin/python" "$here/cloud.py" stop --dir "$run" || true
  if [[ $status -eq 0 ]]; then
    rm -rf "$run"
  else
    echo "real-services tier failed; the services' logs are in $run" >&2
  fi
}
trap stop EXIT
# Tokens live 60 s: short enough that the renewal test outlives one, long enough for a
# signed-in user's session (which ends with the user's token) to last through a test on a
# busy machine (at 30 s, a test's second step sometimes came after its session's end).
"$venv/bin/python" "$here/cloud.py" start --dir "$run" --stalecast "$STALECAST_BIN" \
  --token-lifetime 60 --volume-page-size 2
export STALECAST_OPENSTACK="$run/cloud.json" STALECAST_OPENSTACK_VENV="$venv"
if "$cargo" nextest --version >/dev/null 2>&1; then
  "$cargo" nextest run -p stalecast-tests --test openstack --locked --no-fail-fast
else
  "$cargo" test -p stalecast-tests --test openstack --locked --no-fail-fast
fi
