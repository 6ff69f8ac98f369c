import nodeDataChannel from 'node-datachannel';
import type { Logger } from '../../core/logger.js';

let routed = false;

/**
 * At `--log-level debug`, the WebRTC stack's own log (libdatachannel and libjuice: ICE checks, a
 * lost pair, a stream reset, a DTLS alert) goes into ours, at debug, addresses scrubbed as any line
 * is: what a connection did is otherwise invisible from JavaScript. Once per process; at any other
 * level nothing is routed (the stack's log stays off, as by default).
 *
 * The route holds the process open (node-datachannel's log callback is released only by its
 * `cleanup()`), so whoever runs a role releases it when the role has stopped: `releaseStackLog`.
 */
export function routeStackLog(logger: Logger): void {
  if (routed || !logger.isLevelEnabled('debug')) return;
  routed = true;
  nodeDataChannel.initLogger('Info', (level, message) => logger.debug({ webrtc: level.toLowerCase() }, message));
}

/** Ends the route, if there is one, once every WebRTC connection of the process is closed (it closes any left). */
export function releaseStackLog(): void {
  if (!routed) return;
  routed = false;
  nodeDataChannel.cleanup();
}
