// `npm run replicas`: three control-plane replicas on this machine, sharing one fleet over the
// NATS server at MUSTER_NATS_URL (default nats://127.0.0.1:4222, JetStream on). Each is a real
// `muster serve` with its own id, data directory and ports: replica N (1-3) takes nodes on TCP
// 127.0.0.1:743N and serves its API on 127.0.0.1:748N. They share one token secret, generated once
// into .muster-cluster/secret (or MUSTER_JWT_SECRET). Ctrl-C or SIGTERM stops all three; one that
// dies (try `kill -9`) leaves the other two running.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const ROOT = process.env.MUSTER_CLUSTER_DIR ?? '.muster-cluster';
const NATS = process.env.MUSTER_NATS_URL ?? 'nats://127.0.0.1:4222';

function sharedSecret(): string {
  if (process.env.MUSTER_JWT_SECRET) return process.env.MUSTER_JWT_SECRET;
  mkdirSync(ROOT, { recursive: true, mode: 0o700 });
  const file = join(ROOT, 'secret');
  if (!existsSync(file)) writeFileSync(file, randomBytes(32).toString('base64url'), { mode: 0o600 });
  return readFileSync(file, 'utf8').trim();
}

const secret = sharedSecret();
const children: ChildProcess[] = [];
for (const n of [1, 2, 3]) {
  const args = ['serve', '--control-plane-id', `replica-${n}`, '--data-dir', join(ROOT, `replica-${n}`)];
  args.push('--tcp', `127.0.0.1:743${n}`, '--http', `127.0.0.1:748${n}`, '--ws', 'off', '--grpc', 'off', '--unix', 'off');
  const child = spawn('./bin/muster', args, { stdio: 'inherit', env: { ...process.env, MUSTER_NATS_URL: NATS, MUSTER_JWT_SECRET: secret } });
  children.push(child);
  // A replica that dies leaves the others running: that is what a cluster is for (try `kill -9`).
  child.once('exit', (code, signal) => {
    if (!stopping) console.error(`replica-${n} exited (${signal ?? code}); the others go on`);
    if (children.every((c) => c.exitCode !== null || c.signalCode !== null)) process.exit(0);
  });
}
console.error(`three replicas on ${NATS}: nodes on tcp://127.0.0.1:7431, :7432, :7433; APIs on http://127.0.0.1:7481, :7482, :7483`);

let stopping = false;
function stop(): void {
  stopping = true;
  for (const child of children) if (child.exitCode === null) child.kill('SIGTERM');
}
process.on('SIGINT', stop);
process.on('SIGTERM', stop);
