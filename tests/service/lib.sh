# Shared by the service tests: a `blindtuner serve` on a free loopback port,
# requests with curl, uploads, waits.  Sourced (from the directory the test
# started in) after B (the program) and F (the pipeline fixture) are set;
# `scratch DIR` then makes the test's scratch directory and goes there.
fail() {
  echo "FAIL: $*"
  exit 1
}
SERVER_PID=""
# scratch DIR: a fresh DIR, the working directory from now on; the server
# is stopped however the test ends
scratch() {
  rm -rf "$1"
  mkdir -p "$1"
  cd "$1"
  trap 'stop_server' EXIT
}
# start_server DATA_DIR [options]: starts it, sets U (its base URL)
start_server() {
  data=$1
  shift
  rm -f serve.out
  "$B" serve --listen 127.0.0.1:0 --data "$data" --allow-insecure --threads 2 "$@" > serve.out 2>> serve.err &
  SERVER_PID=$!
  i=0
  while ! grep -q listening serve.out 2> /dev/null; do
    i=$((i + 1))
    [ $i -lt 100 ] || { cat serve.err; fail "the server did not start"; }
    kill -0 $SERVER_PID 2> /dev/null || { cat serve.err; fail "the server exited"; }
    sleep 0.1
  done
  U=$(sed -n 's/.*listening on \(https*:\/\/[^,]*\),.*/\1/p' serve.out)
}
stop_server() {
  [ -z "$SERVER_PID" ] || { kill -TERM $SERVER_PID 2> /dev/null || true; wait $SERVER_PID 2> /dev/null || true; }
  SERVER_PID=""
}
# api METHOD PATH [curl options]: the body to stdout, the status to $CODE
api() {
  m=$1 p=$2
  shift 2
  CODE=$(curl -s -o resp.out -w '%{http_code}' -X "$m" "$@" "$U$p")
  cat resp.out
}
# expect CODE PATTERN METHOD PATH [curl options]: that status and message
expect() {
  want=$1 pat=$2
  shift 2
  api "$@" > /dev/null
  [ "$CODE" = "$want" ] || { cat resp.out; fail "$1 $2: status $CODE, expected $want"; }
  grep -q -- "$pat" resp.out || { cat resp.out; fail "$1 $2: the answer does not say '$pat'"; }
  echo "ok: $1 $2 -> $CODE $(cat resp.out)"
}
json() { python3 -c "import json,sys; d=json.load(open('$1')); print($2)"; }
# new_job: sets ID, TOK and AUTH
new_job() {
  api POST /v1/jobs > job.json
  [ "$CODE" = 201 ] || fail "create: $CODE"
  ID=$(json job.json 'd["id"]')
  TOK=$(json job.json 'd["token"]')
  AUTH="Authorization: Bearer $TOK"
}
# upload NAME FILE: one PUT from offset 0, then complete
upload() {
  api PUT "/v1/jobs/$ID/files/$1?offset=0" -H "$AUTH" --data-binary @"$2" > /dev/null
  [ "$CODE" = 200 ] || { cat resp.out; fail "PUT $1: $CODE"; }
  complete "$1" "$2"
}
complete() {
  api POST "/v1/jobs/$ID/files/$1/complete" -H "$AUTH" \
    -d "{\"size\": $(stat -c %s "$2"), \"blake2b\": \"$(b2sum -l 256 "$2" | cut -d' ' -f1)\"}" > /dev/null
  [ "$CODE" = 200 ] || { cat resp.out; fail "complete $1: $CODE"; }
}
# status: the job's status into status.json
status() { api GET "/v1/jobs/$ID" -H "$AUTH" > status.json; }
# wait_for PYTHON_CONDITION SECONDS: polls the status until the condition on d holds
wait_for() {
  i=0
  while :; do
    status
    [ "$(json status.json "bool($1)")" = True ] && return 0
    [ "$(json status.json 'd["state"]')" != failed ] || { cat status.json; fail "the job failed"; }
    i=$((i + 1))
    [ $i -lt $(($2 * 5)) ] || { cat status.json; fail "timed out waiting for: $1"; }
    sleep 0.2
  done
}
