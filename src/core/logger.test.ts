import { Writable } from 'node:stream';
import test from 'ava';
import { createLogger, scrubAddresses } from './logger.js';

test('IPv4 and IPv6 literals are scrubbed; times and ids are not', (t) => {
  t.is(scrubAddresses('from 203.0.113.7:443 and [2001:db8::1]:80 and ::1'), 'from [addr]:443 and [[addr]]:80 and [addr]');
  t.is(scrubAddresses('at 12:30:45 id 9b1e6f2c-3a4d'), 'at 12:30:45 id 9b1e6f2c-3a4d');
});

function capture() {
  const lines: string[] = [];
  const destination = new Writable({
    write(chunk, _enc, cb) {
      lines.push(String(chunk));
      cb();
    },
  });
  return { lines, destination };
}

test('logs are JSON with addresses scrubbed unless unsafe logging is asked for', (t) => {
  const safe = capture();
  createLogger({ destination: safe.destination }).info({ peer: '198.51.100.9' }, 'client 198.51.100.9 connected');
  const entry = JSON.parse(safe.lines[0]!) as { peer: string; msg: string };
  t.is(entry.peer, '[addr]');
  t.is(entry.msg, 'client [addr] connected');
  const unsafe = capture();
  createLogger({ destination: unsafe.destination, unsafeLogging: true }).info({ peer: '198.51.100.9' }, 'x');
  t.is((JSON.parse(unsafe.lines[0]!) as { peer: string }).peer, '198.51.100.9');
});
