#!/bin/sh
# Every subcommand as a separate process, through files: the server's
# commands (train, infer) run under watch_open, which fails them if the
# client's secret bundle is opened by anyone while they run.
# usage: e2e.sh BLINDTUNER WATCH_OPEN FIXTURE_DIR
set -eu
B=$1 WATCH=$2 F=$3
D=$F/e2e
rm -rf "$D"
mkdir -p "$D"
cd "$D"
for f in server.keys scaler.bt train.bt val.bt test.bt te.features.npy te.labels.npy va.features.npy va.labels.npy; do ln -s "$F/$f" .; done
# this test's own copy of the secret bundle: other tests, maybe running in
# parallel, read the fixture's, and this one watches its copy
cp "$F/client.key" client.key
# the watch itself works here: reading the bundle is caught
rc=0
"$WATCH" "$D/client.key" /bin/cat "$D/client.key" > /dev/null 2>&1 || rc=$?
[ $rc -eq 100 ] || { echo "watch_open did not catch a read of the secret bundle ($rc)"; exit 1; }
server() { echo "+ [server] $*"; "$WATCH" "$D/client.key" "$B" "$@"; }
client() { echo "+ [client] $*"; "$B" "$@"; }
T="--keys server.keys --train train.bt --val val.bt --workdir work --epochs 3 --lr 0.5 --momentum 0.7 --threads 2"
rounds=0
while :; do
  rc=0
  server train --allow-insecure $T || rc=$?
  [ $rc -eq 0 ] && break
  [ $rc -eq 3 ] || { echo "train failed with status $rc"; exit 1; }
  rounds=$((rounds + 1))
  [ $rounds -le 3 ] || { echo "train keeps waiting"; exit 1; }
  client decide --allow-insecure --keys client.key --workdir work --epochs 3 --patience 1
done
# the protocol left one loss and one answer per epoch run, and nothing else came back
client inspect work/checkpoint.bt work/model-001.bt work/loss-001.bt work/answer-001.bt
test -s work/report.json && test -s work/report.svg
best=$(client decide --allow-insecure --keys client.key --workdir work --epochs 3 --patience 1 --json | sed -n 's/.*"best_epoch":\([0-9]*\).*/\1/p')
[ -n "$best" ] || { echo "decide did not name a best epoch"; exit 1; }
model=$(printf 'work/model-%03d.bt' "$best")
client decrypt --allow-insecure --keys client.key --model "$model" --scaler scaler.bt --out head.bt
test "$(stat -c %a head.bt)" = 600
client evaluate --model head.bt --features te.features.npy --labels te.labels.npy
client predict --model head.bt --features te.features.npy --out predict.npy --probabilities probs.npy
server infer --allow-insecure --keys server.keys --model "$model" --data test.bt --out logits.bt --threads 2
client decrypt --allow-insecure --keys client.key --logits logits.bt --out logits.npy --predictions infer.npy
# decrypted values are the client's alone: owner-only, whatever the umask
for f in predict.npy probs.npy logits.npy infer.npy; do
  test "$(stat -c %a $f)" = 600 || { echo "$f has mode $(stat -c %a $f)"; exit 1; }
done
# encrypted inference labels the test rows as the decrypted model does
cmp predict.npy infer.npy
# the client's report: decrypted losses, each epoch's accuracy, the server's time split
client report --allow-insecure --keys client.key --workdir work --scaler scaler.bt --features va.features.npy \
  --labels va.labels.npy --out report
[ "$(grep -c '<svg' report.html)" -eq 3 ] || { echo "report.html lacks its three charts"; exit 1; }
grep -q '"accuracy"' report.json
ls work
echo "e2e: ok"
