import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { isUserError } from '../../src/errors.ts';
import { Reporter } from '../../src/tracking/reporter.ts';
import { appUrlFor, findApiKey, parseNetrc, resolveSettings, runUrlFor } from '../../src/tracking/wandb/settings.ts';
import { tempDir } from './helpers.ts';

const KEY_A = 'a'.repeat(40);
const KEY_B = 'b'.repeat(40);

test('netrc: machines, default, comments, quotes, macdef and any layout', () => {
  const text = [
    '# written by wandb login',
    'machine api.wandb.ai',
    '  login user',
    `  password ${KEY_A}`,
    'machine localhost:8080 login me password "with space\\"quote"  # trailing comment',
    'macdef init',
    'machine evil password nope',
    '',
    'machine other.host account acct login x password y',
    'default login anon password dflt',
  ].join('\n');
  assert.deepEqual(parseNetrc(text), [
    { machine: 'api.wandb.ai', login: 'user', password: KEY_A },
    { machine: 'localhost:8080', login: 'me', password: 'with space"quote' },
    { machine: 'other.host', account: 'acct', login: 'x', password: 'y' },
    { machine: null, login: 'anon', password: 'dflt' },
  ]);
});

test('the key comes from the option, then WANDB_API_KEY, then the netrc entry for the base URL host (with port)', async (t) => {
  const home = await tempDir(t);
  await writeFile(join(home, '.netrc'), `machine api.wandb.ai login user password ${KEY_A}\nmachine 127.0.0.1:8080 login user password ${KEY_B}\n`);
  const base = { homeDir: home, env: {} };
  assert.deepEqual(await findApiKey('https://api.wandb.ai', base), { key: KEY_A, source: `${join(home, '.netrc')} (machine api.wandb.ai)` });
  assert.equal((await findApiKey('http://127.0.0.1:8080', base))?.key, KEY_B);
  assert.equal(await findApiKey('http://127.0.0.1:9999', base), undefined, 'no entry for another port');
  assert.deepEqual(await findApiKey('https://api.wandb.ai', { ...base, env: { WANDB_API_KEY: ` ${KEY_B}\n` } }), { key: KEY_B, source: 'WANDB_API_KEY' });
  assert.equal((await findApiKey('https://api.wandb.ai', { ...base, apiKey: 'opt'.padEnd(40, 'x'), env: { WANDB_API_KEY: KEY_B } }))?.source, 'the apiKey option');
  const other = join(home, 'elsewhere');
  await writeFile(other, `default password ${KEY_B}\n`);
  assert.equal((await findApiKey('https://api.wandb.ai', { homeDir: home, env: { NETRC: other } }))?.key, KEY_B, '$NETRC wins');
});

test('settings: options over WANDB_* variables; mode follows the key; online without a key is a UserError', async (t) => {
  const home = await tempDir(t);
  const env = {
    WANDB_PROJECT: 'envproj', WANDB_ENTITY: 'envent', WANDB_NAME: 'envname', WANDB_TAGS: 'a, b,,c', WANDB_NOTES: 'n',
    WANDB_RUN_GROUP: 'g', WANDB_JOB_TYPE: 'train', WANDB_RUN_ID: 'envrun01', WANDB_BASE_URL: 'https://api.example.com/',
  };
  const s = await resolveSettings({ env, homeDir: home });
  assert.equal(s.mode, 'offline', 'no key: offline');
  assert.deepEqual(
    [s.project, s.entity, s.name, s.tags, s.notes, s.group, s.jobType, s.runId, s.baseUrl, s.appUrl],
    ['envproj', 'envent', 'envname', ['a', 'b', 'c'], 'n', 'g', 'train', 'envrun01', 'https://api.example.com', 'https://app.example.com'],
  );
  assert.equal(s.apiKey, undefined);
  const o = await resolveSettings({ env: { ...env, WANDB_API_KEY: KEY_A }, homeDir: home, project: 'flagproj', tags: ['x'], runId: 'flagrun1' });
  assert.deepEqual([o.mode, o.project, o.tags, o.runId, o.apiKey], ['online', 'flagproj', ['x'], 'flagrun1', KEY_A]);
  assert.equal((await resolveSettings({ env: { WANDB_API_KEY: KEY_A, WANDB_MODE: 'dryrun' }, homeDir: home })).mode, 'offline');
  const off = await resolveSettings({ env: { WANDB_API_KEY: KEY_A }, homeDir: home, mode: 'offline' });
  assert.equal(off.apiKey, undefined, 'offline never holds the key');
  assert.equal((await resolveSettings({ env: { WANDB_DISABLED: 'true' }, homeDir: home })).mode, 'disabled');
  assert.match((await resolveSettings({ env: {}, homeDir: home })).runId, /^[a-z0-9]{8}$/);
  assert.equal((await resolveSettings({ env: {}, homeDir: home })).project, 'uncategorized');

  const fails = async (input: Parameters<typeof resolveSettings>[0], pattern: RegExp) =>
    assert.rejects(resolveSettings({ homeDir: home, env: {}, ...input }), (e: Error) => isUserError(e) && pattern.test(e.message) && !e.message.includes('\n'));
  await fails({ mode: 'online' }, /--wandb online needs a W&B API key: set WANDB_API_KEY, or add "machine api\.wandb\.ai login user password <key>" to ~\/\.netrc/);
  await fails({ env: { WANDB_MODE: 'sometimes' } }, /WANDB_MODE=sometimes is not a W&B mode/);
  await fails({ project: 'a/b' }, /--wandb-project "a\/b" is not a valid W&B project name/);
  await fails({ runId: 'has space' }, /--wandb-run-id "has space" is not a valid W&B run id/);
  await fails({ env: { WANDB_BASE_URL: 'ftp://x' } }, /WANDB_BASE_URL "ftp:\/\/x" must be an http\(s\) URL/);
  await fails({ env: { WANDB_API_KEY: 'short-and-wrong' } }, /the W&B API key from WANDB_API_KEY is malformed/);
  await resolveSettings({ env: { WANDB_API_KEY: `local-${KEY_A}` }, homeDir: home });
});

test('run URLs follow the API host like the SDK derives them', () => {
  assert.equal(appUrlFor('https://api.wandb.ai', {}), 'https://wandb.ai');
  assert.equal(appUrlFor('https://api.corp.example', {}), 'https://app.corp.example');
  assert.equal(appUrlFor('http://localhost:8080', {}), 'http://localhost:8080');
  assert.equal(appUrlFor('https://api.wandb.ai', { WANDB_APP_URL: 'https://ui.example/' }), 'https://ui.example');
  assert.equal(runUrlFor('https://wandb.ai', 'my team', 'p', 'abc'), 'https://wandb.ai/my%20team/p/runs/abc');
});

test('the reporter scrubs the key and its Basic auth form from every message', () => {
  const said: string[] = [];
  const r = new Reporter({ info: (m) => said.push(m), warn: (m) => said.push(m) }, KEY_A);
  r.warn(`failed with ${KEY_A} and Basic ${Buffer.from(`api:${KEY_A}`).toString('base64')}`);
  assert.deepEqual(said, ['failed with *** and Basic ***']);
  assert.equal(r.warnOnce('k', 'once'), true);
  assert.equal(r.warnOnce('k', 'once'), false);
  assert.equal(said.length, 2);
});
