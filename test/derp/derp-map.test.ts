import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ErrorCode, isMeshsockError } from '../../src/errors.js';
import {
  DERP_MAP,
  derpMapToTailscaleJson,
  derpNodeLatencyUrl,
  derpNodeUrl,
  derpNodes,
  getRegion,
  isDerpMap,
  nodeLiteralAddress,
  nodeMightFamily,
  parseDerpMap,
  regionIds,
} from '../../src/derp/derp-map.js';

// A map in Tailscale's JSON shape (tailcfg.DERPMap field names, as Headscale serves it). Hosts are documentation
// names (RFC 2606) and addresses (RFC 5737 / RFC 3849); nothing here is contacted.
const TAILSCALE_JSON = `{
  "HomeParams": { "RegionScore": { "901": 0.8, "902": 0 } },
  "Regions": {
    "902": {
      "RegionID": 902, "RegionCode": "fra", "RegionName": "Frankfurt", "Latitude": 50.1, "Longitude": 8.6,
      "Nodes": [
        { "Name": "902a", "RegionID": 902, "HostName": "derp-fra.example.net", "IPv4": "203.0.113.20", "IPv6": "none" },
        { "Name": "902s", "RegionID": 902, "HostName": "stun-fra.example.net", "STUNOnly": true, "STUNPort": 3479 }
      ]
    },
    "901": {
      "RegionID": 901, "RegionCode": "nyc", "RegionName": "New York City", "NoMeasureNoHome": false,
      "Nodes": [
        { "Name": "901a", "RegionID": 901, "HostName": "derp-nyc.example.net", "DERPPort": 8443, "STUNPort": -1,
          "IPv6": "2001:db8::10", "CanPort80": true, "CertName": "sha256-raw:00ff" }
      ]
    }
  }
}`;

function expectBadConfig(input: unknown, msg: RegExp): void {
  let caught: unknown;
  try {
    parseDerpMap(input as string);
  } catch (err) {
    caught = err;
  }
  expect(isMeshsockError(caught, ErrorCode.BAD_CONFIG), String(caught)).toBe(true);
  expect((caught as Error).message).toMatch(msg);
}

describe('parseDerpMap: Tailscale JSON', () => {
  const map = parseDerpMap(TAILSCALE_JSON);

  it('keeps every region, sorted by ID, with normalised nodes', () => {
    expect(regionIds(map)).toEqual([901, 902]);
    const fra = getRegion(map, 902);
    expect(fra.regionCode).toBe('fra');
    expect(fra.regionName).toBe('Frankfurt');
    expect(fra.nodes.map((n) => n.name)).toEqual(['902a', '902s']);
    const a = fra.nodes[0]!;
    expect(a).toMatchObject({ hostName: 'derp-fra.example.net', ipv4: '203.0.113.20', ipv6: 'none' });
    expect(a.stunPort).toBe(DERP_MAP.DEFAULT_STUN_PORT);
    expect(a.derpPort).toBe(443);
    expect(a.scheme).toBe('https');
    expect(fra.nodes[1]).toMatchObject({ stunOnly: true, stunPort: 3479 });
    expect(derpNodes(fra).map((n) => n.name)).toEqual(['902a']);
    const nyc = getRegion(map, 901).nodes[0]!;
    expect(nyc).toMatchObject({ derpPort: 8443, stunPort: -1, canPort80: true, certName: 'sha256-raw:00ff' });
  });

  it('keeps positive RegionScores and ignores non-positive ones', () => {
    expect([...map.regionScore]).toEqual([[901, 0.8]]);
  });

  it('derives https URLs, omitting the default port', () => {
    expect(derpNodeUrl(getRegion(map, 902).nodes[0]!)).toBe('https://derp-fra.example.net/derp');
    expect(derpNodeUrl(getRegion(map, 901).nodes[0]!)).toBe('https://derp-nyc.example.net:8443/derp');
    expect(derpNodeLatencyUrl(getRegion(map, 901).nodes[0]!)).toBe(
      'https://derp-nyc.example.net:8443/derp/latency-check',
    );
  });

  it('matches field names case-insensitively, as Go does', () => {
    const m = parseDerpMap({
      regions: { '900': { regioncode: 'x', NODES: [{ hostname: 'h.example', derpport: 1 }] } },
    });
    expect(getRegion(m, 900).nodes[0]).toMatchObject({ hostName: 'h.example', derpPort: 1, name: '900a' });
  });

  it('round-trips through derpMapToTailscaleJson', () => {
    expect(parseDerpMap(derpMapToTailscaleJson(map))).toEqual(map);
  });
});

