#!/usr/bin/env bash
# The main job, for now: build the node, create one (Stadt Münster), start it, import sample
# data (the German districts and a week of generated hourly traffic counts), and ask it
# questions in SQL and over the HTTP API. Pass --keep to leave the node running afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
keep=false
[ "${1:-}" = "--keep" ] && keep=true

cargo build --release --locked -p allmende
bin="$CARGO_TARGET_DIR/release/allmende"
work=$(mktemp -d "${TMPDIR:-/tmp}/allmende-demo.XXXXXX")
port=${ALLMENDE_DEMO_PORT:-7070}
api="http://127.0.0.1:$port"

step() { printf '\n== %s\n' "$*"; }

step "create the node of Stadt Münster (district key 05515)"
unset ALLMENDE_TOKEN   # else init would adopt it as the new node's admin token
"$bin" init --data-dir "$work/muenster" --name "Stadt Münster" --district-key 05515 \
  --listen "127.0.0.1:$port" --contact-email open-data@example.org
# init printed the local admin token once; the CLI finds it in the data dir (or ALLMENDE_TOKEN),
# curl needs it as a bearer token.
export ALLMENDE_TOKEN
ALLMENDE_TOKEN=$(cat "$work/muenster/admin.token")
auth=(-H "Authorization: Bearer $ALLMENDE_TOKEN")

step "start it"
"$bin" run --data-dir "$work/muenster" --log-level warn > "$work/node.out" &
node_pid=$!
stop_node() { kill -TERM "$node_pid" 2>/dev/null && wait "$node_pid" 2>/dev/null || true; }
$keep || trap stop_node EXIT
for _ in $(seq 100); do curl -fs "$api/healthz" >/dev/null 2>&1 && break; sleep 0.1; done
curl -fsS "${auth[@]}" "$api/api/v1/node"; echo

step "import the German districts (Destatis 2018, CC-BY-4.0) and a week of hourly traffic counts"
"$bin" sample districts -o "$work/districts.csv"
"$bin" --api "$api" dataset import "$work/districts.csv" --slug districts \
  --title "Kreise und kreisfreie Städte 2018" \
  --description "Fläche und Bevölkerung aller deutschen Kreise (Destatis, CC-BY-4.0)" \
  --license cc-by/4.0 --theme REGI --keywords "Bevölkerung,Kreise,Fläche" \
  --temporal-start 2018-12-31 --temporal-end 2018-12-31
"$bin" sample traffic --district-key 05515 --days 7 --stations 4 -o "$work/traffic.csv"
"$bin" --api "$api" dataset import "$work/traffic.csv" --slug traffic \
  --title "Verkehrszählung Münster (stündlich)" \
  --description "Stündliche Kfz- und Radzählungen an vier Zählstellen (generierte Beispieldaten)" \
  --license dl-by-de/2.0 --theme TRAN --keywords "Verkehr,Radverkehr" \
  --conforms-to urn:allmende:schema:traffic_hourly:1
"$bin" --api "$api" dataset list

step "SQL: the three demo cities"
"$bin" --api "$api" sql "SELECT ags, name, population, area_km2 FROM districts WHERE ags IN ('05515','05116','09663') ORDER BY population DESC"

step "SQL: Münster's busiest hours of the day"
"$bin" --api "$api" sql "SELECT date_part('hour', timestamp) AS hour, CAST(AVG(vehicles) AS BIGINT) AS avg_vehicles FROM traffic GROUP BY 1 ORDER BY 2 DESC LIMIT 3"

step "DCAT-AP.de: is the traffic dataset complete, and its JSON-LD"
"$bin" --api "$api" dataset validate traffic
curl -fsS "${auth[@]}" -H 'Accept: application/ld+json' "$api/api/v1/datasets/traffic" | head -c 600; echo " ..."

step "bad input gets a problem document, and the store is unchanged"
printf 'a;b\n1;2\n3\n' > "$work/bad.csv"
curl -sS "${auth[@]}" -F "file=@$work/bad.csv" "$api/api/v1/datasets"; echo

step "without a token the API answers 401 (only /healthz and the public catalog are open)"
curl -sS "$api/api/v1/datasets"; echo

if $keep; then
  printf '\nThe node keeps running (pid %s, data in %s). Try:\n' "$node_pid" "$work/muenster"
  printf '  export ALLMENDE_TOKEN=$(cat %s/admin.token)\n' "$work/muenster"
  printf '  curl -s -H "Authorization: Bearer $ALLMENDE_TOKEN" %s/api/v1/datasets\n' "$api"
  printf "  curl -s -H \"Authorization: Bearer \$ALLMENDE_TOKEN\" -H 'content-type: application/json' -d '{\"sql\":\"SELECT COUNT(*) FROM traffic\"}' %s/api/v1/sql\n" "$api"
  printf '  kill %s   # stops it cleanly\n' "$node_pid"
else
  step "stop the node (SIGTERM: requests finish, the store is flushed)"
fi
