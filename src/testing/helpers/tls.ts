import { dataDirPaths, ensureDataDir, loadOrCreateCa, loadOrCreateSelfSignedTls } from '../../roles/server/data-dir.js';

/** A CA and a certificate for `hosts` signed by it, as files in `dir` (for the servers tests start). */
export async function testTlsFiles(dir: string, hosts: string[]): Promise<{ caFile: string; caPem: string; certFile: string; keyFile: string }> {
  await ensureDataDir(dir);
  const ca = await loadOrCreateCa(dir);
  await loadOrCreateSelfSignedTls(dir, ca, hosts);
  const paths = dataDirPaths(dir);
  return { caFile: paths.caCert, caPem: ca.certificatePem, certFile: paths.tlsCert, keyFile: paths.tlsKey };
}
