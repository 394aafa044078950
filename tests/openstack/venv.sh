#!/usr/bin/env bash
# Builds the virtualenv of the real-services tests at $1 (Keystone, Glance, Cinder, gunicorn
# and the openstack CLI, at the versions pinned in requirements.txt), or reuses it when it
# was built from the same requirements.
set -euo pipefail
venv=$1
here=$(cd "$(dirname "$0")" && pwd)
stamp="$venv/requirements.txt"
if [[ -x "$venv/bin/python" ]] && cmp -s "$here/requirements.txt" "$stamp"; then
  echo "openstack virtualenv: reusing $venv"
  exit 0
fi
started=$(date +%s)
rm -rf "$venv"
"${PYTHON:-python3}" -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check --no-input -r "$here/requirements.txt"
cp "$here/requirements.txt" "$stamp"
echo "openstack virtualenv: built in $(( $(date +%s) - started )) s at $venv"
