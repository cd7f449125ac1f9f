// One output stream (stdout or stderr) of one job attempt, on its way to LogChunks:
// bytes are decoded as UTF-8 (a character split across reads is kept whole), secrets
// are masked, and what accumulates is cut into chunks of at most `maxChunkBytes`,
// numbered from 0 with no gaps. Every chunk sent is kept so that a LogResync can be served.
import { StringDecoder } from 'node:string_decoder';
import type { LogStream } from '../protocol/messages.js';
import type { SecretMasker } from '../protocol/secret-masker.js';
import { TextTail } from './text-tail.js';

export interface OutputStreamOptions {
  stream: LogStream;
  masker: SecretMasker;
  /** Upper bound of one chunk's `data`, in UTF-8 bytes. */
  maxChunkBytes: number;
  /** How much of the stream's end the result keeps, in bytes. */
  tailBytes: number;
  /** Called for each new chunk, in `seq` order. */
  emit(seq: number, data: string): void;
}

export class OutputStream {
  readonly stream: LogStream;
  private readonly decoder = new StringDecoder('utf8');
  private readonly tail: TextTail;
  private readonly sent: string[] = [];
  private pending = '';
  private pendingBytes = 0;
  private ended = false;

  constructor(private readonly options: OutputStreamOptions) {
    this.stream = options.stream;
    this.tail = new TextTail(options.tailBytes);
  }

  /** Raw bytes from the process. Flushes at once when a full chunk has accumulated. */
  write(bytes: Buffer): void {
    this.append(this.options.masker.push(this.decoder.write(bytes)));
  }

  /** A line from the agent itself (spawn failure, timeout), masked like the job's own output. */
  note(text: string): void {
    this.append(this.options.masker.push(text));
  }

  get hasPending(): boolean {
    return this.pendingBytes > 0;
  }

  /** The `seq` the next chunk will get. */
  get nextSeq(): number {
    return this.sent.length;
  }

  /** Sends what has accumulated, as one or more chunks. */
  flush(): void {
    if (this.pendingBytes === 0) return;
    const text = this.pending;
    this.pending = '';
    this.pendingBytes = 0;
    for (const piece of splitUtf8(text, this.options.maxChunkBytes)) {
      const seq = this.sent.length;
      this.sent.push(piece);
      this.tail.append(piece);
      this.options.emit(seq, piece);
    }
  }

  /** The process closed the stream: releases held-back text and flushes everything. */
  end(): void {
    if (this.ended) return;
    this.ended = true;
    this.append(this.options.masker.push(this.decoder.end()) + this.options.masker.end());
    this.flush();
  }

  /** Chunks already sent, from `seq` on, for a LogResync. */
  chunksFrom(seq: number): Array<{ seq: number; data: string }> {
    const out: Array<{ seq: number; data: string }> = [];
    for (let s = Math.max(0, seq); s < this.sent.length; s++) out.push({ seq: s, data: this.sent[s]! });
    return out;
  }

  /** The last `tailBytes` of what was sent (so already masked). */
  tailText(): string {
    return this.tail.text();
  }

  private append(text: string): void {
    if (text.length === 0) return;
    this.pending += text;
    this.pendingBytes += Buffer.byteLength(text);
    if (this.pendingBytes >= this.options.maxChunkBytes) this.flush();
  }
}

/** Cuts a text into pieces of at most `maxBytes` UTF-8 bytes, never inside a character. */
export function splitUtf8(text: string, maxBytes: number): string[] {
  const bytes = Buffer.from(text, 'utf8');
  if (bytes.length <= maxBytes) return [text];
  const pieces: string[] = [];
  let start = 0;
  while (start < bytes.length) {
    let end = Math.min(bytes.length, start + maxBytes);
    // Back up over continuation bytes so that the cut falls before a character's first byte.
    while (end < bytes.length && end > start && (bytes[end]! & 0xc0) === 0x80) end -= 1;
    pieces.push(bytes.subarray(start, end).toString('utf8'));
    start = end;
  }
  return pieces;
}
