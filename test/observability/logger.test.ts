import { describe, it, expect, afterEach } from 'vitest';
import { Writable } from 'node:stream';
import { createLogger } from '../../observability/logger.js';

/** A destination that keeps every JSON line pino writes. */
function sink(): { stream: Writable; lines: () => Record<string, unknown>[]; text: () => string } {
  const chunks: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer | string, _encoding, callback) {
      chunks.push(chunk.toString());
      callback();
    },
  });
  const text = (): string => chunks.join('');
  const lines = (): Record<string, unknown>[] =>
    text()
      .split('\n')
      .filter((line) => line !== '')
      .map((line) => JSON.parse(line) as Record<string, unknown>);
  return { stream, lines, text };
}

const savedLevel = process.env.MUSTER_LOG_LEVEL;
afterEach(() => {
  if (savedLevel === undefined) delete process.env.MUSTER_LOG_LEVEL;
  else process.env.MUSTER_LOG_LEVEL = savedLevel;
});

describe('createLogger', () => {
  it('redacts tokens and secrets in the JSON output', () => {
    const out = sink();
    const logger = createLogger({ destination: out.stream, name: 'test' });
    logger.info(
      {
        auth_token: 'eyJ.registration.token',
        session_token: 'eyJ.session.token',
        secrets: { DB_PASSWORD: 'hunter2' },
        execution_context: { workspace_id: 'w1', secrets: { API_KEY: 'sk-live-123' } },
        data: { auth_token: 'eyJ.nested.token', execution_context: { secrets: { DEPLOY: 'deploy-key' } } },
        headers: { authorization: 'Bearer eyJ.api.token', host: 'localhost' },
        hostname_of_node: 'runner-1',
      },
      'node registered',
    );
    const [line] = out.lines();
    expect(line).toMatchObject({
      msg: 'node registered',
      name: 'test',
      level: 30,
      auth_token: '[Redacted]',
      session_token: '[Redacted]',
      secrets: '[Redacted]',
      execution_context: { workspace_id: 'w1', secrets: '[Redacted]' },
      data: { auth_token: '[Redacted]', execution_context: { secrets: '[Redacted]' } },
      headers: { authorization: '[Redacted]', host: 'localhost' },
      hostname_of_node: 'runner-1',
    });
    for (const leaked of ['eyJ.', 'hunter2', 'sk-live-123', 'deploy-key']) expect(out.text()).not.toContain(leaked);
  });

  it('carries child logger fields on every line', () => {
    const out = sink();
    const logger = createLogger({ destination: out.stream });
    logger.child({ conn_id: 'c-1' }).child({ node_id: 'n-1' }).warn({ job_id: 'j-1', token: 'secret-token' }, 'slow');
    expect(out.lines()[0]).toMatchObject({ conn_id: 'c-1', node_id: 'n-1', job_id: 'j-1', token: '[Redacted]', level: 40 });
  });

  it('refuses an unknown level, naming the setting and the levels it takes', () => {
    expect(() => createLogger({ level: 'loud' })).toThrow('unknown log level "loud" (--log-level, MUSTER_LOG_LEVEL): one of fatal, error, warn, info, debug, trace, silent');
    process.env.MUSTER_LOG_LEVEL = 'verbose';
    expect(() => createLogger()).toThrow('unknown log level "verbose"');
  });

  it('defaults to info and honours MUSTER_LOG_LEVEL and the level option', () => {
    delete process.env.MUSTER_LOG_LEVEL;
    const plain = sink();
    const info = createLogger({ destination: plain.stream });
    info.debug('hidden');
    info.info('shown');
    expect(plain.lines().map((l) => l.msg)).toEqual(['shown']);

    process.env.MUSTER_LOG_LEVEL = 'debug';
    const fromEnv = sink();
    createLogger({ destination: fromEnv.stream }).debug('visible');
    expect(fromEnv.lines().map((l) => l.msg)).toEqual(['visible']);

    const explicit = sink();
    const quiet = createLogger({ destination: explicit.stream, level: 'error' });
    quiet.warn('dropped');
    quiet.error('kept');
    expect(explicit.lines().map((l) => l.msg)).toEqual(['kept']);
  });
});
