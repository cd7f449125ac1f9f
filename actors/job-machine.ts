// A job's lifecycle as data: the one definition of which moves a job may make (PROTOCOL.md
// section 4 and section 7's retry).
//
//   Queued ──assign──► Assigned ──accept──► Running ──result──► Completed | Failed | Cancelled | TimedOut
//     ▲                   │                    │
//     └──── withdraw ─────┴────────────────────┘   (attempt + 1; DeadLettered after max_attempts;
//                                                    Cancelled when a cancel was requested)
//   cancel: Queued ──► Cancelled at once; Assigned/Running only mark the request (the node is told)
//   finish: the plane ends a job itself (Cancelled, TimedOut: deadline, timeout backstop)
//   retry:  Failed | TimedOut | Cancelled | DeadLettered ──► Queued as the next attempt
//
// It is never run as an actor: the coordinator (and, later, every JobStore) asks it through
// `nextJobState`, a pure transition (xstate's `transition`) from a job's stored fields, so that
// no part can make a move the machine forbids, and the visualizer can draw it.
import { assign, setup, transition } from 'xstate';
import type { ResultStatus } from '../protocol/messages.js';

/** A job's state (the `state` of `GET /v1/jobs/{id}`); the store's `JobState` is this type. */
export type JobLifecycleState =
  | 'Queued'
  | 'Assigned'
  | 'Running'
  | 'Completed'
  | 'Failed'
  | 'Cancelled'
  | 'TimedOut'
  | 'DeadLettered';

/** The fields of a job record the machine reads and writes (a `JobRecord` is one). */
export interface JobLifecycle {
  state: JobLifecycleState;
  /** The current attempt, from 1. */
  attempt: number;
  max_attempts: number;
  cancel_requested: boolean;
}

export type JobEvent =
  /** The scheduler placed the current attempt on a node. */
  | { type: 'assign' }
  /** The node answered `JobAccepted`. */
  | { type: 'accept' }
  /** The node's `JobResult` for the current attempt. */
  | { type: 'result'; status: ResultStatus }
  /** The attempt is taken back: rejected, accept timeout, node dead or gone. */
  | { type: 'withdraw' }
  /** The plane ends the job without a result. */
  | { type: 'finish'; state: 'Cancelled' | 'TimedOut' }
  /** `POST /v1/jobs/{id}/cancel`. */
  | { type: 'cancel' }
  /** `POST /v1/jobs/{id}/retry`. */
  | { type: 'retry' };

interface Context {
  attempt: number;
  maxAttempts: number;
  cancelRequested: boolean;
}

const toResult = (status: ResultStatus) => ({
  target: status,
  guard: ({ event }: { event: JobEvent }) => event.type === 'result' && event.status === status,
});

const toFinish = (state: 'Cancelled' | 'TimedOut') => ({
  target: state,
  guard: ({ event }: { event: JobEvent }) => event.type === 'finish' && event.state === state,
});

/** An attempt that ends without a result: the job's next move depends on why and on its budget. */
const withdraw = [
  { target: 'Cancelled', guard: 'cancelRequested' },
  { target: 'DeadLettered', guard: 'attemptsUsedUp' },
  { target: 'Queued', actions: 'nextAttempt' },
] as const;

/** Every end but `Completed` may be retried: the job runs again as its next attempt. */
const retryable = { on: { retry: { target: 'Queued', actions: ['nextAttempt', 'forgetCancel'] } } } as const;

