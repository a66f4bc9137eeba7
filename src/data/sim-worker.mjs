// Worker entry: plain JS so it starts under any launcher (node --import tsx, or bin/ort-dann.js, which
// registers tsx only in the main thread); it registers tsx here, then loads the TypeScript worker body.
import { register } from 'tsx/esm/api';

register();
await import('./sim-worker.ts');
