#!/bin/sh
# The whole pipeline over HTTP: a real `blindtuner serve` on loopback, the
# client's side as separate processes (curl for the transport, the
# `blindtuner` client commands for the keys): create a job, upload with a
# resumed transfer, train two epochs answering the encrypted loss with one
# bit, fetch the models, run encrypted inference, delete.  The encrypted
# model and logits must be byte for byte those of the file pipeline given
# the same inputs and options (the server's computation is deterministic).
# usage: e2e.sh BLINDTUNER FIXTURE_DIR
set -eu
B=$1 F=$2
. "$(dirname "$0")/lib.sh"
D=$F/service-e2e
scratch "$D"
start_server data --answer-grace 2
expect 200 '"ok":true' GET /v1/health
new_job

echo "+ upload eval in two parts, resumed at the offset HEAD gives"
N=100000
head -c $N "$F/server.keys" > part1
tail -c +$((N + 1)) "$F/server.keys" > part2
api PUT "/v1/jobs/$ID/files/eval?offset=0" -H "$AUTH" --data-binary @part1 > /dev/null
[ "$CODE" = 200 ] || fail "first part: $CODE"
off=$(curl -s -I -H "$AUTH" "$U/v1/jobs/$ID/files/eval" | tr -d '\r' | sed -n 's/^Upload-Offset: //p')
[ "$off" = $N ] || fail "HEAD says offset '$off', expected $N"
expect 409 "have been received" PUT "/v1/jobs/$ID/files/eval?offset=5" -H "$AUTH" --data-binary @part2
api PUT "/v1/jobs/$ID/files/eval?offset=$N" -H "$AUTH" --data-binary @part2 > /dev/null
[ "$CODE" = 200 ] || fail "second part: $CODE"
complete eval "$F/server.keys"
upload train "$F/train.bt"
upload val "$F/val.bt"
upload test "$F/test.bt"

echo "+ train: 2 epochs of 2 batches a step at the large-batch rule's rate (no lr), the client answers epoch 1"
T='{"epochs": 2, "momentum": 0.7, "seed": 3, "accumulate": 2}'
expect 202 '"accumulate": *2' POST "/v1/jobs/$ID/start" -H "$AUTH" -d "$T"
wait_for 'd["state"] == "waiting" and d["waiting_epoch"] == 1' 300
mkdir local
cp "$F/client.key" client.key
curl -s -f -H "$AUTH" -o local/loss-001.bt "$U/v1/jobs/$ID/loss/1"
"$B" decide --allow-insecure --keys client.key --workdir local --epochs 2
expect 202 '"state"' POST "/v1/jobs/$ID/answer/1" -H "$AUTH" --data-binary @local/answer-001.bt
expect 409 "epoch 1" POST "/v1/jobs/$ID/answer/1" -H "$AUTH" --data-binary @local/answer-001.bt
wait_for 'd["state"] == "done"' 300
cat status.json
[ "$(json status.json 'd["models"]')" = "[1, 2]" ] || fail "models: $(json status.json 'd["models"]')"
[ "$(json status.json 'len(d["epochs"])')" = 2 ] || fail "no timings for 2 epochs"
curl -s -f -H "$AUTH" -o model-002.bt "$U/v1/jobs/$ID/model/2"

echo "+ the same training through files"
grep -q "2 batches a step, learning rate .* (the large-batch rule)" "data/jobs/$ID/train.log" ||
  fail "the training child did not take accumulate 2 and the rule"
T="--allow-insecure --keys $F/server.keys --train $F/train.bt --val $F/val.bt --workdir files --epochs 2 --accumulate 2"
rc=0
"$B" train $T --momentum 0.7 --seed 3 --threads 2 > /dev/null 2>&1 || rc=$?
[ $rc = 3 ] || fail "train through files: status $rc, 3 (waiting for the answer) expected"
cp local/answer-001.bt files/
"$B" train $T --momentum 0.7 --seed 3 --threads 2 > /dev/null 2>&1
cmp files/model-001.bt "data/jobs/$ID/work/model-001.bt" || fail "epoch 1's models differ"
cmp model-002.bt files/model-002.bt || fail "the service's model differs from the file pipeline's"
"$B" decrypt --allow-insecure --keys client.key --model model-002.bt --scaler "$F/scaler.bt" --out http.head
"$B" evaluate --model http.head --features "$F/te.features.npy" --labels "$F/te.labels.npy"

echo "+ encrypted inference over HTTP"
expect 404 "no model of epoch 7" POST "/v1/jobs/$ID/infer" -H "$AUTH" -d '{"epoch": 7}'
expect 202 '"infer"' POST "/v1/jobs/$ID/infer" -H "$AUTH" -d '{"epoch": 2}'
wait_for 'd["infer"]["state"] == "done"' 300
curl -s -f -H "$AUTH" -o logits.bt "$U/v1/jobs/$ID/logits/2"
"$B" infer --allow-insecure --keys "$F/server.keys" --model files/model-002.bt --data "$F/test.bt" --out files-logits.bt \
  --threads 2 > /dev/null
cmp logits.bt files-logits.bt || fail "the service's logits differ from the file pipeline's"

echo "+ the log names no token; delete removes everything"
! grep -q "$TOK" serve.err || fail "the token is in the server's log"
expect 200 '"deleted"' DELETE "/v1/jobs/$ID" -H "$AUTH"
expect 404 "no such job" GET "/v1/jobs/$ID" -H "$AUTH"
[ ! -e "data/jobs/$ID" ] || fail "the job's directory is still there"
echo "service e2e: the model and logits over HTTP are the file pipeline's"
