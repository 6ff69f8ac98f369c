import { lstat, readdir, stat } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { Command, Option } from 'commander';
import { LanternError } from '../../core/errors.js';
import { identityFingerprint } from '../../crypto/peer-identity.js';
import { Contacts } from '../../messaging/contacts.js';
import type { ApiClient } from '../../net/api-client.js';
import { controlRequest } from '../../net/control-socket.js';
import { listen } from '../../net/listen.js';
import { connectPinned } from '../../net/tunnel.js';
import type { PeerInfo } from '../../protocol/messages.js';
import { AUTH_WINDOW_MS } from '../../protocol/request-auth.js';
import type { StoredCredential } from '../../storage/credential-store.js';
import { requireCredential, signedClient, withKeystore } from '../agent-home.js';
import { parseListen, resolveHome } from '../config.js';
import { writeJson, writeLine, type Io } from '../io.js';
import { giveSocketPath } from './give.js';

/** One check: what was looked at, what was found, and what to do when it is not fine. */
export interface Check {
  name: string;
  status: 'ok' | 'warn' | 'fail' | 'skip';
  detail: string;
  hint?: string;
}

const check = (name: string, status: Check['status'], detail: string, hint?: string): Check => ({ name, status, detail, ...(hint ? { hint } : {}) });
const DAY = 86_400_000;

/** Files and directories under `dir` that other users may read (a home holds private keys). */
async function exposed(dir: string): Promise<string[]> {
  const found: string[] = [];
  const visit = async (path: string, depth: number): Promise<void> => {
    const st = await lstat(path);
    if ((st.isDirectory() || st.isFile()) && st.mode & 0o077) found.push(path);
    if (st.isDirectory() && depth < 3) for (const name of await readdir(path)) await visit(join(path, name), depth + 1);
  };
  await visit(dir, 0);
  return found;
}

async function checkDirectory(name: string, dir: string): Promise<Check> {
  try {
    if (!(await stat(dir)).isDirectory()) return check(name, 'fail', `${dir} is not a directory`);
    const open = await exposed(dir);
    if (open.length) return check(name, 'warn', `${dir}: ${open.length} path(s) readable by other users (${open[0]}…)`, 'any command on it makes it private again (0700/0600)');
    return check(name, 'ok', `${dir} (private: 0700/0600)`);
  } catch (err) {
    return check(name, 'fail', `${dir}: ${(err as Error).message}`, 'check the path and that this user owns it');
  }
}

function checkCredential(credential: StoredCredential, now: number): Check {
  const left = credential.expiresAt - now;
  const detail = `user ${credential.userId}, device ${credential.deviceId}; valid until ${new Date(credential.expiresAt).toISOString().slice(0, 10)} (${Math.floor(left / DAY)} days)`;
  if (left <= 0) return check('credential', 'fail', detail, `expired: log in again (\`lantern-agent login --server ${credential.server} --user ${credential.user}\`)`);
  if (left < 7 * DAY) return check('credential', 'warn', detail, 'expires soon: log in again to renew it');
  return check('credential', 'ok', detail);
}

/** Reachable, the protocol, the clock skew (signed requests outside ±2 min fail), and the signature. */
async function checkServer(api: ApiClient, credential: StoredCredential): Promise<Check[]> {
  const started = Date.now();
  let health;
  try {
    health = await api.health();
  } catch (err) {
    return [check('server', 'fail', `${credential.server}: ${(err as Error).message}`, 'check the network, the server address, and whether the server runs; behind censorship, try `login --front`')];
  }
  const finished = Date.now();
  const skew = health.time === undefined ? undefined : health.time - (started + finished) / 2;
  const skewText = skew === undefined ? 'clock not reported' : `clock skew ${skew >= 0 ? '+' : ''}${(skew / 1000).toFixed(1)} s`;
  const server =
    skew !== undefined && Math.abs(skew) > AUTH_WINDOW_MS / 2
      ? check('server', Math.abs(skew) > AUTH_WINDOW_MS ? 'fail' : 'warn', `${credential.server} answers in ${finished - started} ms; ${skewText}`, 'set this machine\'s clock (NTP): signed requests more than 2 minutes off are refused')
      : check('server', 'ok', `${credential.server} answers in ${finished - started} ms, protocol v${health.version}; ${skewText}`);
  try {
    const me = await api.whoami();
    return [server, check('signed requests', 'ok', `the server knows this device (${me.role})`)];
  } catch (err) {
    const code = LanternError.is(err) ? err.code : 'LA_ERR_INTERNAL';
    return [server, check('signed requests', 'fail', `${code}: ${(err as Error).message}`, 'log in again (`lantern-agent login`)')];
  }
}

/** Give peers this client would use (the round robin and contacts' ads), and a ticket for one. */
async function checkPeers(api: ApiClient, home: string): Promise<Check[]> {
  const [verified, ads] = await Promise.all([api.roundRobin().catch(() => undefined), withKeystore(home, (k) => new Contacts(k).ads(Date.now()))]);
  const known = (verified?.length ?? 0) + ads.length;
  const peers =
    known > 0
      ? check('give peers', 'ok', `${verified?.length ?? 'unknown'} verified, ${ads.length} from contacts' ads`)
      : check('give peers', 'warn', 'none known: get would answer 503 No Give Peer Yet', 'a give peer is used once a verifier passes it (`lantern-agent verify`) or a contact sends its ad (`inbox`, then `ads`)');
  const peer = verified?.[0] ?? ads[0];
  try {
    const answer = await api.ticket(peer ? { peer: identityFingerprint(peer.identityKey) } : { aud: 'peerjs' });
    return [peers, check('ticket', 'ok', `${peer ? 'a proxy ticket for a known peer' : 'a ticket (PeerJS; no peer known)'} until ${new Date(answer.expiresAt).toISOString().slice(11, 19)} UTC`)];
  } catch (err) {
    return [peers, check('ticket', 'fail', `${LanternError.is(err) ? err.code : 'error'}: ${(err as Error).message}`)];
  }
}

