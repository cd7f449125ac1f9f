// `muster agent` through the real binary against a real plane: where its settings come from
// (flags, MUSTER_AGENT_* variables, a config file), its name as the plane shows it, and tokens
// of the wrong kind named before anything is dialled.
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { NodeView } from '../../supervisor/admin/wire-types.js';
import { startSecurityPlane, type SecurityPlane } from '../supervisor/security-plane.js';
import { MUSTER_BIN } from '../muster-process.js';


let plane: SecurityPlane;
let dir: string;
let agent: ChildProcess | undefined;

beforeAll(async () => {
  plane = await startSecurityPlane();
  dir = mkdtempSync(join(tmpdir(), 'muster-agent-cli-'));
});

afterAll(async () => {
  await plane.stop();
  rmSync(dir, { recursive: true, force: true });
});

afterEach(() => {
  agent?.kill('SIGKILL');
  agent = undefined;
});

/** The environment without the MUSTER_* variables of whoever runs the tests. */
function cleanEnv(env: Record<string, string>): Record<string, string> {
  const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('MUSTER_'))) as Record<string, string>;
  return { ...clean, ...env };
}

function muster(args: string[], env: Record<string, string> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(MUSTER_BIN, args, { cwd: dir, env: cleanEnv(env), timeout: 25_000 }, (err, stdout, stderr) => {
      resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : -1, stdout, stderr });
    });
  });
}

/** Starts `muster agent`; resolves with its node id once it has registered (its own log line says so). */
function startAgent(args: string[], env: Record<string, string>): Promise<string> {
  const child = spawn(MUSTER_BIN, ['agent', '--log-level', 'info', ...args], { cwd: dir, env: cleanEnv(env), stdio: ['ignore', 'pipe', 'inherit'] });
  agent = child;
  return new Promise((resolve, reject) => {
    let out = '';
    child.stdout.on('data', (chunk: Buffer) => {
      out += chunk.toString('utf8');
      const line = out.split('\n').find((l) => l.includes('"msg":"registered"'));
      if (line !== undefined) resolve((JSON.parse(line) as { node_id: string }).node_id);
    });
    child.on('exit', (code) => reject(new Error(`muster agent exited ${String(code)} before registering`)));
  });
}

async function nodeView(nodeId: string): Promise<NodeView | undefined> {
  const answer = await plane.http('GET', '/v1/nodes', await plane.apiToken('viewer'));
  return (answer.json as NodeView[]).find((n) => n.node_id === nodeId);
}

describe('muster agent settings', () => {
  it('takes MUSTER_AGENT_URL (comma-separated) and MUSTER_AGENT_TOKEN, not the API token in MUSTER_TOKEN, and shows --name', async () => {
    const nodeId = await startAgent(['--name', 'runner-a', '--work-dir', join(dir, 'a')], {
      // The first URL is the Unix socket of no plane: the agent moves on to the next.
      MUSTER_AGENT_URL: `unix://${join(dir, 'nobody.sock')},${plane.tcpUrl}`,
      MUSTER_AGENT_TOKEN: await plane.registrationToken(),
      MUSTER_TOKEN: await plane.apiToken('admin'),
    });
    expect(await nodeView(nodeId)).toMatchObject({ name: 'runner-a', state: 'ready' });
  });

  it('reads its settings from a JSON config file, flags over the file', async () => {
    const file = join(dir, 'agent.json');
    const settings = { url: [plane.tcpUrl], token: await plane.registrationToken(), name: 'from-file', workDir: join(dir, 'b'), tags: { pool: 'x' } };
    writeFileSync(file, JSON.stringify(settings));
    const nodeId = await startAgent(['--config', file, '--name', 'from-flag'], {});
    expect(await nodeView(nodeId)).toMatchObject({ name: 'from-flag' });
  });

  it('names a config file that is not valid JSON, with the line', async () => {
    const file = join(dir, 'bad.json');
    writeFileSync(file, '{\n  "url": "tcp://127.0.0.1:7420"\n  "token": "x"\n}\n');
    const run = await muster(['agent', '--config', file]);
    expect(run.code).toBe(1);
    expect(run.stderr).toBe(`muster: config file ${file}, line 3 column 3: not valid JSON (Expected ',' or '}' after property value)\n`);
  });

  it('offers the runner types of --runner-type (and runnerTypes in its file): a job selecting one runs on it', async () => {
    const file = join(dir, 'types.json');
    writeFileSync(file, JSON.stringify({ runnerTypes: ['linux'], jobTypes: ['command', 'script'] }));
    const nodeId = await startAgent(['--config', file, '--runner-type', 'macos', '--work-dir', join(dir, 'c')], {
      MUSTER_AGENT_URL: plane.tcpUrl,
      MUSTER_AGENT_TOKEN: await plane.registrationToken(),
    });
    const api = ['--api', plane.plane.httpUrl, '--token', await plane.apiToken('operator')];
    // The flag over the file: macos, not linux; the file's job types stand.
    const ran = await muster(['job', 'submit', ...api, '--wait', '--selector', 'runner_type=macos', '--selector', 'job_type=script', '--', 'true']);
    expect(ran.code, ran.stderr).toBe(0);
    const jobId = /^job (\S+)$/m.exec(ran.stderr)?.[1] ?? '';
    const job = await plane.http('GET', `/v1/jobs/${jobId}`, await plane.apiToken('viewer'));
    expect(job.json).toMatchObject({ state: 'Completed', node_id: nodeId });
  });

  it('refuses --tag runner_type=... (a selector\'s runner_type= asks for a runner type, never a tag) and names the flag', async () => {
    const run = await muster(['agent', '--url', plane.tcpUrl, '--token', await plane.registrationToken(), '--tag', 'runner_type=linux']);
    expect(run.code).toBe(1);
    expect(run.stderr).toBe("muster: --tag runner_type=linux: a job's selector runner_type= matches what the node offers, not its tags: use --runner-type linux\n");
  });

  it('says there is no token when only MUSTER_TOKEN is set', async () => {
    const run = await muster(['agent', '--url', plane.tcpUrl], { MUSTER_TOKEN: await plane.apiToken('admin') });
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/^muster: no registration token: pass --token or set MUSTER_AGENT_TOKEN[^\n]*\n$/);
  });
});

