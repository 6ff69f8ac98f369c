import { isIPv4, isIPv6 } from 'node:net';
import * as dnsPacket from 'dns-packet';
import type { Answer, Packet, Question } from 'dns-packet';
import type { PeerRecord } from '../../storage/server-store.js';

/**
 * The server's DNS zone, as a pure function from a query and the live registrations to an answer:
 *
 *   roundrobin.ZONE                 A / AAAA of verified peers only (a rotating subset)
 *   _proxy._tcp.roundrobin.ZONE     SRV: verified peers' ports, targets <peer-id>.peers.ZONE
 *   <peer-id>.peers.ZONE            A / AAAA of that registered peer, whatever its state
 *   ZONE                            SOA
 *
 * Other names in the zone are NXDOMAIN; names outside it are REFUSED (this is no resolver).
 * Encoding and decoding are dns-packet's.
 */

export const RCODE = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4, REFUSED: 5 } as const;

export interface ZoneOptions {
  /** Lower case, no trailing dot, e.g. `peers.example.org`. */
  zone: string;
  /** TTL of round robin answers (and of negative answers). */
  ttlSeconds: number;
  /** Most addresses in one answer; the subset rotates from query to query. */
  maxAnswers: number;
}

type Kind = 'A' | 'AAAA';

const ADDRESS_TYPES = new Set(['A', 'AAAA', 'ANY']);

export function normalizeZone(zone: string): string {
  return zone.trim().toLowerCase().replace(/\.+$/, '');
}

/** What an answer is made from: the live registrations, a rotation counter and the time. */
export interface ZoneState {
  peers: readonly PeerRecord[];
  rotation: number;
  now: number;
}

/** A response to `query` (already decoded) or undefined when nothing should be sent back. */
export function answerQuery(query: Packet, state: ZoneState, o: ZoneOptions): Packet | undefined {
  const { peers, rotation } = state;
  if (query.type !== 'query') return undefined;
  const base = {
    type: 'response' as const,
    id: query.id ?? 0,
    questions: query.questions ?? [],
    answers: [] as Answer[],
    authorities: [] as Answer[],
    additionals: [] as Answer[],
  };
  const rd = (query.flags ?? 0) & dnsPacket.RECURSION_DESIRED;
  const reply = (rcode: number, aa: boolean, parts: Partial<Pick<typeof base, 'answers' | 'authorities'>> = {}): Packet => ({
    ...base,
    ...parts,
    flags: rd | (aa ? dnsPacket.AUTHORITATIVE_ANSWER : 0) | rcode,
  });
  if ((query as { opcode?: string }).opcode !== 'QUERY') return reply(RCODE.NOTIMP, false);
  const question: Question | undefined = base.questions[0];
  if (!question || base.questions.length !== 1) return reply(RCODE.FORMERR, false);
  const name = question.name.toLowerCase().replace(/\.+$/, '');
  const zone = o.zone;
  if (name !== zone && !name.endsWith(`.${zone}`)) return reply(RCODE.REFUSED, false);
  const soa = soaRecord(o, state.now);
  const negative = (rcode: number) => reply(rcode, true, { authorities: [soa] });
  const relative = name === zone ? '' : name.slice(0, -(zone.length + 1));
  const qtype = question.type as string;

  if (relative === '') {
    return qtype === 'SOA' || qtype === 'ANY' ? reply(RCODE.NOERROR, true, { answers: [soa] }) : negative(RCODE.NOERROR);
  }
  if (relative === 'peers' || relative === '_tcp.roundrobin') return negative(RCODE.NOERROR);
  // A peer reached over WebRTC has no address to give out.
  const verified = peers.filter((p) => p.state === 'verified' && !p.ice);
  if (relative === 'roundrobin') {
    if (!ADDRESS_TYPES.has(qtype)) return negative(RCODE.NOERROR);
    const answers = addressAnswers(question.name, verified, qtype, o, rotation);
    return answers.length ? reply(RCODE.NOERROR, true, { answers }) : negative(RCODE.NOERROR);
  }
  if (relative === '_proxy._tcp.roundrobin') {
    if (qtype !== 'SRV' && qtype !== 'ANY') return negative(RCODE.NOERROR);
    const answers = rotate(verified, rotation)
      .slice(0, o.maxAnswers)
      .map((p): Answer => ({ name: question.name, type: 'SRV', ttl: o.ttlSeconds, data: { priority: 10, weight: 10, port: p.port, target: `${p.peerId}.peers.${zone}` } }));
    return answers.length ? reply(RCODE.NOERROR, true, { answers }) : negative(RCODE.NOERROR);
  }
  const m = /^([0-9a-f-]{36})\.peers$/.exec(relative);
  const peer = m ? peers.find((p) => p.peerId === m[1]) : undefined;
  if (!peer) return negative(RCODE.NXDOMAIN);
  if (!ADDRESS_TYPES.has(qtype)) return negative(RCODE.NOERROR);
  const answers = addressAnswers(question.name, [peer], qtype, o, 0);
  return answers.length ? reply(RCODE.NOERROR, true, { answers }) : negative(RCODE.NOERROR);
}

function addressAnswers(name: string, peers: readonly PeerRecord[], qtype: string, o: ZoneOptions, rotation: number): Answer[] {
  const kinds: Kind[] = qtype === 'ANY' ? ['A', 'AAAA'] : [qtype as Kind];
  const out: Answer[] = [];
  for (const kind of kinds) {
    // An RRset holds each address once, however many peers share it (several ports on one host).
    const addresses = [...new Set(peers.map((p) => p.host).filter((h) => (kind === 'A' ? isIPv4(h) : isIPv6(h))))];
    for (const address of rotate(addresses, rotation).slice(0, o.maxAnswers)) out.push({ name, type: kind, ttl: o.ttlSeconds, data: address });
  }
  return out;
}

function rotate<T>(items: readonly T[], by: number): T[] {
  if (items.length === 0) return [];
  const k = by % items.length;
  return [...items.slice(k), ...items.slice(0, k)];
}

function soaRecord(o: ZoneOptions, now: number): Answer {
  return {
    name: o.zone,
    type: 'SOA',
    ttl: o.ttlSeconds,
    data: {
      mname: `ns.${o.zone}`,
      rname: `hostmaster.${o.zone}`,
      serial: Math.floor(now / 1000) >>> 0,
      refresh: 3600,
      retry: 600,
      expire: 86_400,
      minimum: o.ttlSeconds,
    },
  };
}

/**
 * Encodes a response for a transport: over UDP at most `limit` bytes (512, or what the client's
 * EDNS record allows); when it does not fit the answers are dropped and TC tells the client to
 * ask again over TCP.
 */
export function encodeResponse(response: Packet, query: Packet, transport: 'udp' | 'tcp'): Buffer {
  const opt = (query.additionals ?? []).find((r) => r.type === 'OPT') as { udpPayloadSize?: number } | undefined;
  const withOpt: Packet = opt ? { ...response, additionals: [{ name: '.', type: 'OPT', udpPayloadSize: 1232, extendedRcode: 0, ednsVersion: 0, flags: 0, options: [] } as unknown as Answer] } : response;
  const encoded = dnsPacket.encode(withOpt);
  const limit = transport === 'tcp' ? 65_535 : Math.min(Math.max(512, opt?.udpPayloadSize ?? 512), 1232);
  if (encoded.length <= limit) return encoded;
  return dnsPacket.encode({ ...withOpt, answers: [], authorities: [], flags: (withOpt.flags ?? 0) | dnsPacket.TRUNCATED_RESPONSE });
}
