import { LanternError } from '../core/errors.js';
import { UserId, type Address, type Advertisement } from '../protocol/messages.js';
import type { Keystore } from '../storage/keystore.js';

export interface Contact {
  userId: string;
  name?: string;
  addedAt: number;
}

/** An advertisement accepted from a contact's device, kept until it expires. */
export interface StoredAd extends Advertisement {
  from: Address;
  receivedAt: number;
}

/**
 * The user's contacts (whose availability ads are accepted: "only connect to friends") and the ads
 * received from them. Keys: `contact!<userId>`, `ad!<userId>.<deviceId>` (a newer ad from the same
 * device replaces the older).
 */
export class Contacts {
  readonly #keystore: Keystore;

  constructor(keystore: Keystore) {
    this.#keystore = keystore;
  }

  async add(userId: string, now: number, name?: string): Promise<Contact> {
    const contact: Contact = { userId, addedAt: now, ...(name ? { name } : {}) };
    await this.#keystore.put(`contact!${userId}`, contact);
    return contact;
  }

  async remove(userId: string): Promise<boolean> {
    const known = await this.has(userId);
    const ads = await this.#keystore.list(`ad!${userId}.`);
    await this.#keystore.batch([{ type: 'del', key: `contact!${userId}` }, ...ads.map(([key]) => ({ type: 'del' as const, key }))]);
    return known;
  }

  async has(userId: string): Promise<boolean> {
    return (await this.#keystore.get(`contact!${userId}`)) !== undefined;
  }

  async list(): Promise<Contact[]> {
    return (await this.#keystore.list<Contact>('contact!')).map(([, c]) => c);
  }

  /** The names contacts were added with, by user id. */
  async names(): Promise<Map<string, string>> {
    return new Map((await this.list()).flatMap((c) => (c.name ? [[c.userId, c.name] as [string, string]] : [])));
  }

  /**
   * The user id a command-line name stands for: a user id as it is, else the contact with that
   * name (case-insensitive). LA_ERR_USAGE when no contact, or more than one, has it.
   */
  async resolve(nameOrId: string): Promise<string> {
    if (UserId.safeParse(nameOrId).success) return nameOrId;
    const wanted = nameOrId.toLowerCase();
    const matches = (await this.list()).filter((c) => c.name?.toLowerCase() === wanted);
    if (matches.length === 1) return matches[0]!.userId;
    if (matches.length > 1) throw new LanternError('LA_ERR_USAGE', `${matches.length} contacts are named "${nameOrId}": use the user id (${matches.map((c) => c.userId).join(', ')})`);
    throw new LanternError('LA_ERR_USAGE', `"${nameOrId}" is neither a user id nor a contact's name; add it with \`lantern-agent contacts add USERID --name ${nameOrId}\``);
  }

  /**
   * Keeps an ad if it comes from a contact and has not expired; says why otherwise. Ads from anyone
   * else are never stored: a stranger cannot steer this client to a proxy of their choosing.
   */
  async acceptAd(from: Address, ad: Advertisement, now: number): Promise<'accepted' | 'not-a-contact' | 'expired'> {
    if (!(await this.has(from.userId))) return 'not-a-contact';
    if (ad.expiresAt <= now) return 'expired';
    await this.#keystore.put(`ad!${from.userId}.${from.deviceId}`, { ...ad, from, receivedAt: now } satisfies StoredAd);
    return 'accepted';
  }

  /** Unexpired ads from current contacts; expired ones (and ads of older versions without a key to pin) are deleted. */
  async ads(now: number): Promise<StoredAd[]> {
    const all = await this.#keystore.list<StoredAd>('ad!');
    const expired = all.filter(([, ad]) => ad.expiresAt <= now || typeof ad.identityKey !== 'string');
    if (expired.length) await this.#keystore.batch(expired.map(([key]) => ({ type: 'del' as const, key })));
    return all.filter(([, ad]) => ad.expiresAt > now && typeof ad.identityKey === 'string').map(([, ad]) => ad);
  }
}
