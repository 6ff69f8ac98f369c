import test from 'ava';
import { endToEndHeaders } from './hop-by-hop.js';

test('hop-by-hop fields, and the fields Connection names, are not forwarded (RFC 9110 §7.6.1)', (t) => {
  const out = endToEndHeaders({
    host: 'example.org',
    connection: 'keep-alive, X-Hop , upgrade',
    'keep-alive': 'timeout=5',
    'x-hop': 'secret',
    'proxy-connection': 'keep-alive',
    'proxy-authorization': 'Basic dGlja2V0Ong=',
    te: 'trailers',
    'transfer-encoding': 'chunked',
    upgrade: 'websocket',
    accept: 'text/html',
    'set-cookie': ['a=1', 'b=2'],
  });
  t.deepEqual(out, { host: 'example.org', accept: 'text/html', 'set-cookie': ['a=1', 'b=2'] });
  t.deepEqual(endToEndHeaders({ host: 'x', accept: '*/*' }, ['host']), { accept: '*/*' });
});
