import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { DecodeError } from '../../src/errors.js';
import { decodeSsdpResponse, encodeMSearch, isIgdAnswer, isSsdpResponse } from '../../src/portmap/ssdp.js';

const vectors = JSON.parse(readFileSync(new URL('../vectors/portmap/tailscale.json', import.meta.url), 'utf8')) as {
  ssdp: Array<{ name: string; text: string; location: string; server: string; usn: string }>;
};
const ascii = (s: string): Uint8Array => Uint8Array.from(s, (c) => c.charCodeAt(0));
const text = (b: Uint8Array): string => String.fromCharCode(...b);

describe('SSDP M-SEARCH', () => {
  it('encodes the UDA 1.1 search with the group as HOST, quoted MAN and MX 1', () => {
    expect(text(encodeMSearch({ st: 'ssdp:all' }))).toBe(
      'M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nST: ssdp:all\r\nMAN: "ssdp:discover"\r\nMX: 1\r\n\r\n',
    );
    expect(
      text(
        encodeMSearch({ st: 'urn:schemas-upnp-org:device:InternetGatewayDevice:1', mx: 3, host: '192.168.1.1:1900' }),
      ),
    ).toContain('HOST: 192.168.1.1:1900\r\nST: urn:schemas-upnp-org:device:InternetGatewayDevice:1\r\n');
  });

  it('refuses header injection and bad MX', () => {
    expect(() => encodeMSearch({ st: 'ssdp:all\r\nX: y' })).toThrow(TypeError);
    expect(() => encodeMSearch({ st: '' })).toThrow(TypeError);
    expect(() => encodeMSearch({ st: 'ssdp:all', mx: 0 })).toThrow(RangeError);
  });
});

describe('SSDP answers', () => {
  it.each(vectors.ssdp.map((v) => [v.name, v] as const))('decodes the %s capture (Tailscale upnp_test.go)', (_n, v) => {
    const b = ascii(v.text);
    expect(isSsdpResponse(b)).toBe(true);
    const r = decodeSsdpResponse(b);
    expect(r.location).toBe(v.location);
    expect(r.server ?? '').toBe(v.server);
    expect(r.usn).toBe(v.usn);
    expect(isIgdAnswer(r)).toBe(true);
  });

  it('is lenient about bare LF, header case and unknown headers', () => {
    const r = decodeSsdpResponse(
      ascii('HTTP/1.1 200 OK\nLocation:http://192.168.1.1:5000/a.xml\nst: upnp:rootdevice\nX-Odd\n\n'),
    );
    expect(r.location).toBe('http://192.168.1.1:5000/a.xml');
    expect(r.st).toBe('upnp:rootdevice');
    expect(isIgdAnswer(r)).toBe(false);
  });

  it('rejects NOTIFY, searches, non-200 and oversized datagrams', () => {
    for (const s of [
      'NOTIFY * HTTP/1.1\r\n\r\n',
      'M-SEARCH * HTTP/1.1\r\n\r\n',
      'HTTP/1.1 404 Not Found\r\n\r\n',
      'HTTP/1.1 2000\r\n\r\n',
    ]) {
      expect(isSsdpResponse(ascii(s)), s).toBe(false);
      expect(() => decodeSsdpResponse(ascii(s))).toThrow(DecodeError);
    }
    const huge = ascii(`HTTP/1.1 200 OK\r\nX: ${'a'.repeat(5000)}\r\n\r\n`);
    expect(isSsdpResponse(huge)).toBe(false);
    expect(() => decodeSsdpResponse(huge)).toThrow(DecodeError);
  });

  it('isSsdpResponse never throws and agrees with decode', () => {
    const httpish = fc.string({ maxLength: 200 }).map((s) => ascii(`HTTP/1.1 200 OK\r\n${s}`));
    fc.assert(
      fc.property(fc.oneof(fc.uint8Array({ maxLength: 300 }), httpish), (b) => {
        let ok = true;
        try {
          decodeSsdpResponse(b);
        } catch (e) {
          expect(e).toBeInstanceOf(DecodeError);
          ok = false;
        }
        expect(isSsdpResponse(b)).toBe(ok);
      }),
      { numRuns: 1000 },
    );
    for (const v of [undefined, null, 'HTTP/1.1 200 OK', 7]) expect(isSsdpResponse(v)).toBe(false);
  });
});
