// A small reader of server-sent events (the WHATWG event-stream format) from a fetch body,
// enough for `muster job logs --follow`: `event`, `data` (multi-line), `id`; comments skipped.

export interface SseEvent {
  /** `message` unless the server named it. */
  event: string;
  data: string;
  /** The `id` field of this event, if it had one. */
  id?: string;
}

export async function* readSse(body: AsyncIterable<Uint8Array>): AsyncGenerator<SseEvent> {
  const decoder = new TextDecoder();
  let buffer = '';
  let pending = newPending();
  for await (const bytes of body) {
    buffer += decoder.decode(bytes, { stream: true });
    // A trailing CR may be the first half of a CRLF split across reads: keep it for later.
    const cut = buffer.endsWith('\r') ? buffer.length - 1 : buffer.length;
    const lines = buffer.slice(0, cut).split(/\r\n|\r|\n/);
    buffer = (lines.pop() ?? '') + buffer.slice(cut);
    for (const line of lines) {
      const event = feed(pending, line);
      if (event === 'dispatch') {
        if (pending.data.length > 0) yield toEvent(pending);
        pending = newPending();
      }
    }
  }
}

interface Pending {
  event: string;
  data: string[];
  id: string | undefined;
}

function newPending(): Pending {
  return { event: '', data: [], id: undefined };
}

function feed(pending: Pending, line: string): 'dispatch' | 'more' {
  if (line === '') return 'dispatch';
  if (line.startsWith(':')) return 'more';
  const colon = line.indexOf(':');
  const field = colon === -1 ? line : line.slice(0, colon);
  let value = colon === -1 ? '' : line.slice(colon + 1);
  if (value.startsWith(' ')) value = value.slice(1);
  if (field === 'event') pending.event = value;
  else if (field === 'data') pending.data.push(value);
  else if (field === 'id' && !value.includes('\0')) pending.id = value;
  return 'more';
}

function toEvent(pending: Pending): SseEvent {
  const event: SseEvent = { event: pending.event === '' ? 'message' : pending.event, data: pending.data.join('\n') };
  if (pending.id !== undefined) event.id = pending.id;
  return event;
}
