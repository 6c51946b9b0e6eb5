#!/usr/bin/env bash
# Installs the reference packages of tools/reference-pins.txt, each into its own folder under $DEST, for the tests
# that run a reference in a subprocess (they skip, saying so, when a folder is missing). Best effort under make.
set -euo pipefail
VENV=${VENV:-.venv}
DEST=${DEST:-.venv-ref}
here=$(cd "$(dirname "$0")" && pwd)
grep -v '^\s*#' "$here/reference-pins.txt" | while read -r name reqs; do
    [ -n "$name" ] || continue
    rm -rf "$DEST/$name.tmp"
    # shellcheck disable=SC2086
    "$VENV/bin/python" -m pip install --disable-pip-version-check -q --no-deps --target "$DEST/$name.tmp" $reqs
    rm -rf "${DEST:?}/$name" && mv "$DEST/$name.tmp" "$DEST/$name"  # appears whole or not at all
    echo "reference $name installed in $DEST/$name"
done
