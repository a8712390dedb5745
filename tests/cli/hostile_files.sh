#!/bin/sh
# The client's files against a hostile or careless environment: a secret
# bundle is never replaced by an output, a symlink planted at the temporary
# name is not written through, a FIFO given as input is refused without
# hanging, client commands run without core dumps, a second train on a locked
# exchange directory is refused, a pair of files interrupted by a crash is
# finished by the next load, and nothing is left half-written.
# usage: hostile_files.sh BLINDTUNER FIXTURE_DIR
set -eu
B=$1 F=$2
D=$F/hostile-files
rm -rf "$D"
mkdir -p "$D"
cd "$D"
umask 022 # so that the 0600 modes checked below come from the code, not from here
holder="" trainer=""
trap 'kill $holder $trainer 2> /dev/null || true' EXIT
fail() {
  echo "FAIL: $*"
  exit 1
}
# refused PATTERN COMMAND...: fails (not by a timeout) with PATTERN on stderr
refused() {
  pat=$1
  shift
  echo "+ $*"
  rc=0
  "$@" > out.txt 2> err.txt || rc=$?
  cat err.txt
  [ $rc -ne 0 ] || fail "accepted"
  [ $rc -ne 124 ] || fail "timed out"
  grep -q -- "$pat" err.txt || fail "the error does not say '$pat'"
}
K="--dim 128 --classes 5 --batch 32 --allow-insecure --threads 2 --preset INSECURE-boot-n12-dense"
cp "$F/client.key" mine.key
chmod 600 mine.key

# 1. A secret bundle is never replaced by an output, whatever the command.
refused "different files" "$B" keygen $K --secret a.key --eval a.key
ln -s a.key b.key # dangling: the same file once keygen writes a.key
refused "different files" "$B" keygen $K --secret a.key --eval b.key
[ ! -e a.key ] || fail "keygen wrote a.key"
refused "holds a secret bundle" "$B" keygen $K --secret new.key --eval mine.key
[ ! -e new.key ] || fail "keygen left half a key set (new.key)"
refused "holds a secret bundle" "$B" decrypt --allow-insecure --keys "$F/client.key" --logits "$F/test.bt" --out mine.key
refused "holds a secret bundle" "$B" decrypt --allow-insecure --keys "$F/client.key" --logits "$F/test.bt" \
  --out l.npy --predictions mine.key
refused "holds a secret bundle" "$B" predict --model nothing.bt --features "$F/te.features.npy" --out mine.key
refused "holds a secret bundle" "$B" encrypt --allow-insecure --keys "$F/client.key" --role test \
  --features "$F/te.features.npy" --scaler "$F/scaler.bt" --out mine.key
cmp mine.key "$F/client.key" || fail "mine.key was changed"
refused "different files" "$B" decrypt --allow-insecure --keys "$F/client.key" --logits "$F/test.bt" \
  --out same.npy --predictions ./same.npy

# 2. Inputs are regular files: a FIFO is refused at once, not waited on.
mkfifo fifo.npy fifo.key
refused "not a regular file" timeout 30 "$B" encrypt --allow-insecure --keys "$F/client.key" --role test \
  --features fifo.npy --scaler "$F/scaler.bt" --out x.bt
refused "not a regular file" timeout 30 "$B" encrypt --allow-insecure --keys fifo.key --role test \
  --features "$F/te.features.npy" --scaler "$F/scaler.bt" --out x.bt
refused "not a regular file" timeout 30 "$B" inspect fifo.key
refused "not a regular file" timeout 30 "$B" encrypt --allow-insecure --keys "$F/client.key" --role test \
  --features "$F/te.features.npy" --scaler . --out x.bt
[ ! -e x.bt ] || fail "x.bt written"

if [ "${BT_HOOKS:-1}" = 1 ]; then
# 3. A symlink planted at the temporary name (the test hook fixes the name the
#    first attempt takes) is neither followed nor replaced: the output is
#    written beside it, and the file it points at is untouched.
echo "victim" > victim.txt
ln -s victim.txt t.bt.tmp.planted
ln -s victim.txt k.key.tmp.planted
ln -s victim.txt k.keys.tmp.planted
BT_TEST_TEMP_SUFFIX=planted "$B" encrypt --allow-insecure --keys "$F/client.key" --role test \
  --features "$F/te.features.npy" --scaler "$F/scaler.bt" --out t.bt
