// Keeps the last N bytes (UTF-8) of a growing text: the `stdout`/`stderr` of a JobResult.

export class TextTail {
  private parts: string[] = [];
  private bytes = 0;

  constructor(private readonly maxBytes: number) {}

  append(text: string): void {
    if (text.length === 0) return;
    this.parts.push(text);
    this.bytes += Buffer.byteLength(text);
    // Drop whole parts that lie entirely before the window; the last cut happens in text().
    while (this.parts.length > 1 && this.bytes - Buffer.byteLength(this.parts[0]!) >= this.maxBytes) {
      this.bytes -= Buffer.byteLength(this.parts.shift()!);
    }
  }

  /** The last `maxBytes` bytes, never starting in the middle of a character. */
  text(): string {
    const all = Buffer.from(this.parts.join(''));
    if (all.length <= this.maxBytes) return all.toString('utf8');
    let start = all.length - this.maxBytes;
    // Skip UTF-8 continuation bytes (10xxxxxx) so that the window starts on a character.
    while (start < all.length && (all[start]! & 0xc0) === 0x80) start += 1;
    return all.subarray(start).toString('utf8');
  }
}
