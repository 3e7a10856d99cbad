#!/bin/sh
# Entrypoint of the Allmende container image.
#   run [FLAGS]   (default) initialise the data dir on first start, then exec `allmende run`
#   healthcheck   GET /healthz on the configured listen address (used by HEALTHCHECK)
#   anything else is passed to `allmende`, e.g. `policy check offer.jsonld`
# First start: when the data dir holds no node yet, `allmende init` runs with the settings from
# the environment (ALLMENDE_NAME and ALLMENDE_DISTRICT_KEY are required; every other
# ALLMENDE_* setting given then is written to allmende.toml as well).
# Managed configuration: when ALLMENDE_MANAGED_CONFIG names a file (e.g. a Kubernetes ConfigMap
# mounted read-only), it is installed as DATA_DIR/allmende.toml at every start, after the
# first-start init; ALLMENDE_* variables still override it.
set -eu

data="${ALLMENDE_DATA_DIR:-/var/lib/allmende}"
export ALLMENDE_DATA_DIR="$data"

die() { echo "allmende-entrypoint: $*" >&2; exit 1; }

healthcheck() {
  listen="${ALLMENDE_LISTEN:-127.0.0.1:7070}"
  port="${listen##*:}"
  host="${listen%:*}"
  case "$host" in
    0.0.0.0 | "[::]" | "") host=127.0.0.1 ;;
  esac
  exec curl -fsS --max-time 2 -o /dev/null "http://$host:$port/healthz"
}

initialise() {
  if [ -e "$data/node.key" ]; then
    return 0
  fi
  # A store or configuration without its key is a broken restore, not a new node: never make a
  # new identity over it.
  for f in allmende.toml db datasets; do
    [ -e "$data/$f" ] && die "$data holds $f but no node.key; restore node.key from the backup (a new key would be a different node)"
  done
  [ -n "${ALLMENDE_NAME:-}" ] || die "the data dir $data holds no node yet: set ALLMENDE_NAME (e.g. \"Stadt Münster\") and ALLMENDE_DISTRICT_KEY (e.g. 05515) for the first start"
  [ -n "${ALLMENDE_DISTRICT_KEY:-}" ] || die "the data dir $data holds no node yet: set ALLMENDE_DISTRICT_KEY (5-digit AGS, e.g. 05515)"
  [ -w "$data" ] || die "the data dir $data is not writable by uid $(id -u)"
  echo "allmende-entrypoint: first start, initialising $data" >&2
  # The admin token is kept in $data/admin.token for the CLI (docker exec … allmende …); do not
  # copy it into the container log.
  out=$(allmende init) || exit 1
  printf '%s\n' "$out" | sed 's/^\(  *admin token  *\)allm.*$/\1(written to DATA_DIR\/admin.token)/' >&2
}

case "${1:-run}" in
  healthcheck)
    healthcheck
    ;;
  run)
    [ "$#" -gt 0 ] && shift
    initialise
    if [ -n "${ALLMENDE_MANAGED_CONFIG:-}" ]; then
      [ -r "$ALLMENDE_MANAGED_CONFIG" ] || die "ALLMENDE_MANAGED_CONFIG=$ALLMENDE_MANAGED_CONFIG is not a readable file"
      cp "$ALLMENDE_MANAGED_CONFIG" "$data/allmende.toml.tmp"
      mv "$data/allmende.toml.tmp" "$data/allmende.toml"
      echo "allmende-entrypoint: configuration installed from $ALLMENDE_MANAGED_CONFIG" >&2
    fi
    # Volume managers (Kubernetes fsGroup) may add group bits to every file on mount; the node
    # refuses a key others can read, so take them away again (the owner can).
    for f in node.key admin.token admin.token.sha256; do
      if [ -e "$data/$f" ]; then chmod go-rwx "$data/$f" 2>/dev/null || :; fi
    done
    exec allmende run "$@"
    ;;
  *)
    exec allmende "$@"
    ;;
esac
