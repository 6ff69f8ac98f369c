import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import test from 'ava';

// The layering of DESIGN.md, enforced: imports point downward only, a role never imports another
// role, only the CLI touches `process`, and nothing but tests imports src/testing.
//
//   core → nothing · protocol → core · storage → protocol, core · crypto → storage (the Signal
//   stores adapt the keystore), protocol, core · net → crypto (pinning), protocol, core ·
//   messaging → net, crypto, storage, protocol, core · roles/* → any of those, no other role ·
//   cli → anything.

const SRC = dirname(fileURLToPath(import.meta.url));

const BELOW: Record<string, readonly string[]> = {
  core: [],
  protocol: ['core'],
  storage: ['protocol', 'core'],
  crypto: ['storage', 'protocol', 'core'],
  net: ['crypto', 'protocol', 'core'],
  messaging: ['net', 'crypto', 'storage', 'protocol', 'core'],
  role: ['messaging', 'net', 'crypto', 'storage', 'protocol', 'core'],
};

/** `core`, `roles/give`, `cli`, `testing`… for a path relative to src/. */
function layerOf(path: string): string {
  const [top, second] = path.split('/');
  return top === 'roles' ? `roles/${second}` : top!;
}

const isTestFile = (path: string) => /\.(test|e2e)\.ts$/.test(path) || path.startsWith('testing/');

/** Why `from` (relative to src/) may not import `to`, or undefined if it may. */
function violation(from: string, to: string): string | undefined {
  const a = layerOf(from);
  const b = layerOf(to);
  if (b === 'testing' && !isTestFile(from)) return 'only tests import src/testing';
  if (isTestFile(from) || a === b || a === 'cli') return undefined;
  if (b === 'cli') return 'nothing imports the CLI';
  if (a.startsWith('roles/') && b.startsWith('roles/')) return 'a role never imports another role';
  const allowed = BELOW[a.startsWith('roles/') ? 'role' : a];
  if (!allowed) return `${a} is no known layer (DESIGN.md)`;
  if (!allowed.includes(b.startsWith('roles/') ? 'role' : b)) return `${a} may import only ${allowed.join(', ') || 'nothing'}`;
  return undefined;
}

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? sources(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : []));
}

/** `import … from '…'`, `export … from '…'`, `import '…'` and `import('…')`. */
const IMPORT = /(?:^|\n)\s*(?:import|export)\b[^'"]*?from\s*'([^']+)'|(?:^|\n)\s*import\s*'([^']+)'|import\(\s*'([^']+)'\s*\)/g;

test('the rule itself: what it allows and what it refuses', (t) => {
  t.is(violation('core/errors.ts', 'net/tunnel.ts'), 'core may import only nothing');
  t.is(violation('roles/get/upstream-pool.ts', 'roles/give/give-proxy.ts'), 'a role never imports another role');
  t.is(violation('net/relay.ts', 'roles/server/metrics.ts'), 'net may import only crypto, protocol, core');
  t.is(violation('roles/server/mailbox.ts', 'testing/fake-clock.ts'), 'only tests import src/testing');
  t.is(violation('storage/keystore.ts', 'cli/main.ts'), 'nothing imports the CLI');
  t.is(violation('roles/give/give-proxy.ts', 'net/relay.ts'), undefined);
  t.is(violation('cli/commands/get.ts', 'roles/get/local-proxy.ts'), undefined);
  t.is(violation('roles/give/give-proxy.test.ts', 'testing/helpers/tls.ts'), undefined);
});

test('every import in src/ follows the layering', (t) => {
  const found: string[] = [];
  let imports = 0;
  for (const file of sources(SRC)) {
    const from = relative(SRC, file);
    const text = readFileSync(file, 'utf8');
    for (const m of text.matchAll(IMPORT)) {
      const spec = m[1] ?? m[2] ?? m[3]!;
      if (!spec.startsWith('.')) continue;
      imports++;
      const to = relative(SRC, resolve(dirname(file), spec));
      const why = violation(from, to);
      if (why) found.push(`${from} → ${to}: ${why}`);
    }
  }
  t.true(imports > 300, `${imports} relative imports read`);
  t.deepEqual(found, []);
});

/** A line of code that uses the global `process` (comments aside). */
const touchesProcess = (line: string) => !/^\s*\*/.test(line) && /(?<![.\w])process\s*\./.test(line.replace(/\/\/.*$/, ''));

test('only the CLI touches process (and tests)', (t) => {
  t.true(touchesProcess("const home = process.env['LANTERN_HOME'];"));
  t.false(touchesProcess('ip = ipaddr.process(address);'));
  t.false(touchesProcess(' * the process goes on'));
  const found: string[] = [];
  for (const file of sources(SRC)) {
    const from = relative(SRC, file);
    if (isTestFile(from) || layerOf(from) === 'cli') continue;
    readFileSync(file, 'utf8')
      .split('\n')
      .forEach((line, i) => touchesProcess(line) && found.push(`${from}:${i + 1}: ${line.trim()}`));
  }
  t.deepEqual(found, []);
});
