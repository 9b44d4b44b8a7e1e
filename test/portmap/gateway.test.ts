import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  defaultGatewayFromRoutes,
  explicitGatewayProblem,
  isRfc1918,
  parseProcNetRoute,
  usablePublicIp,
} from '../../src/portmap/gateway.js';

// A /proc/net/route as a little-endian Linux prints it: default via 192.168.1.1 (metric 100) and a worse one via
// 10.0.0.1 (metric 600), plus the LAN route.
const ROUTES = `Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
wlan0\t00000000\t0100000A\t0003\t0\t0\t600\t00000000\t0\t0\t0
eth0\t00000000\t0101A8C0\t0003\t0\t0\t100\t00000000\t0\t0\t0
eth0\t0001A8C0\t00000000\t0001\t0\t0\t100\t00FFFFFF\t0\t0\t0
garbage line
`;

describe('gateway selection', () => {
  it('reads the default route with the lowest metric from /proc/net/route', () => {
    expect(parseProcNetRoute(ROUTES)).toHaveLength(3);
    expect(defaultGatewayFromRoutes(ROUTES)).toBe('192.168.1.1');
    expect(defaultGatewayFromRoutes(ROUTES.replace('\t100\t00000000', '\t900\t00000000'))).toBe('10.0.0.1');
    expect(defaultGatewayFromRoutes(ROUTES, false)).toBe('192.168.1.1'.split('.').reverse().join('.'));
  });

  it('ignores routes that are down or have no gateway, and bad input', () => {
    const down = ROUTES.replace(/0003/g, '0001');
    expect(defaultGatewayFromRoutes(down)).toBeUndefined();
    expect(defaultGatewayFromRoutes('')).toBeUndefined();
    fc.assert(fc.property(fc.string(), (s) => void defaultGatewayFromRoutes(s)));
  });

  it('RFC 1918 only for the default gateway; explicit gateways may also be shared or loopback', () => {
    for (const ip of ['10.1.2.3', '172.16.0.1', '172.31.255.255', '192.168.0.1']) expect(isRfc1918(ip), ip).toBe(true);
    for (const ip of ['172.32.0.1', '100.64.0.1', '127.0.0.1', '203.0.113.1', '8.8.8.8', 'nope'])
      expect(isRfc1918(ip), ip).toBe(false);
    for (const ip of ['192.168.1.1', '100.64.0.1', '127.0.0.9']) expect(explicitGatewayProblem(ip), ip).toBeUndefined();
    expect(explicitGatewayProblem('203.0.113.1')).toMatch(/not a private address/);
    expect(explicitGatewayProblem('fe80::1')).toMatch(/not an IPv4 address/);
  });

  it('usable public addresses exclude 0/8, loopback, link-local and multicast', () => {
    expect(['198.18.1.2', '203.0.113.5', '10.0.0.1'].map(usablePublicIp)).toEqual([true, true, true]);
    expect(['0.0.0.0', '127.0.0.1', '169.254.1.1', '224.0.0.1', '::1', ''].map(usablePublicIp)).toEqual([
      false,
      false,
      false,
      false,
      false,
      false,
    ]);
  });
});
