#!/usr/bin/env bash
# The default od_meta job on a fresh machine: set up ./.venv, generate the
# embedded digits dataset (once), train the default SSD config with
# model_main.py (which evaluates the final checkpoint with COCO metrics), then
# export the trained model as a SavedModel for TF Serving.
#
#   bash scripts/default_job.sh [MODEL_DIR]      (default runs/ssd_mobilenet_v2_digits)
#
# A rerun with the same MODEL_DIR resumes from its newest checkpoint; an
# existing MODEL_DIR/exported is kept (never overwritten).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
PY=.venv/bin/python
CONFIG=configs/ssd_mobilenet_v2_digits.config
MODEL_DIR="${1:-runs/ssd_mobilenet_v2_digits}"
EXPORT_DIR="$MODEL_DIR/exported"
if [ ! -f data/digits/train.tfrecord ]; then
  "$PY" scripts/create_digits_dataset.py --output_dir=data/digits
fi
"$PY" scripts/model_main.py --pipeline_config_path="$CONFIG" \
  --model_dir="$MODEL_DIR" --alsologtostderr=false
if [ -e "$EXPORT_DIR" ]; then
  echo "$EXPORT_DIR exists; not overwriting it. Re-export with:"
  echo "  $PY scripts/exporter_main.py --input_type=image_tensor" \
       "--pipeline_config_path=$MODEL_DIR/pipeline.config" \
       "--trained_checkpoint_dir=$MODEL_DIR --output_directory=<new dir>"
else
  "$PY" scripts/exporter_main.py --input_type=image_tensor \
    --pipeline_config_path="$MODEL_DIR/pipeline.config" \
    --trained_checkpoint_dir="$MODEL_DIR" --output_directory="$EXPORT_DIR" \
    --alsologtostderr=false
  echo "Exported SavedModel: $EXPORT_DIR/saved_model"
fi
