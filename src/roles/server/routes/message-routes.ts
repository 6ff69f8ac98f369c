import { LanternError } from '../../../core/errors.js';
import { API } from '../../../protocol/api-paths.js';
import { AckRequest, PollQuery, SendBatchRequest, SendRequest } from '../../../protocol/messages.js';
import { parseMessage } from '../../../protocol/validate.js';
import { KEYS_HEADER } from '../../../protocol/version.js';
import { parseJson, sendEmpty, sendJson } from '../http-kit.js';
import { deviceOf, signed, type Route, type RouteContext } from './route.js';

/** Store-and-forward: sends (one, or a batch), the long poll (with acks and the keys-low sign) and acks. */
export function messageRoutes({ mailbox, keys, fail }: RouteContext): Route[] {
  return [
    signed('POST', API.messages, async ({ res, body, auth }) => sendJson(res, 200, await mailbox.send(auth, parseMessage(SendRequest, parseJson(body))))),
    signed('POST', API.messageBatch, async ({ res, body, auth }) => {
      const batch = parseMessage(SendBatchRequest, parseJson(body));
      const results = await Promise.all(
        batch.messages.map((m) =>
          mailbox.send(auth, m).then(
            (r) => ({ id: m.id, ...r }),
            (err: unknown) => {
              // A storage failure fails the batch; anything else is that message's own answer.
              if (!LanternError.is(err) || err.code.startsWith('LA_ERR_STORE')) throw err;
              return { id: m.id, error: { code: err.code, message: err.message } };
            },
          ),
        ),
      );
      sendJson(res, 200, { results });
    }),
    signed('GET', API.messages, async ({ res, url, auth }) => {
      const q = parseMessage(PollQuery, Object.fromEntries(url.searchParams));
      const device = deviceOf(auth);
      if (q.ack?.length) await mailbox.ack(device, q.ack);
      // Whatever the poll's answer, it tells a device whose one-time keys run low to upload more.
      const low = keys.keysLow(device);
      if (low === true || (low !== false && (await low))) res.setHeader(KEYS_HEADER, 'low');
      const held = await mailbox.poll(device, q.wait, q.limit, (batch, error) => {
        if (error !== undefined) fail(res, error);
        else if (batch) sendJson(res, 200, batch);
        else sendEmpty(res, 204);
      });
      res.once('close', held.cancel);
    }),
    signed('POST', API.ack, async ({ res, body, auth }) => {
      const ack = parseMessage(AckRequest, parseJson(body));
      sendJson(res, 200, { acked: await mailbox.ack(deviceOf(auth), ack.ids) });
    }),
  ];
}
