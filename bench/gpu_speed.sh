#!/usr/bin/env bash
# bench/gpu_speed.py on a GPU machine that has PyTorch and/or JAX with CUDA but no TensorFlow,
# no Keras and no package index. Two steps:
#   here, where pip reaches an index:   bench/gpu_speed.sh download    (the wheels, into .whl/)
#   there, with .whl/ carried along:    bench/gpu_speed.sh [bench/gpu_speed.py options]
# Only what such machines lack travels (3.0 MiB): Keras; its dependencies namex, optree, packaging
# (Keras on PyTorch imports it) and typing_extensions (optree's; PyTorch has it, JAX does not); and
# ruamel.yaml, which reads params.yaml as DVC does. PyTorch and/or JAX, NumPy, h5py, ml-dtypes,
# rich, absl-py and PyYAML are expected there. tests/test_bench.py runs gpu_speed.py with only these.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
WHEELS=.whl
if [ "${1:-}" = download ]; then
  platforms=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64
             --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64)
  for wheel in keras==3.15.1 namex==0.1.0 optree==0.20.0 packaging==26.4 typing_extensions==4.16.0 \
               ruamel.yaml==0.19.1; do
    "$PYTHON" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
      --implementation cp "${platforms[@]}" -d "$WHEELS" "$wheel"
  done
  du -sh "$WHEELS"
  exit 0
fi
if [ -d "$WHEELS" ]; then
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site "$WHEELS"/*.whl
  export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONUNBUFFERED=1
exec "$PYTHON" bench/gpu_speed.py "$@"