describe('muster agent --metrics', () => {
  it('serves the agent\'s Prometheus metrics at the address given (port 0: the one it logs)', async () => {
    const child = spawn(MUSTER_BIN, ['agent', '--log-level', 'info', '--metrics', '127.0.0.1:0', '--work-dir', join(dir, 'm')], {
      cwd: dir,
      env: cleanEnv({ MUSTER_AGENT_URL: plane.tcpUrl, MUSTER_AGENT_TOKEN: await plane.registrationToken() }),
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    agent = child;
    const lines: Record<string, unknown>[] = [];
    const seen = (msg: string): Promise<Record<string, unknown>> =>
      new Promise((resolve, reject) => {
        const look = (): boolean => {
          const line = lines.find((l) => l.msg === msg);
          if (line !== undefined) resolve(line);
          return line !== undefined;
        };
        if (look()) return;
        child.stdout.on('data', look);
        child.once('exit', (code) => reject(new Error(`muster agent exited ${String(code)} before logging "${msg}"`)));
      });
    let out = '';
    child.stdout.on('data', (chunk: Buffer) => {
      out += chunk.toString('utf8');
      const complete = out.split('\n');
      out = complete.pop()!;
      for (const line of complete) if (line.startsWith('{')) lines.push(JSON.parse(line) as Record<string, unknown>);
    });
    const started = await seen('agent started');
    await seen('registered');
    const url = started.metrics as string;
    expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    const text = await (await fetch(`${url}/metrics`)).text();
    expect(text).toContain('muster_agent_connection_state{state="registered"} 1');
    expect(text).toContain('# TYPE process_cpu_user_seconds_total counter');
  });

  it('refuses an address that is not HOST:PORT', async () => {
    const run = await muster(['agent', '--url', plane.tcpUrl, '--token', await plane.registrationToken(), '--metrics', '9464']);
    expect(run.code).toBe(1);
    expect(run.stderr).toBe('muster: expected HOST:PORT (e.g. 127.0.0.1:9464), got "9464"\n');
  });
});

describe('tokens of the wrong kind', () => {
  it('the agent names an API token', async () => {
    const run = await muster(['agent', '--url', plane.tcpUrl, '--token', await plane.apiToken('admin')]);
    expect(run.code).toBe(1);
    expect(run.stderr).toBe('muster: this is an admin API token; the agent needs a node registration token (muster token create --role node)\n');
  });

  it('API commands name a node registration token', async () => {
    const run = await muster(['nodes', '--api', plane.plane.httpUrl], { MUSTER_TOKEN: await plane.registrationToken() });
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/^muster: this is a node registration token; API commands need a viewer, operator or admin token[^\n]*\n$/);
  });
});
