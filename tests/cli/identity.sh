#!/bin/sh
# `blindtuner demo` and the separate client and server commands run one
# protocol: with the same seed and rows, and the client's randomness fixed
# by BT_INSECURE_TEST_SEED (INSECURE parameters only), they must produce
# the same decrypted model bit for bit (evaluate --tolerance 0).  The demo
# writes the rows it used (--save-features) and its decrypted model
# (--save-model); the commands then train on those rows, answering each
# epoch's loss with `decide`.
# usage: identity.sh BLINDTUNER DIR
set -eu
B=$1 D=$2
rm -rf "$D"
mkdir -p "$D"
cd "$D"
run() { echo "+ $*"; "$@"; }
export BT_INSECURE_TEST_SEED=identity-test
P="--preset INSECURE-boot-n12-dense --allow-insecure"
run "$B" demo $P --train 80 --val 24 --test 40 --batch 32 --epochs 2 --patience 5 --lr 0.4 --momentum 0.8 \
  --seed 5 --threads 2 --save-features . --save-model demo.head --json > demo.json
F=$(sed -n 's/^ *"features": *\([0-9]*\),*$/\1/p' demo.json)
BEST=$(sed -n 's/^ *"best_epoch": *\([0-9]*\),*$/\1/p' demo.json)
[ -n "$F" ] && [ -n "$BEST" ] || { echo "no features / best_epoch in the demo's JSON"; exit 1; }
run "$B" keygen $P --dim $((F - 1)) --classes 5 --batch 32 --threads 2 --secret client.key --eval server.keys
run "$B" encrypt --allow-insecure --keys client.key --role train --features train.features.npy --labels train.labels.npy \
  --scaler scaler.bt --out train.bt --seed 5
run "$B" encrypt --allow-insecure --keys client.key --role val --features val.features.npy --labels val.labels.npy \
  --scaler scaler.bt --out val.bt
T="--keys server.keys --train train.bt --val val.bt --workdir work --epochs 2 --lr 0.4 --momentum 0.8 --seed 5 --threads 2"
rc=0
run "$B" train --allow-insecure $T || rc=$?
[ $rc -eq 3 ] || { echo "train should wait for the answer to epoch 1 (exit 3), got $rc"; exit 1; }
run "$B" decide --allow-insecure --keys client.key --workdir work --epochs 2 --patience 5
run "$B" train --allow-insecure $T
run "$B" decide --allow-insecure --keys client.key --workdir work --epochs 2 --patience 5 --json > decide.json
grep -q "\"best_epoch\": *$BEST" decide.json || { echo "decide's best epoch differs from the demo's ($BEST)"; exit 1; }
run "$B" decrypt --allow-insecure --keys client.key --model work/model-00$BEST.bt --scaler scaler.bt --out files.head
run "$B" evaluate --model files.head --features test.features.npy --labels test.labels.npy \
  --reference demo.head --tolerance 0
echo "identity: ok (epoch $BEST, bit-identical decrypted models)"
