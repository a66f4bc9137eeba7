/**
 * The sweep agent, as wandb's (wandb/wandb_agent.py): register with CreateAgent, heartbeat every few
 * seconds with the live runs, and act on the controller's commands. Each run is a child process in its
 * own process group, so a crashing run cannot take the agent down. Failure counting and the kill delay
 * follow wandb's agent; where ort-dann differs (a graceful `exit`, signals to the whole process group)
 * docs/wandb-sweeps.md says why.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { UserError } from '../errors.ts';
import { writeFileAtomic } from '../io/atomic.ts';
import { sleep } from '../tracking/wandb/http.ts';
import { checkRunId } from '../tracking/wandb/settings.ts';
import { GraphqlStatusError, GraphqlUnreachableError, type AgentCommand, type SweepApi } from './api.ts';
import { expandCommand, macroValues, pythonJsonDumps, pythonStr, type RunArgs } from './command.ts';
import { dumpYaml, parseYaml, type YamlValue } from './yaml.ts';

export interface AgentOptions {
  api: SweepApi;
  entity: string | null;
  project: string;
  sweepId: string;
  /** Stop after this many runs (`--count`). */
  count?: number;
  /** The argv that runs this ort-dann's `train`, for sweeps without a `command`. */
  trainCommand: string[];
  env?: NodeJS.ProcessEnv;
  /** Seconds between heartbeats (wandb: 5). */
  pollMs?: number;
  log?: (line: string) => void;
}

/** The wandb agent's constants (FLAPPING_*, KILL_DELAY, MAX_INITIAL_FAILURES) and their WANDB_AGENT_* overrides. */
function limits(env: NodeJS.ProcessEnv) {
  const int = (name: string, fallback: number) => {
    const raw = env[name]?.trim();
    if (!raw) return fallback;
    const v = Number(raw);
    if (!Number.isInteger(v) || v < 0) throw new UserError(`${name}=${raw}: give a whole number`);
    return v;
  };
  return {
    killDelayMs: int('WANDB_AGENT_KILL_DELAY', 30) * 1000,
    maxInitialFailures: int('WANDB_AGENT_MAX_INITIAL_FAILURES', 5),
    flappingWindowMs: 60_000,
    flappingFailures: 3,
    flappingCheck: env.WANDB_AGENT_DISABLE_FLAPPING !== 'true',
  };
}

interface Child {
  runId: string;
  process: ChildProcess;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  done: boolean;
  result?: { code: number | null; signal: NodeJS.Signals | null };
  sigtermAt?: number;
}