/** Whether get's address is free (or held: by a running get, or another program). */
async function checkPort(where: { host: string; port: number }): Promise<Check> {
  const server = createServer();
  try {
    await listen(server, where.host, where.port);
    return check('get port', 'ok', `${where.host}:${where.port} is free for \`lantern-agent get\``);
  } catch (err) {
    return check('get port', 'warn', `${where.host}:${where.port}: ${(err as Error).message}`, 'a get already running there is fine; else give get another --listen');
  } finally {
    server.close();
  }
}

/** A give peer running on this home: what the server thinks of it, and whether its address answers as it. */
async function checkGive(home: string): Promise<Check[]> {
  const status = await controlRequest(giveSocketPath(home), { op: 'status' }).catch(() => undefined);
  if (!status || status['role'] !== 'give') return [check('give', 'skip', 'no give peer runs on this home')];
  const reg = status['registration'] as PeerInfo | null;
  if (!reg) return [check('give', 'warn', `running at ${String(status['url'])}, not registered${status['paused'] ? ' (paused)' : ''}`)];
  const v = reg.lastVerdict;
  const seen = v ? `last verdict ${v.ok ? 'pass' : `FAIL (${v.status})`} ${Math.round((Date.now() - v.at) / 1000)} s ago` : 'no verdict yet';
  const world =
    reg.state === 'verified'
      ? check('give reachable', 'ok', `a verifier reached ${reg.host}:${reg.port} from outside: ${seen}`)
      : check('give reachable', v && !v.ok ? 'fail' : 'warn', `${reg.host}:${reg.port} is ${reg.state}: ${seen}`, v && !v.ok ? `see \`lantern-agent status\` for what ${v.status} asks of you` : 'wait for a verifier (it probes new peers within seconds)');
  // From here: the registered address answers with this peer's identity (a router forwarding the port).
  try {
    const socket = await connectPinned({ host: reg.host, port: reg.port, identityKey: reg.identityKey }, 3000);
    // Closed gracefully: the handshake's last flight reaches the peer, which sees a client that hung
    // up; a peer that never closes its side is cut off a second later.
    socket.end();
    setTimeout(() => socket.destroy(), 1000).unref();
    return [world, check('give address', 'ok', `${reg.host}:${reg.port} answers with this peer's identity`)];
  } catch (err) {
    return [world, check('give address', 'warn', `${reg.host}:${reg.port} from this machine: ${(err as Error).message}`, 'many home routers cannot reach their own public address from inside; the verdict above is what counts')];
  }
}

/** Runs every check against a home (and a data dir, if given). */
export async function runChecks(home: string, o: { dataDir?: string; listen: { host: string; port: number } }): Promise<Check[]> {
  const checks: Check[] = [await checkDirectory('home', home)];
  if (o.dataDir) checks.push(await checkDirectory('data dir', o.dataDir));
  let credential: StoredCredential;
  try {
    credential = await withKeystore(home, requireCredential);
  } catch (err) {
    checks.push(check('credential', 'fail', `${LanternError.is(err) ? err.code : 'error'}: ${(err as Error).message}`, `log in: \`lantern-agent login --home ${home} --server URL --user NAME\``));
    return checks;
  }
  checks.push(checkCredential(credential, Date.now()));
  const api = await signedClient(credential);
  try {
    const server = await checkServer(api, credential);
    checks.push(...server);
    if (server.every((c) => c.status !== 'fail')) checks.push(...(await checkPeers(api, home)));
  } finally {
    await api.close();
  }
  checks.push(await checkPort(o.listen), ...(await checkGive(home)));
  return checks;
}

export function doctorCommand(io: Io, done: (code: number) => void): Command {
  return new Command('doctor')
    .description('Check this home: server reachable and its clock, credential, a ticket, give peers known, permissions, ports, and a running give peer; says what to do about each problem')
    .option('--home <dir>', 'agent home (default $LANTERN_HOME, else ~/.lantern-agent)')
    .option('--data-dir <dir>', "also check a server's data dir")
    .addOption(new Option('--listen <host:port>', "get's address, to check that it is free").argParser(parseListen).default({ host: '127.0.0.1', port: 8118 }, '127.0.0.1:8118'))
    .option('--json', 'print {checks: [{name, status, detail, hint}], ok}')
    .action(async (flags: { home?: string; dataDir?: string; listen: { host: string; port: number }; json?: boolean }) => {
      const checks = await runChecks(resolveHome(flags.home, io.env), { ...(flags.dataDir ? { dataDir: flags.dataDir } : {}), listen: flags.listen });
      const ok = checks.every((c) => c.status !== 'fail');
      if (flags.json) writeJson(io.stdout, { checks, ok });
      else {
        for (const c of checks) {
          writeLine(io.stdout, `${c.status.toUpperCase().padEnd(4)}  ${c.name.padEnd(15)} ${c.detail}`);
          if (c.hint && c.status !== 'ok') writeLine(io.stdout, `      ${''.padEnd(15)} → ${c.hint}`);
        }
      }
      done(ok ? 0 : 1);
    });
}
