#!/usr/bin/env bash
# The default od_meta job on a fresh machine: set up ./.venv, generate the
# embedded digits dataset (once), train the default SSD config with
# model_main.py (evaluating the final checkpoint with COCO metrics).
#
#   bash scripts/default_job.sh [MODEL_DIR]      (default runs/ssd_mobilenet_v2_digits)
#
# A rerun with the same MODEL_DIR resumes from its newest checkpoint.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
PY=.venv/bin/python
CONFIG=configs/ssd_mobilenet_v2_digits.config
MODEL_DIR="${1:-runs/ssd_mobilenet_v2_digits}"
if [ ! -f data/digits/train.tfrecord ]; then
  "$PY" scripts/create_digits_dataset.py --output_dir=data/digits
fi
"$PY" scripts/model_main.py --pipeline_config_path="$CONFIG" \
  --model_dir="$MODEL_DIR" --alsologtostderr=false
