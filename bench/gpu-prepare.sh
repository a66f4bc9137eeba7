#!/usr/bin/env bash
# Builds what bench/gpu-check.sh needs on a GPU machine that may have no Node.js, no npm registry
# and no Vulkan loader, in two git-ignored files, each within the device tool's 64 MiB carry limit
# (carry them in two consecutive calls: a warm machine keeps the first):
# bench/gpu-bundle/runtime.tar.xz
#   bin/node            this machine's Node binary
#   node_modules/       only the packages the GPU check loads (found by esbuild's metafile),
#                       onnxruntime-node with its linux-x64 core binaries only, tsx with esbuild's
#                       linux-x64 binary
#   lib/libvulkan.so.1  the Vulkan loader from Debian's libvulkan1 (apt-get download, not installed)
# bench/gpu-bundle/cuda-provider.tgz
#   the npm registry's CUDA provider package for the installed ONNX Runtime (what `ort-dann
#   install-cuda` fetches), its cubins other than sm_90 (H100/H200) zeroed by bench/lib/strip-fatbin.ts;
#   gpu-check.sh installs it with `ort-dann install-cuda --from`.
# Usage: bench/gpu-prepare.sh   (from anywhere; needs npm's node_modules, the npm registry, xz and apt-get)
set -euo pipefail
cd "$(dirname "$0")/.."
out=bench/gpu-bundle
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$out" "$stage/bin" "$stage/lib" "$stage/node_modules"

cp "$(command -v node)" "$stage/bin/node"

# Packages reachable from the train-step bench (its child, the placement probe and the Adam worker).
node_modules/.bin/esbuild bench/train-step.ts bench/lib/ours.ts bench/lib/placement.ts bench/lib/ep-parity.ts src/cli/main.ts src/cli/install-cuda.ts src/training/adam-worker.mjs \
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
mkdir -p "$stage/$ort/bin/napi-v6/linux/x64"
cp "$ort/bin/napi-v6/linux/x64/libonnxruntime.so.1" "$ort/bin/napi-v6/linux/x64/onnxruntime_binding.node" "$stage/$ort/bin/napi-v6/linux/x64/"
find "$stage/node_modules" \( -name '*.map' -o -name '*.d.ts' -o -name '*.md' -o -name '.bin' \) -prune -exec rm -rf {} +

apt=$(mktemp -d)
chmod a+rwx "$apt" # apt-get download writes as the _apt user
(cd "$apt" && apt-get download libvulkan1 >/dev/null && dpkg-deb -x libvulkan1_*.deb x)
cp -L "$apt"/x/usr/lib/x86_64-linux-gnu/libvulkan.so.1 "$stage/lib/libvulkan.so.1"
rm -rf "$apt"

rm -rf "$stage/esbuild-out" "$stage/meta.json"
tar -C "$stage" -cf - . | xz -T0 -9 > "$out/runtime.tar.xz"
echo "$out/runtime.tar.xz: $(du -m "$out/runtime.tar.xz" | cut -f1) MiB (Node $(node --version), ${#packages[@]} packages, $(ls "$stage/$ort/bin/napi-v6/linux/x64" | tr '\n' ' '))"

# The CUDA provider: the registry package for this onnxruntime-node, stripped to sm_90.
tgz=$(node --import tsx --input-type=module -e "
  const m = await import('./src/io/cuda-provider.ts');
  const { tgz } = await m.downloadProviderPackage(process.env.npm_config_registry || 'https://registry.npmjs.org', m.installedOrt());
  console.log(tgz);")
cuda=$(mktemp -d)
tar -xzf "$tgz" -C "$cuda" package/README.md package/Plugins/Linux/x64/libonnxruntime_providers_shared.so package/Plugins/Linux/x64/libonnxruntime_providers_cuda.so
so=$cuda/package/Plugins/Linux/x64/libonnxruntime_providers_cuda.so
node --import tsx bench/lib/strip-fatbin.ts "$so" "$so" 90
tar -C "$cuda" -czf "$out/cuda-provider.tgz" package
rm -rf "$cuda"
echo "$out/cuda-provider.tgz: $(du -m "$out/cuda-provider.tgz" | cut -f1) MiB ($(basename "$tgz"), sm_90 only)"
