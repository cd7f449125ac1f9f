// The plane's own masking of one attempt's output (PROTOCOL.md section 4 rule 11): every exact
// secret value of the job becomes `***` in `LogChunk.data` and in `result.stdout`/`stderr` before
// any of it is stored, whatever the node did, including a value split across consecutive chunks
// of one stream. A chunk that ends inside what could still be a secret is stored without that
// tail; the tail goes in front of the stream's next chunk, or is stored as a chunk of its own
// when the attempt's result arrives (an attempt withdrawn without a result loses it: at most one
// character less than the longest secret, and only text that begins a secret).
// Only chunks in sequence move a stream on: a repeat or a chunk after a gap, which the store
// drops or answers with `LogResync`, is masked whole and leaves the held tail as it was. After a
// plane restart the first chunk of a stream sets its sequence; if the store did not take that
// chunk (a repeat of one stored before the restart), the stream starts over at the next one.
import type { LogStream } from '../../protocol/messages.js';
import { SecretMasker } from '../../protocol/secret-masker.js';

interface StreamMask {
  masker: SecretMasker;
  /** The seq the next chunk in order carries; unknown until the first chunk (after a restart). */
  nextSeq: number | undefined;
}

export class OutputMasks {
  readonly #secrets: readonly string[];
  readonly #whole: SecretMasker;
  readonly #streams = new Map<LogStream, StreamMask>();

  private constructor(secrets: readonly string[]) {
    this.#secrets = secrets;
    this.#whole = new SecretMasker(secrets);
  }

  /** The masks of a job with these secrets; undefined when it has none (nothing to do, nothing kept). */
  static of(secrets: Record<string, string> | undefined): OutputMasks | undefined {
    const values = Object.values(secrets ?? {}).filter((v) => v.length > 0);
    return values.length === 0 ? undefined : new OutputMasks(values);
  }

  /** What to store of chunk `seq` of `stream`. */
  chunk(stream: LogStream, seq: number, data: string): string {
    const mask = this.#stream(stream);
    if (mask.nextSeq !== undefined && seq !== mask.nextSeq) return this.#whole.mask(data);
    mask.nextSeq = seq + 1;
    return mask.masker.push(data);
  }

  /** The store's answer for a chunk: one that moved its stream on but was not stored starts the stream over. */
  settled(stream: LogStream, seq: number, stored: boolean): void {
    if (!stored && this.#streams.get(stream)?.nextSeq === seq + 1) this.#streams.delete(stream);
  }

  /**
   * The attempt ended: each stream's held tail (it did not become the longer secret it could
   * have begun; a shorter one in it is masked), with the seq a next chunk of that stream would
   * have had.
   */
  end(): Array<{ stream: LogStream; seq: number; data: string }> {
    const tails: Array<{ stream: LogStream; seq: number; data: string }> = [];
    for (const [stream, mask] of this.#streams) {
      const data = mask.masker.end();
      if (data !== '' && mask.nextSeq !== undefined) tails.push({ stream, seq: mask.nextSeq, data });
    }
    return tails;
  }

  /** A whole text (a result's stdout or stderr), masked. */
  text(value: string): string {
    return this.#whole.mask(value);
  }

  #stream(stream: LogStream): StreamMask {
    let mask = this.#streams.get(stream);
    if (mask === undefined) {
      mask = { masker: new SecretMasker(this.#secrets), nextSeq: undefined };
      this.#streams.set(stream, mask);
    }
    return mask;
  }
}
