// Control-plane replicas of one cluster as real `muster serve` processes (through the e2e
// harness, test/e2e/harness.ts: it starts them, reads their bound URLs from the ready line, and
// stops everything it started), with what a failure test does to them: `kill -9`, SIGSTOP and
// SIGCONT, a graceful stop, a restart on the same data dir, ports and id. Every replica has its
// own data dir holding one shared signing secret (and is given it as MUSTER_JWT_SECRET, as cluster
// mode asks), so the admin and node tokens minted once from it are good on all; agents get every
// replica's URL, tried in turn.
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { planeTokens } from '../bench/bench-node.js';
import { nodeDeathsInLog, nodeRunsInLog, type NodeDeath, type NodeRun } from './invariant-checker.js';
import { waitFor, type AgentOptions, type AgentProcess, type Harness, type PlaneProcess } from '../e2e/harness.js';
import type { NodeView } from '../../supervisor/admin/wire-types.js';

/**
 * Cluster timers over FAST_PLANE_ENV: short where a failover waits on them (a lease ages out 3 s
 * after its last renewal, renewed every second, a third of it), longer than FAST_PLANE_ENV where
 * only a false alarm could come of them: no node here stops answering, and on a loaded 2-core
 * machine a 1.5 s heartbeat window or a 2 s accept timeout would declare a healthy node dead or
 * start a second attempt of a job its node is slow to accept, which the checker reports.
 */
export const FAST_CLUSTER_ENV: Readonly<Record<string, string>> = {
  MUSTER_LEASE_TTL_MS: '3000',
  MUSTER_LEASE_RENEW_MS: '1000',
  MUSTER_HEARTBEAT_INTERVAL_MS: '1000',
  MUSTER_ACCEPT_TIMEOUT_MS: '10000',
};

export interface ReplicaOptions {
  /** The NATS URL this replica dials (e.g. a TcpProxy's, to cut it off alone); default the cluster's. */
  natsUrl?: string;
  /** MUSTER_* settings over the cluster's. */
  env?: Record<string, string>;
}

export class ReplicaCluster {
  readonly replicas: Replica[] = [];
  /** The signing secret every replica's data dir holds. */
  private readonly secret = `${randomBytes(32).toString('base64url')}\n`;
  /** Minted once for all, from the shared secret. */
  private tokens: Promise<{ admin: string; node: string }> | undefined;

  constructor(
    private readonly h: Harness,
    private readonly options: { natsUrl: string; env?: Record<string, string> },
  ) {
    // Minted while the test starts NATS; a failure surfaces where start() awaits it.
    this.mint().catch(() => undefined);
  }

  /** An admin API token and a node registration token, good on every replica. */
  private mint(): Promise<{ admin: string; node: string }> {
    this.tokens ??= (async () => {
      const dir = this.h.tempDir('muster-cluster-secret-');
      writeFileSync(join(dir, 'secret'), this.secret, { mode: 0o600 });
      // In this process, as `muster token create` would (an hour, its default): two process starts saved.
      const tokens = planeTokens(dir);
      const [admin, node] = await Promise.all([tokens.mintApiToken({ role: 'admin', ttlSeconds: 3600 }), tokens.mintRegistrationToken({ ttlSeconds: 3600 })]);
      return { admin, node };
    })();
    return this.tokens;
  }

  /** Starts replica `id` (`--nats`, `--control-plane-id`, TCP and admin HTTP on port 0) and waits for its ready line. */
  async start(id: string, options: ReplicaOptions = {}): Promise<Replica> {
    const dataDir = this.h.tempDir(`muster-replica-${id}-`);
    writeFileSync(join(dataDir, 'secret'), this.secret, { mode: 0o600 });
    const natsUrl = options.natsUrl ?? this.options.natsUrl;
    const { admin } = await this.mint();
    const plane = await this.h.startPlane({
      adminToken: admin,
      dataDir,
      name: `replica ${id}`,
      args: ['--nats', natsUrl, '--control-plane-id', id],
      // Cluster mode takes the shared secret from MUSTER_JWT_SECRET; the file is for `muster token create --data-dir`.
      env: { ...FAST_CLUSTER_ENV, MUSTER_JWT_SECRET: this.secret.trim(), ...this.options.env, ...options.env },
    });
    const replica = new Replica(id, natsUrl, plane);
    this.replicas.push(replica);
    return replica;
  }

