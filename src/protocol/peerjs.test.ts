import test from 'ava';
import fc from 'fast-check';
import { objectMembers, parseClientFrame, relayFrame } from './peerjs.js';

/** JSON text of `value` with arbitrary (legal) whitespace between its tokens. */
function spaced(value: unknown, space: () => string): string {
  const s = space;
  if (Array.isArray(value)) return `[${s()}${value.map((v) => `${s()}${spaced(v, space)}${s()}`).join(',')}${s()}]`;
  if (typeof value === 'object' && value !== null) {
    const members = Object.entries(value).map(([k, v]) => `${s()}${JSON.stringify(k)}${s()}:${s()}${spaced(v, space)}${s()}`);
    return `{${s()}${members.join(',')}${s()}}`;
  }
  return JSON.stringify(value);
}

const strings = fc.string({ unit: fc.constantFrom('a', 'Z', '"', '\\', '/', '\n', '\u0000', '\u001f', 'é', '\u2028', '\ud83d\ude00', '\ud800', '{', '}', '[', ']', ',', ':', ' '), maxLength: 12 });
const json = fc.letrec((tie) => ({
  value: fc.oneof(
    { depthSize: 'small' },
    strings,
    fc.double({ noNaN: true, noDefaultInfinity: true }),
    fc.integer(),
    fc.boolean(),
    fc.constant(null),
    fc.array(tie('value'), { maxLength: 4 }),
    fc.dictionary(strings, tie('value'), { maxKeys: 4 }),
  ),
})).value;

test('a relayed frame carries the payload JSON.parse reads from the client frame, whatever its spacing, escapes and members', (t) => {
  fc.assert(
    fc.property(
      fc.dictionary(strings, json, { maxKeys: 5 }),
      json,
      fc.constantFrom('OFFER', 'ANSWER', 'CANDIDATE', 'LEAVE'),
      fc.array(fc.constantFrom('', ' ', '\t', '\n', '\r\n  '), { minLength: 1, maxLength: 8 }),
      (others, payload, type, spaces) => {
        let n = 0;
        const space = () => spaces[n++ % spaces.length]!;
        const text = spaced({ ...others, type, dst: 'bob', payload }, space);
        const parsed = JSON.parse(text) as { payload: unknown };
        const frame = parseClientFrame(text);
        if (!frame) return false;
        const relayed = JSON.parse(relayFrame(frame.type, 'alice', frame.dst!, frame.payloadText)) as unknown;
        t.deepEqual(relayed, { type, src: 'alice', dst: 'bob', payload: parsed.payload });
        return true;
      },
    ),
    { numRuns: 2000 },
  );
});

test('the payload relayed is the one JSON.parse keeps: the last, also under an escaped name', (t) => {
  const text = '{"type":"OFFER","dst":"bob","payload":{"sdp":"first"},"pa\\u0079load" : [1, "two", {"three":3}] ,"x":"}"}';
  t.deepEqual(objectMembers(text).map(([name]) => name), ['type', 'dst', 'payload', 'payload', 'x']);
  const frame = parseClientFrame(text)!;
  t.is(frame.payloadText, '[1, "two", {"three":3}]');
  t.is(relayFrame('OFFER', 'alice', 'bob', frame.payloadText), '{"type":"OFFER","src":"alice","dst":"bob","payload":[1, "two", {"three":3}]}');
  t.is(relayFrame('LEAVE', 'alice', 'bob', parseClientFrame('{"type":"LEAVE","dst":"bob"}')!.payloadText), '{"type":"LEAVE","src":"alice","dst":"bob"}');
  t.is(parseClientFrame('{"type":"OFFER","dst":"bob","payload":-1.5e+3}')!.payloadText, '-1.5e+3');
  t.is(parseClientFrame('{"type":"OFFER","dst":"bob","payload":"a\\\\"}')!.payloadText, '"a\\\\"');
});

test('frames that are not a JSON object with a string type are refused', (t) => {
  for (const text of ['', 'null', '[]', '"OFFER"', '{"type":1}', '{"type":""}', '{"type":"OFFER","dst":5}', '{"type":"OFFER"', '{"type":"OFFER","payload":}']) {
    t.is(parseClientFrame(text), undefined, text);
  }
});

test('hostile payloads near the frame cap relay intact: deep nesting, runs of backslashes, many quotes', (t) => {
  const deep = `${'['.repeat(30_000)}${']'.repeat(30_000)}`;
  const backslashes = JSON.stringify('\\'.repeat(20_000) + '"'.repeat(10_000));
  const quotes = JSON.stringify(Array.from({ length: 8_000 }, () => '"'));
  for (const payload of [deep, backslashes, quotes]) {
    const text = `{"type":"OFFER","dst":"bob","payload":${payload}}`;
    t.is(parseClientFrame(text)!.payloadText, payload);
  }
});
