#!/usr/bin/env bash
# Validates the deployment files in deploy/ as far as this machine allows, and says what it had
# to skip and why. Installs nothing (except PyYAML with pip, if that is quick). Exits non-zero
# only when a check really fails. Quiet: one line per check.
#   bash deploy/check.sh            (ALLMENDE_BIN=path/to/allmende to pick the binary used for
#                                    the entrypoint test; default: the newest one in
#                                    $CARGO_TARGET_DIR or ~/.cache/allmende-target)
set -uo pipefail
cd "$(dirname "$0")" || exit 1
deploy=$(pwd)
repo=$(cd .. && pwd)
chart=helm/allmende

ok=0 skipped=0 failed=0
pass() { ok=$((ok + 1)); echo "  ok    $*"; }
skip() { skipped=$((skipped + 1)); echo "  skip  $*"; }
fail() { failed=$((failed + 1)); echo "  FAIL  $*"; }
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
  rm -rf "$work"
}
trap cleanup EXIT

echo "deploy/check.sh: validating $deploy"

# ---- shell scripts -----------------------------------------------------------------------------
if sh -n container-entrypoint.sh && bash -n check.sh; then
  pass "shell syntax of container-entrypoint.sh and check.sh"
else
  fail "shell syntax (see above)"
fi
if command -v shellcheck >/dev/null 2>&1; then
  if out=$(shellcheck -S warning -s sh container-entrypoint.sh 2>&1 && shellcheck -S warning -s bash check.sh 2>&1); then
    pass "shellcheck"
  else
    fail "shellcheck:"; echo "$out" | head -40
  fi
else
  skip "shellcheck: not installed"
fi

# ---- systemd unit ------------------------------------------------------------------------------
if ! command -v systemd-analyze >/dev/null 2>&1; then
  skip "systemd-analyze verify: systemd-analyze not installed"
else
  # The binary is not installed here: verify a copy whose ExecStart names an existing program.
  mkdir -p "$work/unit"
  sed 's#^ExecStart=/usr/local/bin/allmende#ExecStart=/bin/true#' allmende.service >"$work/unit/allmende.service"
  out=$(systemd-analyze verify "$work/unit/allmende.service" 2>&1)
  rc=$?
  # verify exits 0 on unknown keys and bad values: any line about the unit file is a failure.
  ours=$(printf '%s\n' "$out" | grep -F "allmende.service" || true)
  if [ -n "$ours" ]; then
    fail "systemd-analyze verify allmende.service:"; echo "$ours"
  elif [ $rc -ne 0 ] && printf '%s\n' "$out" | grep -qiE "no such file|not found|failed to (connect|initialize|set up)|operation not permitted|system has not been booted"; then
    skip "systemd-analyze verify: cannot run here ($(printf '%s\n' "$out" | head -1))"
  elif [ $rc -ne 0 ]; then
    fail "systemd-analyze verify allmende.service (exit $rc):"; printf '%s\n' "$out" | head -20
  else
    pass "systemd-analyze verify allmende.service (no warnings)"
  fi
fi

# ---- YAML: compose file and chart -------------------------------------------------------------
have_yaml=false
if python3 -c 'import yaml' 2>/dev/null; then
  have_yaml=true
elif command -v python3 >/dev/null 2>&1 &&
  timeout 25 python3 -m pip install -q --disable-pip-version-check pyyaml >/dev/null 2>&1 &&
  python3 -c 'import yaml' 2>/dev/null; then
  have_yaml=true
fi
if ! $have_yaml; then
  skip "YAML checks: python3 with PyYAML not available (and pip install pyyaml did not succeed quickly)"
