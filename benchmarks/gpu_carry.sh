#!/usr/bin/env bash
# Assemble what travels with the GPU check to the GPU machine (which reaches no network) into
# git-ignored folders of this checkout, and check that all that travels stays under 64 MiB:
#   gpu-carry/faiss-gpu-sm90-bundle.tar.xz   faiss-gpu 1.15.1 for CUDA 13 (../shared/gpu/README.md)
#   gpu-carry/fashion-mnist/*.gz            Debian's dataset-fashion-mnist (~30 MB)
#   .whl/*.whl                              FastAPI, uvicorn, python-multipart and what they need
#                                           that the machine lacks (for serve's tests there)
# Usage: benchmarks/gpu_carry.sh [--no-wheels]   (from the repository root; prints the sizes)
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
SHARED=${SHARED_GPU:-$(cd .. && pwd)/shared/gpu}
[ -f "$SHARED/faiss-gpu-sm90-bundle.tar.xz" ] || SHARED=/work/shared/gpu
FMNIST=${FASHION_MNIST:-/usr/share/datasets/fashion-mnist}
LIMIT=$((64 * 1024 * 1024))  # what a run on the GPU machine takes along, code included
# The machine's Python (3.12) has anyio, h11, click, typing-extensions and annotated-doc.
WHEELS="fastapi==0.165.0 starlette==1.10.0 pydantic==2.14.4 pydantic-core==2.50.5
annotated-types==0.8.0 typing-inspection==0.4.5 uvicorn==0.54.0 python-multipart==0.0.34
opentelemetry-api==1.45.2"

mkdir -p gpu-carry/fashion-mnist
cp -u "$SHARED/faiss-gpu-sm90-bundle.tar.xz" gpu-carry/
cp -u "$FMNIST"/*-ubyte.gz gpu-carry/fashion-mnist/
if [ "${1:-}" != "--no-wheels" ]; then
  mkdir -p .whl
  # shellcheck disable=SC2086
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 \
    -d .whl $WHEELS
fi
for ignored in /gpu-carry/ /.whl/; do
  grep -qxF "$ignored" .gitignore || { echo "gpu_carry: $ignored is not in .gitignore" >&2; exit 1; }
done

# Tracked files and untracked ones git does not ignore travel, and the carried folders.
code=$( { git ls-files -z; git ls-files -z --others --exclude-standard; } | xargs -0 -r du -cb 2>/dev/null | awk 'END {print $1}')
carried=$(du -cb gpu-carry $( [ -d .whl ] && echo .whl ) | awk 'END {print $1}')
total=$((code + carried))
printf 'gpu_carry: code %.1f MiB + gpu-carry/ and .whl/ %.1f MiB = %.1f MiB of %d MiB\n' \
  "$(echo "$code / 1048576" | bc -l)" "$(echo "$carried / 1048576" | bc -l)" \
  "$(echo "$total / 1048576" | bc -l)" $((LIMIT / 1048576))
if [ "$total" -gt "$LIMIT" ]; then
  echo "gpu_carry: over the limit; run with --no-wheels, or carry less" >&2
  exit 1
fi
