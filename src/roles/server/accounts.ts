import { randomUUID } from 'node:crypto';
import type { Clock } from '../../core/clock.js';
import { LanternError } from '../../core/errors.js';
import type { Logger } from '../../core/logger.js';
import { dummyPasswordHash, hashPassword, verifyPassword } from '../../crypto/password.js';
import { randomSerial, type CertificateAuthority } from '../../crypto/x509/certificate-authority.js';
import { Password, type LoginRequest, type LoginResponse, type Role } from '../../protocol/messages.js';
import { parseMessage } from '../../protocol/validate.js';
import { deviceChannel, type Notifier, type ServerStore } from '../../storage/server-store.js';
import type { ServerOptions } from './options.js';

export interface AccountsComponents {
  store: ServerStore;
  clock: Clock;
  logger: Logger;
  notifier?: Notifier;
}

/**
 * Accounts and credentials: operator commands (add, revoke) and login. Used by the HTTP API, by the
 * control socket of a running server, and directly by the CLI when no server holds the data dir.
 */
export class AccountService {
  readonly #c: AccountsComponents;

  constructor(components: AccountsComponents) {
    this.#c = components;
  }

  async add(name: string, role: Role, password: string): Promise<{ name: string; userId: string; role: Role }> {
    const userId = randomUUID();
    await this.#c.store.createAccount({
      name,
      userId,
      role,
      passwordHash: await hashPassword(password),
      createdAt: this.#c.clock.now(),
    });
    this.#c.logger.info({ role }, 'account added');
    return { name, userId, role };
  }

  /** Revokes one device, or (without `deviceId`) every device and the account's right to log in. */
  async revoke(name: string, deviceId?: number): Promise<{ name: string; revokedDevices: number[] }> {
    const account = await this.#c.store.getAccount(name);
    if (!account) throw new LanternError('LA_ERR_ACCOUNT_NOT_FOUND');
    const now = this.#c.clock.now();
    const targets =
      deviceId !== undefined ? [deviceId] : (await this.#c.store.listDevices(account.userId)).map((d) => d.deviceId);
    if (deviceId === undefined) await this.#c.store.disableAccount(name, now);
    const revoked: number[] = [];
    for (const id of targets) {
      if (await this.#c.store.revokeDevice(account.userId, id, now)) {
        revoked.push(id);
        // Release any poll the revoked device holds.
        await this.#c.notifier?.publish(deviceChannel({ userId: account.userId, deviceId: id }), 'revoked');
      }
    }
    if (deviceId !== undefined && revoked.length === 0) throw new LanternError('LA_ERR_DEVICE_NOT_FOUND');
    this.#c.logger.info({ devices: revoked }, 'credentials revoked');
    return { name, revokedDevices: revoked };
  }

  /** Checks the password, signs the CSR's key and records the device. */
  async login(
    request: LoginRequest,
    deps: { ca: CertificateAuthority; options: Pick<ServerOptions, 'openRegistration' | 'certificateLifetimeMs'> },
  ): Promise<LoginResponse> {
    const { store, clock } = this.#c;
    let account = await store.getAccount(request.user);
    if (!account && request.register) {
      if (!deps.options.openRegistration) throw new LanternError('LA_ERR_REGISTRATION_CLOSED');
      // A new account's password must be one (logins accept any length, and fail if it is wrong).
      parseMessage(Password, request.password);
      try {
        await this.add(request.user, 'user', request.password);
      } catch (err) {
        if (!LanternError.is(err, 'LA_ERR_ACCOUNT_EXISTS')) throw err;
      }
      account = await store.getAccount(request.user);
    }
    if (!account) {
      await verifyPassword(request.password, await dummyPasswordHash());
      throw new LanternError('LA_ERR_LOGIN_FAILED');
    }
    if (!(await verifyPassword(request.password, account.passwordHash))) throw new LanternError('LA_ERR_LOGIN_FAILED');
    if (account.disabledAt !== undefined) throw new LanternError('LA_ERR_AUTH_REVOKED', 'This account has been revoked');
    const publicKeyPem = deps.ca.checkCsr(request.csr);
    const now = clock.now();
    const expiresAt = now + deps.options.certificateLifetimeMs;
    const serial = randomSerial();
    const device = await store.putDevice(account.userId, { serial, publicKeyPem, expiresAt }, now, request.deviceId);
    const certificate = deps.ca.issueDevice({ publicKeyPem, serial, userId: account.userId, deviceId: device.deviceId, now, expiresAt });
    this.#c.logger.info({ deviceId: device.deviceId, renewed: request.deviceId !== undefined }, 'credential issued');
    return {
      userId: account.userId,
      deviceId: device.deviceId,
      role: account.role,
      certificate,
      caCertificate: deps.ca.certificatePem,
      expiresAt,
    };
  }
}
