#!/usr/bin/env bash
# Several SAX training arms side by side on the device machine (issue 16): each arm is
# `device_check.py PACK train_full` with its own TrainConfig overrides and output folder, all started at once
# (the GPU has room for all; the CPU augmentation shares the machine's cores: give each arm its own "threads").
#
# Usage, from the repository root, on the device machine (PACK made here by `device_pack.py --full PACK`):
#   OUT=... bash benchmarks/device_arms.sh PACK SECONDS NAME='{"threads": 4}' NAME2='{"epochs": 48}' ...
# SECONDS bounds each arm (`timeout`), so that the call returns inside the device's command limit; an arm stopped
# there leaves its log and its latest weights. Everything lands in one archive, $OUT/arms.tgz (a device call brings
# back at most 8 files), beside each arm's log.
set -u
pack=$1 limit=$2
shift 2
export OMP_WAIT_POLICY=PASSIVE PYTHONUNBUFFERED=1  # device_check.py finds the package of this checkout itself
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
names=()
for arm in "$@"; do
  name=${arm%%=*} config=${arm#*=}
  names+=("$name" "$name.log")
  timeout "$limit" python3 benchmarks/device_check.py "$pack" train_full -v --out "$OUT/$name" \
    --train-config "$config" > "$OUT/$name.log" 2>&1 &
done
wait
for arm in "$@"; do
  name=${arm%%=*}
  echo "== $name: $(grep -c 'epoch' "$OUT/$name.log") epoch lines; last: $(grep 'epoch' "$OUT/$name.log" | tail -1)"
  grep '^== train_full' "$OUT/$name.log" | cut -c1-600
done
find "$OUT" -name '*.pt' -size +16M -delete  # none expected (1.2 MB each); the archive must come back
tar -czf "$OUT/arms.tgz" -C "$OUT" "${names[@]}"
ls -la "$OUT"
