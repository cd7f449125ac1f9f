// `npm run example`: a control plane and two runner agents in one process, through the library
// (`import ... from 'muster'`): the agents register, a handler watches their heartbeats, six jobs
// run (one of them fails), a node is drained by a message sent to it, the stats are printed,
// and everything stops. Nothing outside a temporary directory and loopback ports is touched.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { createAgent, createControlPlane, type MusterAgent } from 'muster';

const dir = mkdtempSync(join(tmpdir(), 'muster-example-'));
// Quiet logs: the example prints what it does itself.
const logger = pino({ level: 'warn' });

const plane = await createControlPlane({
  env: {},
  logger,
  config: { dataDir: join(dir, 'plane'), tcp: '127.0.0.1:0', ws: 'off', grpc: 'off', unix: 'off', http: '127.0.0.1:0' },
});
console.log(`control plane ${plane.id}: nodes connect at ${plane.nodeUrls.join(', ')}`);

plane.on('nodeRegistered', (node) => console.log(`node ${node.node_id} registered`));
plane.on('jobFinished', (job) => console.log(`job ${job.job_id} ${job.state} (attempt ${job.attempt})`));
let heartbeats = 0;
plane.onMessage('Heartbeat', () => heartbeats++);

const agents: MusterAgent[] = [];
try {
  for (const name of ['runner-a', 'runner-b']) {
    const { token } = await plane.mintToken('node');
    agents.push(createAgent({ urls: [...plane.nodeUrls], token, name, workDir: join(dir, name), logger }));
  }
  const nodeIds = await Promise.all(agents.map((a) => a.registered()));

  const commands = [['true'], ['sh', '-c', 'echo hello from $(hostname)'], ['sh', '-c', 'exit 3'], ['sleep', '0.2'], ['echo', 'done'], ['true']];
  const submitted = await plane.submitJobs(commands.map((command) => ({ job: { command } })));
  const finished = await Promise.all(submitted.map((job) => plane.waitForJob(job.job_id)));
  for (const job of finished) console.log(`  ${job.job.command.join(' ')} → ${job.state}, exit ${job.result?.exit_code ?? '-'} on ${job.node_id}`);

  // A message to one node: it stops taking jobs.
  console.log(`drain sent to ${nodeIds[0]}: ${plane.sendToNode(nodeIds[0]!, 'Drain', {})}`);

  console.log('plane stats:', JSON.stringify(await plane.stats()));
  for (const [i, agent] of agents.entries()) console.log(`agent ${i + 1} stats:`, JSON.stringify(agent.stats()));
  console.log(`heartbeats seen by the handler: ${heartbeats}`);
} finally {
  await Promise.all(agents.map((a) => a.stop()));
  await plane.close('example done');
  rmSync(dir, { recursive: true, force: true });
}
