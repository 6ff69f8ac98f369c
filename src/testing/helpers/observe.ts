/** Polls `probe` every 50 ms until it gives a value (not undefined, not a rejection), for up to `limitMs`. */
export async function until<T>(what: string, probe: () => Promise<T | undefined>, limitMs = 10_000): Promise<T> {
  const deadline = Date.now() + limitMs;
  for (;;) {
    const value = await probe().catch(() => undefined);
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** One scrape of a Prometheus endpoint: read a sample by its name (with labels, as printed). */
export async function scrape(url: string): Promise<(sample: string) => number | undefined> {
  const text = await (await fetch(url)).text();
  return (sample) => {
    const escaped = sample.replace(/[{}"()[\]\\.*+?^$|]/g, (c) => `\\${c}`);
    const m = new RegExp(`^${escaped} (\\S+)$`, 'm').exec(text);
    return m ? Number(m[1]) : undefined;
  };
}

/**
 * Waits until the server holds `n` long-polls (its `lantern_long_polls_held` gauge), so that a test
 * that then sends knows it tests a wake-up, not a message already queued when the poll arrived.
 * The server must run with `--metrics-listen 127.0.0.1:0`.
 */
export async function untilPollsHeld(server: { events: Array<Record<string, unknown>> }, n = 1): Promise<void> {
  const url = server.events.find((e) => e['event'] === 'metrics-listening')?.['url'];
  if (typeof url !== 'string') throw new Error('start the server with --metrics-listen 127.0.0.1:0 to observe held polls');
  await until(`${n} held poll(s)`, async () => ((await scrape(url))('lantern_long_polls_held') === n ? true : undefined));
}