export const jobMachine = setup({
  types: {
    context: {} as Context,
    events: {} as JobEvent,
    input: {} as Context,
  },
  // What these read is the key of `moves` below: keep the two in step.
  guards: {
    cancelRequested: ({ context }) => context.cancelRequested,
    attemptsUsedUp: ({ context }) => context.attempt >= context.maxAttempts,
  },
  actions: {
    nextAttempt: assign({ attempt: ({ context }) => context.attempt + 1 }),
    markCancel: assign({ cancelRequested: true }),
    forgetCancel: assign({ cancelRequested: false }),
  },
}).createMachine({
  id: 'job',
  initial: 'Queued',
  context: ({ input }) => input,
  states: {
    Queued: {
      on: {
        assign: 'Assigned',
        cancel: { target: 'Cancelled', actions: 'markCancel' },
        finish: [toFinish('Cancelled'), toFinish('TimedOut')],
      },
    },
    Assigned: {
      on: {
        accept: 'Running',
        // A node may end an attempt it never reported accepted: its result is the attempt's end.
        result: [toResult('Completed'), toResult('Failed'), toResult('Cancelled'), toResult('TimedOut')],
        withdraw,
        finish: [toFinish('Cancelled'), toFinish('TimedOut')],
        cancel: { actions: 'markCancel' },
      },
    },
    Running: {
      on: {
        result: [toResult('Completed'), toResult('Failed'), toResult('Cancelled'), toResult('TimedOut')],
        withdraw,
        finish: [toFinish('Cancelled'), toFinish('TimedOut')],
        cancel: { actions: 'markCancel' },
      },
    },
    // Not `type: 'final'`: a retry leaves every end but Completed.
    Completed: {},
    Failed: retryable,
    Cancelled: retryable,
    TimedOut: retryable,
    DeadLettered: retryable,
  },
});

/** What a transition does to a job: its new state, how far its attempt moves, its cancel flag. */
interface Move {
  state: JobLifecycleState;
  attemptDelta: number;
  cancelRequested: boolean;
}

/**
 * The machine's answers, by what its guards can tell apart. A transition costs tens of µs
 * in xstate (a job makes several), so each distinct question is put to the machine once.
 * Sound because the guards read nothing but the event, `cancelRequested`, and whether
 * `attempt >= maxAttempts`; a new guard must add what it reads to the key.
 */
const moves = new Map<string, Move | null>();

function eventKey(event: JobEvent): string {
  if (event.type === 'result') return `result:${event.status}`;
  if (event.type === 'finish') return `finish:${event.state}`;
  return event.type;
}

/** Asks the machine, from a job that stands for every job with the same key. */
function askMachine(state: JobLifecycleState, event: JobEvent, cancelRequested: boolean, usedUp: boolean): Move | null {
  const context: Context = { attempt: usedUp ? 2 : 1, maxAttempts: 2, cancelRequested };
  const snapshot = jobMachine.resolveState({ value: state, context });
  if (!snapshot.can(event)) return null;
  const [next] = transition(jobMachine, snapshot, event);
  return {
    state: next.value as JobLifecycleState,
    attemptDelta: next.context.attempt - context.attempt,
    cancelRequested: next.context.cancelRequested,
  };
}

/**
 * Where `event` takes `job`, or undefined when the machine forbids it (the event is not
 * handled in the job's state). Pure: nothing runs, `job` is not changed.
 */
export function nextJobState(job: JobLifecycle, event: JobEvent): JobLifecycle | undefined {
  const usedUp = job.attempt >= job.max_attempts;
  const key = `${job.state}|${eventKey(event)}|${job.cancel_requested ? 1 : 0}|${usedUp ? 1 : 0}`;
  let move = moves.get(key);
  if (move === undefined) {
    move = askMachine(job.state, event, job.cancel_requested, usedUp);
    moves.set(key, move);
  }
  if (move === null) return undefined;
  return { state: move.state, attempt: job.attempt + move.attemptDelta, max_attempts: job.max_attempts, cancel_requested: move.cancelRequested };
}

/** The machine's fields of `job` alone (a JobRecord carries many more). */
export function lifecycleOf(job: JobLifecycle): JobLifecycle {
  return { state: job.state, attempt: job.attempt, max_attempts: job.max_attempts, cancel_requested: job.cancel_requested };
}
