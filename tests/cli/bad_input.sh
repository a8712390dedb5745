#!/bin/sh
# One bad-input case per run: the command must fail with status 1, a
# one-line error naming the problem, and leave no output file (not even a
# temporary one).
# usage: bad_input.sh BLINDTUNER FIXTURE_DIR CASE [DIM3_FEATURES]
set -eu
B=$1 F=$2 CASE=$3 DIM3=${4:-}
D=$F/bad-$CASE
rm -rf "$D"
mkdir -p "$D"
cd "$D"
TR="--threads 2 --epochs 1 --workdir work"
# expect PATTERN COMMAND...: fails, one line on stderr matching PATTERN, no outputs
expect() {
  pat=$1
  shift
  echo "+ $*"
  rc=0
  "$@" > out.txt 2> err.txt || rc=$?
  cat err.txt
  [ $rc -eq 1 ] || { echo "FAIL: exit status $rc, expected 1"; exit 1; }
  # the note that INSECURE test parameters are in use is not part of the error
  grep -v ': note: INSECURE test parameters' err.txt > err1.txt || true
  mv err1.txt err.txt
  [ "$(wc -l < err.txt)" -eq 1 ] || { echo "FAIL: the error is not one line"; exit 1; }
  grep -q -- "$pat" err.txt || { echo "FAIL: the error does not say '$pat'"; exit 1; }
  left=$(ls -A | grep -v -e '^out.txt$' -e '^err.txt$' -e '^work$' -e '^input' || true)
  [ -z "$left" ] || { echo "FAIL: left behind: $left"; exit 1; }
  if [ -d work ]; then
    [ -z "$(ls -A work)" ] || { echo "FAIL: left in work/: $(ls -A work)"; exit 1; }
  fi
}
case $CASE in
missing)
  expect "No such file" "$B" train --allow-insecure --keys "$F/server.keys" --train nothing.bt $TR
  expect "No such file" "$B" encrypt --allow-insecure --keys nothing.key --role test --features "$F/te.features.npy" \
    --scaler "$F/scaler.bt" --out x.bt
  expect "No such file" "$B" decrypt --allow-insecure --keys "$F/client.key" --model nothing.bt --scaler "$F/scaler.bt" --out h.bt ;;
truncated)
  head -c 100000 "$F/train.bt" > input-train.bt
  expect "truncated" "$B" train --allow-insecure --keys "$F/server.keys" --train input-train.bt $TR
  head -c 1000 "$F/client.key" > input.key
  expect "truncated" "$B" decide --allow-insecure --keys input.key --workdir . ;;
corrupted)
  cp "$F/val.bt" input-val.bt
  printf '\377' | dd of=input-val.bt bs=1 seek=5000 conv=notrunc 2>/dev/null
  expect "checksum mismatch" "$B" train --allow-insecure --keys "$F/server.keys" --train "$F/train.bt" --val input-val.bt $TR
  cp "$F/scaler.bt" input-scaler.bt
  printf '\000' | dd of=input-scaler.bt bs=1 seek=200 conv=notrunc 2>/dev/null
  expect "checksum mismatch" "$B" encrypt --allow-insecure --keys "$F/client.key" --role test --features "$F/te.features.npy" \
    --scaler input-scaler.bt --out x.bt ;;
wrong-kind)
  # the server handed the secret bundle, data where keys belong, a test set to train on
  expect "holds a secret bundle" "$B" train --allow-insecure --keys "$F/client.key" --train "$F/train.bt" $TR
  expect "holds an encrypted dataset, expected an evaluation-key bundle" "$B" train --allow-insecure --keys "$F/train.bt" \
    --train "$F/train.bt" $TR
  expect "not a labelled training set" "$B" train --allow-insecure --keys "$F/server.keys" --train "$F/test.bt" $TR
  expect "holds an evaluation-key bundle" "$B" decrypt --allow-insecure --keys "$F/server.keys" --logits "$F/test.bt" --out l.npy ;;
other-keys)
  # data and keys from two keygens
  expect "keys of another keygen" "$B" train --allow-insecure --keys "$F/server.keys" --train "$F/other-train.bt" $TR
  expect "keys of another keygen" "$B" encrypt --allow-insecure --keys "$F/other.key" --role val --features "$F/va.features.npy" \
    --labels "$F/va.labels.npy" --scaler "$F/scaler.bt" --out x.bt ;;
other-params)
  expect "other parameters" "$B" train --allow-insecure --keys "$F/server.keys" --train "$F/sparse-train.bt" $TR
  expect "other parameters" "$B" encrypt --allow-insecure --keys "$F/sparse.key" --role val --features "$F/va.features.npy" \
    --labels "$F/va.labels.npy" --scaler "$F/scaler.bt" --out x.bt ;;
other-shape)
  expect "features per row" "$B" encrypt --allow-insecure --keys "$F/client.key" --role test --features "$DIM3" \
    --scaler "$F/scaler.bt" --out x.bt
  expect "labels for" "$B" encrypt --allow-insecure --keys "$F/client.key" --role val --features "$F/va.features.npy" \
    --labels "$F/te.labels.npy" --scaler "$F/scaler.bt" --out x.bt ;;
whitening)
  # the whitening is the training set's: a val or test set cannot choose its own
  expect "apply to a training set" "$B" encrypt --allow-insecure --keys "$F/client.key" --role val \
    --features "$F/va.features.npy" --labels "$F/va.labels.npy" --scaler "$F/scaler.bt" --out x.bt --ridge 0.01
  expect "apply to a training set" "$B" encrypt --allow-insecure --keys "$F/client.key" --role test \
    --features "$F/te.features.npy" --scaler "$F/scaler.bt" --out x.bt --no-whiten ;;
*)
  echo "unknown case $CASE"
  exit 2 ;;
esac
echo "bad input ($CASE): ok"
