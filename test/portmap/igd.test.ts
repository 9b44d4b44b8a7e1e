import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { DecodeError } from '../../src/errors.js';
import {
  addPortMappingArgs,
  decodeSoapResponse,
  deletePortMappingArgs,
  encodeSoapRequest,
  parseIgdDescription,
} from '../../src/portmap/igd.js';
import { childText, decodeEntities, descendants, escapeXml, parseXml } from '../../src/portmap/xml.js';

const vectors = JSON.parse(readFileSync(new URL('../vectors/portmap/tailscale.json', import.meta.url), 'utf8')) as {
  descriptions: Array<{
    name: string;
    location: string;
    xml: string;
    serviceType: string;
    controlUrl: string;
    friendlyName: string;
  }>;
  soap: Array<{
    name: string;
    action: string;
    status: number;
    xml: string;
    ok: boolean;
    errorCode?: number;
    errorDescription?: string;
    values?: Record<string, string>;
  }>;
};

describe('tolerant XML reader', () => {
  it('reads names without prefixes, text with entities, CDATA; skips comments, PIs and DOCTYPE', () => {
    const doc = parseXml(
      '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e "boom">]><!-- c --><s:a x="1>2"><b>1 &amp; 2 &#x41;&#66; &e;</b><c><![CDATA[<raw>]]></c><d/></s:a>',
    );
    const a = doc.children[0]!;
    expect(a.name).toBe('a');
    expect(childText(a, 'b')).toBe('1 & 2 AB &e;');
    expect(childText(a, 'c')).toBe('<raw>');
    expect(a.children.map((c) => c.name)).toEqual(['b', 'c', 'd']);
  });

  it('recovers from stray and missing closing tags', () => {
    const doc = parseXml('<root><x><y>1</x><z>2</z></q></root><tail>t');
    const root = doc.children[0]!;
    expect(root.children.map((c) => c.name)).toEqual(['x', 'z']);
    expect(childText(root.children[0]!, 'y')).toBe('1');
    expect(doc.children[1]?.text).toBe('t');
  });

  it('flattens nesting deeper than maxDepth instead of recursing without bound', () => {
    const deep = '<a>'.repeat(10_000) + 'x' + '</a>'.repeat(10_000);
    expect(() => parseXml(deep)).not.toThrow();
    expect(descendants(parseXml(deep, 8), 'a').length).toBe(10_000);
  });

  it('escapes and decodes the five predefined entities', () => {
    expect(escapeXml(`<a href="x">'&'</a>`)).toBe('&lt;a href=&quot;x&quot;&gt;&apos;&amp;&apos;&lt;/a&gt;');
    expect(decodeEntities('&lt;&gt;&amp;&quot;&apos;&#0;&#xD800;')).toBe(`<>&"'&#0;&#xD800;`);
  });

  it('never throws, for any input', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 300 }), fc.stringMatching(/^[<>/!?\-[\]a-z"' =&;#]{0,200}$/), (a, b) => {
        parseXml(a);
        parseXml(b);
      }),
      { numRuns: 2000 },
    );
  });
});

describe('device descriptions', () => {
  it.each(vectors.descriptions.map((v) => [v.name, v] as const))(
    '%s: picks the right WAN service (Tailscale upnp_test.go)',
    (_n, v) => {
      const d = parseIgdDescription(v.xml, v.location);
      expect(d.services[0]).toMatchObject({ serviceType: v.serviceType, controlUrl: v.controlUrl });
      expect(d.friendlyName).toBe(v.friendlyName);
    },
  );

  it('prefers WANIPConnection:2 > WANIPConnection:1 > WANPPPConnection:1 > others, honours URLBase', () => {
    const svc = (t: string, u: string) =>
      `<service><serviceType>urn:schemas-upnp-org:service:${t}</serviceType><controlURL>${u}</controlURL></service>`;
    const xml = `<root><URLBase>http://192.168.1.1:80/base/</URLBase><device><serviceList>${svc('WANPPPConnection:1', 'ppp')}${svc('WANIPConnection:3', '/ip3')}${svc('WANIPConnection:1', '/ip1')}${svc('WANIPConnection:2', 'ip2')}${svc('Layer3Forwarding:1', '/l3')}</serviceList></device></root>`;
    const d = parseIgdDescription(xml, 'http://192.168.1.1:5000/desc.xml');
    expect(d.services.map((s) => `${s.kind}:${s.version} ${s.controlUrl}`)).toEqual([
      'WANIPConnection:2 http://192.168.1.1/base/ip2',
      'WANIPConnection:1 http://192.168.1.1/ip1',
      'WANPPPConnection:1 http://192.168.1.1/base/ppp',
      'WANIPConnection:3 http://192.168.1.1/ip3',
    ]);
  });

  it('throws DecodeError without a usable service, and for a non-http location', () => {
    expect(() => parseIgdDescription('<root><device/></root>', 'http://192.168.1.1/')).toThrow(DecodeError);
    expect(() => parseIgdDescription('garbage <<<', 'http://192.168.1.1/')).toThrow(DecodeError);
    const https =
      '<root><service><serviceType>urn:schemas-upnp-org:service:WANIPConnection:1</serviceType><controlURL>https://192.168.1.1/c</controlURL></service></root>';
    expect(() => parseIgdDescription(https, 'http://192.168.1.1/')).toThrow(DecodeError);
    expect(() => parseIgdDescription(vectors.descriptions[0]!.xml, 'ftp://192.168.1.1/')).toThrow(DecodeError);
  });
});

