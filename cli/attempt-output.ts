// One attempt's output at a time, for `job submit --wait` and `job logs --follow`. A job runs
// again when the plane takes an attempt back (its node died, or came back too late after a
// restart): the first chunk of the new attempt is preceded on stderr by
// `muster: attempt 2 started on node <id> (<hostname>)`, and what an earlier attempt still
// sends after that (it may run on until its node hears of the change) is not shown. The
// plane keeps every attempt's output: `muster job logs` prints it all.
import type { AttemptAnswer, LogRecord } from '../supervisor/admin/wire-types.js';
import type { ApiClient } from './api-client.js';
import type { NodeNames } from './job-status.js';

export class AttemptOutput {
  /** The attempt whose output is shown; undefined before the first chunk. */
  #shown: number | undefined;

  constructor(
    private readonly client: ApiClient,
    private readonly jobId: string,
    private readonly names: NodeNames,
    private readonly write: (chunk: LogRecord) => void,
  ) {}

  /** Shows a chunk of the attempt shown, or of a later one (announced); drops an earlier one's. */
  async show(chunk: LogRecord): Promise<void> {
    if (this.#shown !== undefined && chunk.attempt < this.#shown) return;
    if (this.#shown !== undefined && chunk.attempt > this.#shown) process.stderr.write(`muster: ${await this.#started(chunk.attempt)}\n`);
    this.#shown = chunk.attempt;
    this.write(chunk);
  }

  /** `attempt 2 started on node <id> (<hostname>)`; without the node when the plane cannot say. */
  async #started(attempt: number): Promise<string> {
    let nodeId: string | undefined;
    try {
      const attempts = await this.client.get<AttemptAnswer[]>(`/v1/jobs/${encodeURIComponent(this.jobId)}/attempts`);
      nodeId = attempts.find((a) => a.attempt === attempt)?.node_id;
    } catch {
      // The plane went away meanwhile: the output matters more than the node's name.
    }
    if (nodeId === undefined) return `attempt ${attempt} started`;
    const host = await this.names.hostname(nodeId);
    return `attempt ${attempt} started on node ${nodeId}${host === undefined ? '' : ` (${host})`}`;
  }
}
