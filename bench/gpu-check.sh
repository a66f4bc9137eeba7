#!/usr/bin/env bash
# GPU check: our train step on CUDA and WebGPU against the seed's PyTorch on the same GPU
# (`python3 … --device cuda`). For CUDA: installs the provider from bench/gpu-bundle/cuda-provider.tgz
# (`ort-dann install-cuda --from`), finds the CUDA 13 libraries inside PyTorch's nvidia wheels,
# prints node placement, checks that one CUDA train step agrees with the CPU step (loss and every
# gradient, bench/lib/ep-parity.ts, CPU fallback disabled when the graph allows), then the
# train-step bench's JSON lines (128 px 16+16, 256 px 8+8, 256 px 64+64); then, in the time left,
# the same on that machine's CPU against PyTorch on its CPU (all cores). About 5 minutes at most,
# no network: Node, the node_modules it needs and a Vulkan loader come from
# bench/gpu-bundle/runtime.tar.xz, both bundles built by bench/gpu-prepare.sh (each < 64 MiB).
# Usage: bench/gpu-check.sh [--ep "webgpu cuda cpu"] [train-step options, e.g. --steps 10]
# The full log goes to $OUT/gpu-check.log when OUT is set, else bench/results/gpu-check.log.
set -uo pipefail
cd "$(dirname "$0")/.."
eps="cuda webgpu cpu"
if [ "${1:-}" = --ep ]; then eps=$2; shift 2; fi
logdir=${OUT:-bench/results}
mkdir -p "$logdir"
log=$logdir/gpu-check.log
: > "$log"
say() { echo "# $*" | tee -a "$log"; }
work=$(mktemp -d)
made_link=
cleanup() { [ -n "$made_link" ] && rm -f node_modules; rm -rf "$work"; }
trap cleanup EXIT

# The runtime. python3 unpacks it because the GPU machine has Python for the peer but maybe no xz.
python3 - "$work" <<'EOF' || { say "cannot unpack bench/gpu-bundle/runtime.tar.xz; run bench/gpu-prepare.sh and carry bench/gpu-bundle"; exit 1; }
import sys, tarfile
with tarfile.open('bench/gpu-bundle/runtime.tar.xz') as t:
    t.extractall(sys.argv[1], **({'filter': 'tar'} if hasattr(tarfile, 'tar_filter') else {}))
EOF
node=$work/bin/node
# The device copy of the tree has no node_modules (ignored); a local checkout keeps its own.
if [ ! -e node_modules ]; then ln -s "$work/node_modules" node_modules && made_link=1; fi
say "node $("$node" --version), $(nproc) CPUs, $(uname -r)"
command -v nvidia-smi >/dev/null && say "GPU: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | head -1)"
say "python3: $(python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())' 2>&1 | tail -1)"

# CUDA: the provider from the bundle, and the CUDA 13 libraries it links from PyTorch's nvidia wheels.
if [ -f bench/gpu-bundle/cuda-provider.tgz ]; then
  "$node" bin/ort-dann.js install-cuda --from bench/gpu-bundle/cuda-provider.tgz --no-probe 2>&1 | tee -a "$log" | sed 's/^/# /'
fi
nvlibs=$(python3 -c 'import glob, os, nvidia; print(":".join(sorted(d for p in nvidia.__path__ for d in glob.glob(os.path.join(p, "*", "lib")))))' 2>/dev/null)
if [ -n "$nvlibs" ]; then
  export LD_LIBRARY_PATH="$nvlibs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  say "CUDA libraries: PyTorch's nvidia wheels ($(echo "$nvlibs" | tr ':' '\n' | wc -l) folders)"
else
  say "CUDA libraries: none found in PyTorch's nvidia wheels; relying on the system loader"
fi

# Vulkan for WebGPU (Dawn): the system loader if there is one, else ours; and an ICD for the NVIDIA
# driver — when none is registered but the driver's Vulkan library is mounted, register it ourselves.
ldconfig=$(command -v ldconfig || echo /sbin/ldconfig)
# (grep without -q reads to the end: an early exit would fail the pipe under pipefail.)
if "$ldconfig" -p 2>/dev/null | grep 'libvulkan\.so\.1 ' >/dev/null; then
  say "Vulkan loader: system"