else
  if out=$(python3 - "$deploy" <<'PY' 2>&1
import os, re, sys
import yaml

deploy = sys.argv[1]
errors = []

def load(rel):
    with open(os.path.join(deploy, rel), encoding="utf-8") as f:
        return yaml.safe_load(f)

# compose.yaml: well-formed, and the properties this federation relies on.
c = load("compose.yaml")
services = c.get("services") or {}
expect = {"muenster": "05515", "moenchengladbach": "05116", "wuerzburg": "09663"}
if set(services) != set(expect):
    errors.append(f"compose.yaml: services {sorted(services)} are not {sorted(expect)}")
host_ports, addrs = set(), set()
for name, s in services.items():
    env = s.get("environment") or {}
    if not isinstance(env, dict):
        errors.append(f"compose.yaml: {name}: environment must be a mapping")
        continue
    if str(env.get("ALLMENDE_DISTRICT_KEY")) != expect.get(name):
        errors.append(f"compose.yaml: {name}: ALLMENDE_DISTRICT_KEY is {env.get('ALLMENDE_DISTRICT_KEY')!r}")
    for key in ("ALLMENDE_NAME", "ALLMENDE_LISTEN", "ALLMENDE_P2P_LISTEN", "ALLMENDE_P2P_EXTERNAL", "ALLMENDE_PUBLIC_URL"):
        if not env.get(key):
            errors.append(f"compose.yaml: {name}: {key} is not set")
    if not s.get("image") or not s.get("build"):
        errors.append(f"compose.yaml: {name}: needs image and build")
    for p in s.get("ports") or []:
        p = str(p)
        if not p.startswith("127.0.0.1:"):
            errors.append(f"compose.yaml: {name}: port {p} is not bound to 127.0.0.1")
        hp = p.split(":")[1]
        if hp in host_ports:
            errors.append(f"compose.yaml: host port {hp} is used twice")
        host_ports.add(hp)
    vols = [str(v).split(":")[0] for v in s.get("volumes") or []]
    data = [v for v in s.get("volumes") or [] if str(v).endswith(":/var/lib/allmende")]
    if len(data) != 1:
        errors.append(f"compose.yaml: {name}: needs exactly one volume at /var/lib/allmende")
    for v in vols:
        if not v.startswith((".", "/")) and v not in (c.get("volumes") or {}):
            errors.append(f"compose.yaml: {name}: volume {v} is not declared")
    nets = s.get("networks") or {}
    for n, cfg in nets.items():
        if n not in (c.get("networks") or {}):
            errors.append(f"compose.yaml: {name}: network {n} is not declared")
        ip = (cfg or {}).get("ipv4_address")
        if ip:
            addrs.add(ip)
            ext = env.get("ALLMENDE_P2P_EXTERNAL", "")
            if any(f"/ip4/{ip}/" not in a for a in ext.split(",")):
                errors.append(f"compose.yaml: {name}: ALLMENDE_P2P_EXTERNAL does not announce {ip}")
    for a in (env.get("ALLMENDE_P2P_LISTEN", "") + "," + env.get("ALLMENDE_P2P_EXTERNAL", "")).split(","):
        if not re.fullmatch(r"/ip[46]/[^/]+/(udp/\d+/quic-v1|tcp/\d+)", a):
            errors.append(f"compose.yaml: {name}: {a!r} is not a QUIC or TCP multiaddress")
datas = [str(v).split(":")[0] for s in services.values() for v in s.get("volumes") or [] if str(v).endswith(":/var/lib/allmende")]
if len(set(datas)) != len(datas):
    errors.append("compose.yaml: two services share a data volume (one key would run twice)")
if len(addrs) != len(services):
    errors.append("compose.yaml: every service needs its own fixed ipv4_address")

# The chart's YAML files.
chart = load("helm/allmende/Chart.yaml")
for key in ("apiVersion", "name", "version", "appVersion"):
    if not chart.get(key):
        errors.append(f"Chart.yaml: {key} is missing")
if chart.get("apiVersion") != "v2":
    errors.append("Chart.yaml: apiVersion must be v2")
values = load("helm/allmende/values.yaml")

# Templates: blocks balanced, includes defined, and every .Values path present in values.yaml.
tdir = os.path.join(deploy, "helm/allmende/templates")
defined, included = set(), set()
for fn in sorted(os.listdir(tdir)):
    text = open(os.path.join(tdir, fn), encoding="utf-8").read()
    if text.count("{{") != text.count("}}"):
        errors.append(f"templates/{fn}: unbalanced {{{{ }}}}")
    actions = re.findall(r"\{\{-?\s*(.*?)\s*-?\}\}", text, re.S)
    depth = 0
    for a in actions:
        if a.startswith("/*"):
            continue
        word = a.split()[0] if a.split() else ""
        if word in ("if", "range", "with", "define", "block"):
            depth += 1
        elif word == "end":
            depth -= 1
            if depth < 0:
                errors.append(f"templates/{fn}: `end` without a block")
                depth = 0
        if word in ("define",):
            defined.add(re.search(r'"([^"]+)"', a).group(1))
    if depth:
        errors.append(f"templates/{fn}: {depth} block(s) without `end`")
    included |= set(re.findall(r'include\s+"([^"]+)"', text))
    for path in re.findall(r"\.Values((?:\.[A-Za-z_][A-Za-z0-9_]*)+)", text):
        node = values
        for part in path.strip(".").split("."):
            if not isinstance(node, dict) or part not in node:
                errors.append(f"templates/{fn}: .Values{path} is not in values.yaml")
                break
            node = node[part]
for name in sorted(included - defined):
    errors.append(f"templates: include \"{name}\" is not defined")

print("\n".join(errors))
sys.exit(1 if errors else 0)
PY
  ); then
    pass "YAML well-formed: compose.yaml, Chart.yaml, values.yaml; compose invariants; template blocks, includes and .Values paths"
  else
    fail "YAML checks:"; echo "$out" | sed 's/^/        /'
  fi
