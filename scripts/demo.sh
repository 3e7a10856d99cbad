#!/usr/bin/env bash
# The main job: a local federation of three cities — Münster (05515), Mönchengladbach (05116)
# and Würzburg (09663) — on loopback, in temporary directories. It forms the federation, imports
# the German district master data and generated hourly traffic and air-quality data, attaches
# usage policies, and then tells the story step by step, checking each step:
#   federated catalog search; an open cross-city query; a raw query that Würzburg denies and the
#   same question as an aggregate that it allows; Würzburg stopped and a partial answer; a whole
#   dataset transferred under an agreement; receipts and audit logs verified.
# It ends with `N passed, N failed`, exits non-zero on any failure and leaves nothing running,
# unless started with --keep, which leaves the three nodes running and prints how to use them.
set -uo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
keep=false
[ "${1:-}" = "--keep" ] && keep=true

cargo build --locked -p allmende >&2 || exit 1
bin="$CARGO_TARGET_DIR/debug/allmende"
work=$(mktemp -d "${TMPDIR:-/tmp}/allmende-demo.XXXXXX")
passed=0
failed=0
pids=()

cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null; done
}
$keep || trap cleanup EXIT

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
ok() { passed=$((passed + 1)); printf '   \033[32m✔\033[0m %s\n' "$*"; }
bad() { failed=$((failed + 1)); printf '   \033[31m✘\033[0m %s\n' "$*"; }
check() { # check DESCRIPTION COMMAND...: passes when the command succeeds
  local what=$1; shift
  if "$@" >/dev/null 2>&1; then ok "$what"; else bad "$what"; fi
}

names=(muenster moenchengladbach wuerzburg)
orgs=("Stadt Münster" "Stadt Mönchengladbach" "Stadt Würzburg")
keys=(05515 05116 09663)
api_port() { echo $((7081 + $1)); }
cli() { local i=$1; shift; "$bin" --data-dir "$work/${names[$i]}" "$@"; }

step "three city nodes on 127.0.0.1, each with its own key, store and API"
for i in 0 1 2; do
  "$bin" init --data-dir "$work/${names[$i]}" --name "${orgs[$i]}" --district-key "${keys[$i]}" \
    --listen "127.0.0.1:$(api_port $i)" --contact-email "open-data@${names[$i]}.example" \
    --p2p-listen "/ip4/127.0.0.1/udp/0/quic-v1,/ip4/127.0.0.1/tcp/0" --sync-interval-ms 1000 >/dev/null
  "$bin" run --data-dir "$work/${names[$i]}" --log-level warn >"$work/${names[$i]}.out" 2>"$work/${names[$i]}.log" &
  pids+=($!)
done
for i in 0 1 2; do
  for _ in $(seq 100); do curl -fs "http://127.0.0.1:$(api_port $i)/healthz" >/dev/null 2>&1 && break; sleep 0.05; done
  check "${orgs[$i]} is up on http://127.0.0.1:$(api_port $i)" curl -fs "http://127.0.0.1:$(api_port $i)/healthz"
done

step "the federation: every founder signs the roster, no central operator"
for i in 0 1 2; do cli "$i" federation card -o "$work/card$i.json"; done
cli 0 federation create --id nrw-bayern-demo --card "$work/card1.json" --card "$work/card2.json" -o "$work/roster.hex" >/dev/null
cli 1 federation sign "$work/roster.hex" >/dev/null
cli 2 federation sign "$work/roster.hex" >/dev/null
for i in 0 1 2; do cli "$i" federation apply "$work/roster.hex" >/dev/null; done
connected() { [ "$(cli "$1" federation status --json | grep -o '"peer_id"' | wc -l)" -ge 5 ]; }
for _ in $(seq 100); do connected 0 && connected 1 && connected 2 && break; sleep 0.1; done
for i in 0 1 2; do check "${orgs[$i]} is connected to the other two members" connected "$i"; done

step "data: district master data (Destatis 2018, CC-BY-4.0), hourly traffic and air quality"
"$bin" sample districts -o "$work/districts.csv" 2>/dev/null
cli 0 dataset import "$work/districts.csv" --slug districts --title "Kreise und kreisfreie Städte 2018" \
  --description "Fläche und Bevölkerung aller deutschen Kreise (Destatis, CC-BY-4.0)" \
  --license cc-by/4.0 --theme REGI --keywords "Bevölkerung,Kreise" >/dev/null
for i in 0 1 2; do
  "$bin" sample traffic --district-key "${keys[$i]}" --days 7 --stations 4 -o "$work/traffic$i.csv"
  cli "$i" dataset import "$work/traffic$i.csv" --slug traffic --title "Verkehrszählung ${orgs[$i]#Stadt }" \
    --description "Stündliche Kfz- und Radzählungen (generierte Beispieldaten)" --license dl-by-de/2.0 \
    --theme TRAN --keywords "Verkehr,Radverkehr" --conforms-to urn:allmende:schema:traffic_hourly:1 >/dev/null
  "$bin" sample air-quality --district-key "${keys[$i]}" --days 7 --stations 3 -o "$work/air$i.csv"
  cli "$i" dataset import "$work/air$i.csv" --slug air --title "Luftqualität ${orgs[$i]#Stadt }" \
    --description "Stündliche NO2- und PM10-Messwerte (generierte Beispieldaten)" --license dl-by-de/2.0 \
    --theme ENVI --keywords "Luft,Stickstoffdioxid,Feinstaub" --conforms-to urn:allmende:schema:air_quality_hourly:1 >/dev/null
