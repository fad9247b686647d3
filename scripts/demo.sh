#!/usr/bin/env bash
# `make demo`: a local bus on this machine. Starts Kafka, applies the bus definition
# when `syncbus apply` exists, and says what runs where.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== starting a local Apache Kafka (first run downloads its jars through mvn)"
bootstrap=$(syncbus kafka start | tail -n 1)
echo "   Kafka is at ${bootstrap}"
export SYNCBUS_BOOTSTRAP="${bootstrap}"

echo "== checking the bus definition (streams/, schemas/)"
syncbus check

if syncbus apply --help >/dev/null 2>&1; then
  echo "== creating the bus's topics, policy and schemas"
  syncbus apply --bootstrap "${bootstrap}"
else
  echo "== (syncbus apply is not built yet: no topics created)"
fi

cat <<INFO

What runs where:
  Kafka broker   ${bootstrap}   data and logs: \$(syncbus kafka status) / ~/.local/state/syncbus/kafka
  Stop it with   syncbus kafka stop
INFO
