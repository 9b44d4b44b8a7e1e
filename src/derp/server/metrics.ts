/**
 * Prometheus metrics for one DERP server, in its own prom-client `Registry` (never the global one, so two servers in
 * one process do not collide). Values are read from the relay's counters and gauges at scrape time, so the packet
 * path pays nothing for them. Names follow derper's where one exists (`derp_current_connections`, …); every counter
 * of `ServerCounters` is exported as `derp_<snake_case>_total`.
 */
import { Counter, Gauge, Registry } from 'prom-client';
import type { Relay } from './relay.js';

function snake(s: string): string {
  return s.replace(/([a-z0-9])([A-Z])/g, '$1_$2').toLowerCase();
}

/** Builds the registry for `relay`; `extra` adds gauges computed by the caller (e.g. STUN counters). */
export function createMetrics(relay: Relay, extra?: () => Record<string, number>): Registry {
  const reg = new Registry();
  const gauges: [string, string, keyof ReturnType<Relay['gauges']>][] = [
    ['derp_current_connections', 'Open connections (including those still in the handshake).', 'connections'],
    ['derp_current_clients', 'Distinct client keys connected.', 'clients'],
    ['derp_current_home_connections', 'Clients that said this server is their home (NotePreferred).', 'preferred'],
    ['derp_current_mesh_peers', 'Connected clients holding the mesh key.', 'meshPeers'],
    ['derp_current_watchers', 'Mesh peers watching connections.', 'watchers'],
    ['derp_current_forwarders', 'Keys reachable through another mesh node.', 'forwarders'],
    ['derp_current_handshaking', 'Connections still in the handshake or admission.', 'handshaking'],
    ['derp_queued_frames', 'Frames waiting in per-client send queues.', 'queuedFrames'],
    [
      'derp_socket_buffered_bytes',
      'Bytes written to client sockets but not yet taken by the kernel.',
      'socketBufferedBytes',
    ],
  ];
  for (const [name, help, field] of gauges) {
    new Gauge({
      name,
      help,
      registers: [reg],
      collect() {
        this.set(relay.gauges()[field]);
      },
    });
  }
  for (const field of Object.keys(relay.counters.snapshot())) {
    new Counter({
      name: `derp_${snake(field)}_total`,
      help: `ServerCounters.${field}`,
      registers: [reg],
      collect() {
        this.reset();
        this.inc(relay.counters.snapshot()[field] ?? 0);
      },
    });
  }
  if (extra) {
    for (const field of Object.keys(extra())) {
      new Gauge({
        name: `derp_${snake(field)}`,
        help: field,
        registers: [reg],
        collect() {
          this.set(extra()[field] ?? 0);
        },
      });
    }
  }
  return reg;
}
