#!/bin/sh
# The real client over TLS: `blindtuner serve` with a self-signed
# certificate, `blindtuner remote submit` (uploads, start) and `remote watch`
# (answers each epoch's loss locally, fetches the best model) as separate
# processes.  The fetched model is the server's, byte for byte, and
# decrypts and evaluates; plain HTTP to the TLS port gets nothing.
# usage: remote.sh BLINDTUNER FIXTURE_DIR
set -eu
B=$1 F=$2
. "$(dirname "$0")/lib.sh"
D=$F/service-remote
scratch "$D"
openssl req -x509 -newkey rsa:2048 -nodes -keyout key.pem -out cert.pem -days 2 -subj "/CN=localhost" \
  -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" 2> /dev/null
start_server data --answer-grace 2 --tls-cert cert.pem --tls-key key.pem
case "$U" in https://*) ;; *) fail "the server does not say https: $U" ;; esac
! curl -s -o /dev/null "http://${U#https://}/v1/health" || fail "plain HTTP was answered on the TLS port"
rc=0
"$B" remote status --job none.json 2> err.txt || rc=$?
[ $rc -ne 0 ] && grep -q "none.json" err.txt || fail "a missing job file was not named"
cp "$F/client.key" client.key
"$B" remote submit --server "$U" --ca cert.pem --keys "$F/server.keys" --train "$F/train.bt" --val "$F/val.bt" \
  --epochs 2 --lr 0.5 --momentum 0.7 --seed 3 --job job.json
[ "$(stat -c %a job.json)" = 600 ] || fail "job file mode $(stat -c %a job.json)"
timeout 600 "$B" remote watch --job job.json --keys client.key --workdir mine --allow-insecure --interval 1
ID=$(json job.json 'd["id"]')
best=$(ls mine/model-*.bt | head -n 1)
[ -n "$best" ] || fail "watch fetched no model"
cmp "$best" "data/jobs/$ID/work/$(basename "$best")" || fail "the fetched model is not the server's"
"$B" decrypt --allow-insecure --keys client.key --model "$best" --scaler "$F/scaler.bt" --out head.bt
"$B" evaluate --model head.bt --features "$F/te.features.npy" --labels "$F/te.labels.npy"
! grep -q "$(json job.json 'd["token"]')" serve.err || fail "the token is in the server's log"
"$B" remote delete --job job.json
[ ! -e "data/jobs/$ID" ] || fail "delete left the job's directory"
echo "remote over TLS: submitted, answered, fetched and decrypted with the real client"
