// What a replica reads from another over NATS (node commands, node directory pages): UTF-8 JSON
// holding one object, refused before parsing when larger than its bound.
const decoder = new TextDecoder('utf-8', { fatal: true });

/** The object in `data`, or undefined when it is over `maxBytes`, not UTF-8, not JSON, or not an object. */
export function parseJsonObject(data: Uint8Array, maxBytes: number): Record<string, unknown> | undefined {
  if (data.length > maxBytes) return undefined;
  try {
    const value: unknown = JSON.parse(decoder.decode(data));
    return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}