BT_TEST_TEMP_SUFFIX=planted "$B" keygen $K --secret k.key --eval k.keys
[ "$(cat victim.txt)" = victim ] || fail "victim.txt was written through a planted symlink"
for f in t.bt k.key k.keys; do
  [ -f "$f" ] && [ ! -L "$f" ] || fail "$f is not a regular file"
  [ "$(readlink "$f.tmp.planted")" = victim.txt ] || fail "the planted $f.tmp.planted was replaced"
done
[ "$(stat -c %a k.key)" = 600 ] || fail "secret bundle mode $(stat -c %a k.key)"
"$B" inspect t.bt k.keys > /dev/null

# 4. Client commands run without core dumps (the hook reports the limit and
#    the dumpable flag as the command sees them).
ulimit -c unlimited 2> /dev/null || true # so that the check below can fail
BT_TEST_CORE_REPORT=$D/core.txt "$B" inspect "$F/client.key" > /dev/null
BT_TEST_CORE_REPORT=$D/core.txt "$B" decide --allow-insecure --keys "$F/client.key" --workdir nowhere > /dev/null 2>&1 || true
cat core.txt
[ "$(grep -c -E 'Max core file size +0 +0 ' core.txt)" -eq 2 ] || fail "core dumps are not off"
[ "$(grep -c 'dumpable 0$' core.txt)" -eq 2 ] || fail "the process is dumpable"
else
# 3-4 without BT_TEST_HOOKS: the build ignores the hooks' variables (no
# planted temporary name used, no core report written).  The core-dump
# settings themselves are checked by the util unit test in every build.
echo "victim" > victim.txt
ln -s victim.txt t.bt.tmp.planted
BT_TEST_TEMP_SUFFIX=planted "$B" encrypt --allow-insecure --keys "$F/client.key" --role test \
  --features "$F/te.features.npy" --scaler "$F/scaler.bt" --out t.bt
[ "$(readlink t.bt.tmp.planted)" = victim.txt ] && [ "$(cat victim.txt)" = victim ] || fail "the planted link was used"
BT_TEST_CORE_REPORT=$D/core.txt "$B" inspect "$F/client.key" > /dev/null
[ ! -e core.txt ] || fail "a build without BT_TEST_HOOKS wrote the core report"
rm t.bt.tmp.planted
fi

# 5. One train per exchange directory: a second one is refused while the
#    directory's lock is held.
mkdir work
flock work sh -c 'touch held; while [ -e held ]; do sleep 0.1; done' > /dev/null 2>&1 &
holder=$!
i=0
while [ ! -e held ]; do
  i=$((i + 1))
  [ $i -lt 100 ] || fail "the lock holder did not start"
  sleep 0.1
done
refused "in use by another process" timeout 60 "$B" train --allow-insecure --keys "$F/server.keys" \
  --train "$F/train.bt" --workdir work --epochs 1 --threads 2
rm held
wait $holder
holder=""
[ -z "$(ls -A work)" ] || fail "left in work/: $(ls -A work)"
# ... and a train that waits for the client's answer (--wait) lets go of the
# lock while it waits, so that decide can answer, then acts on it
cp "$F/client.key" w.key
( rc=0
  "$B" train --allow-insecure --keys "$F/server.keys" --train "$F/train.bt" --val "$F/val.bt" --workdir work \
    --epochs 2 --threads 2 --wait 300 > train.out 2> train.err || rc=$?
  echo $rc > train.rc ) &
trainer=$!
i=0
while [ ! -e work/loss-001.bt ] && [ ! -e train.rc ]; do
  i=$((i + 1))
  [ $i -lt 6000 ] || fail "no loss-001.bt after 10 minutes"
  sleep 0.1
done
[ ! -e train.rc ] || { cat train.err; fail "train ended before the answer to epoch 1"; }
# right away: train still holds the lock while it finishes the epoch's files
timeout 120 "$B" decide --allow-insecure --keys w.key --workdir work --epochs 1 # one epoch agreed: stop
wait $trainer
trainer=""
cat train.err
[ "$(cat train.rc)" = 0 ] || fail "train exited with $(cat train.rc)"
grep -q 'the client says stop after epoch 1' train.err || fail "train did not get the answer to epoch 1"
grep -q 'finished after epoch 1 (the client said stop)' train.out || fail "train did not finish"

