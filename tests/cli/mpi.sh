#!/bin/sh
# `mpirun -np K blindtuner train` (docs/SCALING.md), K ranks oversubscribed
# on this machine:
# - one rank under mpirun writes the same model files, byte for byte, as the
#   command without mpirun (the same partitioning), and inference on two
#   ranks the same logits;
# - three ranks with validation and the client's answer (rank 2 holds no
#   validation batch), then the job's second epoch on two ranks;
# - a rank killed mid-epoch ends the whole job within a bounded time, and the
#   rerun resumes from the checkpoint and ends with the uninterrupted run's
#   model, byte for byte;
# - one process with --accumulate 2 trains the two ranks' model, byte for byte;
# - no other command starts under the launcher.
# usage: mpi.sh BLINDTUNER MPIEXEC FIXTURE_DIR
set -eu
B=$1 MPIEXEC=$2 F=$3
D=$F/mpi
rm -rf "$D"
mkdir -p "$D"
cd "$D"
T="--keys $F/server.keys --train $F/train.bt --lr 0.5 --momentum 0.7 --threads 1 --allow-insecure"
mpi() { n=$1; shift; echo "+ mpirun -np $n blindtuner $*"; "$MPIEXEC" -np "$n" "$B" "$@"; }

# only the commands that run on ranks start under the launcher
rc=0
"$MPIEXEC" -np 2 "$B" keygen --help > keygen.log 2>&1 || rc=$?
[ $rc -ne 0 ] && grep -q "only train, infer and bench train run on ranks" keygen.log || { echo "keygen ran under mpirun"; exit 1; }

echo "+ blindtuner train (one process)"
"$B" train $T --epochs 1 --workdir one
mpi 1 train $T --epochs 1 --workdir k1
cmp one/model-001.bt k1/model-001.bt
# inference split over two ranks: the logits one process writes, byte for byte
I="--keys $F/server.keys --model one/model-001.bt --data $F/test.bt --threads 1 --allow-insecure"
"$B" infer $I --out one.logits
mpi 2 infer $I --out k2.logits
cmp one.logits k2.logits

# three ranks, validation (rank 2 holds no validation batch), the client's
# answer; the second epoch on two ranks: a job resumes with another K
rc=0
mpi 3 train $T --val "$F/val.bt" --epochs 2 --workdir k3 || rc=$?
[ $rc -eq 3 ] || { echo "train on 3 ranks: status $rc, 3 (waiting for the answer) expected"; exit 1; }
test -s k3/loss-001.bt
"$B" decide --allow-insecure --keys "$F/client.key" --workdir k3 --epochs 2 --patience 2
mpi 2 train $T --val "$F/val.bt" --epochs 2 --workdir k3 2>&1 | tee more.log
grep -q "resuming from k3/checkpoint.bt after epoch 1" more.log
grep -q "the client says continue after epoch 1" more.log
test -s k3/loss-002.bt
"$B" decrypt --allow-insecure --keys "$F/client.key" --model k3/model-002.bt --scaler "$F/scaler.bt" --out k3.head
"$B" evaluate --model k3.head --features "$F/te.features.npy" --labels "$F/te.labels.npy"

mpi 2 train $T --epochs 2 --workdir k2
# gradient accumulation: one process with 2 batches a step trains the two
# ranks' model, byte for byte
"$B" train $T --epochs 2 --accumulate 2 --workdir acc2 2>&1 | tee acc2.log
grep -q "2 batches a step, learning rate 0.5" acc2.log
cmp k2/model-002.bt acc2/model-002.bt

# rank 1 killed at its 3rd step (3 batches on two ranks: two steps an epoch,
# so epoch 2's first): every rank exits, non-zero, within a bounded time
start=$(date +%s)
rc=0
BT_TEST_KILL_AFTER_STEPS=3 BT_TEST_KILL_RANK=1 timeout 300 "$MPIEXEC" -np 2 "$B" train $T --epochs 2 --workdir killed || rc=$?
took=$(( $(date +%s) - start ))
[ $rc -ne 0 ] && [ $rc -ne 124 ] || { echo "the killed job exited with status $rc"; exit 1; }
echo "the job with a killed rank ended with status $rc after ${took} s"
"$B" inspect killed/checkpoint.bt | grep -q "after epoch 1" || { echo "checkpoint is not at epoch 1"; exit 1; }
[ ! -e killed/model-002.bt ] || { echo "model-002 exists after the kill"; exit 1; }
mpi 2 train $T --epochs 2 --workdir killed 2>&1 | tee resumed.log
grep -q "resuming from killed/checkpoint.bt after epoch 1" resumed.log
cmp k2/model-002.bt killed/model-002.bt

echo "mpi: ok"
