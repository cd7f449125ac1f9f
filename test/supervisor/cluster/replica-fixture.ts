// Cluster replicas in the test process: `startControlPlane` with NATS, one token secret shared by
// all, short leases and heartbeats, TCP only, no admin HTTP; and a job only one lane of nodes takes.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino, type Logger } from 'pino';
import { loadConfig, type Config } from '../../../supervisor/config.js';
import { startControlPlane, type ControlPlane } from '../../../supervisor/control-plane.js';
import type { NewJob } from '../../../supervisor/store/job-store.js';
import { TCP_ONLY } from '../tcp-only.js';

export const CLUSTER_SECRET = 'cluster-test-secret-0123456789abcdef-0123';
export const HEARTBEAT_MS = 500;

export class Replicas {
  readonly planes: ControlPlane[] = [];
  private readonly dirs: string[] = [];

  constructor(private readonly natsUrl: () => string) {}

  async start(id: string, overrides: Partial<Config> = {}, logger: Logger = pino({ level: 'silent' })): Promise<ControlPlane> {
    const dataDir = mkdtempSync(join(tmpdir(), `muster-cluster-${id}-`));
    this.dirs.push(dataDir);
    const config = loadConfig({
      env: {},
      overrides: {
        dataDir,
        ...TCP_ONLY,
        http: 'off',
        nats: this.natsUrl(),
        controlPlaneId: id,
        jwtSecret: CLUSTER_SECRET,
        leaseTtlMs: 3_000,
        leaseRenewMs: 500,
        revocationPollMs: 100,
        heartbeatIntervalMs: HEARTBEAT_MS,
        rebalanceIntervalMs: 0,
        ...overrides,
      },
    });
    const plane = await startControlPlane(config, logger);
    this.planes.push(plane);
    return plane;
  }

  /** A data directory of its own, removed with the others. */
  dataDir(name: string): string {
    const dir = mkdtempSync(join(tmpdir(), `muster-cluster-${name}-`));
    this.dirs.push(dir);
    return dir;
  }

  async stopAll(): Promise<void> {
    for (const p of this.planes.splice(0)) await p.shutdown();
    for (const d of this.dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  }
}

/** A job only the nodes tagged `lane` take: each test's own nodes, whichever replica they are on. */
export function laneJob(lane: string, command: string[]): NewJob {
  return {
    job: { name: 'x', image: '', command, environment: {}, timeout: { secs: 600, nanos: 0 }, resource_requirements: { cpu_cores: 1, memory_mb: 0, disk_gb: 0 } },
    execution_context: { workspace_id: '', pipeline_id: '', build_number: 0, git_ref: '', variables: {}, secrets: {} },
    priority: 'Normal',
    selector: { tags: { lane } },
    max_attempts: 3,
  };
}
