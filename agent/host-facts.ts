// What the agent tells the control plane about its host: the static facts of
// `RegisterNode` (node_info, capabilities) and the live usage of each `Heartbeat`.
// Everything is read from the machine; nothing is made up.
import { readFileSync, statfsSync } from 'node:fs';
import os from 'node:os';
import type { Capabilities, MessageData, NodeInfo } from '../protocol/messages.js';

export const AGENT_VERSION = '0.1.0';
/** What a node offers when not told: a shell that runs commands (`muster agent --runner-type`, `--job-type`). */
export const DEFAULT_RUNNER_TYPE = 'shell';
export const DEFAULT_JOB_TYPE = 'command';
const MB = 1024 * 1024;
const GB = 1024 * MB;

export interface HostFactsOptions {
  /** The agent's work directory; its file system's free space is the node's `disk_gb`. */
  workDir: string;
  /** From `--tag k=v`. */
  tags?: Record<string, string>;
  /** Default `[DEFAULT_RUNNER_TYPE]`. */
  runnerTypes?: string[];
  /** Default `[DEFAULT_JOB_TYPE]`. */
  supportedJobTypes?: string[];
  /** Default `"runner"`. */
  nodeType?: string;
  /** Transport schemes the agent may dial, for `capabilities.protocols`. */
  protocols?: string[];
}

export interface HostFacts {
  node_info: NodeInfo;
  capabilities: Capabilities;
}

/** Reads the host's facts for `RegisterNode`. */
export function collectHostFacts(options: HostFactsOptions): HostFacts {
  const address = primaryIpv4();
  return {
    node_info: {
      hostname: os.hostname().slice(0, 255) || 'localhost',
      ip_address: address.address,
      // The agent dials out and listens on nothing.
      port: 0,
      node_type: options.nodeType ?? 'runner',
      version: AGENT_VERSION,
      platform: os.platform(),
      architecture: os.arch(),
      tags: { ...(options.tags ?? {}) },
    },
    capabilities: {
      runner_types: options.runnerTypes ?? [DEFAULT_RUNNER_TYPE],
      max_resources: {
        cpu_cores: cpuCount(),
        memory_mb: totalMemoryMb(),
        disk_gb: diskGb(options.workDir),
        network_mbps: linkSpeedMbps(address.iface),
      },
      supported_job_types: options.supportedJobTypes ?? [DEFAULT_JOB_TYPE],
      features: ['resume', 'log_resync', 'secret_masking', 'undrain'],
      protocols: options.protocols ?? ['tcp', 'unix'],
    },
  };
}

/** Parses `--tag k=v` values; throws a plain Error on a value without `=` or with an empty key. */
export function parseTags(values: readonly string[]): Record<string, string> {
  const tags: Record<string, string> = {};
  for (const value of values) {
    const eq = value.indexOf('=');
    if (eq <= 0) throw new Error(`tag ${JSON.stringify(value)} is not of the form key=value`);
    tags[value.slice(0, eq)] = value.slice(eq + 1);
  }
  return tags;
}

export function cpuCount(): number {
  return Math.max(1, os.cpus().length);
}

export function totalMemoryMb(): number {
  return Math.floor(os.totalmem() / MB);
}

/** Free space for jobs on the work directory's file system, in GB (two decimals); 0 when unknown. */
export function diskGb(dir: string): number {
  try {
    const s = statfsSync(dir);
    return Math.floor((s.bavail * s.bsize * 100) / GB) / 100;
  } catch {
    return 0;
  }
}

/** The first non-internal IPv4 address, or loopback. */
export function primaryIpv4(): { address: string; iface: string | undefined } {
  for (const [name, addrs] of Object.entries(os.networkInterfaces())) {
    for (const a of addrs ?? []) {
      if (a.family === 'IPv4' && !a.internal) return { address: a.address, iface: name };
    }
  }
  return { address: '127.0.0.1', iface: undefined };
}

// Linux exposes a NIC's negotiated speed; virtual interfaces report -1 or fail to read.
function linkSpeedMbps(iface: string | undefined): number {
  if (iface === undefined || os.platform() !== 'linux') return 0;
  try {
    const speed = Number.parseInt(readFileSync(`/sys/class/net/${iface}/speed`, 'utf8').trim(), 10);
    return Number.isFinite(speed) && speed > 0 ? speed : 0;
  } catch {
    return 0;
  }
}

/** What running jobs have reserved, from their `resource_requirements`. */
export interface Reserved {
  cpuCores: number;
  memoryMb: number;
}

export type HeartbeatResources = MessageData<'Heartbeat'>['resources'];

export interface UsageSample {
  resources: HeartbeatResources;
  cpuUsagePercent: number;
  memoryUsagePercent: number;
}

/**
 * Samples host CPU and memory use. CPU use is the busy share of all cores since the
 * previous sample (os.cpus() tick deltas), so the first sample covers the time since
 * construction.
 */
export class UsageSampler {
  private last = cpuTicks();

  sample(reserved: Reserved): UsageSample {
    const now = cpuTicks();
    const total = now.total - this.last.total;
    const idle = now.idle - this.last.idle;
    this.last = now;
    const cpuUsagePercent = total > 0 ? round2(clamp(((total - idle) / total) * 100, 0, 100)) : 0;
    const totalMem = os.totalmem();
    const memoryUsagePercent = totalMem > 0 ? round2(clamp((1 - os.freemem() / totalMem) * 100, 0, 100)) : 0;
    const cores = cpuCount();
    const memoryMb = totalMemoryMb();
    return {
      resources: {
        cpu_cores: cores,
        memory_mb: memoryMb,
        available_cpu: round2(Math.max(0, cores - reserved.cpuCores)),
        available_memory_mb: Math.max(0, Math.floor(memoryMb - reserved.memoryMb)),
      },
      cpuUsagePercent,
      memoryUsagePercent,
    };
  }
}

function cpuTicks(): { total: number; idle: number } {
  let total = 0;
  let idle = 0;
  for (const cpu of os.cpus()) {
    const t = cpu.times;
    total += t.user + t.nice + t.sys + t.idle + t.irq;
    idle += t.idle;
  }
  return { total, idle };
}

function clamp(v: number, lo: number, hi: number): number {
  return Math.min(hi, Math.max(lo, v));
}

function round2(v: number): number {
  return Math.round(v * 100) / 100;
}