fi

# ---- Helm --------------------------------------------------------------------------------------
if command -v helm >/dev/null 2>&1; then
  set_args=(--set-string node.name="Stadt Münster" --set-string node.districtKey=05515)
  if out=$(helm lint "$chart" "${set_args[@]}" 2>&1); then pass "helm lint"; else fail "helm lint:"; echo "$out" | tail -20; fi
  if helm template t "$chart" "${set_args[@]}" --set auth.oidc.issuer=https://idp.example \
    --set auth.oidc.audience=allmende --set auth.oidc.clientSecret.existingSecret=s \
    --set ingress.enabled=true --set networkPolicy.enabled=true \
    --set-json 'auth.oidc.roleMapping={"city-admins":"admin"}' >"$work/rendered.yaml" 2>"$work/helm.err"; then
    pass "helm template (all options)"
  else
    fail "helm template:"; tail -20 "$work/helm.err"
  fi
  if helm template t "$chart" >/dev/null 2>&1; then
    fail "helm template without node.name/districtKey should fail"
  else
    pass "helm template refuses a release without node.name and node.districtKey"
  fi
else
  skip "helm lint / helm template: helm not installed"
fi

# ---- compose -----------------------------------------------------------------------------------
if docker compose version >/dev/null 2>&1; then
  if out=$(docker compose -f compose.yaml config -q 2>&1); then pass "docker compose config"; else fail "docker compose config:"; echo "$out" | tail -20; fi
elif command -v podman-compose >/dev/null 2>&1; then
  if out=$(podman-compose -f compose.yaml config 2>&1 >/dev/null); then pass "podman-compose config"; else fail "podman-compose config:"; echo "$out" | tail -20; fi
else
  skip "docker compose config: no compose plugin (docker compose) or podman-compose here"
fi

# ---- Containerfile -----------------------------------------------------------------------------
missing=""
while read -r src; do
  for s in $src; do
    [ -e "$repo/$s" ] || missing="$missing $s"
  done
done < <(grep '^COPY ' Containerfile | grep -v -- '--from=' | sed -n 's/^COPY \(--[^ ]* \)*\(.*\) [^ ]*$/\2/p')
for s in deploy/container-entrypoint.sh data/policies Cargo.toml Cargo.lock; do
  if grep -qxF "$s" Containerfile.dockerignore; then missing="$missing $s(ignored)"; fi
done
if [ -z "$missing" ] && grep -q '^ENTRYPOINT \["/usr/local/bin/allmende-entrypoint"\]' Containerfile &&
  grep -q '^USER ' Containerfile && grep -q '^HEALTHCHECK' Containerfile; then
  pass "Containerfile: COPY sources exist, non-root USER, HEALTHCHECK, entrypoint"
else
  fail "Containerfile: missing sources or directives:${missing:- (USER/HEALTHCHECK/ENTRYPOINT)}"
fi
if command -v hadolint >/dev/null 2>&1; then
  if out=$(hadolint --ignore DL3008 Containerfile 2>&1); then pass "hadolint"; else fail "hadolint:"; echo "$out" | head -20; fi
else
  skip "hadolint: not installed"
fi
skip "container build: base images cannot be pulled on this machine"

