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
