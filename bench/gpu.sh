#!/usr/bin/env bash
# One GPU, under 8 minutes, no Hub access; prints one JSON object:
#   dpo:   bf16 DPO steps on a random-initialised ~1.2B Llama (Llama-3.2-1B's shape) at sequence
#          length 2048 (1024 prompt + 1024 response tokens), preftune vs TRL 1.16, each side in its
#          own process: tokens/s, MFU (against the GPU's dense bf16 peak, looked up from its name
#          in bench/common.py and printed), peak max_memory_allocated, the ratio vs TRL;
#   qlora: a 3-step QLoRA smoke run of `preftune train` (when bitsandbytes supports the GPU);
#   fsdp:  a 3-step 2-process FSDP smoke run (only when two GPUs are visible).
# Targets: MFU >= 40% on an H100/H200-class GPU, speedup vs TRL >= 1.5x.
#   bash bench/gpu.sh > gpu.json
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
if ! "$PYTHON" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
  echo "bench/gpu.sh: no CUDA device is visible to $PYTHON (torch.cuda.is_available() is False)" >&2
  exit 2
fi
gpus=$("$PYTHON" -c "import torch; print(torch.cuda.device_count())")
dpo=$("$PYTHON" bench/dpo_vs_trl.py --device cuda --dtype bf16 --model llama-1b-random \
  --shape 1024x1024 --cases hh-live --comparisons same --steps 4 --batch-size 4 --json)
qlora=$("$PYTHON" bench/gpu_smoke.py qlora)
if [ "$gpus" -ge 2 ]; then fsdp=$("$PYTHON" bench/gpu_smoke.py fsdp); else fsdp=null; fi
"$PYTHON" - "$dpo" "$qlora" "$fsdp" "$gpus" <<'PY'
import json, sys
dpo, qlora, fsdp, gpus = sys.argv[1:]
print(json.dumps({"gpus": int(gpus), "dpo": json.loads(dpo), "qlora": json.loads(qlora),
                  "fsdp": json.loads(fsdp)}))
PY
