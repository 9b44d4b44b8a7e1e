import * as dgram from 'node:dgram';
import { once } from 'node:events';
import { afterEach, describe, expect, it } from 'vitest';
import { AttrType, MessageType } from '../../src/stun/constants.js';
import {
  decodeBindingResponse,
  decodeMessage,
  encodeBindingError,
  encodeBindingRequest,
  encodeBindingSuccess,
  encodeMessage,
} from '../../src/stun/message.js';
import { StunServer, classifyStun, respondToStun } from '../../src/stun/server.js';
import { bytes, rfc5769 } from './vectors.js';

const FROM = { ip: '203.0.113.50', port: 50000 };
const TX = new Uint8Array(12).fill(0x5a);

describe('respondToStun (pure)', () => {
  it('answers a Tailscale request with the source address', () => {
    const resp = respondToStun(encodeBindingRequest(TX), FROM)!;
    expect(decodeBindingResponse(resp)).toEqual({
      kind: 'success',
      txId: TX,
      mapped: FROM,
      mappedAttr: AttrType.XOR_MAPPED_ADDRESS,
      software: 'meshsock',
      fingerprint: true,
    });
  });

  it('answers any well-formed Binding request, not only "tailnode" ones', () => {
    const bare = encodeMessage(MessageType.BINDING_REQUEST, TX, [], { fingerprint: false }); // 20 bytes, no attributes
    expect(decodeBindingResponse(respondToStun(bare, FROM)!)).toMatchObject({ txId: TX, mapped: FROM });
    // RFC 5769's ICE request, with USERNAME / MESSAGE-INTEGRITY / PRIORITY we do not check, and an IPv6 client.
    const v6 = { ip: '2001:db8::9', port: 1 };
    expect(decodeBindingResponse(respondToStun(bytes(rfc5769.request.hex), v6)!)).toMatchObject({ mapped: v6 });
  });

  it.each([
    ['garbage', new Uint8Array([1, 2, 3]), 'malformed'],
    ['STUN-looking but truncated', encodeBindingRequest(TX).subarray(0, 30), 'malformed'],
    ['bad FINGERPRINT', Object.assign(encodeBindingRequest(TX), { 39: 0 }), 'malformed'],
    ['a success response', encodeBindingSuccess(TX, FROM), 'not-binding'],
    ['an error response', encodeBindingError(TX, 400, 'Bad Request'), 'not-binding'],
    ['a Binding indication', encodeMessage(MessageType.BINDING_INDICATION, TX, []), 'not-binding'],
    ['another method (Allocate)', encodeMessage(0x0003, TX, []), 'not-binding'],
  ])('gives no answer to %s (%s)', (_name, b, drop) => {
    expect(respondToStun(b, FROM)).toBeUndefined();
    expect(classifyStun(b, FROM).drop).toBe(drop);
  });

  it('never throws, even for a source that is not an address', () => {
    expect(respondToStun(encodeBindingRequest(TX), { ip: 'nope', port: 1 })).toBeUndefined();
    expect(respondToStun(undefined as unknown as Uint8Array, FROM)).toBeUndefined();
  });
});

describe('StunServer on loopback', () => {
  let server: StunServer | undefined;
  let sock: dgram.Socket | undefined;
  afterEach(async () => {
    sock?.close();
    sock = undefined;
    await server?.close();
    server = undefined;
  });

  it('binds a free port, answers, drops garbage and counts it, closes idempotently', async () => {
    server = await StunServer.listen({ host: '127.0.0.1', port: 0 });
    expect(server.address.ip).toBe('127.0.0.1');
    expect(server.address.port).toBeGreaterThan(0);
    sock = dgram.createSocket('udp4');
    sock.bind(0, '127.0.0.1');
    await once(sock, 'listening');
    const me = sock.address();
    const send = (b: Uint8Array): void => sock!.send(b, server!.address.port, '127.0.0.1');
    send(new Uint8Array(0));
    send(new Uint8Array([0xde, 0xad]));
    send(Object.assign(encodeBindingRequest(TX), { 4: 0 })); // no cookie
    send(encodeBindingSuccess(TX, FROM));
    const reply = once(sock, 'message');
    send(encodeBindingRequest(TX));
    const [msg] = (await reply) as [Buffer];
    expect(decodeBindingResponse(msg)).toMatchObject({ txId: TX, mapped: { ip: '127.0.0.1', port: me.port } });
    expect(decodeMessage(msg).fingerprint).toBe(true);
    expect(server.stats()).toEqual({ answered: 1, droppedMalformed: 3, droppedNotBinding: 1, sendErrors: 0 });
    await server.close();
    await server.close();
  });

  it('rejects listen() on a port in use', async () => {
    server = await StunServer.listen({ host: '127.0.0.1', port: 0 });
    await expect(StunServer.listen({ host: '127.0.0.1', port: server.address.port })).rejects.toThrow(/EADDRINUSE/);
  });
});