done
check "Münster's districts table has 401 rows" sh -c "'$bin' --data-dir '$work/muenster' sql 'SELECT COUNT(*) FROM districts' | grep -q 401"

step "usage policies, signed by each city: open data, except Würzburg's air quality (aggregates only, k ≥ 5, research)"
for i in 0 1 2; do
  cli "$i" policy attach traffic data/policies/offer-open.jsonld >/dev/null
  policy=data/policies/offer-open.jsonld
  [ "$i" = 2 ] && policy=data/policies/offer-aggregate-k5.jsonld
  cli "$i" policy attach air "$policy" >/dev/null
  cli "$i" dataset publish traffic >/dev/null && cli "$i" dataset publish air >/dev/null
done
cat data/policies/offer-aggregate-k5.jsonld
for _ in $(seq 100); do
  [ "$(cli 0 catalog search --json --theme ENVI | grep -o '"total": [0-9]*')" = '"total": 3' ] && break; sleep 0.1
done

step "federated catalog search from Münster: 'Luftqualität' (German stemming) and facets"
cli 0 catalog search "Luftqualität"
check "all three cities' air-quality datasets are found" sh -c "'$bin' --data-dir '$work/muenster' catalog search --json 'luftqualität' | grep -q '\"total\": 3'"

q() { cli 0 query "$@"; }
step "an open cross-city query: busiest traffic hour per city"
q "SELECT _member, station, SUM(vehicles) AS vehicles FROM federation.traffic_hourly GROUP BY _member, station ORDER BY vehicles DESC LIMIT 5" \
  --receipt "$work/receipt-traffic.hex" | tee "$work/q1.txt"
check "every city answered" sh -c "! grep -qE ' (denied|timeout|error) ' '$work/q1.txt'"

step "raw air-quality rows from every city: Würzburg's policy denies row-level access"
q "SELECT _member, station, timestamp, no2_ugm3 FROM federation.air_quality_hourly WHERE no2_ugm3 > 50 ORDER BY no2_ugm3 DESC LIMIT 5" \
  --purpose https://w3id.org/dpv#AcademicResearch | tee "$work/q2.txt"
check "Würzburg denied the raw query" grep -qE 'wuerzburg +denied' "$work/q2.txt"

step "the same question as an aggregate, for research: Würzburg allows it"
q "SELECT _member, station, COUNT(*) AS hours, AVG(no2_ugm3) AS mean_no2, MAX(no2_ugm3) AS max_no2 FROM federation.air_quality_hourly GROUP BY _member, station ORDER BY mean_no2 DESC" \
  --purpose https://w3id.org/dpv#AcademicResearch --receipt "$work/receipt-air.hex" | tee "$work/q3.txt"
check "Würzburg answered the aggregate" grep -qE 'wuerzburg +ok' "$work/q3.txt"

step "Würzburg stops (SIGSTOP): the answer arrives at the deadline, partial, with its status"
kill -STOP "${pids[2]}"
start=$(date +%s%N)
q "SELECT _member, COUNT(*) AS hours, AVG(no2_ugm3) AS mean_no2 FROM federation.air_quality_hourly GROUP BY _member ORDER BY _member" \
  --purpose https://w3id.org/dpv#AcademicResearch --deadline-ms 1500 | tee "$work/q4.txt"
took=$(( ($(date +%s%N) - start) / 1000000 ))
kill -CONT "${pids[2]}"
check "Würzburg is reported as timeout" grep -qE 'wuerzburg +timeout' "$work/q4.txt"
check "the partial answer came within the deadline (${took} ms)" test "$took" -lt 4000

step "Mönchengladbach downloads Münster's traffic dataset under an agreement, checked against Münster's signed hash"
cli 1 fetch muenster.traffic --negotiate -o "$work/muenster-traffic.parquet" 2>&1 | tee "$work/fetch.txt"
owner_sha=$(cli 0 dataset show traffic | grep -o '"value": *"[0-9a-f]*"' | head -1 | grep -o '[0-9a-f]\{64\}')
check "the file is byte for byte Münster's (sha256 ${owner_sha:0:16}…)" sh -c "sha256sum '$work/muenster-traffic.parquet' | grep -q '^$owner_sha '"
check "Würzburg's aggregate-only air quality never leaves as rows" sh -c "! '$bin' --data-dir '$work/${names[1]}' fetch wuerzburg.air --negotiate -o '$work/x.parquet' 2>/dev/null"

step "receipts verify offline; audit logs are intact"
"$bin" receipt verify "$work/receipt-air.hex"
check "the air-quality receipt verifies" "$bin" receipt verify "$work/receipt-air.hex"
check "the traffic receipt verifies" "$bin" receipt verify "$work/receipt-traffic.hex"
for i in 0 1 2; do check "${orgs[$i]}'s audit log is intact" cli "$i" audit verify; done

if $keep; then
  printf '\nThe federation keeps running (data in %s). Try:\n' "$work"
  printf '  curl -s -H "Authorization: Bearer $(cat %s/muenster/admin.token)" http://127.0.0.1:%s/api/v1/catalog?q=verkehr\n' "$work" "$(api_port 0)"
  printf '  %s --data-dir %s/muenster query "SELECT _member, COUNT(*) FROM federation.traffic_hourly GROUP BY _member"\n' "$bin" "$work"
  printf '  open http://127.0.0.1:%s/api/v1/catalog in a browser\n' "$(api_port 0)"
  printf '  stop them with: kill %s\n' "${pids[*]}"
else
  printf '\n(run scripts/demo.sh --keep to leave the federation running)\n'
fi
printf '\n%d passed, %d failed\n' "$passed" "$failed"
[ "$failed" -eq 0 ]