else
  export LD_LIBRARY_PATH="$work/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  say "Vulkan loader: bundled (libvulkan1 from Debian)"
fi
icds=$(ls /etc/vulkan/icd.d/*.json /usr/share/vulkan/icd.d/*.json /usr/local/share/vulkan/icd.d/*.json 2>/dev/null | tr '\n' ' ')
say "Vulkan ICDs: ${icds:-none}"
if [ -z "$icds" ] || ! grep -qs nvidia $icds; then
  glx=$("$ldconfig" -p 2>/dev/null | awk '/libGLX_nvidia\.so\.0 /{print $NF; exit}')
  for d in /usr/lib/x86_64-linux-gnu /usr/lib64 /usr/local/nvidia/lib64 /usr/lib; do
    [ -z "$glx" ] && [ -e "$d/libGLX_nvidia.so.0" ] && glx=$d/libGLX_nvidia.so.0
  done
  if [ -n "$glx" ]; then
    printf '{"file_format_version": "1.0.0", "ICD": {"library_path": "%s", "api_version": "1.3"}}\n' "$glx" > "$work/nvidia_icd.json"
    export VK_ICD_FILENAMES=$work/nvidia_icd.json VK_DRIVER_FILES=$work/nvidia_icd.json
    say "Vulkan ICD: registered $glx"
  else
    say "Vulkan ICD: no NVIDIA Vulkan driver (libGLX_nvidia.so.0) found; WebGPU will likely find no adapter"
  fi
fi

# Artifacts are built afresh in the scratch folder: a warm machine may keep an older build in the tree.
bench=("$node" --import tsx bench/index.ts train-step --json --peer torch --python "$(command -v python3)" --artifacts-root "$work/artifacts")
results=$work/results.jsonl
: > "$results"
for ep in $eps; do
  if [ "$ep" = cuda ] && ! ls node_modules/onnxruntime-node/bin/napi-v6/linux/x64/libonnxruntime_providers_cuda.so >/dev/null 2>&1; then
    say "cuda: skipped, onnxruntime-node's CUDA provider files are not installed (ONNXRUNTIME_NODE_INSTALL=cuda12 npm ci on a connected machine)"
    continue
  fi
  left=$((290 - SECONDS))
  if [ "$left" -lt 60 ]; then say "$ep: skipped, the 5-minute budget is spent"; continue; fi
  if [ "$ep" != cpu ]; then
    # Which nodes the provider takes (the rest fall back to the CPU), and whether it starts at all.
    say "$ep placement of training_model.onnx (128 px):"
    if ! timeout 60 "$node" --import tsx bench/lib/placement.ts "$ep" 128 "$work/artifacts" 2>&1 | tee -a "$log" | sed 's/^/#   /'; then
      say "$ep: the provider does not start here; skipping its bench"
      continue
    fi
  fi
  if [ "$ep" != cpu ]; then
    say "$ep: one train step against the CPU step (128 px):"
    timeout 90 "$node" --import tsx bench/lib/ep-parity.ts "$ep" 128 "$work/artifacts" 2>>"$log" | tee -a "$results" "$log"
  fi
  left=$((290 - SECONDS))
  say "$ep: train-step bench vs torch ($left s left)"
  sizes=()
  [ "$ep" = cpu ] || sizes=(--image-size 128 --batch 16+16 --image-size 256 --batch 8+8 --image-size 256 --batch 64+64)
  timeout "$left" "${bench[@]}" --ep "$ep" "${sizes[@]}" "$@" 2>>"$log" | tee -a "$results" "$log"
  status=${PIPESTATUS[0]}
  [ "$status" = 0 ] || { say "$ep: bench failed (status $status); last lines of $log:"; tail -n 12 "$log" | sed 's/^/#   /'; }
done
say "done in $SECONDS s; JSON lines:"
cat "$results"
