// `bin/muster` as a user runs it: a real child process, against an admin API served in this
// test process over a real socket (with an in-memory plane behind it).
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createLogger } from '../../observability/logger.js';
import { startAdminApi, type AdminApi } from '../../supervisor/admin/api-server.js';
import { loadConfig } from '../../supervisor/config.js';
import { loadSecret, secretFromDataDir } from '../../supervisor/tokens/secret.js';
import { TokenAuthority } from '../../supervisor/tokens/tokens.js';
import { FakePlaneApi } from '../supervisor/admin/fake-plane-api.js';
import { MUSTER_BIN } from '../muster-process.js';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs the CLI asynchronously: the API it talks to lives in this process's event loop. */
function muster(args: string[], env: Record<string, string> = {}): Promise<Run> {
  const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('MUSTER_')));
  return new Promise((resolve) => {
    execFile(MUSTER_BIN, args, { cwd: tmpdir(), env: { ...clean, ...env }, timeout: 25_000 }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof err.code === 'number' ? err.code : -1;
      resolve({ code, stdout, stderr });
    });
  });
}

function claims(jwt: string): Record<string, unknown> {
  const payload = jwt.split('.')[1] ?? '';
  return JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')) as Record<string, unknown>;
}

let dataDir: string;
let plane: FakePlaneApi;
let server: AdminApi;

beforeAll(async () => {
  dataDir = mkdtempSync(join(tmpdir(), 'muster-cli-'));
  const tokens = new TokenAuthority(loadSecret(loadConfig({ env: {}, overrides: { dataDir } })));
  plane = new FakePlaneApi();
  server = await startAdminApi({
    host: '127.0.0.1',
    port: 0,
    api: plane,
    tokens,
    logger: createLogger({ level: 'silent' }),
  });
});

afterAll(async () => {
  await server?.close();
  rmSync(dataDir, { recursive: true, force: true });
});

beforeEach(() => {
  plane.submitted.length = 0;
  plane.onSubmit = undefined;
  plane.nodes.length = 0;
});

