#!/bin/sh
# `blindtuner serve` against careless and hostile clients, and crashes:
# every refusal with its status and message and nothing stored; kill -9 of
# the server in the middle of an upload and of an epoch, then a restart on
# the same data directory: the upload resumes from its last byte, the
# training from its checkpoint, and the model equals an uninterrupted run's.
# usage: faults.sh BLINDTUNER FIXTURE_DIR
set -eu
B=$1 F=$2
. "$(dirname "$0")/lib.sh"
D=$F/service-faults
scratch "$D"
start_server data
new_job
ID1=$ID TOK1=$TOK AUTH1=$AUTH
new_job # the second job, the one the requests below are about

echo "+ authentication: no token 401; a wrong one, another job's, or no such job: the same 404"
expect 401 "Bearer" GET "/v1/jobs/$ID"
expect 404 "no such job" GET "/v1/jobs/$ID" -H "Authorization: Bearer 0000"
expect 404 "no such job" GET "/v1/jobs/$ID" -H "$AUTH1"
expect 404 "no such job" GET "/v1/jobs/0123456789abcdef0123456789abcdef" -H "$AUTH"
expect 404 "no such job" DELETE "/v1/jobs/$ID" -H "$AUTH1"

echo "+ names: path traversal and unknown names reach nothing"
expect 404 "no such" GET "/v1/jobs/../../../etc/passwd" --path-as-is -H "$AUTH"
expect 404 "no such" GET "/v1/jobs/$ID/../$ID1" --path-as-is -H "$AUTH"
expect 404 "no such file" PUT "/v1/jobs/$ID/files/..?offset=0" --path-as-is -H "$AUTH" --data-binary @"$F/train.bt"
expect 404 "no such" PUT "/v1/jobs/$ID/files/..%2F..%2Fjobs.db?offset=0" -H "$AUTH" --data-binary @"$F/train.bt"
expect 404 "no such file" PUT "/v1/jobs/$ID/files/secret?offset=0" -H "$AUTH" --data-binary @"$F/train.bt"
expect 404 "no such" GET "/v1/jobs/$ID/model/..%2F..%2Fjobs.db" -H "$AUTH"
expect 404 "no such epoch" GET "/v1/jobs/$ID/model/01" -H "$AUTH"
expect 405 "not allowed" PUT "/v1/jobs/$ID/start" -H "$AUTH" -d '{}'

echo "+ content: a secret bundle, the wrong kind, too large, truncated, corrupted, another key set"
expect 422 "secret bundle" PUT "/v1/jobs/$ID/files/eval?offset=0" -H "$AUTH" --data-binary @"$F/client.key"
[ ! -s "data/jobs/$ID/eval.part" ] || fail "bytes of the secret bundle were stored"
expect 422 "evaluation bundle expected" PUT "/v1/jobs/$ID/files/eval?offset=0" -H "$AUTH" --data-binary @"$F/train.bt"
expect 422 "encrypted dataset expected" PUT "/v1/jobs/$ID/files/train?offset=0" -H "$AUTH" --data-binary @"$F/server.keys"
# a header that declares 1 TiB: refused before anything is written
python3 -c "
import struct,sys
b=bytearray(open('$F/train.bt','rb').read(4096)); b[48:56]=struct.pack('<Q', 1<<40); open('huge.bt','wb').write(b)"
expect 413 "over the limit" PUT "/v1/jobs/$ID/files/train?offset=0" -H "$AUTH" --data-binary @huge.bt
[ ! -s "data/jobs/$ID/train.part" ] || fail "bytes of the oversized upload were stored"
Z=0000000000000000000000000000000000000000000000000000000000000000
api PUT "/v1/jobs/$ID/files/train?offset=0" -H "$AUTH" --data-binary @"$F/train.bt" > /dev/null
expect 409 "needs the evaluation bundle first" POST "/v1/jobs/$ID/files/train/complete" -H "$AUTH" \
  -d "{\"size\": $(stat -c %s "$F/train.bt"), \"blake2b\": \"$Z\"}"
expect 409 "have been received" PUT "/v1/jobs/$ID/files/train?offset=0" -H "$AUTH" --data-binary @"$F/train.bt"
upload eval "$F/server.keys"
# a checksum that does not match: refused, and the upload starts again from 0
expect 422 "BLAKE2b mismatch" POST "/v1/jobs/$ID/files/train/complete" -H "$AUTH" \
  -d "{\"size\": $(stat -c %s "$F/train.bt"), \"blake2b\": \"$Z\"}"
head -c 5000 "$F/train.bt" > trunc.bt
api PUT "/v1/jobs/$ID/files/train?offset=0" -H "$AUTH" --data-binary @trunc.bt > /dev/null
expect 409 "is not all there" POST "/v1/jobs/$ID/files/train/complete" -H "$AUTH" \
  -d "{\"size\": $(stat -c %s "$F/train.bt"), \"blake2b\": \"$(b2sum -l 256 "$F/train.bt" | cut -d' ' -f1)\"}"
