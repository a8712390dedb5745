#!/bin/sh
# Resume after the train process is killed mid-epoch (SIGKILL through the
# BT_TEST_KILL_AFTER_STEPS hook, 3 steps per epoch: killed at epoch 2's
# first step): the resumed run redoes epoch 2 from the epoch-1 checkpoint,
# and its model must equal an uninterrupted run's within CKKS precision
# (evaluation is deterministic, so in practice it is bit for bit the same).
# usage: resume.sh BLINDTUNER FIXTURE_DIR
set -eu
B=$1 F=$2
D=$F/resume
rm -rf "$D"
mkdir -p "$D"
cd "$D"
T="--keys $F/server.keys --train $F/train.bt --epochs 2 --lr 0.5 --momentum 0.7 --threads 2"
echo "+ uninterrupted run"
"$B" train --allow-insecure $T --workdir whole
echo "+ run killed at its 4th step"
rc=0
BT_TEST_KILL_AFTER_STEPS=4 "$B" train --allow-insecure $T --workdir killed || rc=$?
[ $rc -eq 137 ] || { echo "expected death by SIGKILL (137), got $rc"; exit 1; }
"$B" inspect killed/checkpoint.bt | grep -q "after epoch 1" || { echo "checkpoint is not at epoch 1"; exit 1; }
[ ! -e killed/model-002.bt ] || { echo "model-002 exists after the kill"; exit 1; }
echo "+ resumed run"
"$B" train --allow-insecure $T --workdir killed 2>&1 | tee resumed.log
grep -q "resuming from killed/checkpoint.bt after epoch 1" resumed.log
for w in whole killed; do
  "$B" decrypt --allow-insecure --keys "$F/client.key" --model $w/model-002.bt --scaler "$F/scaler.bt" --out $w.head
done
"$B" evaluate --model killed.head --features "$F/te.features.npy" --labels "$F/te.labels.npy" \
  --reference whole.head --tolerance 1e-6
echo "+ a softmax range outside 1-256 is refused; a wider one trains the same model within the approximations"
rc=0
"$B" train --allow-insecure $T --workdir wide --softmax-range 300 2>err.log || rc=$?
[ $rc -ne 0 ] && grep -q -- "--softmax-range" err.log || { echo "a softmax range of 300 was not refused"; cat err.log; exit 1; }
[ ! -e wide ] || { echo "a refused train left wide/ behind"; exit 1; }
"$B" train --allow-insecure $T --epochs 1 --workdir wide --softmax-range 128
for w in whole wide; do
  "$B" decrypt --allow-insecure --keys "$F/client.key" --model $w/model-001.bt --scaler "$F/scaler.bt" --out $w.1.head
done
"$B" evaluate --model wide.1.head --features "$F/te.features.npy" --labels "$F/te.labels.npy" \
  --reference whole.1.head --tolerance 3e-3
echo "resume: ok"
