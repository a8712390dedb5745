#!/bin/sh
# The operator page in a real headless browser (Debian's chromium): the
# page's script fetches /v1/operator and renders one row per job, with its
# short id and state; the JSON names no token; another address than
# 127.0.0.1 gets 403.  Skipped (exit 77) where chromium is not installed.
# usage: page.sh BLINDTUNER FIXTURE_DIR
set -eu
B=$1 F=$2
. "$(dirname "$0")/lib.sh"
D=$F/service-page
BROWSER=$(command -v chromium || command -v chromium-browser || true)
[ -n "$BROWSER" ] || { echo "chromium is not installed: skipped"; exit 77; }
scratch "$D"
start_server data
new_job
upload eval "$F/server.keys"
short=$(echo "$ID" | cut -c1-8)
expect 200 '"jobs"' GET /v1/operator
! grep -q "$TOK" resp.out || fail "the operator JSON holds a token"
! grep -q "$ID" resp.out || fail "the operator JSON holds a whole job id"
# the browser: its own profile, no sandbox (CI runs as root), the DOM once the script has run
timeout 120 "$BROWSER" --headless --no-sandbox --disable-gpu --disable-dev-shm-usage --user-data-dir="$D/profile" \
  --virtual-time-budget=5000 --dump-dom "$U/" > dom.html 2> browser.err || { tail -5 browser.err; fail "chromium failed"; }
grep -q 'data-ready="1"' dom.html || { cat dom.html; fail "the page's script did not render"; }
grep -q "data-id=\"$short\"" dom.html || { cat dom.html; fail "no row for job $short"; }
grep -q "<td>created</td>" dom.html || fail "the job's state is not shown"
grep -q "1 jobs, 0 running, 0 queued; memory budget" dom.html || fail "no summary line"
! grep -q "$TOK" dom.html || fail "the page holds a token"
echo "+ from another address (127.0.0.2): refused"
CODE=$(curl -s -o resp.out -w '%{http_code}' --interface 127.0.0.2 "$U/")
[ "$CODE" = 403 ] || fail "the page answered 127.0.0.2 with $CODE"
CODE=$(curl -s -o resp.out -w '%{http_code}' --interface 127.0.0.2 "$U/v1/operator")
[ "$CODE" = 403 ] || fail "the operator JSON answered 127.0.0.2 with $CODE"
echo "operator page: rendered in chromium, one row per job, no token"