if [ "${BT_HOOKS:-1}" = 1 ]; then
# 6. A crash between a pair's two renames (the test hook kills the process
#    there): the first file is new, the second old with a journal beside it;
#    the client's next load of the second finishes the pair.
cp "$F/scaler.bt" s.bt
cp "$F/train.bt" tr.bt
rc=0
BT_TEST_PAIR_CRASH=1 "$B" encrypt --allow-insecure --keys "$F/client.key" --role train --features "$F/va.features.npy" \
  --labels "$F/va.labels.npy" --scaler s.bt --out tr.bt --seed 1 2> /dev/null || rc=$?
[ $rc -ne 0 ] || fail "the crash hook did not stop encrypt"
! cmp -s tr.bt "$F/train.bt" || fail "the training set is not new"
cmp s.bt "$F/scaler.bt" || fail "the scaler was replaced before the training set"
[ -f s.bt.commit ] || fail "no journal beside the scaler"
"$B" encrypt --allow-insecure --keys "$F/client.key" --role test --features "$F/te.features.npy" --scaler s.bt --out t2.bt
[ ! -e s.bt.commit ] || fail "the journal is still there"
"$B" encrypt --allow-insecure --keys "$F/client.key" --role train --features "$F/va.features.npy" \
  --labels "$F/va.labels.npy" --scaler s2.bt --out tr2.bt --seed 1
cmp s.bt s2.bt || fail "the finished scaler is not the one fitted with the new training set"
rc=0
BT_TEST_PAIR_CRASH=1 "$B" keygen $K --secret k2.key --eval k2.keys > /dev/null 2>&1 || rc=$?
[ $rc -ne 0 ] || fail "the crash hook did not stop keygen"
[ -f k2.keys ] && [ ! -e k2.key ] && [ -f k2.key.commit ] || fail "not the state between the renames"
"$B" encrypt --allow-insecure --keys k2.key --role train --features "$F/va.features.npy" --labels "$F/va.labels.npy" \
  --scaler s3.bt --out t3.bt
[ -f k2.key ] && [ ! -e k2.key.commit ] || fail "loading the secret bundle did not finish keygen's pair"
[ "$(stat -c %a k2.key)" = 600 ] || fail "secret bundle mode $(stat -c %a k2.key)"
"$B" inspect k2.key k2.keys > /dev/null
else
# 6 without BT_TEST_HOOKS: the crash hook is ignored, encrypt writes both files
BT_TEST_PAIR_CRASH=1 "$B" encrypt --allow-insecure --keys "$F/client.key" --role train --features "$F/va.features.npy" \
  --labels "$F/va.labels.npy" --scaler s2.bt --out tr.bt --seed 1 || fail "encrypt stopped on an ignored hook"
[ -f s2.bt ] && [ ! -e s2.bt.commit ] || fail "the pair was not committed"
fi
# a journal that names another file is refused, and changes nothing
echo planted > x.tmp.0123456789ab
echo planted > victim.txt.tmp.0123456789ab
printf '%s\n%s\n%s\n%s\n' "$D/x.tmp.0123456789ab" "$D/x" "$D/victim.txt.tmp.0123456789ab" "$D/victim.txt" > s2.bt.commit
refused "not a commit journal" "$B" encrypt --allow-insecure --keys "$F/client.key" --role test \
  --features "$F/te.features.npy" --scaler s2.bt --out t4.bt
[ "$(cat victim.txt)" = victim ] && [ ! -e x ] || fail "a refused journal renamed something"
rm s2.bt.commit x.tmp.0123456789ab victim.txt.tmp.0123456789ab
# the first file of a pair named as the second's journal
refused "commit journal" "$B" keygen $K --secret k3.key --eval k3.key.commit
[ ! -e k3.key ] && [ ! -e k3.key.commit ] || fail "keygen wrote k3.key or k3.key.commit"

# 7. Nothing half-written: no temporary file other than the planted links.
left=$(find . -name '*.tmp.*' ! -name t.bt.tmp.planted ! -name k.key.tmp.planted ! -name k.keys.tmp.planted)
[ -z "$left" ] || fail "left behind: $left"
echo "hostile files: all refused or written safely"