/** Runs the agent until the controller says exit, `count` runs are done, the sweep is gone, runs keep failing, or Ctrl-C. Returns the exit code. */
export async function runAgent(o: AgentOptions): Promise<number> {
  const env = o.env ?? process.env;
  const log = o.log ?? ((line: string) => process.stdout.write(`ort-dann agent: ${line}\n`));
  const lim = limits(env);
  const pollMs = o.pollMs ?? 5000;
  const path = `${o.entity ? `${o.entity}/` : ''}${o.project}/${o.sweepId}`;
  const wandbDir = resolve(env.WANDB_DIR?.trim() || process.cwd());

  const described = (e: unknown, what: string): never => {
    if (e instanceof GraphqlStatusError) {
      if (e.status === 401) throw new UserError(`W&B rejected the API key (${e.message}); set WANDB_API_KEY to a valid key from https://wandb.ai/authorize`);
      if (e.status === 404) throw new UserError(`sweep ${path} not found (${e.message}); check the ENTITY/PROJECT/SWEEP_ID that ort-dann sweep printed`);
      if (e.status === 400) throw new UserError(`W&B refused ${what} for sweep ${path} (${e.message}); the sweep is not running: resume it in the W&B UI or create a new one with ort-dann sweep`);
      throw new UserError(`W&B refused ${what} for sweep ${path} (${e.message})`);
    }
    if (e instanceof GraphqlUnreachableError) throw new UserError(`cannot reach W&B for sweep ${path} (${e.message}); check the network and WANDB_BASE_URL, then start the agent again`);
    throw e;
  };

  const sweep = await o.api.sweep(o.entity, o.project, o.sweepId).catch((e) => described(e, 'the sweep query'));
  if (!sweep) throw new UserError(`sweep ${path} not found; check the ENTITY/PROJECT/SWEEP_ID that ort-dann sweep printed`);
  let sweepCommand: string[] | undefined;
  try {
    const config = parseYaml(sweep.config, { keepFloats: true }) as { command?: YamlValue } | null;
    if (Array.isArray(config?.command) && config.command.length > 0) sweepCommand = config.command.map((c) => pythonStr(c));
  } catch {
    log(`warning: cannot read the sweep's config; running ort-dann train with the parameters`);
  }
  const agentId = await o.api.createAgent(o.entity, o.project, o.sweepId).catch((e) => described(e, 'a new agent'));
  log(`agent ${agentId} on sweep ${path}${sweepCommand ? ` runs: ${sweepCommand.join(' ')}` : ''}`);

  const childEnv: NodeJS.ProcessEnv = { ...env, WANDB_SWEEP_ID: o.sweepId, WANDB_PROJECT: o.project, WANDB_DIR: wandbDir };
  if (o.entity) childEnv.WANDB_ENTITY = o.entity;
  const children = new Map<string, Child>();
  const started = Date.now();
  let finished = 0;
  let failed = 0;
  let exitCode = 0;
  let running = true;
  let sweepGone = false;
  let heartbeatFailures = 0;
  let stopping = false;

  const onSignal = () => {
    if (!stopping) log('stopping: the runs end after their current step (press Ctrl-C again to kill them)');
    else for (const c of children.values()) kill(c, 'SIGKILL');
    stopping = true;
    running = false;
    wake.abort();
  };
  let wake = new AbortController();
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  const startRun = async (cmd: AgentCommand) => {
    const runId = String(cmd.run_id ?? '');
    // The id names files and a run directory: W&B's own rule keeps it a single path component.
    try {
      checkRunId(runId, 'run_id');
    } catch {
      return log(`warning: a ${cmd.type} command with run_id ${JSON.stringify(runId)} was ignored`);
    }
    const args: RunArgs = (cmd.args ?? {}) as RunArgs;
    const dir = join(wandbDir, 'wandb', `sweep-${o.sweepId}`);
    const paramPath = join(dir, `config-${runId}.yaml`);
    const jsonPath = join(dir, `config-${runId}.json`);
    // The parameters as the wandb agent writes them; the run reads them from WANDB_SWEEP_PARAM_PATH.
    await mkdir(dir, { recursive: true });
    await writeFileAtomic(paramPath, `wandb_version: 1\n${Object.keys(args).length ? `\n${dumpYaml(args as YamlValue, { sortKeys: false })}` : ''}`);
    const macros = macroValues(args, cmd.program, jsonPath);
    const runEnv = { ...childEnv, WANDB_RUN_ID: runId, WANDB_SWEEP_PARAM_PATH: paramPath };
    if (sweepCommand?.includes('${args_json_file}')) await writeFileAtomic(jsonPath, pythonJsonDumps(Object.fromEntries(Object.entries(args).map(([k, v]) => [k, v.value]))));
    const argv = sweepCommand ? expandCommand(sweepCommand, macros, runEnv) : [...o.trainCommand, ...macros.args];
    log(`run ${runId}: ${Object.entries(args).map(([k, v]) => `${k}=${pythonStr(v.value)}`).join(' ') || '(no parameters)'}`);
    // Own process group (signals reach npx and the node under it alike); stdin closed, as the wandb agent does.
    const child = spawn(argv[0], argv.slice(1), { env: runEnv, detached: true, stdio: ['ignore', 'inherit', 'inherit'] });
    const entry: Child = {
      runId,
      process: child,
      done: false,
      exited: new Promise((done) => {
        child.on('error', (e) => {
          log(`run ${runId}: cannot start ${argv[0]} (${e.message})`);
          done({ code: 127, signal: null });
        });
        child.on('exit', (code, signal) => done({ code, signal }));
      }),
    };
    entry.exited.then((r) => {
      entry.done = true;
      entry.result = r;
      wake.abort();
    });
    children.set(runId, entry);
  };

  const stopRun = (cmd: AgentCommand) => {
    const c = children.get(String(cmd.run_id));
    if (!c || c.done) return log(`stop: run ${cmd.run_id} is not running here`);
    if (c.sigtermAt === undefined) {
      c.sigtermAt = Date.now();
      log(`run ${c.runId}: stop requested; it ends after its current step`);
      kill(c, 'SIGTERM');
    } else if (Date.now() > c.sigtermAt + lim.killDelayMs) {
      log(`run ${c.runId}: still running ${Math.round(lim.killDelayMs / 1000)} s after stop; killing it`);
      kill(c, 'SIGKILL');
    }
  };

  try {
    while (running) {
      // Finished runs: wandb counts an exit code > 0 as a failure (killed by a signal is not).
      for (const c of [...children.values()].filter((x) => x.done)) {
        children.delete(c.runId);
        const { code, signal } = c.result!;
        log(`run ${c.runId} ${code === 0 ? 'finished' : signal ? `ended by ${signal}` : `failed (exit code ${code})`}`);
        if (code !== null && code > 0) {
          failed++;
          if (lim.flappingCheck && Date.now() < started + lim.flappingWindowMs && failed >= lim.flappingFailures) {
            log(`${failed} runs failed in the first ${lim.flappingWindowMs / 1000} s; stopping (set WANDB_AGENT_DISABLE_FLAPPING=true to keep going)`);
            running = false;
            exitCode = 1;
          } else if (failed >= finished && failed >= lim.maxInitialFailures) {
            log(`${failed} runs failed in a row; stopping (WANDB_AGENT_MAX_INITIAL_FAILURES sets the limit)`);
            running = false;
            exitCode = 1;
          }
        }
        finished++;
      }
      if (!running) break;
      if (sweepGone && children.size === 0) break;
      if (o.count && finished >= o.count) {
        log(`${finished} run${finished === 1 ? '' : 's'} done (--count ${o.count})`);
        break;
      }
      let commands: AgentCommand[] = [];
      if (!sweepGone) {
        const runState = Object.fromEntries([...children.keys()].map((id) => [id, true]));
        try {
          commands = await o.api.heartbeat(agentId, runState);
          heartbeatFailures = 0;
        } catch (e) {
          if (e instanceof GraphqlStatusError && e.status === 404) {
            if (children.size === 0) throw new UserError(`sweep ${path} was deleted, or W&B no longer knows agent ${agentId} (${e.message})`);
            log(`sweep ${path} was deleted or the agent is unknown (${e.message}); the running runs finish, then the agent exits`);
            sweepGone = true;
          } else if (e instanceof GraphqlStatusError || e instanceof GraphqlUnreachableError || e instanceof SyntaxError) {
            heartbeatFailures++;
            log(`warning: ${e.message}; runs continue, next heartbeat in ${Math.round(backoffMs(heartbeatFailures) / 1000)} s`);
          } else throw e;
        }
      }
      for (const cmd of commands) {
        if (cmd.type === 'run' || cmd.type === 'resume') {
          if (stopping) continue;
          await startRun(cmd);
        } else if (cmd.type === 'stop') stopRun(cmd);
        else if (cmd.type === 'exit') {
          log('the sweep controller says exit');
          running = false;
        } else log(`warning: unknown command ${JSON.stringify(cmd.type)} ignored`);
      }
      if (!running) break;
      wake = new AbortController();
      if (stopping) break;
      await sleep(heartbeatFailures > 0 ? backoffMs(heartbeatFailures) : pollMs, wake.signal);
      if (stopping) break;
    }
  } finally {
    // Still listening meanwhile: a second Ctrl-C kills the runs instead of orphaning them.
    await endRuns(children, lim.killDelayMs, log);
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
  return exitCode;
}

/** wandb-core's retry wait: 2 s·2^n, capped at 60 s. */
function backoffMs(failures: number): number {
  return Math.min(60_000, 2000 * 2 ** Math.min(failures - 1, 10));
}

function kill(c: Child, signal: NodeJS.Signals): void {
  if (c.done || c.process.pid === undefined) return;
  try {
    process.kill(-c.process.pid, signal);
  } catch {
    // The group is already gone.
  }
}

/** The agent is leaving: live runs end gracefully (SIGTERM), and are killed if they outlast the kill delay. */
async function endRuns(children: Map<string, Child>, killDelayMs: number, log: (line: string) => void): Promise<void> {
  const live = [...children.values()].filter((c) => !c.done);
  if (live.length === 0) return;
  log(`ending ${live.length} run${live.length === 1 ? '' : 's'} (${live.map((c) => c.runId).join(', ')}): each stops after its current step`);
  for (const c of live) kill(c, 'SIGTERM');
  const timer = new Promise<'timeout'>((done) => setTimeout(() => done('timeout'), killDelayMs).unref());
  const all = Promise.all(live.map((c) => c.exited));
  if ((await Promise.race([all, timer])) === 'timeout') {
    log(`runs still running after ${Math.round(killDelayMs / 1000)} s; killing them`);
    for (const c of live) kill(c, 'SIGKILL');
    await all;
  }
}