describe('parseDerpMap: camelCase form', () => {
  it('accepts regions as an array, url and scheme fields, defaults for code and name', () => {
    const map = parseDerpMap({
      regions: [
        { regionId: 1, nodes: [{ url: 'http://127.0.0.1:8080' }] },
        { regionId: 2, regionCode: 'b', nodes: [{ hostName: '::1', scheme: 'http', derpPort: 9000 }] },
        { regionId: 3, nodes: [{ hostName: '127.0.0.1', insecureForTests: true }] },
        { regionId: 4, nodes: [{ url: 'https://[2001:db8::1]:444', insecureForTests: true }] },
      ],
    });
    const n = (id: number) => getRegion(map, id).nodes[0]!;
    expect(getRegion(map, 1)).toMatchObject({ regionCode: '1', regionName: '1' });
    expect(getRegion(map, 2)).toMatchObject({ regionCode: 'b', regionName: 'b' });
    expect(derpNodeUrl(n(1))).toBe('http://127.0.0.1:8080/derp');
    expect(derpNodeUrl(n(2))).toBe('http://[::1]:9000/derp');
    // InsecureForTests without a scheme: plain http on derper's dev port 3340.
    expect(derpNodeUrl(n(3))).toBe('http://127.0.0.1:3340/derp');
    // An explicit https scheme with InsecureForTests: TLS without verification.
    expect(n(4)).toMatchObject({ scheme: 'https', insecureForTests: true, hostName: '2001:db8::1', derpPort: 444 });
    expect(derpNodeUrl(n(4))).toBe('https://[2001:db8::1]:444/derp');
    expect(parseDerpMap(derpMapToTailscaleJson(map))).toEqual(map);
  });
});

