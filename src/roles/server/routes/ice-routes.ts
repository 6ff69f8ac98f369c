import { API } from '../../../protocol/api-paths.js';
import { sendJson } from '../http-kit.js';
import { iceServersFor } from '../ice-servers.js';
import { signed, type Route, type RouteContext } from './route.js';

/** The hostname a client reached the API at (its Host header, without the port), if any. */
function hostnameOf(host: string | undefined): string | undefined {
  if (!host) return undefined;
  const m = /^(?:\[([^\]]+)\]|([^:]+))(?::\d+)?$/.exec(host.trim());
  return m ? (m[1] ?? m[2]) : undefined;
}

/** GET /v1/ice-servers: STUN and TURN for NAT traversal, a TURN credential minted for the caller. */
export function iceRoutes({ c, options }: RouteContext): Route[] {
  return [signed('GET', API.iceServers, async ({ req, res, auth }) => sendJson(res, 200, iceServersFor(options.ice, auth.userId, c.clock.now(), hostnameOf(req.headers.host))))];
}
