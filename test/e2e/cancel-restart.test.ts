// End to end, a cancel survives the plane (issue 7 item 3): a cancel requested while the node
// cannot hear it, then `kill -9` of the plane before the node is told, is carried out by the
// restarted plane: the job ends `Cancelled` and the agent's process for it is stopped.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Harness, uniqueTag, waitFor } from './harness.js';

const h = new Harness();

afterAll(async () => {
  await h.close();
}, 60_000);

/** True while a process with `pid` exists (signal 0 checks without sending anything). */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('a cancel requested before the plane dies', () => {
  it('is carried out after a kill -9 and restart: the job ends Cancelled and its process is stopped', async () => {
    // Liveness long enough that the restarted plane keeps the job for the agent to resume.
    const plane = await h.startPlane({ env: { MUSTER_MISSED_HEARTBEATS: '20' } });
    const proxy = await h.proxy(plane.tcpUrl);
    const group = uniqueTag('cancel-restart');
    const agent = await h.startAgent(plane, { url: proxy.url, tags: { group } });
    const pidFile = join(h.tempDir('muster-pid-'), 'pid');
    const gate = h.gate();
    // Runs until the gate opens, which this test never does: only a cancel can stop it.
    const id = await plane.api.submit({
      job: {
        command: ['sh', '-c', 'echo $$ > "$PID_FILE"; echo started; while [ ! -e "$GATE" ]; do sleep 0.05; done; echo gate'],
        environment: { GATE: gate.path, PID_FILE: pidFile },
      },
      selector: { tags: { group } },
    });
    await waitFor(async () => (await plane.api.stdout(id)) === 'started\n', 15_000, 'the job runs');
    const pid = Number(readFileSync(pidFile, 'utf8').trim());
    expect(alive(pid)).toBe(true);

    // The agent is cut off: the cancel is stored and answered, but no CancelJob reaches it.
    proxy.block();
    proxy.cut();
    const answer = await plane.api.cancel(id);
    expect(answer.status).toBe(202);
    expect(answer.body.state).toBe('Running');
    plane.proc.kill9();
    await plane.proc.exited;
    expect(alive(pid)).toBe(true);

    const again = await plane.restart();
    proxy.unblock();
    const job = await again.api.waitForJob(id, 30_000);
    expect(job.state).toBe('Cancelled');
    expect(job.attempt).toBe(1);
    await waitFor(() => !alive(pid), 10_000, 'the job process stopped');
    expect(await again.api.stdout(id)).not.toContain('gate');
    expect(agent.startedAttempts(id)).toEqual([1]);
  }, 90_000);
});
