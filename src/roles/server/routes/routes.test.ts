import test from 'ava';
import { API } from '../../../protocol/api-paths.js';
import { PROTOCOL_VERSION, VERSION_HEADER } from '../../../protocol/version.js';
import { startInProcessServer } from '../../../testing/helpers/in-process-server.js';
import type { Route } from './route.js';
import { apiRoutes } from './index.js';

const code = async (res: Response) => ((await res.json()) as { error: { code: string; message: string } }).error;

test('every API path has its routes, each path and method once', (t) => {
  const routes = apiRoutes({} as never) as Route[];
  const keys = routes.map((r) => `${r.method} ${r.path}`);
  t.is(new Set(keys).size, keys.length, 'no route twice');
  t.deepEqual([...new Set(routes.map((r) => r.path))].sort(), [...Object.values(API)].sort(), 'every path of protocol/api-paths is served');
});

test('unknown paths are 404, a known path with another method is 405 naming the methods, a parameter is never empty', async (t) => {
  const srv = await startInProcessServer({});
  t.teardown(() => srv.stop());
  const call = (method: string, path: string) => fetch(`${srv.url}${path}`, { method, headers: { [VERSION_HEADER]: String(PROTOCOL_VERSION) } });
  let res = await call('GET', '/v1/nope');
  t.is(res.status, 404);
  t.is((await code(res)).code, 'LA_ERR_NOT_FOUND');
  res = await call('DELETE', '/v1/messages');
  t.is(res.status, 405);
  const e = await code(res);
  t.is(e.code, 'LA_ERR_METHOD_NOT_ALLOWED');
  t.regex(e.message, /GET or POST/);
  res = await call('GET', '/v1/keys/');
  t.is(res.status, 404, '/v1/keys/ names no user');
  res = await call('GET', '/v1/health/');
  t.is(res.status, 404, 'no trailing slash');
  res = await call('GET', '/V1/HEALTH');
  t.is(res.status, 404, 'paths are case-sensitive');
  // A route with a parameter, reached: the signature is what is missing.
  res = await call('GET', '/v1/keys/9b1e6f2c-3a4d-4e5f-8a7b-1c2d3e4f5a6b/2');
  t.is(res.status, 401);
  res = await fetch(`${srv.url}/v1/health`);
  t.is(res.status, 200, 'health needs no version header');
  res = await fetch(`${srv.url}/v1/whoami`);
  t.is((await code(res)).code, 'LA_ERR_VERSION_MISMATCH');
});
