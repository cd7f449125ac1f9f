// Prometheus text exposition of the plane's gauges and counters (`GET /metrics`).
import type { JobState } from '../store/job-store.js';
import type { NodeState } from '../../actors/node-machine.js';

export interface MetricsSnapshot {
  connections: number;
  messagesReceived: number;
  messagesSent: number;
  nodes: Record<NodeState, number>;
  jobs: Record<JobState, number>;
}

export function renderMetrics(s: MetricsSnapshot): string {
  const lines = [
    '# HELP muster_connections Open node connections.',
    '# TYPE muster_connections gauge',
    `muster_connections ${s.connections}`,
    '# HELP muster_messages_received_total Frames received from nodes.',
    '# TYPE muster_messages_received_total counter',
    `muster_messages_received_total ${s.messagesReceived}`,
    '# HELP muster_messages_sent_total Frames sent to nodes.',
    '# TYPE muster_messages_sent_total counter',
    `muster_messages_sent_total ${s.messagesSent}`,
    '# HELP muster_nodes Nodes by state.',
    '# TYPE muster_nodes gauge',
    ...Object.entries(s.nodes).map(([state, n]) => `muster_nodes{state="${state}"} ${n}`),
    '# HELP muster_jobs Jobs by state.',
    '# TYPE muster_jobs gauge',
    ...Object.entries(s.jobs).map(([state, n]) => `muster_jobs{state="${state}"} ${n}`),
  ];
  return `${lines.join('\n')}\n`;
}
