// Real `nats-server` processes for tests: each on a free port of loopback, JetStream on disk
// in its own temporary directory, so that a test can kill (-9), stop (SIGSTOP), restart
// (same port, same store) or remove a server as a fault would.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const NATS_SERVER_BIN = process.env.NATS_SERVER_BIN ?? '/usr/sbin/nats-server';

const READY_TIMEOUT_MS = 15_000;
const PAUSE_TIMEOUT_MS = 5_000;

export interface NatsServerOptions {
  /** Reuse a port (a restart); 0 or absent: a free one, chosen by the server (`-p -1`). */
  port?: number;
  /** Reuse a JetStream store directory (a restart); absent: a new temporary one. */
  storeDir?: string;
  /** Extra command-line arguments, e.g. `--user`, `--pass`. */
  args?: string[];
  /** Serve the monitoring endpoints (`/varz`, `/connz`) on a free port of loopback: `monitorUrl`. */
  monitor?: boolean;
  /** false: a server without JetStream (no `-js`), as a misconfigured one; default true. */
  jetstream?: boolean;
}

export class NatsServer {
  private exitedWith: Promise<void>;

  private constructor(
    private readonly child: ChildProcess,
    readonly port: number,
    readonly storeDir: string,
    private readonly ownsStore: boolean,
    private readonly args: string[],
    /** `http://127.0.0.1:<port>` of `/varz` and `/connz` when started with `monitor`. */
    readonly monitorUrl: string | undefined,
    private readonly jetstream: boolean,
  ) {
    this.exitedWith = new Promise((resolve) => child.once('exit', () => resolve()));
  }

  /** Starts a server and resolves once it accepts clients. */
  static async start(options: NatsServerOptions = {}): Promise<NatsServer> {
    const ownsStore = options.storeDir === undefined;
    const storeDir = options.storeDir ?? mkdtempSync(join(tmpdir(), 'muster-nats-'));
    const args = [...(options.args ?? []), ...(options.monitor === true ? ['-m', '-1'] : [])];
    const jetstream = options.jetstream === false ? [] : ['-js', '-sd', storeDir];
    const child = spawn(
      NATS_SERVER_BIN,
      ['-a', '127.0.0.1', '-p', String(options.port ?? -1), ...jetstream, ...args],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    const { port, monitorPort } = await readyPorts(child);
    const monitorUrl = monitorPort === undefined ? undefined : `http://127.0.0.1:${monitorPort}`;
    return new NatsServer(child, port, storeDir, ownsStore, args, monitorUrl, options.jetstream !== false);
  }

  get url(): string {
    return `nats://127.0.0.1:${this.port}`;
  }

  get pid(): number {
    return this.child.pid ?? -1;
  }

  /** `kill -9`: the server stops at once, JetStream keeps what it had written. */
  async kill9(): Promise<void> {
    this.child.kill('SIGKILL');
    await this.exitedWith;
  }

  /**
   * A stopped process keeps its sockets open but answers nothing: a hung server. Resolves once
   * every thread of it is stopped: the signal is delivered on the kernel's time, and a request
   * sent at once could otherwise still be answered (seen once, under load).
   */
  async pause(): Promise<void> {
    this.child.kill('SIGSTOP');
    const pid = this.pid;
    const until = Date.now() + PAUSE_TIMEOUT_MS;
    while (!allThreadsStopped(pid)) {
      if (Date.now() > until) throw new Error(`nats-server ${pid} not stopped ${PAUSE_TIMEOUT_MS} ms after SIGSTOP`);
      await new Promise((resolve) => setImmediate(resolve));
    }
  }

  resume(): void {
    this.child.kill('SIGCONT');
  }

  /** A new server on the same port and store (after `kill9` or `stop`). */
  restart(): Promise<NatsServer> {
    // `args` already holds the monitoring flag, if any (on a new free port).
    return NatsServer.start({ port: this.port, storeDir: this.storeDir, args: this.args, jetstream: this.jetstream });
  }

  /** Stops the server (SIGTERM, then SIGKILL) and removes its store unless it was given one. */
  async stop(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) {
      this.child.kill('SIGCONT');
      this.child.kill('SIGTERM');
      const timer = setTimeout(() => this.child.kill('SIGKILL'), 5_000);
      await this.exitedWith;
      clearTimeout(timer);
    }
    if (this.ownsStore) rmSync(this.storeDir, { recursive: true, force: true });
  }
}

/** Whether every thread of `pid` is in the stopped state (`T` in /proc/<pid>/task/<tid>/stat). */
function allThreadsStopped(pid: number): boolean {
  const tasks = readdirSync(`/proc/${pid}/task`);
  return tasks.every((tid) => {
    const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
    // The state follows the command name, which may hold spaces and parentheses: after its last ')'.
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) === 'T';
  });
}

/** Reads the server's log until it says it listens for clients (and monitors, if asked) and is ready. */
function readyPorts(child: ChildProcess): Promise<{ port: number; monitorPort: number | undefined }> {
  return new Promise((resolve, reject) => {
    let log = '';
    let port: number | undefined;
    let monitorPort: number | undefined;
    const timer = setTimeout(() => fail(new Error(`nats-server not ready in ${READY_TIMEOUT_MS} ms:\n${log}`)), READY_TIMEOUT_MS);
    const fail = (err: Error): void => {
      clearTimeout(timer);
      child.kill('SIGKILL');
      reject(err);
    };
    child.once('error', fail);
    child.once('exit', (code) => fail(new Error(`nats-server exited (${code}) before ready:\n${log}`)));
    child.stderr?.setEncoding('utf8');
    child.stderr?.on('data', (text: string) => {
      if (log.length < 64 * 1024) log += text;
      const listening = /Listening for client connections on [^\s]+:(\d+)/.exec(log);
      if (listening) port = Number(listening[1]);
      const monitoring = /Starting http monitor on [^\s]+:(\d+)/.exec(log);
      if (monitoring) monitorPort = Number(monitoring[1]);
      if (port !== undefined && log.includes('Server is ready')) {
        clearTimeout(timer);
        child.removeAllListeners('exit');
        child.stderr?.removeAllListeners('data');
        child.stderr?.resume();
        resolve({ port, monitorPort });
      }
    });
  });
}
