/**
 * Observability without side effects: named `diagnostics_channel`s and plain counters. The library never prints;
 * subscribe to a channel (`diagnostics_channel.subscribe('meshsock:magicsock:path', fn)`) or read `counters`.
 */
import * as diagnosticsChannel from 'node:diagnostics_channel';

export const channels = {
  /** A peer's best path changed: { peer, from, to, reason }. */
  path: diagnosticsChannel.channel('meshsock:magicsock:path'),
  /** A datagram was dropped: { where, reason }. */
  drop: diagnosticsChannel.channel('meshsock:drop'),
  /** A disco message was sent or received: { dir, type, peer, addr }. */
  disco: diagnosticsChannel.channel('meshsock:disco'),
  /** A STUN transaction finished: { server, mapped, rttMs } or { server, error }. */
  stun: diagnosticsChannel.channel('meshsock:stun'),
  /** A DERP client connection changed state: { region, state, error? }. */
  derpClient: diagnosticsChannel.channel('meshsock:derp:client'),
  /** A DERP server event: { event, key?, reason? }. */
  derpServer: diagnosticsChannel.channel('meshsock:derp:server'),
  /** A socket rebind: { reason }. */
  rebind: diagnosticsChannel.channel('meshsock:magicsock:rebind'),
  /**
   * The port mapper (NAT-PMP, PCP, UPnP-IGD): { event, gateway, ... } for probe, probed, mapped, failed, waiting,
   * epoch-reset, public-ip, release, closed, and { event: 'mapping', mapping, previous, reason } on changes.
   */
  portmap: diagnosticsChannel.channel('meshsock:portmap'),
} as const;

/** Publishes only when someone listens, so the hot path pays one boolean check. */
export function publish(ch: diagnosticsChannel.Channel, message: () => unknown): void {
  if (ch.hasSubscribers) ch.publish(message());
}

/** A named set of monotonically increasing counters. */
export class Counters<K extends string> {
  // A plain prototype-less object: a few fixed keys stay fast properties, cheaper than a Map on per-datagram paths.
  private readonly values: Record<string, number> = Object.create(null) as Record<string, number>;

  inc(key: K, n = 1): void {
    this.values[key] = (this.values[key] ?? 0) + n;
  }

  get(key: K): number {
    return this.values[key] ?? 0;
  }

  snapshot(): Record<string, number> {
    return { ...this.values };
  }
}