  /** The node URLs of every replica started, in the order they became ready. */
  get nodeUrls(): string[] {
    return this.replicas.map((r) => r.tcpUrl);
  }

  /**
   * Starts an agent that knows every replica, trying `first` first (so that a test decides where
   * each agent starts), and waits for it to register.
   */
  async startAgent(first: Replica, options: Omit<AgentOptions, 'url' | 'urls'> = {}): Promise<AgentProcess> {
    const others = this.replicas.filter((r) => r !== first).map((r) => r.tcpUrl);
    const token = options.token ?? (await this.mint()).node;
    return this.h.startAgent(first.plane, { ...options, token, urls: [first.tcpUrl, ...others] });
  }

  /**
   * Waits until no running replica holds a session whose node is away (`connected: false`, not yet
   * `dead`): each session a fault dropped has resumed or been buried, so a replica that would
   * declare a healthy node dead has done so (a heartbeat window after the fault) before a check.
   * A replica cut off from NATS answers `GET /v1/nodes` 503 (it cannot list the cluster) and is
   * passed over: it judges no node while cut off (lease-guard.ts), and the check reads its log.
   */
  settled(timeoutMs: number): Promise<true> {
    return waitFor(
      async () => {
        for (const replica of this.replicas.filter((r) => r.isRunning)) {
          const listed = await replica.api.request<NodeView[]>('GET', '/v1/nodes');
          if (listed.status === 503) continue;
          if (listed.body.some((n) => !n.connected && n.state !== 'dead')) return false;
        }
        return true;
      },
      timeoutMs,
      'every session a fault dropped resumed or buried',
    );
  }

  /** Every replica's declarations of dead nodes, from their logs (killed ones up to their end). */
  deaths(): NodeDeath[] {
    return this.replicas.flatMap((r) => r.deaths());
  }
}

export class Replica {
  constructor(
    readonly id: string,
    readonly natsUrl: string,
    /** The current process; a restart replaces it. */
    public plane: PlaneProcess,
  ) {}

  get api(): PlaneProcess['api'] {
    return this.plane.api;
  }

  get tcpUrl(): string {
    return this.plane.tcpUrl;
  }

  get httpUrl(): string {
    return this.plane.httpUrl;
  }

  get pid(): number {
    return this.plane.proc.pid;
  }

  /** False once the process exited (killed or stopped), until a restart. */
  get isRunning(): boolean {
    return this.plane.proc.isRunning;
  }

  /** JSON log lines of every process this replica ran (kept across restarts). */
  private readonly earlierLines: Array<Record<string, unknown>> = [];

  logLines(): Array<Record<string, unknown>> {
    return [...this.earlierLines, ...this.plane.proc.jsonLines()];
  }

  deaths(): NodeDeath[] {
    return nodeDeathsInLog(this.id, this.logLines());
  }

  /** `kill -9`: no goodbye, no lease given up; resolves once the process is gone. */
  async kill9(): Promise<void> {
    this.plane.proc.kill9();
    await this.plane.proc.exited;
  }

  /** SIGSTOP: the process keeps its sockets but answers nothing (a hung replica), until `resume`. */
  pause(): void {
    this.plane.proc.child.kill('SIGSTOP');
  }

  resume(): void {
    this.plane.proc.child.kill('SIGCONT');
  }

  /** A graceful stop (SIGTERM: it sends its nodes `Shutdown` and gives its lease up); the exit status. */
  stop(): Promise<number | null> {
    return this.plane.stop();
  }

  /** The same replica again (data dir, ports, id, NATS URL) after a stop or kill. */
  async restart(): Promise<Replica> {
    this.earlierLines.push(...this.plane.proc.jsonLines());
    this.plane = await this.plane.restart();
    return this;
  }
}

/** Every node id the agents registered as (a node that had to register afresh has a second one). */
export function agentNodeIds(agents: readonly AgentProcess[]): Set<string> {
  const ids = new Set<string>();
  for (const agent of agents) {
    ids.add(agent.nodeId);
    for (const line of agent.proc.jsonLines()) if (line.msg === 'registered' && typeof line.node_id === 'string') ids.add(line.node_id);
  }
  return ids;
}

/** The runs of jobs on each agent's node, from the agents' logs (for the checker's overlap check). */
export function agentRuns(agents: readonly AgentProcess[]): NodeRun[] {
  return agents.flatMap((a) => nodeRunsInLog(a.nodeId, a.proc.jsonLines()));
}
