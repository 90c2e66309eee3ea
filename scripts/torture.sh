#!/usr/bin/env bash
# SIP torture conformance (RFC 4475 + RFC 5118) against the switch: UDP pass, then TCP pass.
#   scripts/torture.sh            # both transports (UDP takes ~2 min: --txn-gap 33)
#   scripts/torture.sh udp|tcp    # one transport
#   TORTURE_PORT=5080 TORTURE_ARGS="--strict" scripts/torture.sh
# Starts `softswitch serve` on 127.0.0.1:$TORTURE_PORT (UDP+TCP) with the demo seed and a
# throwaway data directory, runs the kit's run_torture.py (kept outside the repository, in
# ../shared/conformance/sip-torture relative to the repository root), prints both summaries
# and stops the switch. Exit status: 0 only if every pass run reported no failure.
set -euo pipefail

ROOT=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)
KIT=${TORTURE_KIT:-$ROOT/../shared/conformance/sip-torture}
PORT=${TORTURE_PORT:-5080}
PY=${PYTHON:-$ROOT/.venv/bin/python}
read -r -a EXTRA <<<"${TORTURE_ARGS:-}"
case "${1:-all}" in
  all) TRANSPORTS=(udp tcp) ;;
  udp|tcp) TRANSPORTS=("$1") ;;
  *) echo "usage: $0 [udp|tcp|all]" >&2; exit 2 ;;
esac

if [[ ! -f "$KIT/run_torture.py" || ! -f "$KIT/manifest.tsv" ]]; then
  echo "error: SIP torture kit not found at $KIT (expected run_torture.py and manifest.tsv);" \
       "set TORTURE_KIT=/path/to/sip-torture" >&2
  exit 2
fi
[[ -x "$PY" ]] || { echo "error: $PY not found (run make venv)" >&2; exit 2; }

WORK=$(mktemp -d -t softswitch-torture-XXXXXX)
SW_PID=""
cleanup() {
  if [[ -n "$SW_PID" ]] && kill -0 "$SW_PID" 2>/dev/null; then
    kill -TERM "$SW_PID" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$SW_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$SW_PID" 2>/dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

"$PY" -m switch serve --sip "127.0.0.1:$PORT" --http 127.0.0.1:0 \
  --seed "$ROOT/deploy/demo-seed.toml" --data "$WORK/data" \
  >"$WORK/switch.out" 2>"$WORK/switch.err" &
SW_PID=$!
for _ in $(seq 1 150); do
  grep -q "SIP listening on udp+tcp" "$WORK/switch.out" 2>/dev/null && break
  kill -0 "$SW_PID" 2>/dev/null || break
  sleep 0.1
done
if ! grep -q "SIP listening on udp+tcp" "$WORK/switch.out" 2>/dev/null; then
  echo "error: the switch did not start on 127.0.0.1:$PORT" >&2
  cat "$WORK/switch.out" "$WORK/switch.err" >&2
  exit 1
fi
echo "switch (pid $SW_PID): $(grep 'SIP listening' "$WORK/switch.out" | head -1)"

status=0
declare -A SUMMARY
for tp in "${TRANSPORTS[@]}"; do
  echo "=== torture over $tp ==="
  set +e
  python3 "$KIT/run_torture.py" --host 127.0.0.1 --port "$PORT" --transport "$tp" \
    "${EXTRA[@]}" | tee "$WORK/torture-$tp.log"
  rc=${PIPESTATUS[0]}
  set -e
  SUMMARY[$tp]=$(grep -E '^torture: ' "$WORK/torture-$tp.log" | tail -1 || true)
  [[ -n "${SUMMARY[$tp]}" ]] || SUMMARY[$tp]="torture: no summary (runner exit $rc)"
  ((rc == 0)) || status=1
  if ! kill -0 "$SW_PID" 2>/dev/null; then
    echo "error: the switch died during the $tp pass" >&2
    tail -50 "$WORK/switch.err" >&2
    status=1
    break
  fi
done

echo
echo "=== summary ==="
for tp in "${TRANSPORTS[@]}"; do
  echo "$tp: ${SUMMARY[$tp]:-not run}"
done
if grep -q "Traceback" "$WORK/switch.err"; then
  echo "note: the switch logged exceptions during the run:" >&2
  grep -B2 -A12 "Traceback" "$WORK/switch.err" | head -60 >&2
fi
exit $status
