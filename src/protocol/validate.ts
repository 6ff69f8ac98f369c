import type { z } from 'zod';
import { LanternError } from '../core/errors.js';

/**
 * Validates an inbound value against its schema. A payload that is too big gets its own code
 * (schemas mark it with the `payload-too-large` message); anything else is LA_ERR_INVALID_REQUEST
 * with the list of issues in `details`.
 */
export function parseMessage<S extends z.ZodType>(schema: S, value: unknown): z.output<S> {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  const issues = result.error.issues.map((i) => ({ path: i.path.map(String).join('.'), message: i.message }));
  if (issues.some((i) => i.message === PAYLOAD_TOO_LARGE)) {
    throw new LanternError('LA_ERR_PAYLOAD_TOO_LARGE', undefined, { details: { issues } });
  }
  const summary = issues.slice(0, 3).map((i) => `${i.path || '(body)'}: ${i.message}`).join('; ');
  throw new LanternError('LA_ERR_INVALID_REQUEST', `Invalid request: ${summary}`, { details: { issues } });
}

export const PAYLOAD_TOO_LARGE = 'payload-too-large';
