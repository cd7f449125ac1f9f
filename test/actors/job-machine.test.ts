// The job machine as a table: every state × every event × (cancel requested or not) × (attempts
// used up or not), each move written out below from PROTOCOL.md sections 4 and 7; whatever the
// table does not list must be refused. Also: the answers `nextJobState` keeps are the machine's
// own, at real attempt numbers, and the store's states are the machine's.
import { transition } from 'xstate';
import { describe, expect, expectTypeOf, it } from 'vitest';
import { jobMachine, nextJobState, type JobEvent, type JobLifecycle, type JobLifecycleState } from '../../actors/job-machine.js';
import type { JobState } from '../../supervisor/store/job-store.js';

const STATES: JobLifecycleState[] = ['Queued', 'Assigned', 'Running', 'Completed', 'Failed', 'Cancelled', 'TimedOut', 'DeadLettered'];
const EVENTS: JobEvent[] = [
  { type: 'assign' },
  { type: 'accept' },
  { type: 'result', status: 'Completed' },
  { type: 'result', status: 'Failed' },
  { type: 'result', status: 'Cancelled' },
  { type: 'result', status: 'TimedOut' },
  { type: 'withdraw' },
  { type: 'finish', state: 'Cancelled' },
  { type: 'finish', state: 'TimedOut' },
  { type: 'cancel' },
  { type: 'retry' },
];

const name = (e: JobEvent): string => (e.type === 'result' ? `result ${e.status}` : e.type === 'finish' ? `finish ${e.state}` : e.type);

/** Which jobs a move applies to: any, or only with / without a cancel request, or attempts used up. */
type When = 'any' | 'cancel' | 'no cancel, attempts left' | 'no cancel, attempts used up';
/** A legal move: from, event, when, to, what happens to attempt and cancel_requested. */
type Move = [JobLifecycleState, string, When, JobLifecycleState, { attempt?: '+1'; cancel?: boolean }];

const ends = (from: JobLifecycleState): Move[] => [
  [from, 'result Completed', 'any', 'Completed', {}],
  [from, 'result Failed', 'any', 'Failed', {}],
  [from, 'result Cancelled', 'any', 'Cancelled', {}],
  [from, 'result TimedOut', 'any', 'TimedOut', {}],
  [from, 'withdraw', 'cancel', 'Cancelled', {}],
  [from, 'withdraw', 'no cancel, attempts left', 'Queued', { attempt: '+1' }],
  [from, 'withdraw', 'no cancel, attempts used up', 'DeadLettered', {}],
  [from, 'finish Cancelled', 'any', 'Cancelled', {}],
  [from, 'finish TimedOut', 'any', 'TimedOut', {}],
  [from, 'cancel', 'any', from, { cancel: true }],
];

const LEGAL: Move[] = [
  ['Queued', 'assign', 'any', 'Assigned', {}],
  ['Queued', 'cancel', 'any', 'Cancelled', { cancel: true }],
  ['Queued', 'finish Cancelled', 'any', 'Cancelled', {}],
  ['Queued', 'finish TimedOut', 'any', 'TimedOut', {}],
  ['Assigned', 'accept', 'any', 'Running', {}],
  ...ends('Assigned'),
  ...ends('Running'),
  ...(['Failed', 'Cancelled', 'TimedOut', 'DeadLettered'] as const).map(
    (from): Move => [from, 'retry', 'any', 'Queued', { attempt: '+1', cancel: false }],
  ),
];

function applies(when: When, job: JobLifecycle): boolean {
  const usedUp = job.attempt >= job.max_attempts;
  if (when === 'any') return true;
  if (when === 'cancel') return job.cancel_requested;
  return !job.cancel_requested && (when === 'no cancel, attempts used up') === usedUp;
}

interface Case {
  job: JobLifecycle;
  event: JobEvent;
  label: string;
}

const cases: Case[] = STATES.flatMap((state) =>
  EVENTS.flatMap((event) =>
    [false, true].flatMap((cancel) =>
      [false, true].map((usedUp): Case => {
        const job = { state, attempt: usedUp ? 3 : 2, max_attempts: 3, cancel_requested: cancel };
        return { job, event, label: `${state} ${name(event)}${cancel ? ', cancel requested' : ''}${usedUp ? ', attempts used up' : ''}` };
      }),
    ),
  ),
);

function expected({ job, event }: Case): JobLifecycle | undefined {
  const move = LEGAL.find(([from, e, when]) => from === job.state && e === name(event) && applies(when, job));
  if (move === undefined) return undefined;
  const [, , , to, effect] = move;
  return {
    state: to,
    attempt: job.attempt + (effect.attempt === '+1' ? 1 : 0),
    max_attempts: job.max_attempts,
    cancel_requested: effect.cancel ?? job.cancel_requested,
  };
}

describe('the job machine, move by move', () => {
  it.each(cases.filter((c) => expected(c) !== undefined).map((c) => [c.label, c] as const))('allows %s', (_label, c) => {
    expect(nextJobState(c.job, c.event)).toEqual(expected(c));
  });

  it.each(cases.filter((c) => expected(c) === undefined).map((c) => [c.label, c] as const))('refuses %s', (_label, c) => {
    expect(nextJobState(c.job, c.event)).toBeUndefined();
  });

  it('lists every move it allows in the table (nothing legal is left untested)', () => {
    const allowed = cases.filter((c) => nextJobState(c.job, c.event) !== undefined).length;
    expect(allowed).toBe(cases.filter((c) => expected(c) !== undefined).length);
    // Every row of the table is met by some case.
    for (const [from, e, when] of LEGAL) expect(cases.some((c) => c.job.state === from && name(c.event) === e && applies(when, c.job))).toBe(true);
  });

  it('answers as the machine itself does, at any attempt number (the kept answers are sound)', () => {
    for (const { job, event } of cases) {
      for (const attempt of [1, 2, 7, 8]) {
        const at = { ...job, attempt, max_attempts: 8 };
        const snapshot = jobMachine.resolveState({
          value: at.state,
          context: { attempt, maxAttempts: 8, cancelRequested: at.cancel_requested },
        });
        const direct = snapshot.can(event) ? transition(jobMachine, snapshot, event)[0] : undefined;
        const got = nextJobState(at, event);
        if (direct === undefined) expect(got).toBeUndefined();
        else expect(got).toEqual({ state: direct.value, attempt: direct.context.attempt, max_attempts: 8, cancel_requested: direct.context.cancelRequested });
      }
    }
  });

  it('does not change the job it is given', () => {
    const job: JobLifecycle = { state: 'Running', attempt: 1, max_attempts: 3, cancel_requested: false };
    nextJobState(job, { type: 'withdraw' });
    nextJobState(job, { type: 'cancel' });
    expect(job).toEqual({ state: 'Running', attempt: 1, max_attempts: 3, cancel_requested: false });
  });

  it('names the same states as the store', () => {
    expectTypeOf<JobLifecycleState>().toEqualTypeOf<JobState>();
    expect(Object.keys(jobMachine.root.states).sort()).toEqual([...STATES].sort());
  });
});
