#!/usr/bin/env bash
# One-time set-up on a fresh Debian/Ubuntu machine: system GL libraries and a .venv.
# With --test, also what the tests use: Blender and espeak-ng (apt), the
# Khronos glTF-Validator (npm, into .cache/node) and Ray (the [ray] extra).
# Safe to run again: it installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

testing=false
for argument in "$@"; do
  case "$argument" in
    --test) testing=true ;;
    *) echo "setup: unknown option $argument (use --test)" >&2; exit 2 ;;
  esac
done

# EGL/GL libraries for headless rendering (pyrender on Mesa's software rasterizer).
packages=(libegl1 libegl-mesa0 libgl1 libgl1-mesa-dri libxrender1)
# Blender imports our GLB files in the tests (Debian's build needs numpy from
# apt); espeak-ng speaks the words the lip tests listen to.
$testing && packages+=(blender python3-numpy espeak-ng)
need=()
for package in "${packages[@]}"; do
  dpkg -s "$package" >/dev/null 2>&1 || need+=("$package")
done
if [ ${#need[@]} -gt 0 ] && command -v apt-get >/dev/null; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "setup: installing ${need[*]}" >&2
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${need[@]}"
fi

if $testing && [ ! -d .cache/node/node_modules/gltf-validator ]; then
  command -v npm >/dev/null || { echo "setup: --test needs node and npm" >&2; exit 1; }
  mkdir -p .cache/node
  npm install --prefix .cache/node --no-save --no-audit --no-fund --loglevel=error \
    gltf-validator@2.0.0-dev.3.10
fi

python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
# The CPU build of torch first: an unpinned torch pulls a multi-GB CUDA build.
.venv/bin/python -m pip install -q --disable-pip-version-check torch==2.13.0
extras=test
# The tests also start a Ray cluster on loopback (batch --ray).
"$testing" && extras=test,ray
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".[$extras]"
