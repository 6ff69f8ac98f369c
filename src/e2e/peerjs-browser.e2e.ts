import { readFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import { createRequire } from 'node:module';
import test from 'ava';
import { requireTool } from '../testing/helpers/required-tools.js';
import { chromium } from 'playwright-core';
import { listen } from '../net/listen.js';
import { addAgent } from '../testing/helpers/agents.js';
import { runCli, startServer } from '../testing/helpers/cli.js';
import { tempDir } from '../testing/helpers/temp-dir.js';

// The real PeerJS client (peerjs@1.5.5) in two pages of headless Chromium (Debian's chromium,
// driven by playwright-core; no browser download) registers through our broker, with tickets as
// its tokens, opens a WebRTC data channel and echoes a message.

const CHROMIUM = '/usr/bin/chromium';
// Flags that work headless as root on these machines (../shared/notes/toolchain.md).
const FLAGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--disable-features=WebRtcHideLocalIpsWithMdns',
];

declare const Peer: new (id: string, options: Record<string, unknown>) => {
  on(event: string, fn: (...args: never[]) => void): void;
  connect(id: string, options?: Record<string, unknown>): { on(event: string, fn: (...args: never[]) => void): void; send(data: unknown): void };
};

test('two pages running the real PeerJS client signal through our broker and echo over a data channel', async (t) => {
  await requireTool('chromium');
  const dir = await tempDir('lantern-peerjs-browser-');
  t.teardown(() => dir.remove());
  const server = await startServer(`${dir.path}/data`, ['--peerjs-require-auth', '--peerjs-expire-timeout', '1s']);
  t.teardown(() => server.stop());
  const port = Number(new URL(server.url).port);
  const tickets: string[] = [];
  for (const name of ['alice', 'bob']) {
    const agent = await addAgent(server, dir.path, name);
    const ticket = await runCli(['ticket', '--for', 'peerjs', '--home', agent.home]);
    t.is(ticket.code, 0, ticket.stderr);
    tickets.push(ticket.stdout.trim());
  }

  // A page origin of its own, serving the PeerJS browser bundle.
  const bundle = await readFile(createRequire(import.meta.url).resolve('peerjs/dist/peerjs.min.js'));
  const site = createServer((req, res) => {
    if (req.url === '/peerjs.min.js') res.writeHead(200, { 'content-type': 'text/javascript' }).end(bundle);
    else res.writeHead(200, { 'content-type': 'text/html' }).end('<!doctype html><title>peerjs</title><script src="/peerjs.min.js"></script>');
  });
  const sitePort = (await listen(site, '127.0.0.1', 0)).port;
  t.teardown(() => new Promise<void>((r) => site.close(() => r())));

  const context = await chromium.launchPersistentContext(`${dir.path}/profile`, { executablePath: CHROMIUM, headless: true, args: FLAGS });
  t.teardown(() => context.close());
  const [pageA, pageB] = [await context.newPage(), await context.newPage()];
  for (const page of [pageA, pageB]) await page.goto(`http://127.0.0.1:${sitePort}/`);
  const options = (token: string) => ({ host: '127.0.0.1', port, path: '/', key: 'peerjs', secure: false, token, debug: 0, config: { iceServers: [] } });

  // Alice answers every data connection with an echo.
  await pageA.evaluate(
    (o) =>
      new Promise<void>((resolve, reject) => {
        const peer = new Peer('alice-page', o);
        peer.on('open', () => resolve());
        peer.on('error', (err: { type: string }) => reject(new Error(err.type)));
        peer.on('connection', (conn: { on(e: string, f: (d: unknown) => void): void; send(d: unknown): void }) =>
          conn.on('data', (d: unknown) => conn.send(`echo: ${String(d)}`)),
        );
      }),
    options(tickets[0]!),
  );
  const started = Date.now();
  const result = await pageB.evaluate(
    (o) =>
      new Promise<{ echo: string; absent: string }>((resolve, reject) => {
        const peer = new Peer('bob-page', o);
        const timer = setTimeout(() => reject(new Error('timed out')), 20_000);
        let echo = '';
        peer.on('error', (err: { type: string }) => {
          // Connecting to an id nobody holds ends with EXPIRE -> peer-unavailable (not fatal).
          if (err.type === 'peer-unavailable' && echo) {
            clearTimeout(timer);
            resolve({ echo, absent: err.type });
          } else if (err.type !== 'peer-unavailable') reject(new Error(err.type));
        });
        peer.on('open', () => {
          const conn = peer.connect('alice-page', { reliable: true });
          conn.on('open', () => conn.send('hello over WebRTC'));
          conn.on('data', (d: unknown) => {
            echo = String(d);
            peer.connect('nobody-here');
          });
        });
      }),
    options(tickets[1]!),
  );
  t.log(`echo after ${Date.now() - started} ms`);
  t.deepEqual(result, { echo: 'echo: hello over WebRTC', absent: 'peer-unavailable' });

  // Without a ticket the real client gets the broker's ERROR as a server-error.
  const refused = await pageB.evaluate(
    (o) =>
      new Promise<string>((resolve) => {
        const peer = new Peer('mallory-page', o);
        peer.on('open', () => resolve('open'));
        peer.on('error', (err: { type: string; message: string }) => resolve(`${err.type}: ${err.message}`));
      }),
    options('not-a-ticket'),
  );
  t.regex(refused, /^server-error: Invalid token/);
});