# ---- the entrypoint, with a real binary --------------------------------------------------------
bin=${ALLMENDE_BIN:-}
if [ -z "$bin" ]; then
  target=${CARGO_TARGET_DIR:-$HOME/.cache/allmende-target}
  bin=$(ls -t "$target"/dist/allmende "$target"/release/allmende "$target"/debug/allmende "$repo"/target/*/allmende 2>/dev/null | head -1)
fi
if [ -z "$bin" ] || [ ! -x "$bin" ] || ! command -v curl >/dev/null 2>&1; then
  skip "entrypoint test: no built allmende binary (set ALLMENDE_BIN) or no curl"
else
  mkdir -p "$work/bin" "$work/data"
  ln -s "$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")" "$work/bin/allmende"
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null || echo 17399)
  envs=(PATH="$work/bin:$PATH" ALLMENDE_DATA_DIR="$work/data" ALLMENDE_LISTEN="127.0.0.1:$port"
    "ALLMENDE_P2P_LISTEN=/ip4/127.0.0.1/udp/0/quic-v1,/ip4/127.0.0.1/tcp/0" ALLMENDE_LOG_LEVEL=warn
    ALLMENDE_API="http://127.0.0.1:$port")
  entry() { env "${envs[@]}" "$@"; }
  problems=""
  entry sh container-entrypoint.sh run >/dev/null 2>"$work/e0" && problems="$problems; started without a name"
  grep -q "ALLMENDE_NAME" "$work/e0" || problems="$problems; no hint about ALLMENDE_NAME"
  start() {
    # Not through a function: the pid must be the node's (sh execs allmende), as in a container.
    env "${envs[@]}" ALLMENDE_NAME="Stadt Würzburg" ALLMENDE_DISTRICT_KEY=09663 ${2:+"$2"} \
      sh container-entrypoint.sh run >"$work/out$1" 2>"$work/err$1" &
    pids=("$!")
    for _ in $(seq 100); do entry sh container-entrypoint.sh healthcheck 2>/dev/null && return 0; sleep 0.1; done
    return 1
  }
  stop() { kill -TERM "${pids[0]}"; wait "${pids[0]}"; local rc=$?; pids=(); return $rc; }
  if start 1; then
    [ -s "$work/data/node.key" ] || problems="$problems; no node.key after the first start"
    grep -q "allmende_" "$work/err1" "$work/out1" && problems="$problems; the admin token reached the log"
    card=$(entry sh container-entrypoint.sh federation card 2>&1)
    grep -q '"addresses"' <<<"$card" || problems="$problems; the CLI in the container cannot reach the node"
    stop || problems="$problems; SIGTERM did not stop the node cleanly"
    key=$(sha256sum <"$work/data/node.key")
    chmod 660 "$work/data/node.key"   # what a volume manager's fsGroup does
    # The second start takes a managed configuration like the Helm chart's ConfigMap.
    cat >"$work/managed.toml" <<'TOML'
name = "Stadt Würzburg"
district_key = "09663"
[http]
listen = "0.0.0.0:7070"
public_url = "https://daten.wuerzburg.example"
[p2p]
listen = ["/ip4/0.0.0.0/udp/7071/quic-v1", "/ip4/0.0.0.0/tcp/7071"]
external = ["/ip4/203.0.113.10/udp/7071/quic-v1", "/ip4/203.0.113.10/tcp/7071"]
mdns = false
sync_interval_ms = 5000
gossip_rate = 200
[auth]
client_id = "allmende"
scopes = ["openid", "profile"]
roles_claim = "realm_access.roles"
leeway_secs = 60
production = false
allow_local_token_in_production = false
cors_allowed_origins = []
max_failures_per_minute = 10
[auth.role_mapping]
"city-admins" = "admin"
TOML
    if start 2 ALLMENDE_MANAGED_CONFIG="$work/managed.toml"; then
      cmp -s "$work/managed.toml" "$work/data/allmende.toml" || problems="$problems; the managed configuration was not installed"
      [ "$key" = "$(sha256sum <"$work/data/node.key")" ] || problems="$problems; the key changed on restart"
      grep -q "initialising" "$work/err2" && problems="$problems; initialised again on restart"
      stop || problems="$problems; SIGTERM did not stop the node cleanly"
    else
      problems="$problems; no restart with group-readable key files"
    fi
  else
    problems="$problems; the first start did not become healthy ($(tail -2 "$work/err1" | tr '\n' ' '))"
  fi
  mv "$work/data/node.key" "$work/node.key"
  entry env ALLMENDE_NAME=x ALLMENDE_DISTRICT_KEY=09663 sh container-entrypoint.sh run >/dev/null 2>"$work/e3" &&
    problems="$problems; made a new key over an existing store"
  grep -q "restore node.key" "$work/e3" || problems="$problems; no hint to restore node.key"
  if [ -z "$problems" ]; then
    pass "entrypoint with $(basename "$(dirname "$bin")")/allmende: first-start init, token kept out of the log, CLI, healthcheck, SIGTERM, restart without re-init, key modes fixed, managed configuration, no new key over a store"
  else
    fail "entrypoint:${problems#;}"
  fi
fi

echo "deploy/check.sh: $ok ok, $skipped skipped, $failed failing"
[ "$failed" -eq 0 ]
