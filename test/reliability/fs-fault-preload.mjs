// Test-only preload (`node --import ./fs-fault-preload.mjs …`): with ORT_DANN_TEST_FS_FAULT=CODE:PREFIX,
// every call that would create or write something at a path under PREFIX fails with CODE (EROFS,
// EACCES, …) the way Node reports it, as on a read-only mount or a folder the user may not write.
// Root can write anywhere and mounting needs privileges, so this is how the tests get such paths.
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import { syncBuiltinESMExports } from 'node:module';

const spec = process.env.ORT_DANN_TEST_FS_FAULT;
if (spec) {
  const [code, prefix] = [spec.slice(0, spec.indexOf(':')), spec.slice(spec.indexOf(':') + 1)];
  const errno = { EROFS: -30, EACCES: -13, ENOSPC: -28, EPERM: -1 }[code] ?? -5;
  const words = { EROFS: 'read-only file system', EACCES: 'permission denied', ENOSPC: 'no space left on device', EPERM: 'operation not permitted' }[code] ?? 'i/o error';
  const hit = (p) => typeof p === 'string' && (p === prefix || p.startsWith(`${prefix}/`));
  const fault = (syscall, p) => Object.assign(new Error(`${code}: ${words}, ${syscall} '${p}'`), { code, errno, syscall, path: p });
  const writes = (flags) => /[wa+x]/.test(String(flags ?? 'r')) || (typeof flags === 'number' && (flags & 3) !== 0);
  const exists = (p) => { try { fs.lstatSync(p); return true; } catch { return false; } };
  // [name, syscall, does this call write?]: as on a read-only mount, creating an existing folder
  // (mkdir -p) and removing what is not there fail as they would anyway, not with CODE.
  const calls = [
    ['mkdir', 'mkdir', (_, p) => !exists(p)], ['open', 'open', (f) => writes(f)], ['writeFile', 'open', () => true], ['appendFile', 'open', () => true],
    ['rename', 'rename', () => true], ['copyFile', 'copyfile', () => true],
    ['rm', 'rm', (_, p) => exists(p)], ['unlink', 'unlink', (_, p) => exists(p)], ['rmdir', 'rmdir', (_, p) => exists(p)],
  ];
  for (const [name, syscall, writing] of calls) {
    const sync = fs[`${name}Sync`];
    fs[`${name}Sync`] = function (p, ...rest) {
      if (hit(String(name === 'copyFile' || name === 'rename' ? rest[0] : p)) && writing(rest[0], String(p))) throw fault(syscall, String(name === 'copyFile' || name === 'rename' ? rest[0] : p));
      return sync.call(this, p, ...rest);
    };
    const cb = fs[name];
    fs[name] = function (p, ...rest) {
      const target = String(name === 'copyFile' || name === 'rename' ? rest[0] : p);
      if (hit(target) && writing(rest[0], String(p))) {
        const done = rest.findLast((r) => typeof r === 'function');
        process.nextTick(() => done(fault(syscall, target)));
        return undefined;
      }
      return cb.call(this, p, ...rest);
    };
    const promised = fsp[name];
    fsp[name] = async function (p, ...rest) {
      const target = String(name === 'copyFile' || name === 'rename' ? rest[0] : p);
      if (hit(target) && writing(rest[0], String(p))) throw fault(syscall, target);
      return promised.call(this, p, ...rest);
    };
  }
  syncBuiltinESMExports();
}
