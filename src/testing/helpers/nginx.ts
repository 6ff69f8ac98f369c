import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { TOOLS } from './required-tools.js';
import { freePort, stopChild, waitForPort } from './processes.js';
import { testTlsFiles } from './tls.js';

export const NGINX = TOOLS.nginx.path;

/** A server block: TLS on the shared port; `upstream` proxies to our server, else a static page. */
export interface NginxSite {
  serverName: string;
  defaultServer?: boolean;
  /** One server port, or several (a load-balanced group that skips failed members). */
  upstream?: number | number[];
  staticBody?: string;
}

export interface RunningNginx {
  port: number;
  /** Each server block logs `SNI HOST METHOD URI` per request to DIR/access-SERVERNAME.log. */
  accessLog(serverName: string): Promise<string>;
  /** PEM of the CA that signed nginx's certificate (for localhost, 127.0.0.1). */
  ca: string;
  child: ChildProcess;
  stop(): Promise<void>;
}

/**
 * Debian's nginx as a CDN would stand in front of us: TLS-terminating, buffering requests and
 * responses (`proxy_buffering on`), WebSocket upgrades passed, long reads allowed for long-polls.
 * Started in the foreground from a config in `dir`, on a free port of 127.0.0.1.
 */
export async function startNginx(dir: string, sites: NginxSite[]): Promise<RunningNginx> {
  await mkdir(dir, { recursive: true });
  const tls = await testTlsFiles(`${dir}/tls`, ['localhost', '127.0.0.1']);
  const port = await freePort();
  const groups = sites.flatMap((site, i) =>
    Array.isArray(site.upstream)
      ? [`  upstream group${i} {\n${site.upstream.map((p) => `    server 127.0.0.1:${p} max_fails=1 fail_timeout=30s;`).join('\n')}\n  }`]
      : [],
  );
  const server = (site: NginxSite, i: number) => `
  server {
    listen 127.0.0.1:${port} ssl${site.defaultServer ? ' default_server' : ''};
    server_name ${site.serverName};
    ssl_certificate ${tls.certFile};
    ssl_certificate_key ${tls.keyFile};
    access_log ${dir}/access-${site.serverName}.log sni;
    location / {
${
  site.upstream
    ? `      proxy_pass http://${Array.isArray(site.upstream) ? `group${i}` : `127.0.0.1:${site.upstream}`};
      # Sends carry client-chosen ids (the server dedupes them), so retrying a POST elsewhere is safe.
      proxy_next_upstream error timeout http_502 http_503 non_idempotent;
      proxy_connect_timeout 2s;
      proxy_http_version 1.1;
      proxy_buffering on;
      proxy_request_buffering on;
      proxy_set_header Host $host;
      # As a CDN names the client: the address nginx saw, appended to what the client sent.
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection $connection_upgrade;
      proxy_read_timeout 120s;
      proxy_send_timeout 120s;`
    : `      default_type text/html;
      return 200 '${site.staticBody ?? 'front'}';`
}
    }
  }`;
  const conf = `${process.getuid?.() === 0 ? 'user root;\n' : ''}worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 1024; }
http {
  log_format sni '$ssl_server_name $host $request_method $uri';
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  client_max_body_size 1m;
  map $http_upgrade $connection_upgrade { default upgrade; '' close; }
${groups.join('\n')}
${sites.map(server).join('\n')}
}
`;
  const child = await runNginx(dir, conf, port);
  return {
    port,
    accessLog: (serverName) => readFile(`${dir}/access-${serverName}.log`, 'utf8').catch(() => ''),
    ca: tls.caPem,
    child,
    stop: () => stopChild(child, 'SIGQUIT'),
  };
}

/**
 * The web server a give peer pretends to be: Debian's nginx with Debian's own http settings
 * (sendfile, tcp_nopush, mime.types, gzip on, TLSv1–1.3 allowed), `server_tokens off`, and one
 * HTTPS server (h2 and http/1.1) with an empty root where every path is its stock 404 page.
 * `headerTimeoutS`/`keepaliveS` shorten client_header_timeout/keepalive_timeout for timing tests.
 */
export async function startReferenceNginx(
  dir: string,
  tls: { certificatePem: string; privateKeyPem: string },
  options: { headerTimeoutS?: number; keepaliveS?: number } = {},
): Promise<{ port: number; child: ChildProcess; stop(): Promise<void> }> {
  await mkdir(`${dir}/root`, { recursive: true });
  await mkdir(`${dir}/tmp`, { recursive: true });
  await writeFile(`${dir}/cert.pem`, tls.certificatePem);
  await writeFile(`${dir}/key.pem`, tls.privateKeyPem, { mode: 0o600 });
  const port = await freePort();
  const conf = `${process.getuid?.() === 0 ? 'user root;\n' : ''}worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log;
events { worker_connections 768; }
http {
  sendfile on;
  tcp_nopush on;
  types_hash_max_size 2048;
  include /etc/nginx/mime.types;
  default_type application/octet-stream;
  ssl_protocols TLSv1 TLSv1.1 TLSv1.2 TLSv1.3;
  ssl_prefer_server_ciphers on;
  access_log off;
  gzip on;
  server_tokens off;
  client_body_temp_path ${dir}/tmp;
  proxy_temp_path ${dir}/tmp;
  fastcgi_temp_path ${dir}/tmp;
  uwsgi_temp_path ${dir}/tmp;
  scgi_temp_path ${dir}/tmp;
${options.headerTimeoutS ? `  client_header_timeout ${options.headerTimeoutS}s;\n` : ''}${options.keepaliveS ? `  keepalive_timeout ${options.keepaliveS}s;\n` : ''}  server {
    listen 127.0.0.1:${port} ssl http2 default_server;
    ssl_certificate ${dir}/cert.pem;
    ssl_certificate_key ${dir}/key.pem;
    root ${dir}/root;
    server_name _;
    location / { try_files $uri =404; }
  }
}
`;
  const child = await runNginx(dir, conf, port);
  return { port, child, stop: () => stopChild(child, 'SIGQUIT') };
}

/** Writes `conf` to DIR/nginx.conf and runs nginx in the foreground; ready when `port` accepts connections. */
async function runNginx(dir: string, conf: string, port: number): Promise<ChildProcess> {
  await writeFile(`${dir}/nginx.conf`, conf);
  const child = spawn(NGINX, ['-p', dir, '-c', `${dir}/nginx.conf`, '-g', 'daemon off;'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  if (!(await waitForPort(port, child))) {
    await stopChild(child, 'SIGKILL');
    throw new Error(`nginx did not start: ${stderr}`);
  }
  return child;
}
