import { createServer as createNetServer } from 'node:net';
import test from 'ava';
import { listen } from '../net/listen.js';
import { addAgent } from '../testing/helpers/agents.js';
import { runCli, startHuman, testServer } from '../testing/helpers/cli.js';

// Issue 18, item 1: a give peer learns whether the world can reach it, before any verifier says so.

test('give asks the server to dial it back: reachable, or not and what to do; status shows it; the check is rate limited (issue 18, item 1)', async (t) => {
  const { dir, server } = await testServer(t, ['--rate-reachability', '3/0.001']);
  const [open, closed] = [await addAgent(server, dir, 'open'), await addAgent(server, dir, 'closed')];
  const reachable = await startHuman(['give', '--listen', '127.0.0.1:0', '--home', open.home], /reachable: /);
  t.teardown(() => reachable.stop('SIGKILL'));
  t.regex(reachable.stderr(), /give: reachable: the server reached 127\.0\.0\.1:\d+ \(TLS in [\d.]+ ms\), so get clients will connect to it directly/);
  t.regex((await runCli(['status', '--home', open.home])).stdout, /^reachable: the server reached .* \(checked \d{4}-/m);

  // A router that forwards nothing: the registered (public) port is not this peer's.
  const nothing = createNetServer();
  const nothingPort = (await listen(nothing, '127.0.0.1', 0)).port;
  await new Promise((r) => nothing.close(r));
  const hidden = await startHuman(['give', '--listen', '127.0.0.1:0', '--home', closed.home, '--public-port', String(nothingPort)], /reachable: /);
  t.teardown(() => hidden.stop('SIGKILL'));
  t.regex(hidden.stderr(), new RegExp(`give: NOT reachable: the server could not reach 127\\.0\\.0\\.1:${nothingPort} \\(refused\\) — nothing accepts connections at that address: is the port forwarded`));

  const api = await closed.api();
  t.teardown(() => api.close());
  t.like(await api.checkReachability(), { reachable: false, status: 'refused', port: nothingPort });
  t.like(await api.checkReachability(), { reachable: false });
  await t.throwsAsync(api.checkReachability(), { code: 'LA_ERR_RATE_LIMITED' } as never, 'three per user, then the limit (the server dials for each)');
});
