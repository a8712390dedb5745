#!/bin/sh
# The client's record bounds what `decide` decrypts (docs/SECURITY.md): an
# agreement is needed first and cannot change, each epoch is decided once
# (a replayed loss is refused), nothing beyond the agreed epochs or after a
# stop is decrypted, a malformed loss is answered stop, and run again with
# nothing new it decrypts nothing.
# usage: decide.sh BLINDTUNER FIXTURE_DIR
set -eu
B=$1 F=$2
D=$F/decide
rm -rf "$D"
mkdir -p "$D"
cd "$D"
K="--allow-insecure --keys $F/client.key --workdir work --state decisions.json"
T="--allow-insecure --keys $F/server.keys --train $F/train.bt --val $F/val.bt --workdir work --epochs 2 --lr 0.5
   --momentum 0.7 --threads 2"
# refuse PATTERN COMMAND...: exit status 1 and PATTERN on stderr
refuse() {
  pat=$1
  shift
  echo "+ $* (refused: $pat)"
  rc=0
  "$@" > out.txt 2> err.txt || rc=$?
  cat err.txt
  [ $rc -eq 1 ] || { echo "FAIL: exit status $rc, expected 1"; exit 1; }
  grep -q -- "$pat" err.txt || { echo "FAIL: the error does not say '$pat'"; exit 1; }
}
answer() { "$B" inspect "$1" | grep -q "epoch $2: $3" || { echo "FAIL: $1 is not '$3'"; "$B" inspect "$1"; exit 1; }; }

rc=0
"$B" train $T > /dev/null 2>&1 || rc=$?
[ $rc -eq 3 ] || { echo "FAIL: train exit $rc, expected 3 (waiting)"; exit 1; }
refuse "is needed for the first decision" "$B" decide $K
"$B" decide $K --epochs 2
answer work/answer-001.bt 1 continue
[ "$(stat -c %a decisions.json)" = 600 ] || { echo "FAIL: the decisions file is not mode 0600"; exit 1; }
# nothing new: the record speaks, nothing is decrypted
"$B" decide $K > out.txt
grep -q "no loss of epoch 2" out.txt || { echo "FAIL: a second run did not say there is nothing to decide"; exit 1; }
# a lost answer is re-written from the record, not by decrypting again
rm work/answer-001.bt
"$B" decide $K 2> err.txt > /dev/null
grep -q "re-written" err.txt || { echo "FAIL: the lost answer was not re-written from the record"; exit 1; }
answer work/answer-001.bt 1 continue
# the agreement cannot change
refuse "records 2 agreed epochs" "$B" decide $K --epochs 5
# epoch 1's loss replayed as epoch 2: the same epoch is not decided twice
cp work/loss-001.bt work/loss-002.bt
refuse "the loss is of epoch 1, the client decides epoch 2" "$B" decide $K
[ ! -e work/answer-002.bt ] || { echo "FAIL: a replayed loss was answered"; exit 1; }
rm work/loss-002.bt
"$B" train $T > /dev/null 2>&1
"$B" decide $K > out.txt
grep -q "answer for epoch 2: stop" out.txt || { echo "FAIL: the last agreed epoch was not answered stop"; exit 1; }
answer work/answer-002.bt 2 stop
# beyond the agreement: not decrypted
cp work/loss-002.bt work/loss-003.bt
refuse "beyond the epochs the client agreed to: not decrypted" "$B" decide $K
[ ! -e work/answer-003.bt ] || { echo "FAIL: an epoch beyond the agreement was answered"; exit 1; }
# a malformed loss (a model where the loss belongs) is answered stop, and nothing after it is decrypted
mkdir w2
cp work/model-001.bt w2/loss-001.bt
K2="--allow-insecure --keys $F/client.key --workdir w2 --state d2.json --epochs 3"
refuse "answered stop" "$B" decide $K2
answer w2/answer-001.bt 1 stop
cp work/loss-002.bt w2/loss-002.bt
refuse "after the client's stop: not decrypted" "$B" decide $K2
# report: the losses come from the record
"$B" report --allow-insecure --keys "$F/client.key" --workdir work --state decisions.json --scaler "$F/scaler.bt" \
  --out report > /dev/null
[ "$(stat -c %a report.json)" = 600 ] || { echo "FAIL: the report is not mode 0600"; exit 1; }
grep -q '"val_loss"' report.json || { echo "FAIL: the report lacks the recorded losses"; exit 1; }
echo "decide: every bound holds"
