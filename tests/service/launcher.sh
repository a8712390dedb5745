#!/bin/sh
# The service runs a job's training through a launcher: `serve --launcher
# "MPIEXEC -np 2"` starts every `train` as two MPI ranks (docs/SCALING.md),
# and the model it returns is, byte for byte, the one
# `mpirun -np 2 blindtuner train` writes through files.
# usage: launcher.sh BLINDTUNER MPIEXEC FIXTURE_DIR
set -eu
B=$1 MPIEXEC=$2 F=$3
. "$(dirname "$0")/lib.sh"
D=$F/service-launcher
scratch "$D"
start_server data --launcher "$MPIEXEC -np 2"
new_job
upload eval "$F/server.keys"
upload train "$F/train.bt"
echo "+ train: 1 epoch on two ranks"
expect 202 '"state"' POST "/v1/jobs/$ID/start" -H "$AUTH" -d '{"epochs": 1, "lr": 0.5, "momentum": 0.7, "seed": 3}'
wait_for 'd["state"] == "done"' 300
curl -s -f -H "$AUTH" -o model-001.bt "$U/v1/jobs/$ID/model/1"
grep -rq "rank 1 of 2" "data/jobs/$ID" || fail "the job's log does not show two ranks"
echo "+ the same on two ranks through files"
"$MPIEXEC" -np 2 "$B" train --allow-insecure --keys "$F/server.keys" --train "$F/train.bt" --workdir files \
  --epochs 1 --lr 0.5 --momentum 0.7 --seed 3 --threads 2 > /dev/null 2>&1
cmp model-001.bt files/model-001.bt || fail "the service's model differs from mpirun's through files"
echo "service launcher: the model of a two-rank job over HTTP is mpirun's through files"
