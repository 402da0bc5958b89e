"""Everything a training cell runs: every file here can change a number.

The study's grids declare this folder as one dependency of each cell (grids/*/dvc.yaml), beside the
cell's own variant module (stages/variants/<bn>.py), so any edit here re-keys every cached cell,
and an edit anywhere else (statistics, tables, figures, answer wording: stages/analysis and
stages/grids) never does. Keep here only what a cell or the `train` stage executes.

This file runs before any stage imports TensorFlow, JAX or PyTorch, which makes it the one place
for settings that they read only once, at start-up. A value already in the environment wins.
"""

import os

from stages.trainer import notices

# TensorFlow turns its oneDNN CPU kernels on by default only on CPUs with AVX-512 VNNI/BF16 or
# AMX. On the AVX2-only 2-core machine of bench/train_speed.py they made a training step about
# 3x faster (with the fused BatchNorm kernel), so we ask for them everywhere. GPUs are unaffected.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

# Without an NVIDIA GPU, TensorFlow's INFO lines (CPU instruction advice and the like) are noise
# in every stage's log; warnings and errors still show, and an explicit setting wins. The lines
# TensorFlow prints before its logging starts obey no setting: notices.install filters those.
if not os.path.exists("/dev/nvidiactl"):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
    notices.install()
# GPU memory on demand instead of (nearly) all of it at start-up, so that several runs, such as
# the study's cells, can share one GPU: TensorFlow's memory growth, and JAX's equivalent.
os.environ.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