describe('muster (no server)', () => {
  it('prints help for the program and for each command', async () => {
    const top = await muster(['--help']);
    expect(top.code).toBe(0);
    for (const name of ['serve', 'agent', 'token', 'job', 'nodes', 'drain', 'undrain']) expect(top.stdout).toContain(name);
    const submit = await muster(['job', 'submit', '--help']);
    expect(submit.code).toBe(0);
    expect(submit.stdout).toContain('--wait');
    expect((await muster(['--version'])).stdout.trim()).toMatch(/^\d+\.\d+\.\d+/);
  });

  it('mints a node registration token with the claims asked for, from the data-dir secret', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'muster-token-'));
    try {
      const run = await muster(['token', 'create', '--role', 'node', '--sub', 'host-1', '--node-type', 'shell', '--data-dir', dir]);
      expect(run.stderr).toBe('');
      expect(run.code).toBe(0);
      const jwt = run.stdout.trim();
      const c = claims(jwt);
      expect(c).toMatchObject({ iss: 'muster', aud: 'muster-node', scope: 'node:register', sub: 'host-1', node_type: 'shell' });
      expect(c.exp as number).toBe((c.iat as number) + 3600);
      // Signed with the secret the command created in the data dir, which a plane would load.
      const secret = secretFromDataDir(dir);
      expect(secret).toBeDefined();
      const verified = await new TokenAuthority(secret as Uint8Array).verifyNodeToken(jwt, {
        hostname: 'host-1',
        nodeType: 'shell',
      });
      expect(verified.kind).toBe('registration');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('mints an API token of a role with the ttl asked for', async () => {
    const run = await muster(['token', 'create', '--role', 'operator', '--ttl', '30m', '--data-dir', dataDir]);
    expect(run.code).toBe(0);
    const c = claims(run.stdout.trim());
    expect(c).toMatchObject({ aud: 'muster-api', role: 'operator' });
    expect(c.exp as number).toBe((c.iat as number) + 1800);
  });

  it('reports bad input as one line and exit status 1', async () => {
    for (const args of [
      ['token', 'create', '--role', 'root', '--data-dir', dataDir],
      ['token', 'create', '--role', 'admin', '--ttl', 'soon', '--data-dir', dataDir],
      ['job', 'submit', '--selector', 'novalue', '--', 'true'],
      ['job', 'submit', '--wait', '--reconnect-window', 'soon', '--', 'true'],
      ['job', 'logs', '00000000-0000-4000-8000-000000000000', '--follow', '--reconnect-window', 'soon'],
    ]) {
      const run = await muster(args);
      expect(run.code, args.join(' ')).toBe(1);
      expect(run.stderr, args.join(' ')).toMatch(/^muster: [^\n]+\n$/);
    }
  }, 60_000);

  it('names a plane config file that is not valid JSON, with the line', async () => {
    const file = join(dataDir, 'bad-config.json');
    writeFileSync(file, '{\n  "tcp": "127.0.0.1:0",\n}\n');
    const run = await muster(['serve', '--config', file, '--data-dir', dataDir]);
    expect(run.code).toBe(1);
    expect(run.stderr).toBe(`muster: config file ${file}, line 3 column 1: not valid JSON (Expected double-quoted property name)\n`);
  });

  it('token revoke warns when the jti is not one this plane minted', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'muster-revoke-'));
    try {
      const jwt = (await muster(['token', 'create', '--role', 'node', '--data-dir', dir])).stdout.trim();
      const known = await muster(['token', 'revoke', String(claims(jwt).jti), '--data-dir', dir]);
      expect(known).toMatchObject({ code: 0, stderr: '' });
      const unknown = await muster(['token', 'revoke', 'no-such-jti', '--data-dir', dir]);
      expect(unknown.code).toBe(0);
      expect(unknown.stdout).toMatch(/^revoked no-such-jti at /);
      expect(unknown.stderr).toMatch(/^muster: warning: this plane has no record of minting no-such-jti [^\n]*revoked by id only[^\n]*\n$/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('says how to get a token when there is neither a token nor a local secret', async () => {
    const empty = mkdtempSync(join(tmpdir(), 'muster-empty-'));
    try {
      const run = await muster(['nodes', '--api', 'http://127.0.0.1:9', '--data-dir', empty]);
      expect(run.code).toBe(1);
      expect(run.stderr).toMatch(/^muster: no API token: pass --token or set MUSTER_TOKEN[^\n]*\n$/);
    } finally {
      rmSync(empty, { recursive: true, force: true });
    }
  });
});

describe('muster against the admin API', () => {
  it('submits a job and prints its id, with a token minted from the local secret', async () => {
    const run = await muster(
      ['job', 'submit', '--priority', 'High', '--selector', 'runner_type=shell', '--selector', 'os=linux',
        '--env', 'A=1=2', '--timeout', '10m', '--data-dir', dataDir, '--', 'echo', '-n', 'hello world'],
      { MUSTER_API: server.url },
    );
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/^[0-9a-f-]{36}\n$/);
    expect(run.stdout.trim()).toMatch(UUID);
    expect(plane.jobs.has(run.stdout.trim())).toBe(true);
    expect(plane.submitted[0]).toMatchObject({
      job: { command: ['echo', '-n', 'hello world'], environment: { A: '1=2' }, timeout: { secs: 600, nanos: 0 } },
      priority: 'High',
      selector: { runner_type: 'shell', tags: { os: 'linux' } },
    });
  });

  it('takes the job command without `--` and a token from --token', async () => {
    const token = await muster(['token', 'create', '--role', 'operator', '--data-dir', dataDir]);
    const run = await muster(['job', 'submit', '--api', server.url, '--token', token.stdout.trim(), 'ls', '-la']);
    expect(run.code).toBe(0);
    expect(plane.submitted[0]?.job.command).toEqual(['ls', '-la']);
  });

  it('is refused with a viewer token', async () => {
    const token = await muster(['token', 'create', '--role', 'viewer', '--data-dir', dataDir]);
    const run = await muster(['job', 'submit', '--api', server.url, '--', 'true'], { MUSTER_TOKEN: token.stdout.trim() });
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/^muster: .*\(forbidden\)\n$/);
    expect(plane.submitted).toHaveLength(0);
  });

  it('--wait streams the output to stdout and stderr and exits with the job exit code', async () => {
    plane.onSubmit = (record) => {
      setTimeout(() => {
        plane.appendLog(record.job_id, 'stdout', 'line one\n');
        plane.appendLog(record.job_id, 'stderr', 'a warning\n');
      }, 300);
      setTimeout(() => {
        plane.appendLog(record.job_id, 'stdout', 'line two\n');
        plane.end(record.job_id, 'Failed', { exitCode: 3 });
      }, 900);
    };
    const run = await muster(['job', 'submit', '--wait', '--data-dir', dataDir, '--api', server.url, '--', 'make']);
    expect(run.stdout).toBe('line one\nline two\n');
    // The job id first, at once; no status lines when stdout is not a terminal.
    expect(run.stderr).toMatch(/^job [0-9a-f-]{36}\na warning\n$/);
    expect(run.code).toBe(3);
  });

  it('--wait exits 1 with the reason when the job ends without an exit code', async () => {
    plane.onSubmit = (record) => {
      setTimeout(() => plane.end(record.job_id, 'TimedOut', { reason: 'ran past its 10s timeout' }), 300);
    };
    const run = await muster(['job', 'submit', '--wait', '--data-dir', dataDir, '--api', server.url, '--', 'sleep', '60']);
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/^job ([0-9a-f-]{36})\nmuster: job \1 ended TimedOut: ran past its 10s timeout\n$/);
  });

  it('gets a job, prints its logs, cancels it; a missing job is one line and status 1', async () => {
    const submitted = await muster(['job', 'submit', '--data-dir', dataDir, '--api', server.url, '--', 'true']);
    const jobId = submitted.stdout.trim();
    plane.appendLog(jobId, 'stdout', 'out\n');
    plane.appendLog(jobId, 'stderr', 'err\n');
    const common = ['--data-dir', dataDir, '--api', server.url];
    const got = await muster(['job', 'get', '--json', jobId, ...common]);
    expect(JSON.parse(got.stdout)).toMatchObject({ job_id: jobId, state: 'Running', attempt: 1 });
    const logs = await muster(['job', 'logs', jobId, ...common]);
    expect(logs).toMatchObject({ code: 0, stdout: 'out\n', stderr: 'err\n' });
    expect((await muster(['job', 'cancel', jobId, ...common])).code).toBe(0);
    expect(plane.jobs.get(jobId)?.cancel_requested).toBe(true);
    const missing = await muster(['job', 'get', '00000000-0000-4000-8000-000000000000', ...common]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/^muster: no job 00000000-0000-4000-8000-000000000000 \(not_found\)\n$/);
  });

  it('job cancel of a job that already ended says so and exits 1', async () => {
    const common = ['--data-dir', dataDir, '--api', server.url];
    const jobId = (await muster(['job', 'submit', ...common, '--', 'true'])).stdout.trim();
    plane.end(jobId, 'Completed', { exitCode: 0 });
    const run = await muster(['job', 'cancel', jobId, ...common]);
    expect(run).toMatchObject({ code: 1, stdout: '', stderr: `muster: job ${jobId} already ended Completed: nothing to cancel\n` });
    expect(plane.jobs.get(jobId)?.cancel_requested).toBe(false);
  });

  it('lists nodes as a table and as JSON, and drains one', async () => {
    const nodeId = '5b0f4a52-6a4e-4d1b-9a43-2d6f1f0c0a11';
    plane.nodes.push({
      node_id: nodeId,
      hostname: 'runner-7',
      state: 'busy',
      connected: true,
      owner: 'cp-1',
      running_jobs: ['a', 'b'],
      last_heartbeat: new Date().toISOString(),
      name: 'seven',
      tags: { os: 'linux', arch: 'x64' },
      transport: 'wss',
      protocol_version: 1,
    });
    plane.nodes.push({
      node_id: 'dead0000-6a4e-4d1b-9a43-2d6f1f0c0a11',
      hostname: 'runner-gone',
      state: 'dead',
      connected: false,
      owner: 'cp-1',
      running_jobs: [],
      last_heartbeat: new Date().toISOString(),
      tags: {},
      transport: 'tcp',
      protocol_version: 1,
    });
    const common = ['--data-dir', dataDir, '--api', server.url];
    const table = await muster(['nodes', ...common]);
    expect(table.code).toBe(0);
    const [header, row, ...rest] = table.stdout.trim().split('\n');
    expect(header).toMatch(/^NODE ID\s+NAME\s+HOSTNAME\s+STATE\s+JOBS\s+TAGS\s+TRANSPORT\s+PROTO\s+OWNER\s+LAST HEARTBEAT$/);
    expect(row?.split(/\s{2,}/).slice(0, 9)).toEqual([nodeId, 'seven', 'runner-7', 'busy', '2', 'os=linux,arch=x64', 'wss', '1', 'cp-1']);
    expect(row).toMatch(/\d+s ago$/);
    // The dead node is hidden, and the table says so.
    expect(rest).toEqual(['(1 dead node not shown: --all)']);
    const all = await muster(['nodes', '--all', ...common]);
    expect(all.stdout).toContain('runner-gone');
    expect(JSON.parse((await muster(['nodes', '--json', ...common])).stdout)).toEqual(plane.nodes.slice(0, 1));
    expect(JSON.parse((await muster(['nodes', '--json', '--all', ...common])).stdout)).toEqual(plane.nodes);
    expect((await muster(['drain', nodeId, ...common])).code).toBe(0);
    expect(plane.drained).toContain(nodeId);
  }, 60_000);

  it('undrains a draining node; refuses one that is not draining with one line and status 1', async () => {
    const nodeId = '5b0f4a52-6a4e-4d1b-9a43-2d6f1f0c0a11';
    plane.nodes.push({
      node_id: nodeId,
      hostname: 'runner-7',
      state: 'ready',
      connected: true,
      owner: 'cp-1',
      running_jobs: [],
      last_heartbeat: new Date().toISOString(),
      tags: {},
      transport: 'tcp',
      protocol_version: 1,
    });
    const common = ['--data-dir', dataDir, '--api', server.url];
    const early = await muster(['undrain', nodeId, ...common]);
    expect(early.code).toBe(1);
    expect(early.stderr).toMatch(/^muster: node \S+ is not draining \(conflict\)\n$/);
    (plane.nodes[0] as { state: string }).state = 'draining';
    expect((await muster(['undrain', nodeId, ...common])).code).toBe(0);
    expect(plane.undrained).toEqual([nodeId]);
  }, 60_000);

  it('says so when the API cannot be reached', async () => {
    const run = await muster(['nodes', '--data-dir', dataDir, '--api', 'http://127.0.0.1:9']);
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/^muster: cannot reach the admin API at http:\/\/127\.0\.0\.1:9: [^\n]*\n$/);
  });
});
