// Test-only preload (`node --import ./enospc-preload.mjs …`): every write to a file whose path contains
// $ORT_DANN_TEST_ENOSPC fails with ENOSPC, as on a full disk, so a subprocess can be tested against one.
// It patches fs/promises' open(), which the crash-safe writers (src/io/atomic.ts) use.
import fs from 'node:fs/promises';
import { syncBuiltinESMExports } from 'node:module';

const pattern = process.env.ORT_DANN_TEST_ENOSPC;
if (pattern) {
  const open = fs.open;
  fs.open = async function openWithFullDisk(path, flags, mode) {
    const handle = await open.call(this, path, flags, mode);
    if (!String(path).includes(pattern) || !/[wa+]/.test(String(flags ?? 'r'))) return handle;
    const full = async () => {
      throw Object.assign(new Error(`ENOSPC: no space left on device, write '${path}'`), { code: 'ENOSPC', errno: -28, syscall: 'write', path: String(path) });
    };
    handle.write = full;
    handle.writeFile = full;
    handle.appendFile = full;
    return handle;
  };
  syncBuiltinESMExports();
}
