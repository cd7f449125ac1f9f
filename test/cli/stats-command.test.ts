// `muster stats` output: the readiness line (with the reason when the plane is not ready),
// then the counters, names padded, anything from the network escaped.
import { expect, it } from 'vitest';
import { statsText } from '../../cli/stats-command.js';

it('prints the status, then one aligned line per counter', () => {
  expect(statsText({ status: 'ready' }, { active_connections: 3, jobs_Queued: 12 })).toBe(
    'status: ready\nactive_connections  3\njobs_Queued         12\n',
  );
});

it('gives the reason of a plane that is not ready, escaped', () => {
  expect(statsText({ status: 'not_ready', reason: 'store: disk full\u001b[2J' }, {})).toBe('status: not_ready: store: disk full\\u{1b}[2J\n');
});
