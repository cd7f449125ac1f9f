// Text from the network, made safe to print on a terminal (issue 8 item 9). The plane refuses
// control characters in names and identifiers, but the CLI may talk to an older or a foreign
// plane, and free text (reasons, log lines in a table) may hold anything: an escape sequence
// could retitle the window, clear the screen or forge table rows. Each character that a
// terminal would act on, or that reorders what is shown, is written as a visible `\u{…}`.

/**
 * C0 controls, DEL, C1 controls (0x9b is a one-byte CSI on some terminals), the line and
 * paragraph separators, and the bidirectional overrides and isolates (Trojan Source, CVE-2021-42574).
 */
// eslint-disable-next-line no-control-regex -- finding control characters is the point
const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;

/** `text` with every unsafe character written as `\u{hex}` (an escaped text reads as what it was, and acts on nothing). */
export function terminalText(text: string): string {
  return text.replace(UNSAFE, (c) => `\\u{${c.codePointAt(0)!.toString(16)}}`);
}