describe('parseDerpMap: validation', () => {
  const node = { HostName: 'h.example' };
  it.each([
    ['not JSON', '{"Regions":', /not valid JSON/],
    ['not an object', '[1,2]', /must be a JSON object/],
    ['no Regions', '{}', /"Regions" is missing/],
    ['empty Regions', '{"Regions":{}}', /has no regions; meshsock has no built-in DERP servers/],
    ['bad region key', { Regions: { abc: { Nodes: [node] } } }, /region key "abc".*positive integer/],
    ['zero region id', { Regions: [{ RegionID: 0, Nodes: [node] }] }, /RegionID is required/],
    ['key/ID mismatch', { Regions: { '1': { RegionID: 2, Nodes: [node] } } }, /key "1" does not match its RegionID 2/],
    [
      'duplicate region',
      {
        Regions: [
          { RegionID: 1, Nodes: [node] },
          { RegionID: 1, Nodes: [node] },
        ],
      },
      /listed twice/,
    ],
    ['no nodes', { Regions: { '1': { RegionCode: 'x', Nodes: [] } } }, /region 1 \("x"\) has no nodes/],
    ['node without host', { Regions: { '1': { Nodes: [{ Name: 'n1' }] } } }, /node "n1": HostName is required/],
    [
      'node region mismatch',
      { Regions: { '1': { Nodes: [{ ...node, RegionID: 2 }] } } },
      /does not match its region 1/,
    ],
    [
      'DERPPort range',
      { Regions: { '1': { Nodes: [{ ...node, DERPPort: 70000 }] } } },
      /DERPPort must be an integer in \[0, 65535\]/,
    ],
    ['STUNPort type', { Regions: { '1': { Nodes: [{ ...node, STUNPort: '3478' }] } } }, /STUNPort must be an integer/],
    [
      'IPv4 literal',
      { Regions: { '1': { Nodes: [{ ...node, IPv4: '2001:db8::1' }] } } },
      /IPv4 must be an IPv4 literal or "none"/,
    ],
    ['IPv6 literal', { Regions: { '1': { Nodes: [{ ...node, IPv6: '192.0.2.1' }] } } }, /IPv6 must be an IPv6 literal/],
    ['bool type', { Regions: { '1': { Nodes: [{ ...node, STUNOnly: 'yes' }] } } }, /STUNOnly must be true or false/],
    [
      'duplicate node name',
      { Regions: { '1': { Nodes: [{ ...node, Name: 'a' }] }, '2': { Nodes: [{ ...node, Name: 'a' }] } } },
      /"a" is used in region 1 and region 2/,
    ],
    ['bad url', { Regions: { '1': { Nodes: [{ url: 'ftp://x' }] } } }, /must start with http:\/\/ or https:\/\//],
    ['scheme vs url', { Regions: { '1': { Nodes: [{ url: 'http://x', scheme: 'https' }] } } }, /contradicts url/],
    ['bad scheme', { Regions: { '1': { Nodes: [{ ...node, scheme: 'tcp' }] } } }, /scheme must be "http" or "https"/],
    [
      'score type',
      { Regions: { '1': { Nodes: [node] } }, HomeParams: { RegionScore: { '1': 'fast' } } },
      /RegionScore\["1"\] must be a number/,
    ],
  ])('%s', (_name, input, msg) => expectBadConfig(input, msg));

  it('getRegion names an unknown region', () => {
    const map = parseDerpMap({ Regions: { '1': { Nodes: [node] } } });
    expect(() => getRegion(map, 7)).toThrow(/no region 7/);
  });

  it('isDerpMap never throws, whatever it is given', () => {
    fc.assert(
      fc.property(fc.anything(), (v) => {
        expect(typeof isDerpMap(v)).toBe('boolean');
      }),
    );
    fc.assert(
      fc.property(fc.string(), (s) => {
        expect(typeof isDerpMap(s)).toBe('boolean');
      }),
    );
  });
});

describe('node address helpers', () => {
  const map = parseDerpMap(TAILSCALE_JSON);
  it('honours literals, "none" and host-name families', () => {
    const fra = getRegion(map, 902).nodes[0]!;
    expect(nodeMightFamily(fra, 4)).toBe(true);
    expect(nodeMightFamily(fra, 6)).toBe(false);
    expect(nodeLiteralAddress(fra, 4)).toBe('203.0.113.20');
    expect(nodeLiteralAddress(fra, 6)).toBeUndefined();
    const stun = getRegion(map, 902).nodes[1]!;
    expect(nodeMightFamily(stun, 6)).toBe(true);
    expect(nodeLiteralAddress(stun, 4)).toBeUndefined();
    const loop = getRegion(parseDerpMap({ regions: [{ regionId: 1, nodes: [{ url: 'http://127.0.0.1:1' }] }] }), 1)
      .nodes[0]!;
    expect(nodeMightFamily(loop, 6)).toBe(false);
    expect(nodeLiteralAddress(loop, 4)).toBe('127.0.0.1');
  });
});

describe('round-trip property', () => {
  const nodeArb = (regionId: number, i: number) =>
    fc.record({
      Name: fc.constant(`${regionId}-${i}`),
      HostName: fc.constantFrom('a.example', '192.0.2.1', '2001:db8::2'),
      DERPPort: fc.oneof(fc.constantFrom(0, 443, 3340, 80), fc.integer({ min: 0, max: 65535 })),
      Scheme: fc.constantFrom(undefined, 'http', 'https'),
      STUNPort: fc.integer({ min: -1, max: 65535 }),
      STUNOnly: fc.boolean(),
      InsecureForTests: fc.boolean(),
      CanPort80: fc.boolean(),
      IPv4: fc.constantFrom('', 'none', '198.51.100.7'),
    });
  const mapArb = fc.uniqueArray(fc.integer({ min: 1, max: 2000 }), { minLength: 1, maxLength: 5 }).chain((ids) =>
    fc.tuple(
      ...ids.map((id) =>
        fc.record({
          RegionID: fc.constant(id),
          RegionCode: fc.string({ minLength: 1, maxLength: 4 }),
          NoMeasureNoHome: fc.boolean(),
          Nodes: fc.tuple(nodeArb(id, 0), nodeArb(id, 1)),
        }),
      ),
    ),
  );
  it('parse(toTailscaleJson(parse(x))) equals parse(x)', () => {
    fc.assert(
      fc.property(mapArb, (regions) => {
        const m = parseDerpMap({ Regions: regions });
        expect(parseDerpMap(JSON.stringify(derpMapToTailscaleJson(m)))).toEqual(m);
      }),
    );
  });
});
