// A tiny OTLP/HTTP trace receiver for tests: what a collector is to the plane and the agent.
// It takes `POST /v1/traces` in protobuf (the exporters' default), decodes each
// ExportTraceServiceRequest with a small protobuf wire-format reader (the field numbers of
// opentelemetry-proto's trace.proto), and keeps every span with its resource's service name.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { gunzipSync } from 'node:zlib';

export type AttributeValue = string | number | boolean | bigint | undefined;

export interface ReceivedSpan {
  service: string;
  traceId: string;
  spanId: string;
  /** Empty for a root span. */
  parentSpanId: string;
  name: string;
  kind: number;
  attributes: Record<string, AttributeValue>;
  /** 0 unset, 1 ok, 2 error. */
  statusCode: number;
}

export class OtlpReceiver {
  readonly spans: ReceivedSpan[] = [];
  /** Content types of the requests taken, to show which encoding the exporters used. */
  readonly contentTypes: string[] = [];
  private waiters: Array<() => void> = [];

  private readonly server: Server;
  /** `http://127.0.0.1:port`: what OTEL_EXPORTER_OTLP_ENDPOINT is set to. */
  url = '';

  private constructor() {
    this.server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (chunk: Buffer) => chunks.push(chunk));
      req.on('end', () => {
        let body = Buffer.concat(chunks);
        if (req.headers['content-encoding'] === 'gzip') body = gunzipSync(body);
        this.take(req.url ?? '', String(req.headers['content-type']), body);
        // An empty ExportTraceServiceResponse: all accepted.
        res.writeHead(200, { 'content-type': 'application/x-protobuf' }).end();
      });
    });
  }

  static async start(): Promise<OtlpReceiver> {
    const receiver = new OtlpReceiver();
    await new Promise<void>((resolve) => receiver.server.listen(0, '127.0.0.1', resolve));
    receiver.url = `http://127.0.0.1:${(receiver.server.address() as AddressInfo).port}`;
    return receiver;
  }

  /** Resolves once a span matching `match` has arrived. */
  async waitFor(match: (span: ReceivedSpan) => boolean): Promise<ReceivedSpan> {
    for (;;) {
      const found = this.spans.find(match);
      if (found !== undefined) return found;
      await new Promise<void>((resolve) => this.waiters.push(resolve));
    }
  }

  close(): Promise<void> {
    return new Promise((resolve) => this.server.close(() => resolve()));
  }

  private take(path: string, contentType: string, body: Buffer): void {
    if (path !== '/v1/traces') return;
    this.contentTypes.push(contentType);
    this.spans.push(...decodeTraceRequest(body));
    const waiters = this.waiters;
    this.waiters = [];
    for (const wake of waiters) wake();
  }
}

// ---- protobuf wire format (https://protobuf.dev/programming-guides/encoding/) ----

type Field = { wire: 0; value: bigint } | { wire: 1; value: Buffer } | { wire: 2; value: Buffer } | { wire: 5; value: Buffer };

/** Every field of one message, by field number, in order. */
function fields(buf: Buffer): Map<number, Field[]> {
  const out = new Map<number, Field[]>();
  let at = 0;
  const varint = (): bigint => {
    let result = 0n;
    let shift = 0n;
    for (;;) {
      const byte = buf[at++];
      if (byte === undefined) throw new Error('truncated varint');
      result |= BigInt(byte & 0x7f) << shift;
      if ((byte & 0x80) === 0) return result;
      shift += 7n;
    }
  };
  while (at < buf.length) {
    const tag = Number(varint());
    const number = tag >>> 3;
    const wire = tag & 7;
    let field: Field;
    if (wire === 0) field = { wire, value: varint() };
    else if (wire === 1) field = { wire, value: buf.subarray(at, (at += 8)) };
    else if (wire === 2) {
      const length = Number(varint());
      field = { wire, value: buf.subarray(at, (at += length)) };
    } else if (wire === 5) field = { wire, value: buf.subarray(at, (at += 4)) };
    else throw new Error(`unsupported wire type ${wire}`);
    const list = out.get(number) ?? [];
    list.push(field);
    out.set(number, list);
  }
  return out;
}

function bytesOf(map: Map<number, Field[]>, n: number): Buffer[] {
  return (map.get(n) ?? []).filter((f): f is { wire: 2; value: Buffer } => f.wire === 2).map((f) => f.value);
}

function stringOf(map: Map<number, Field[]>, n: number): string {
  return bytesOf(map, n)[0]?.toString('utf8') ?? '';
}

function intOf(map: Map<number, Field[]>, n: number): number {
  const f = map.get(n)?.[0];
  return f?.wire === 0 ? Number(f.value) : 0;
}

/** AnyValue: string 1, bool 2, int 3, double 4. */
function anyValue(buf: Buffer): AttributeValue {
  const map = fields(buf);
  if (map.has(1)) return stringOf(map, 1);
  const bool = map.get(2)?.[0];
  if (bool?.wire === 0) return bool.value !== 0n;
  const int = map.get(3)?.[0];
  if (int?.wire === 0) return BigInt.asIntN(64, int.value) <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(BigInt.asIntN(64, int.value)) : int.value;
  const double = map.get(4)?.[0];
  if (double?.wire === 1) return double.value.readDoubleLE(0);
  return undefined;
}

/** KeyValue list: key 1, value 2. */
function attributes(list: Buffer[]): Record<string, AttributeValue> {
  const out: Record<string, AttributeValue> = {};
  for (const kv of list) {
    const map = fields(kv);
    const value = bytesOf(map, 2)[0];
    out[stringOf(map, 1)] = value === undefined ? undefined : anyValue(value);
  }
  return out;
}

/** ExportTraceServiceRequest → ResourceSpans (1) → Resource (1) attributes (1), ScopeSpans (2) → Span (2). */
export function decodeTraceRequest(body: Buffer): ReceivedSpan[] {
  const spans: ReceivedSpan[] = [];
  for (const resourceSpans of bytesOf(fields(body), 1)) {
    const rs = fields(resourceSpans);
    const resource = bytesOf(rs, 1)[0];
    const service = String(resource === undefined ? '' : (attributes(bytesOf(fields(resource), 1))['service.name'] ?? ''));
    for (const scopeSpans of bytesOf(rs, 2)) {
      for (const spanBytes of bytesOf(fields(scopeSpans), 2)) {
        // Span: trace_id 1, span_id 2, parent_span_id 4, name 5, kind 6, attributes 9, status 15 (code 3).
        const span = fields(spanBytes);
        const status = bytesOf(span, 15)[0];
        spans.push({
          service,
          traceId: bytesOf(span, 1)[0]?.toString('hex') ?? '',
          spanId: bytesOf(span, 2)[0]?.toString('hex') ?? '',
          parentSpanId: bytesOf(span, 4)[0]?.toString('hex') ?? '',
          name: stringOf(span, 5),
          kind: intOf(span, 6),
          attributes: attributes(bytesOf(span, 9)),
          statusCode: status === undefined ? 0 : intOf(fields(status), 3),
        });
      }
    }
  }
  return spans;
}
