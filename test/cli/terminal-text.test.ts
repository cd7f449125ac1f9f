// Network text printed by the CLI acts on nothing (issue 8 item 9): escape sequences, newlines,
// C1 controls and bidirectional overrides come out as visible `\u{…}`, and a node whose hostname
// holds them (from a plane that did not refuse it) takes one row of `muster nodes`, no more.
import { describe, expect, it } from 'vitest';
import { nodesTable } from '../../cli/nodes-command.js';
import { terminalText } from '../../cli/terminal-text.js';
import type { NodeView } from '../../supervisor/admin/wire-types.js';

// eslint-disable-next-line no-control-regex -- finding control characters is the point
const ACTING = /[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/;

describe('terminalText', () => {
  it('writes every character a terminal would act on as a visible escape', () => {
    expect(terminalText('\x1b]0;pwned\x07\x1b[2J')).toBe('\\u{1b}]0;pwned\\u{7}\\u{1b}[2J');
    expect(terminalText('a\nb\r\tc\u009bd\u202ee\u2028')).toBe('a\\u{a}b\\u{d}\\u{9}c\\u{9b}d\\u{202e}e\\u{2028}');
  });

  it('leaves printable text alone, non-ASCII included', () => {
    for (const text of ['runner-01.example.test', 'ünïcødé ✓ 日本', '']) expect(terminalText(text)).toBe(text);
  });
});

describe('nodesTable with hostile hostnames', () => {
  it('prints one row per node and no control character', () => {
    const view = (hostname: string, i: number): NodeView =>
      ({
        node_id: `00000000-0000-4000-8000-00000000000${i}`,
        hostname,
        state: 'ready',
        connected: true,
        tags: {},
        transport: 'tcp',
        protocol_version: 1,
        owner: 'cp',
        running_jobs: [],
        last_heartbeat: '2026-12-01T08:00:00.000Z',
      }) as NodeView;
    const hostnames = ['\x1b]0;pwned\x07\x1b[2J', 'evil\n00000000-0000-4000-8000-000000000009  forged  ready', 'plain'];
    const table = nodesTable(hostnames.map(view), new Date('2026-12-01T08:00:05Z'));
    expect(table.split('\n').filter((l) => l !== '')).toHaveLength(1 + hostnames.length);
    expect(table.replaceAll('\n', '')).not.toMatch(ACTING);
    expect(table).toContain('\\u{1b}]0;pwned\\u{7}\\u{1b}[2J');
  });
});
