#!/usr/bin/env bash
# Issue 17's GPU figures in one run on one GPU, for a session with a GPU machine at hand (its time is short:
# one prepared run, then the machine goes back). Each step has its own time limit (550 s in all), so a slow
# one costs its own figures only; every step's output goes to OUT (default gpu-results/), one file each.
#   bash benchmarks/gpu.sh                                  # on the GPU machine, from the repository root
#   DEVICE=cpu ROWS=20000 TRAIN_ROWS=8000 bash benchmarks/gpu.sh   # the same steps on a CPU, to check them
# Python packages the machine lacks come as wheels in .whl/ (for Python 3.12: polars and polars-runtime-32,
# optuna, alembic, sqlalchemy, colorlog, mako; manylinux x86-64), installed first.
set -uo pipefail
OUT=${OUT:-gpu-results}
DEVICE=${DEVICE:-cuda}
ROWS=${ROWS:-1000000}  # synthetic impressions: the dataset (750,599 training rows)
TRAIN_ROWS=${TRAIN_ROWS:-750599}
PYTHON=${PYTHON:-python3}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 MSCBENCH_DATA_DIR=${MSCBENCH_DATA_DIR:-/tmp/mscbench-data}
export MSCBENCH_RUNS_DIR=${MSCBENCH_RUNS_DIR:-/tmp/mscbench-runs}
if compgen -G ".whl/*.whl" >/dev/null; then
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site:$PWD
fi

step() {  # step NAME SECONDS COMMAND...: the command's output in OUT/NAME.txt, cut at SECONDS
    local name=$1 limit=$2
    shift 2
    echo "== $name: $*" | tee "$OUT/$name.txt"
    timeout "$limit" "$@" >>"$OUT/$name.txt" 2>&1
    echo "== $name: exit $? after $SECONDS s in all" | tee -a "$OUT/$name.txt"
}

speed=(-m benchmarks.train_speed --device "$DEVICE" --rows "$ROWS" --train-rows "$TRAIN_ROWS" --repeats 1)
step machine 20 bash -c "nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; uptime;
    $PYTHON -c 'import torch; print(\"torch\", torch.__version__, \"cuda\", torch.version.cuda)'"
# samples/s, test AUC and peak memory per model, split resident on the device (the default, "auto")
step speed 170 "$PYTHON" "${speed[@]}" --batch-sizes 4096,16384 \
    --models dnn,deepfm,dcn,din,mmoe,ple,star,saml,midpg,pepnet,m2m
step host-path 50 "$PYTHON" "${speed[@]}" --batch-sizes 4096 --models dnn,star,saml --set data_on_device=never
step compile 150 "$PYTHON" "${speed[@]}" --batch-sizes 4096 --models dnn,star,saml,mmoe --set compile=true
# the issue's targets are taken through `mscbench train` at its defaults plus batch 4096
step prepare 60 "$PYTHON" -m mscbench prepare synthetic --rows "$ROWS"
step train-saml 50 "$PYTHON" -m mscbench train saml --set device="$DEVICE" --set batch_size=4096 --set epochs=1
step ddp 50 "$PYTHON" -m torch.distributed.run --nproc_per_node=1 -m mscbench train dnn \
    --set device="$DEVICE" --set batch_size=4096 --set epochs=1 --rerun
