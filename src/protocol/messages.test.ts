import { readFile } from 'node:fs/promises';
import test from 'ava';
import { LanternError } from '../core/errors.js';
import { AuthFields, canonicalRequest, SessionAuthFields, splitAuthHeader } from './request-auth.js';
import { LoginRequest, SendRequest } from './messages.js';
import { parseMessage } from './validate.js';
import { MAX_PAYLOAD_BYTES } from './version.js';

const fixture = async <T>(name: string): Promise<T> =>
  JSON.parse(await readFile(new URL(`../../fixtures/protocol/${name}`, import.meta.url), 'utf8')) as T;

test('recorded valid sends parse', async (t) => {
  for (const body of await fixture<unknown[]>('send-request.valid.json')) t.notThrows(() => parseMessage(SendRequest, body));
});

for (const [file, schema] of [
  ['send-request.invalid.json', SendRequest],
  ['login-request.invalid.json', LoginRequest],
] as const) {
  test(`recorded invalid bodies in ${file} are refused with their code`, async (t) => {
    for (const { why, code, body } of await fixture<Array<{ why: string; code: string; body: unknown }>>(file)) {
      const err = t.throws(() => parseMessage(schema as typeof SendRequest, body), undefined, why);
      t.true(LanternError.is(err) && err.code === code, why);
    }
  });
}

test('a payload over 96 KiB is its own error; exactly 96 KiB is fine', (t) => {
  const base = { id: '4f0c2a5e-7d1b-4c8e-9a3f-2b6d8e1f0a47', to: '9b1e6f2c-3a4d-4e5f-8a7b-1c2d3e4f5a6b', type: 0 };
  t.notThrows(() => parseMessage(SendRequest, { ...base, payload: Buffer.alloc(MAX_PAYLOAD_BYTES).toString('base64') }));
  const err = t.throws(() => parseMessage(SendRequest, { ...base, payload: Buffer.alloc(MAX_PAYLOAD_BYTES + 1).toString('base64') }));
  t.is((err as LanternError).code, 'LA_ERR_PAYLOAD_TOO_LARGE');
});

test('auth headers split into scheme and fields; the canonical string binds every part', (t) => {
  const h = splitAuthHeader('LA1S id=4f0c2a5e-7d1b-4c8e-9a3f-2b6d8e1f0a47,t=1795305586604,n=AAAAAAAAAAAAAAAAAAAAAA,mac=' + 'a'.repeat(43));
  t.is(h?.scheme, 'LA1S');
  t.true(SessionAuthFields.safeParse(h?.fields).success);
  t.false(AuthFields.safeParse(h?.fields).success);
  t.is(splitAuthHeader('Bearer'), undefined);
  const base = { scheme: 'LA1', method: 'post', path: '/v1/messages', t: 1, n: 'n', bodySha256Hex: 'h', identity: 'u\n1\ns' };
  const text = canonicalRequest(base);
  t.is(text, 'LA1\nPOST\n/v1/messages\n1\nn\nh\nu\n1\ns');
  for (const change of [{ path: '/v1/other' }, { t: 2 }, { n: 'm' }, { bodySha256Hex: 'g' }, { identity: 'v\n1\ns' }, { scheme: 'LA1S' }]) {
    t.not(canonicalRequest({ ...base, ...change }), text);
  }
});