tail -c +5001 "$F/train.bt" > rest.bt
api PUT "/v1/jobs/$ID/files/train?offset=5000" -H "$AUTH" --data-binary @rest.bt > /dev/null
expect 422 "BLAKE2b mismatch" POST "/v1/jobs/$ID/files/train/complete" -H "$AUTH" \
  -d "{\"size\": $(stat -c %s "$F/train.bt"), \"blake2b\": \"$(b2sum -l 256 "$F/val.bt" | cut -d' ' -f1)\"}"
[ ! -e "data/jobs/$ID/train.part" ] && [ ! -e "data/jobs/$ID/train.bt" ] || fail "a refused upload was kept"
api PUT "/v1/jobs/$ID/files/train?offset=0" -H "$AUTH" --data-binary @"$F/other-train.bt" > /dev/null
expect 422 "another key set" POST "/v1/jobs/$ID/files/train/complete" -H "$AUTH" \
  -d "{\"size\": $(stat -c %s "$F/other-train.bt"), \"blake2b\": \"$(b2sum -l 256 "$F/other-train.bt" | cut -d' ' -f1)\"}"
api PUT "/v1/jobs/$ID/files/train?offset=0" -H "$AUTH" --data-binary @"$F/val.bt" > /dev/null
expect 422 "a validation set, not a training set" POST "/v1/jobs/$ID/files/train/complete" -H "$AUTH" \
  -d "{\"size\": $(stat -c %s "$F/val.bt"), \"blake2b\": \"$(b2sum -l 256 "$F/val.bt" | cut -d' ' -f1)\"}"

echo "+ requests: malformed JSON, bad options, out of order"
expect 409 "training set (train) is not complete" POST "/v1/jobs/$ID/start" -H "$AUTH" -d '{}'
expect 400 "not a JSON object" POST "/v1/jobs/$ID/files/train/complete" -H "$AUTH" -d '{"size": 1,'
expect 400 "blake2b" POST "/v1/jobs/$ID/files/eval/complete" -H "$AUTH" -d '{"size": 1}'
expect 400 "offset" PUT "/v1/jobs/$ID/files/train?offset=-1" -H "$AUTH" --data-binary @"$F/train.bt"
upload train "$F/train.bt"
expect 400 "not a JSON object" POST "/v1/jobs/$ID/start" -H "$AUTH" -d '[1, 2'
expect 400 "epochs in" POST "/v1/jobs/$ID/start" -H "$AUTH" -d '{"epochs": 0}'
expect 400 "epochs in" POST "/v1/jobs/$ID/start" -H "$AUTH" -d '{"lr": "fast"}'
expect 400 "accumulate an integer in \[1, 64\]" POST "/v1/jobs/$ID/start" -H "$AUTH" -d '{"accumulate": 0}'
expect 400 "accumulate an integer" POST "/v1/jobs/$ID/start" -H "$AUTH" -d '{"accumulate": 1.5}'
expect 400 "accumulate an integer" POST "/v1/jobs/$ID/start" -H "$AUTH" -d '{"accumulate": 65}'
expect 409 "does not wait" POST "/v1/jobs/$ID/answer/1" -H "$AUTH" --data-binary @"$F/train.bt"
expect 409 "complete already" PUT "/v1/jobs/$ID/files/eval?offset=0" -H "$AUTH" --data-binary @"$F/server.keys"
! grep -q -e "$TOK" -e "$TOK1" serve.err || fail "a token is in the server's log"
expect 200 '"deleted"' DELETE "/v1/jobs/$ID1" -H "$AUTH1"

