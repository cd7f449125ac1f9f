// A best-effort wait with a deadline, for the steps of a shutdown that must not hang on NATS
// (a flush while the server is away would wait for it to come back).

/** Waits for `work` at most `ms`, ignoring its failure. */
export async function boundedWait(work: Promise<unknown>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<void>((resolve) => (timer = setTimeout(resolve, ms)));
  await Promise.race([work.catch(() => undefined), deadline]);
  clearTimeout(timer);
}
