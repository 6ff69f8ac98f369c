import { API } from '../../../protocol/api-paths.js';
import { DeviceId, KeysUpload, UserId } from '../../../protocol/messages.js';
import { parseMessage } from '../../../protocol/validate.js';
import { parseJson, sendJson } from '../http-kit.js';
import { deviceOf, signed, type AuthedRequest, type Route, type RouteContext } from './route.js';

/** Signal keys: a device's own upload and counts; others' bundles. */
export function keyRoutes({ c, keys }: RouteContext): Route[] {
  const bundles = async ({ res, params, auth }: AuthedRequest) => {
    const userId = parseMessage(UserId, params['userId']);
    const only = params['deviceId'] === undefined ? undefined : parseMessage(DeviceId, Number(params['deviceId']));
    sendJson(res, 200, await keys.bundles(deviceOf(auth), userId, only));
  };
  return [
    // The device comes from the credential, never from the body.
    signed('PUT', API.keys, async ({ res, body, auth }) => sendJson(res, 200, await keys.upload(deviceOf(auth), parseMessage(KeysUpload, parseJson(body))))),
    signed('GET', API.keyCount, async ({ res, auth }) => sendJson(res, 200, await c.store.keyCounts(deviceOf(auth)))),
    signed('GET', API.bundles, bundles),
    signed('GET', API.bundle, bundles),
  ];
}
