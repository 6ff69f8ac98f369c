import { accountRoutes } from './account-routes.js';
import { iceRoutes } from './ice-routes.js';
import { keyRoutes } from './key-routes.js';
import { messageRoutes } from './message-routes.js';
import { peerRoutes, verificationRoutes } from './peer-routes.js';
import type { Route, RouteContext } from './route.js';

export type { AuthedRequest, OpenRequest, Route, RouteContext } from './route.js';

/** Every route of the API v1, by concern. */
export function apiRoutes(ctx: RouteContext): Route[] {
  return [...accountRoutes(ctx), ...keyRoutes(ctx), ...messageRoutes(ctx), ...peerRoutes(ctx), ...verificationRoutes(ctx), ...iceRoutes(ctx)];
}
