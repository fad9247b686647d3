#!/usr/bin/env bash
# `make demo`: the whole bus on this machine, end to end.
#   Kafka -> syncbus apply -> a router worker -> js-gaj publishes residents ->
#   what Suzhou and the province each receive -> Nanjing lands its share in SQLite.
# The broker is secure (SASL/SCRAM and ACLs): every part logs in as its own principal.
# `scripts/demo.sh stop` stops the router and the broker again.
set -euo pipefail
cd "$(dirname "$0")/.."

DEMO=var/demo
KAFKA_DIR=$DEMO/kafka-secure
mkdir -p "$DEMO"
# every principal's password, issued by `syncbus apply` (mode 0600)
export SYNCBUS_CREDENTIALS="$PWD/$DEMO/credentials.json"

stop() {
  if [ -f "$DEMO/router.pid" ] && kill -0 "$(cat "$DEMO/router.pid")" 2>/dev/null; then
    kill "$(cat "$DEMO/router.pid")" && echo "stopped the router"
  fi
  rm -f "$DEMO/router.pid"
  syncbus kafka stop --dir "$KAFKA_DIR"
}
if [ "${1:-}" = "stop" ]; then stop; exit 0; fi

step() { printf '\n== %s\n' "$*"; }

step "starting a secure local Apache Kafka (the first run fetches its jars through mvn)"
port_option=()
[ -f "$KAFKA_DIR/broker.json" ] || port_option=(--port 0)
bootstrap=$(syncbus kafka start --secure --dir "$KAFKA_DIR" "${port_option[@]}" | tail -n 1)
export SYNCBUS_BOOTSTRAP="$bootstrap"
echo "Kafka is at $bootstrap"

step "checking the bus definition (streams/, schemas/)"
syncbus check

step "as the admin: topics, policy, schemas, one user per principal and the ACLs (syncbus apply)"
syncbus apply --user syncbus-admin --password-file "$KAFKA_DIR/admin.password" | grep -v '^  [+-]'

step "starting a router worker in the background (log: $DEMO/router.log)"
if [ ! -f "$DEMO/secrets.json" ]; then
  python - "$DEMO/secrets.json" <<'PY'
import json, secrets, sys
subscribers = ["province.jiangsu", "city.nanjing", "city.suzhou", "city.wuxi",
               "district.gusu", "district.xuanwu"]
json.dump({s: secrets.token_hex(32) for s in subscribers}, open(sys.argv[1], "w"))
PY
fi
if ! { [ -f "$DEMO/router.pid" ] && kill -0 "$(cat "$DEMO/router.pid")" 2>/dev/null; }; then
  mkdir -p "$DEMO/router"
  syncbus router --user syncbus-router --secrets "$DEMO/secrets.json" --workdir "$PWD/$DEMO/router" \
    >"$DEMO/router.log" 2>&1 &
  echo $! >"$DEMO/router.pid"
fi
echo "router pid $(cat "$DEMO/router.pid")"

step "js-gaj (provincial public security) publishes 12 residents of Nanjing, Suzhou, Gusu and Wuxi"
python - "$DEMO/residents.jsonl" <<'PY'
import json, sys
from syncbus.core.fake import make_records
from syncbus.core.jsonconv import to_json
regions = ["320102", "320505", "320508", "320211"]   # Xuanwu, Huqiu, Gusu, Binhu (Wuxi)
with open(sys.argv[1], "w", encoding="utf-8") as out:
    for record in make_records("population.resident", 12, regions, seed=7):
        out.write(json.dumps({"op": "CREATE", "after": to_json(record)}, ensure_ascii=False) + "\n")
PY
syncbus publish --user js-gaj --as js-gaj --resource population.resident --file "$DEMO/residents.jsonl"

step "what city.suzhou receives (the router routes as soon as its worker is up):"
echo "   its 6 residents of Huqiu and Gusu only; ID, name, phone and birth date masked"
syncbus consume --user city.suzhou --as city.suzhou --resource population.resident \
  --from-beginning --timeout 60 --max 6

step "what province.jiangsu receives: every resident, full clearance (first 2 of 12)"
syncbus consume --user province.jiangsu --as province.jiangsu --resource population.resident \
  --from-beginning --timeout 30 --max 2

step "city.wuxi's grant is pending: the broker refuses it the share (exit 2)"
syncbus consume --user city.wuxi --as city.wuxi --resource population.resident --timeout 3 || true

step "city.nanjing tries to read Suzhou's share: refused (exit 2)"
syncbus consume --user city.nanjing --as city.suzhou --resource population.resident --timeout 3 || true

step "city.nanjing lands its share (3 residents of Xuanwu) in SQLite ($DEMO/nanjing.db)"
syncbus sink --user city.nanjing --as city.nanjing --to "$DEMO/nanjing.db" --resource population.resident \
  --max 3 --timeout 30
python - "$DEMO/nanjing.db" <<'PY'
import sqlite3, sys
rows = sqlite3.connect(sys.argv[1]).execute(
    "select _key, name, region from population_resident order by region").fetchall()
print(f"{len(rows)} rows in population_resident:")
for row in rows:
    print("  ", *row)
PY

cat <<INFO

What runs where:
  Kafka broker    $bootstrap     (data and logs in $KAFKA_DIR)
  router worker   pid $(cat "$DEMO/router.pid")        (log $DEMO/router.log)
  Nanjing's sink  $DEMO/nanjing.db
Passwords: $SYNCBUS_CREDENTIALS (admin: $KAFKA_DIR/admin.password)
Try:   export SYNCBUS_BOOTSTRAP=$bootstrap SYNCBUS_CREDENTIALS=$SYNCBUS_CREDENTIALS
       syncbus consume --user district.gusu --as district.gusu --resource population.resident --from-beginning --timeout 5
Stop:  make demo-stop
INFO
