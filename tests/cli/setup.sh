#!/bin/sh
# Fixture of the pipeline tests: features of a few Fashion-MNIST images, a
# key set (INSECURE preset), the three encrypted sets, and a second key set
# and one of other parameters for the mismatch cases.
# usage: setup.sh BLINDTUNER DIR
set -eu
B=$1 D=$2
rm -rf "$D"
mkdir -p "$D"
cd "$D"
run() { echo "+ $*"; "$@"; }
run "$B" extract --quiet --threads 2 --data fashion-mnist:train --classes 5-9 --limit 96 --feature mean --out tr
run "$B" extract --quiet --threads 2 --data fashion-mnist:test --classes 5-9 --limit 32 --feature mean --out va
run "$B" extract --quiet --threads 2 --data fashion-mnist:test --classes 5-9 --limit 64 --feature mean --out te
K="--dim 128 --classes 5 --batch 32 --allow-insecure --threads 2"
run "$B" keygen $K --preset INSECURE-boot-n12-dense --secret client.key --eval server.keys
test "$(stat -c %a client.key)" = 600 || { echo "secret bundle mode is $(stat -c %a client.key)"; exit 1; }
run "$B" encrypt --allow-insecure --keys client.key --role train --features tr.features.npy --labels tr.labels.npy \
  --scaler scaler.bt --out train.bt --seed 1
run "$B" encrypt --allow-insecure --keys client.key --role val --features va.features.npy --labels va.labels.npy \
  --scaler scaler.bt --out val.bt
run "$B" encrypt --allow-insecure --keys client.key --role test --features te.features.npy --scaler scaler.bt --out test.bt
# another key set, same parameters and layout
run "$B" keygen $K --preset INSECURE-boot-n12-dense --secret other.key --eval other.keys
run "$B" encrypt --allow-insecure --keys other.key --role train --features tr.features.npy --labels tr.labels.npy \
  --scaler other-scaler.bt --out other-train.bt --seed 1
# a key set for other parameters
run "$B" keygen $K --preset INSECURE-boot-n12 --secret sparse.key --eval sparse.keys
run "$B" encrypt --allow-insecure --keys sparse.key --role train --features tr.features.npy --labels tr.labels.npy \
  --scaler sparse-scaler.bt --out sparse-train.bt --seed 1
rm -f sparse.keys other.keys # only their data is needed
run "$B" inspect client.key server.keys train.bt val.bt test.bt scaler.bt
# the evaluation bundle's keys: relinearisation full, the training
# rotations level-limited, and the breakdown adds up to the payload
"$B" inspect server.keys | grep -q "relinearisation   level 26 (full)" || { echo "FAIL: no full relinearisation key"; exit 1; }
"$B" inspect server.keys | grep -Eq "rotations? +level 12 " || { echo "FAIL: no level-limited rotation keys"; exit 1; }
"$B" inspect --json server.keys | awk '
  /"payload_bytes"/ { gsub(/[^0-9]/, ""); payload = $0 }
  /"(relin|conj|encaps)_bytes"|"bytes"/ { gsub(/[^0-9]/, ""); keys += $0 }
  END { if (keys <= 0 || keys >= payload || payload - keys > 4096) { print "FAIL: keys " keys " of payload " payload; exit 1 } }'
