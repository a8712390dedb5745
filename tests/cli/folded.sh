#!/bin/sh
# The pipeline on a shape whose softmax runs folded on sparse slots
# (docs/TRAINING.md, "The folded layout"): 3 features + bias, 3 classes,
# batches of 64 at N = 2^12 -> 8 groups of 8 rows, bootstrapping 2^8 slots.
# Trains 2 epochs through files, then checks the decrypted model learnt the
# linear teacher of tests/data/pipeline/fold.* and that encrypted inference
# labels the test rows as the decrypted model does.
# usage: folded.sh BLINDTUNER DATA_DIR WORK_DIR
set -eu
B=$1 S=$2 D=$3
rm -rf "$D"
mkdir -p "$D"
cd "$D"
run() { echo "+ $*"; "$@"; }
run "$B" keygen --dim 3 --classes 3 --batch 64 --allow-insecure --threads 2 --preset INSECURE-boot-n12-dense \
  --secret client.key --eval server.keys --json > keygen.json
cat keygen.json
grep -q '"folded":1' keygen.json || { echo "keygen did not fold this layout"; exit 1; }
grep -q '"bootstrap_logslots":8' keygen.json || { echo "keygen: not 2^8 bootstrapping slots"; exit 1; }
for r in train val test; do
  L=""
  [ $r = test ] || L="--labels $S/fold.$r.labels.npy"
  run "$B" encrypt --allow-insecure --keys client.key --role $r --features "$S/fold.$r.features.npy" $L --scaler scaler.bt \
    --out $r.bt --seed 1
done
T="--keys server.keys --train train.bt --val val.bt --workdir work --epochs 2 --lr 1 --momentum 0.5 --threads 2"
rounds=0
while :; do
  rc=0
  run "$B" train --allow-insecure $T || rc=$?
  [ $rc -eq 0 ] && break
  [ $rc -eq 3 ] || { echo "train failed with status $rc"; exit 1; }
  rounds=$((rounds + 1))
  [ $rounds -le 2 ] || { echo "train keeps waiting"; exit 1; }
  run "$B" decide --allow-insecure --keys client.key --workdir work --epochs 2 --patience 3
done
run "$B" decrypt --allow-insecure --keys client.key --model work/model-002.bt --scaler scaler.bt --out head.bt
acc=$(run "$B" evaluate --model head.bt --features "$S/fold.test.features.npy" \
  --labels "$S/fold.test.labels.npy" --json | sed -n 's/.*"accuracy":\([0-9.]*\).*/\1/p')
echo "test accuracy $acc"
awk -v a="$acc" 'BEGIN { exit !(a >= 0.75) }' || { echo "the folded model learnt too little ($acc)"; exit 1; }
run "$B" predict --model head.bt --features "$S/fold.test.features.npy" --out predict.npy
run "$B" infer --allow-insecure --keys server.keys --model work/model-002.bt --data test.bt --out logits.bt --threads 2
run "$B" decrypt --allow-insecure --keys client.key --logits logits.bt --out logits.npy --predictions infer.npy
cmp predict.npy infer.npy
echo "folded: ok"