describe('SOAP', () => {
  it('builds AddPortMapping with the arguments in the spec order and the quoted SOAPAction', () => {
    const args = addPortMappingArgs({
      externalPort: 41641,
      internalPort: 41641,
      internalClient: '192.168.1.10',
      leaseS: 7200,
    });
    const r = encodeSoapRequest('urn:schemas-upnp-org:service:WANIPConnection:1', 'AddPortMapping', args);
    expect(r.soapAction).toBe('"urn:schemas-upnp-org:service:WANIPConnection:1#AddPortMapping"');
    expect(r.contentType).toBe('text/xml; charset="utf-8"');
    expect(r.body).toContain(
      '<u:AddPortMapping xmlns:u="urn:schemas-upnp-org:service:WANIPConnection:1"><NewRemoteHost></NewRemoteHost>' +
        '<NewExternalPort>41641</NewExternalPort><NewProtocol>UDP</NewProtocol><NewInternalPort>41641</NewInternalPort>' +
        '<NewInternalClient>192.168.1.10</NewInternalClient><NewEnabled>1</NewEnabled>' +
        '<NewPortMappingDescription>meshsock-portmap</NewPortMappingDescription><NewLeaseDuration>7200</NewLeaseDuration>' +
        '</u:AddPortMapping>',
    );
    // The body parses back with our own reader.
    const body = descendants(parseXml(r.body), 'AddPortMapping')[0]!;
    expect(childText(body, 'NewLeaseDuration')).toBe('7200');
    expect(deletePortMappingArgs(5).map(([k]) => k)).toEqual(['NewRemoteHost', 'NewExternalPort', 'NewProtocol']);
    expect(() => encodeSoapRequest('x', 'Bad Action', [])).toThrow(TypeError);
    expect(() => encodeSoapRequest('x"y', 'A', [])).toThrow(TypeError);
  });

  it('escapes argument values', () => {
    const r = encodeSoapRequest('s', 'A', [['NewPortMappingDescription', '<x>&']]);
    expect(r.body).toContain('<NewPortMappingDescription>&lt;x&gt;&amp;</NewPortMappingDescription>');
  });

  it.each(vectors.soap.map((v) => [v.name, v] as const))('%s (Tailscale upnp_test.go)', (_n, v) => {
    const r = decodeSoapResponse(v.status, v.xml, v.action);
    expect(r.ok).toBe(v.ok);
    if (r.ok) expect({ ...r.values }).toEqual(v.values);
    else
      expect(r).toMatchObject({ errorCode: v.errorCode, errorDescription: v.errorDescription, httpStatus: v.status });
  });

  it('a non-2xx answer without a fault is an error; AddAnyPortMapping gives NewReservedPort', () => {
    expect(decodeSoapResponse(404, 'not found', 'AddPortMapping')).toEqual({
      ok: false,
      httpStatus: 404,
      errorCode: undefined,
      errorDescription: undefined,
    });
    const any =
      '<s:Envelope><s:Body><u:AddAnyPortMappingResponse><NewReservedPort>50001</NewReservedPort></u:AddAnyPortMappingResponse></s:Body></s:Envelope>';
    const r = decodeSoapResponse(200, any, 'AddAnyPortMapping');
    expect(r.ok && r.values.NewReservedPort).toBe('50001');
  });

  it('decodeSoapResponse never throws', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 999 }), fc.string({ maxLength: 200 }), (status, body) => {
        decodeSoapResponse(status, body, 'AddPortMapping');
      }),
    );
  });
});
