// Subjects: UUIDs pass unchanged, and any other id becomes one token that no other id shares.
import { expect, it } from 'vitest';
import { commandSubject, eventSubject, subjectToken } from '../../../supervisor/cluster/subjects.js';

const JOB = '6f1c1c9e-1d55-4b9e-9a0e-0b3c2d1e4f5a';

it('names events by kind and id, and commands by replica', () => {
  expect(eventSubject({ kind: 'job', job_id: JOB, state: 'Queued', attempt: 1 })).toBe(`muster.evt.job.${JOB}`);
  expect(eventSubject({ kind: 'log', job_id: JOB, attempt: 1 })).toBe(`muster.evt.log.${JOB}`);
  expect(eventSubject({ kind: 'node', node_id: JOB, state: 'ready', owner: 'a' })).toBe(`muster.evt.node.${JOB}`);
  expect(commandSubject('replica-a_1')).toBe('muster.cmd.replica-a_1');
});

it('escapes dots, wildcards, spaces and its own escape, so that different ids never share a token', () => {
  const ids = ['runner.example.com-1a2b3c4d', 'runner~2eexample', 'a*', 'a>', 'a b', '~', '', 'é', 'runner_example'];
  const tokens = ids.map(subjectToken);
  for (const token of tokens) expect(token).toMatch(/^[A-Za-z0-9_~-]+$/);
  expect(new Set(tokens).size).toBe(ids.length);
  expect(subjectToken('runner.example.com-1a2b3c4d')).toBe('runner~2eexample~2ecom-1a2b3c4d');
});