echo "+ one service per data directory; a job larger than the memory budget is refused at start"
rc=0
"$B" serve --listen 127.0.0.1:0 --data data > second.out 2>&1 || rc=$?
[ $rc = 1 ] && grep -q "in use by another" second.out || { cat second.out; fail "a second server on the same data ran"; }
stop_server
echo "+ a schema-1 job database (before library 0.5) is upgraded in place"
mkdir -p old
python3 - << 'PY'
import sqlite3
c = sqlite3.connect("old/jobs.db")
c.executescript("""CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER);
CREATE TABLE jobs (id TEXT PRIMARY KEY, token_hash BLOB NOT NULL, state INTEGER, epochs INTEGER, lr REAL,
 momentum REAL, seed INTEGER, queue_seq INTEGER, epochs_done INTEGER, waiting_epoch INTEGER, stopped INTEGER,
 infer INTEGER, infer_epoch INTEGER, params_hash BLOB, tag BLOB, mem REAL, created REAL, error TEXT, uploads TEXT);
INSERT INTO meta VALUES ('schema', 1);""")
c.commit()
PY
start_server old
stop_server
python3 -c "
import sqlite3
c = sqlite3.connect('old/jobs.db')
assert c.execute(\"SELECT value FROM meta WHERE key = 'schema'\").fetchone()[0] == 2
c.execute('SELECT accumulate FROM jobs').fetchall()" || fail "the schema-1 database was not upgraded"
start_server data --memory-gib 0.5
expect 422 "memory budget is 0.5 GiB" POST "/v1/jobs/$ID/start" -H "$AUTH" -d '{}'

echo "+ kill -9 mid-upload (the client was sending slowly), restart, resume from the offset HEAD gives"
new_job
curl -s -o /dev/null --limit-rate 2M -X PUT -H "$AUTH" --data-binary @"$F/server.keys" "$U/v1/jobs/$ID/files/eval?offset=0" &
curl_pid=$!
sleep 2
kill -9 $SERVER_PID
wait $SERVER_PID 2> /dev/null || true
wait $curl_pid 2> /dev/null || true
start_server data
off=$(curl -s -I -H "$AUTH" "$U/v1/jobs/$ID/files/eval" | tr -d '\r' | sed -n 's/^Upload-Offset: //p')
echo "after the restart: $off bytes of eval on disk"
[ "$off" -gt 0 ] && [ "$off" -lt "$(stat -c %s "$F/server.keys")" ] || fail "offset '$off' after the restart"
tail -c +$((off + 1)) "$F/server.keys" > rest.keys
api PUT "/v1/jobs/$ID/files/eval?offset=$off" -H "$AUTH" --data-binary @rest.keys > /dev/null
[ "$CODE" = 200 ] || fail "the resumed upload: $CODE"
complete eval "$F/server.keys"
echo "+ the client killed mid-upload: the bytes that arrived are kept"
curl -s -o /dev/null --limit-rate 100K -X PUT -H "$AUTH" --data-binary @"$F/train.bt" "$U/v1/jobs/$ID/files/train?offset=0" &
curl_pid=$!
sleep 1.5
kill -9 $curl_pid
wait $curl_pid 2> /dev/null || true
sleep 0.5
off=$(curl -s -I -H "$AUTH" "$U/v1/jobs/$ID/files/train" | tr -d '\r' | sed -n 's/^Upload-Offset: //p')
echo "after the client died: $off bytes of train on disk"
[ "$off" -gt 0 ] || fail "nothing kept of the interrupted upload"
tail -c +$((off + 1)) "$F/train.bt" > rest.bt
api PUT "/v1/jobs/$ID/files/train?offset=$off" -H "$AUTH" --data-binary @rest.bt > /dev/null
complete train "$F/train.bt"

echo "+ kill -9 mid-epoch 2, restart: the job resumes from its checkpoint"
expect 202 '"state"' POST "/v1/jobs/$ID/start" -H "$AUTH" -d '{"epochs": 2, "lr": 0.5, "momentum": 0.7}'
wait_for 'd.get("progress", {}).get("epoch") == 2 and d["progress"]["phase"] == "training"' 300
kill -9 $SERVER_PID
wait $SERVER_PID 2> /dev/null || true
sleep 1
! pgrep -f "data/jobs/$ID/eval.bt" > /dev/null || fail "the training child outlived the server"
start_server data
wait_for 'd["state"] == "done"' 300
[ "$(json status.json 'd["epochs_done"]')" = 2 ] || fail "epochs_done"
grep -q "resuming from .* after epoch 1" "data/jobs/$ID/train.log" || fail "the restarted child did not resume from epoch 1"
curl -s -f -H "$AUTH" -o model-002.bt "$U/v1/jobs/$ID/model/2"
"$B" train --allow-insecure --keys "$F/server.keys" --train "$F/train.bt" --workdir files --epochs 2 --lr 0.5 \
  --momentum 0.7 --threads 2 > /dev/null 2>&1
cmp model-002.bt files/model-002.bt || fail "the resumed job's model differs from an uninterrupted run's"
echo "+ a full disk (injected: RLIMIT_FSIZE of 4 MiB, SIGXFSZ ignored, so writes fail with EFBIG)"
stop_server
rm -f serve.out # else the wait below can read the stopped server's address before the new one starts
( trap '' XFSZ; ulimit -f 4096; exec "$B" serve --listen 127.0.0.1:0 --data data --allow-insecure > serve.out 2>> serve.err ) &
SERVER_PID=$!
i=0
while ! grep -q listening serve.out 2> /dev/null; do
  i=$((i + 1)); [ $i -lt 100 ] || fail "the server did not start"; sleep 0.1
done
U=$(sed -n 's/.*listening on \(https*:\/\/[^,]*\),.*/\1/p' serve.out)
new_job
expect 507 "cannot write eval" PUT "/v1/jobs/$ID/files/eval?offset=0" -H "$AUTH" --data-binary @"$F/server.keys"
expect 200 '"ok":true' GET /v1/health
new_job # ... and the server keeps serving: a small upload to another job goes through
expect 200 '"received"' PUT "/v1/jobs/$ID/files/test?offset=0" -H "$AUTH" --data-binary @"$F/test.bt"
stop_server
echo "service faults: every refusal clear, nothing stored; crashes resumed to the same model"
