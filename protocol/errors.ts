// The protocol's error codes (PROTOCOL.md section 4) as one typed error.
// Every failure that crosses a seam is a MusterError; `fatal` follows from the code.

export const ERROR_CODES = {
  malformed_frame: true,
  frame_too_large: true,
  unsupported_codec: true,
  decrypt_failed: true,
  not_registered: true,
  register_timeout: true,
  auth_failed: true,
  token_expired: true,
  token_revoked: true,
  forbidden: true,
  session_replaced: true,
  shutting_down: true,
  unsupported_version: true,
  unknown_type: false,
  invalid_message: false,
  rate_limited: false,
  artifact_rejected: false,
  internal: false,
} as const satisfies Record<string, boolean>;

export type ErrorCode = keyof typeof ERROR_CODES;

export function isErrorCode(value: unknown): value is ErrorCode {
  return typeof value === 'string' && Object.hasOwn(ERROR_CODES, value);
}

export interface MusterErrorOptions {
  /** Dotted path of the offending field, for `invalid_message`. */
  field?: string;
  /** The `id` of the message that caused the error, echoed as `reply_to`. */
  replyTo?: string;
  /**
   * Overrides the code's usual fatality, for the one case where the sender closes after a
   * code that is normally not fatal (an `internal` failure that stopped the node's actor):
   * `fatal` tells the peer what the sender does (PROTOCOL.md section 3, `Error`).
   */
  fatal?: boolean;
  /**
   * The failure is passing (a backing service did not answer, or is away): the same request may
   * succeed after about this long. Never on the wire; the admin API answers such an error 503
   * with `Retry-After` (admin/api-errors.ts).
   */
  retryAfterMs?: number;
  cause?: unknown;
}

export class MusterError extends Error {
  override readonly name = 'MusterError';
  readonly code: ErrorCode;
  readonly fatal: boolean;
  readonly field: string | undefined;
  readonly replyTo: string | undefined;
  readonly retryAfterMs: number | undefined;

  constructor(code: ErrorCode, message: string, options: MusterErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.fatal = options.fatal ?? ERROR_CODES[code];
    this.field = options.field;
    this.replyTo = options.replyTo;
    this.retryAfterMs = options.retryAfterMs;
  }

  /** The `data` of the `Error` message that reports this error to a peer. */
  toData(): { code: ErrorCode; message: string; fatal: boolean; field?: string } {
    const data: { code: ErrorCode; message: string; fatal: boolean; field?: string } = {
      code: this.code,
      message: this.message,
      fatal: this.fatal,
    };
    if (this.field !== undefined) data.field = this.field;
    return data;
  }
}

/** Wraps anything thrown into a MusterError; foreign errors become `internal` without leaking their text. */
export function toMusterError(err: unknown): MusterError {
  if (err instanceof MusterError) return err;
  return new MusterError('internal', 'internal error', { cause: err });
}
