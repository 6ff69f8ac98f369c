import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { PROTOCOL_VERSION } from '../protocol/version.js';

/** A JSON file's field, or undefined when it cannot be read. */
function field(path: string | URL, name: string): string | undefined {
  try {
    return String((JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>)[name]);
  } catch {
    return undefined;
  }
}

/**
 * `--version`: the package version, the wire protocol, the libsignal it runs, the git commit it was
 * built from (dist/build-info.json, written by `npm run build`) and Node.
 */
export function versionText(): string {
  const version = field(new URL('../../package.json', import.meta.url), 'version') ?? 'unknown';
  let libsignal: string | undefined;
  try {
    libsignal = field(createRequire(import.meta.url).resolve('@signalapp/libsignal-client/package.json'), 'version');
  } catch {
    libsignal = undefined;
  }
  const commit = field(new URL('../build-info.json', import.meta.url), 'commit') ?? 'unknown';
  return `lantern-agent ${version} (protocol v${PROTOCOL_VERSION}, libsignal ${libsignal ?? 'unknown'}, commit ${commit}, node ${process.versions.node})`;
}
