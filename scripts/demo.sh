#!/usr/bin/env bash
# demo.sh: the relay delivering real webhooks end to end, on this machine.
#
# Run through "make demo", which finds or starts a PostgreSQL (scripts/with-postgres.sh) and
# exports RELAY_TEST_DATABASE_URL. It then:
#   1. creates a fresh database "outbox_relay_demo";
#   2. builds and starts the relay (it migrates the schema itself);
#   3. creates a subscription for signup.* through the API;
#   4. starts "outbox-relay receive", which verifies every webhook's signature and prints it;
#   5. runs examples/publisher-go, which writes signups and publishes signup.created,
#      signup.position_changed and signup.deleted in the same transactions;
#   6. shows the delivery log of the subscription, then stops everything and drops the database.
set -euo pipefail
cd "$(dirname "$0")/.."

: "${RELAY_TEST_DATABASE_URL:?run this through make demo}"
API_ADDR=${DEMO_API_ADDR:-127.0.0.1:18080}
OPS_ADDR=${DEMO_OPS_ADDR:-127.0.0.1:19090}
RECEIVER_ADDR=${DEMO_RECEIVER_ADDR:-127.0.0.1:13000}
TOKEN=demo-token
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

# The demo database sits beside the one the tests use: same server, its own name.
base=${RELAY_TEST_DATABASE_URL%%\?*}
query=${RELAY_TEST_DATABASE_URL#"$base"}
server=${base%/*}
DEMO_URL="$server/outbox_relay_demo$query"
ADMIN_URL="$server/postgres$query"

psql_tool=$(command -v psql || echo "${RELAY_TEST_PG_BINDIR:-/usr/bin}/psql")
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  "$psql_tool" -X -q "$ADMIN_URL" -c 'DROP DATABASE IF EXISTS outbox_relay_demo WITH (FORCE)' >/dev/null 2>&1 || true
}
trap cleanup EXIT

say "1. A fresh database"
"$psql_tool" -X -q "$ADMIN_URL" -c 'DROP DATABASE IF EXISTS outbox_relay_demo WITH (FORCE)' -c 'CREATE DATABASE outbox_relay_demo' >/dev/null
echo "outbox_relay_demo created"

say "2. Build and start the relay"
go build -o bin/outbox-relay .
RELAY_DATABASE_URL="$DEMO_URL" RELAY_API_TOKEN="$TOKEN" RELAY_LISTEN_ADDR="$API_ADDR" RELAY_OPS_ADDR="$OPS_ADDR" \
  RELAY_ALLOW_HTTP=true RELAY_ALLOW_PRIVATE_TARGETS=true RELAY_POLL_INTERVAL=500ms RELAY_LOG_FORMAT=console \
  bin/outbox-relay serve >bin/demo-relay.log 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do
  curl -fsS "http://$OPS_ADDR/readyz" >/dev/null 2>&1 && break
  sleep 0.1
done
curl -fsS "http://$OPS_ADDR/readyz" >/dev/null || { cat bin/demo-relay.log; echo "relay did not become ready" >&2; exit 1; }
echo "relay ready: API on http://$API_ADDR, /readyz on http://$OPS_ADDR (log: bin/demo-relay.log)"

say "3. Subscribe to signup.* through the API"
answer=$(curl -fsS -X POST "http://$API_ADDR/v1/subscriptions" \
  -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
  -d "{\"target_url\": \"http://$RECEIVER_ADDR/webhooks\", \"event_types\": [\"signup.*\"], \"description\": \"demo receiver\"}")
sub_id=$(printf '%s' "$answer" | sed -n 's/.*"id":"\(sub_[a-z0-9]*\)".*/\1/p')
secret=$(printf '%s' "$answer" | sed -n 's/.*"secret":"\(whsec_[^"]*\)".*/\1/p')
[ -n "$sub_id" ] && [ -n "$secret" ] || { echo "unexpected answer: $answer" >&2; exit 1; }
echo "subscription $sub_id created; its secret goes to the receiver only"

say "4. Start a verifying receiver"
bin/outbox-relay receive --addr "$RECEIVER_ADDR" --secret "$secret" &
pids+=($!)
sleep 0.5

say "5. Publish signups through the outbox (examples/publisher-go)"
DATABASE_URL="$DEMO_URL" go run ./examples/publisher-go -signups 3 -pause 300ms
sleep 2

say "6. The delivery log, from the API"
curl -fsS "http://$API_ADDR/v1/subscriptions/$sub_id/deliveries" -H "Authorization: Bearer $TOKEN" |
  { command -v jq >/dev/null && jq -r '.data[] | "\(.id)  \(.status)  attempts=\(.attempt_count)  event=\(.event_id)"' || cat; }
echo
echo "Every webhook above was signed by the relay and verified by the receiver."
