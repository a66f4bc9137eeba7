#!/usr/bin/env bash
# Builds bench/gpu-bundle/runtime.tar.xz (git-ignored): what bench/gpu-check.sh needs on a GPU machine
# that may have no Node.js, no npm registry and no Vulkan loader, within the device tool's 64 MiB:
#   bin/node            this machine's Node binary
#   node_modules/       only the packages the train-step bench loads (found by esbuild's metafile),
#                       onnxruntime-node with its linux-x64 binaries only (plus its CUDA provider
#                       files when installed here), tsx with esbuild's linux-x64 binary
#   lib/libvulkan.so.1  the Vulkan loader from Debian's libvulkan1 (apt-get download, not installed)
# Usage: bench/gpu-prepare.sh   (from anywhere; needs npm's node_modules, xz and apt-get)
set -euo pipefail
cd "$(dirname "$0")/.."
out=bench/gpu-bundle
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$out" "$stage/bin" "$stage/lib" "$stage/node_modules"

cp "$(command -v node)" "$stage/bin/node"

# Packages reachable from the train-step bench (its child, the placement probe and the Adam worker).
node_modules/.bin/esbuild bench/train-step.ts bench/lib/ours.ts bench/lib/placement.ts src/training/adam-worker.mjs \
  --bundle --platform=node --format=esm --external:'*.node' --log-level=error \
  --outdir="$stage/esbuild-out" --metafile="$stage/meta.json" >/dev/null
mapfile -t packages < <(node -e '
  const inputs = Object.keys(require(process.argv[1]).inputs);
  const names = new Set(inputs.flatMap((f) => f.match(/node_modules\/((@[^/]+\/)?[^/]+)/)?.[1] ?? []));
  names.add("@esbuild/linux-x64"); // the esbuild binary tsx runs, found at run time
  console.log([...names].sort().join("\n"));' "$stage/meta.json")
for p in "${packages[@]}"; do
  [ "$p" = onnxruntime-node ] && continue
  mkdir -p "$stage/node_modules/$(dirname "$p")"
  cp -r "node_modules/$p" "$stage/node_modules/$p"
done
ort=node_modules/onnxruntime-node
mkdir -p "$stage/$ort/bin/napi-v6/linux"
cp -r "$ort/package.json" "$ort/dist" "$stage/$ort/"
cp -r "$ort/bin/napi-v6/linux/x64" "$stage/$ort/bin/napi-v6/linux/"
find "$stage/node_modules" \( -name '*.map' -o -name '*.d.ts' -o -name '*.md' -o -name '.bin' \) -prune -exec rm -rf {} +

apt=$(mktemp -d)
chmod a+rwx "$apt" # apt-get download writes as the _apt user
(cd "$apt" && apt-get download libvulkan1 >/dev/null && dpkg-deb -x libvulkan1_*.deb x)
cp -L "$apt"/x/usr/lib/x86_64-linux-gnu/libvulkan.so.1 "$stage/lib/libvulkan.so.1"
rm -rf "$apt"

rm -rf "$stage/esbuild-out" "$stage/meta.json"
tar -C "$stage" -cf - . | xz -T0 -9 > "$out/runtime.tar.xz"
echo "$out/runtime.tar.xz: $(du -m "$out/runtime.tar.xz" | cut -f1) MiB (Node $(node --version), ${#packages[@]} packages, $(ls "$stage/$ort/bin/napi-v6/linux/x64" | tr '\n' ' '))"
