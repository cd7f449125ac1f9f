// The library's entry point, `import { createControlPlane, createAgent } from 'muster'`: a
// control plane and a runner agent in any Node program, the same ones the `muster` command runs.
// examples/node-communication.ts shows both in one process.
export { createControlPlane, MusterPlane } from './plane-handle.js';
export type { JobEvent, NodeEvent, PlaneEvents, PlaneOptions, SendableType } from './plane-handle.js';
export { createAgent, MusterAgent } from './agent-handle.js';
export type { AgentStats, CreateAgentOptions } from './agent-handle.js';
export type { AgentEvents } from '../agent/agent.js';
export type { MessageHandler, MessageSender } from '../supervisor/nodes/message-tap.js';
export type { SubmitJobRequest } from '../supervisor/admin/job-request.js';
export type { JobRecord, JobState } from '../supervisor/store/job-store.js';
export type { Config } from '../supervisor/config.js';
export { MusterError } from '../protocol/errors.js';
export { startTracing } from '../observability/tracing.js';
export type { Tracing } from '../observability/tracing.js';
