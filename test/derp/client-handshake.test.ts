import nacl from 'tweetnacl';
import { describe, expect, it } from 'vitest';
import {
  ClientHandshake,
  clientInfoJson,
  parseServerInfoJson,
  type ClientHandshakeAction,
} from '../../src/derp/client-handshake.js';
import { DERP } from '../../src/derp/constants.js';
import { decodeFrame, encodeFrame, type Frame } from '../../src/derp/frame.js';
import { ErrorCode } from '../../src/errors.js';
import { fromHex, toHex } from '../../src/internal/bytes.js';
import { sealTo } from '../../src/key/box.js';
import { PrivateKey } from '../../src/key/keys.js';

// Fixed keys and a fixed nonce source so the sealed ClientInfo is reproducible; tweetnacl (an independent NaCl
// implementation) is the reference for the box.
const clientKey = new PrivateKey(fromHex('11'.repeat(32)));
const serverKey = new PrivateKey(fromHex('22'.repeat(32)));
const fixedRng = (n: number): Uint8Array => new Uint8Array(n).fill(0x01);
const MESH = 'ab'.repeat(32);

function sendBytes(actions: ClientHandshakeAction[]): Uint8Array {
  expect(actions).toHaveLength(1);
  const a = actions[0]!;
  if (a.type !== 'send') throw new Error(`expected send, got ${a.type}`);
  return a.bytes;
}

function failCode(actions: ClientHandshakeAction[]): string {
  expect(actions).toHaveLength(1);
  const a = actions[0]!;
  if (a.type !== 'fail') throw new Error(`expected fail, got ${a.type}`);
  return a.error.code;
}

function serverInfo(json: string, from = serverKey, to = clientKey.publicKey): Frame {
  return { type: 'serverInfo', sealed: sealTo(from, to, new TextEncoder().encode(json)) };
}

function openClientInfoWithTweetnacl(frameBytes: Uint8Array): string {
  const f = decodeFrame(frameBytes[0]!, frameBytes.subarray(5));
  if (f.type !== 'clientInfo') throw new Error('not ClientInfo');
  const nonce = f.sealed.subarray(0, 24);
  const plain = nacl.box.open(f.sealed.subarray(24), nonce, f.key, serverKey.bytes);
  if (!plain) throw new Error('tweetnacl could not open the ClientInfo box');
  return new TextDecoder().decode(plain);
}

describe('ClientHandshake (sans-IO)', () => {
  it('answers ServerKey with a ClientInfo sealed to the server key, then finishes on ServerInfo', () => {
    const hs = new ClientHandshake({ privateKey: clientKey, rng: fixedRng, deadline: 10_000 });
    expect(hs.state).toBe('awaitServerKey');
    expect(hs.maxFrameLength).toBe(DERP.MAX_SERVER_KEY_LEN);
    const ci = sendBytes(hs.handleFrame({ type: 'serverKey', key: serverKey.publicKey.bytes }, 0));
    expect(hs.state).toBe('awaitServerInfo');
    expect(hs.maxFrameLength).toBe(DERP.MAX_CLIENT_FRAME);
    // Layout: type 02 | len | client key | nonce (our fixed 01×24) | box
    expect(toHex(ci.subarray(0, 5))).toBe('02' + (32 + 24 + 16 + 32).toString(16).padStart(8, '0'));
    expect(toHex(ci.subarray(5, 37))).toBe(toHex(clientKey.publicKey.bytes));
    expect(toHex(ci.subarray(37, 61))).toBe('01'.repeat(24));
    expect(openClientInfoWithTweetnacl(ci)).toBe('{"version":2,"CanAckPings":true}');
    // And byte for byte what tweetnacl seals for the same keys and nonce.
    const ref = nacl.box(
      new TextEncoder().encode('{"version":2,"CanAckPings":true}'),
      fixedRng(24),
      serverKey.publicKey.bytes,
      clientKey.bytes,
    );
    expect(toHex(ci.subarray(61))).toBe(toHex(ref));

    const done = hs.handleFrame(serverInfo('{"version":2}'), 1);
    expect(done).toHaveLength(1);
    const d = done[0]!;
    if (d.type !== 'done') throw new Error(d.type);
    expect(d.result.serverKey.hex).toBe(serverKey.publicKey.hex);
    expect(d.result.serverInfo).toEqual({ version: 2 });
    expect(hs.state).toBe('done');
    expect(hs.pollTimeout()).toBeUndefined();
    expect(hs.handleFrame({ type: 'keepAlive' }, 2)).toEqual([]);
  });

  it('puts meshKey and IsProber in ClientInfo, and CanAckPings false when asked', () => {
    expect(JSON.parse(clientInfoJson({ meshKey: MESH.toUpperCase(), isProber: true, canAckPings: false }))).toEqual({
      version: 2,
      CanAckPings: false,
      meshKey: MESH,
      IsProber: true,
    });
    const hs = new ClientHandshake({ privateKey: clientKey, meshKey: MESH, isProber: true });
    const ci = sendBytes(hs.handleFrame({ type: 'serverKey', key: serverKey.publicKey.bytes }, 0));
    expect(JSON.parse(openClientInfoWithTweetnacl(ci))).toEqual({
      version: 2,
      CanAckPings: true,
      meshKey: MESH,
      IsProber: true,
    });
  });

  it('rejects a malformed mesh key at construction', () => {
    expect(() => new ClientHandshake({ privateKey: clientKey, meshKey: 'xyz' })).toThrow(TypeError);
  });

  it('reads the token bucket the server advertises, leniently', () => {
    expect(
      parseServerInfoJson('{"version":2,"TokenBucketBytesPerSecond":1000,"TokenBucketBytesBurst":70000,"x":1}'),
    ).toEqual({
      version: 2,
      tokenBucketBytesPerSecond: 1000,
      tokenBucketBytesBurst: 70000,
    });
    expect(parseServerInfoJson('{"Version":2,"tokenbucketbytespersecond":0}')).toEqual({ version: 2 });
    expect(() => parseServerInfoJson('[1]')).toThrow(TypeError);
  });

  it('fails with DERP_CONNECT when the first frame is not ServerKey', () => {
    const hs = new ClientHandshake({ privateKey: clientKey });
    expect(failCode(hs.handleFrame({ type: 'keepAlive' }, 0))).toBe(ErrorCode.DERP_CONNECT);
    expect(hs.state).toBe('failed');
    expect(hs.handleFrame({ type: 'serverKey', key: serverKey.publicKey.bytes }, 0)).toEqual([]);
  });

  it('fails when ServerKey disagrees with the Derp-Public-Key header', () => {
    const hs = new ClientHandshake({ privateKey: clientKey, expectedServerKey: PrivateKey.generate().publicKey });
    expect(failCode(hs.handleFrame({ type: 'serverKey', key: serverKey.publicKey.bytes }, 0))).toBe(
      ErrorCode.DERP_CONNECT,
    );
  });

  it('fails on a ServerInfo sealed by another key or holding no JSON object', () => {
    for (const f of [serverInfo('{"version":2}', PrivateKey.generate()), serverInfo('"hello"'), serverInfo('{')]) {
      const hs = new ClientHandshake({ privateKey: clientKey });
      sendBytes(hs.handleFrame({ type: 'serverKey', key: serverKey.publicKey.bytes }, 0));
      expect(failCode(hs.handleFrame(f, 0))).toBe(ErrorCode.DERP_CONNECT);
    }
  });

  it('answers a Ping that arrives before ServerInfo, unless it cannot ack pings', () => {
    const data = fromHex('0102030405060708');
    const hs = new ClientHandshake({ privateKey: clientKey });
    sendBytes(hs.handleFrame({ type: 'serverKey', key: serverKey.publicKey.bytes }, 0));
    expect(toHex(sendBytes(hs.handleFrame({ type: 'ping', data }, 0)))).toBe(
      toHex(encodeFrame({ type: 'pong', data })),
    );
    expect(hs.handleFrame({ type: 'keepAlive' }, 0)).toEqual([]);
    const quiet = new ClientHandshake({ privateKey: clientKey, canAckPings: false });
    sendBytes(quiet.handleFrame({ type: 'serverKey', key: serverKey.publicKey.bytes }, 0));
    expect(quiet.handleFrame({ type: 'ping', data }, 0)).toEqual([]);
  });

  it('reports EOF as DERP_CONNECT, or DERP_DENIED after the server said the client was not admitted', () => {
    const a = new ClientHandshake({ privateKey: clientKey });
    expect(failCode(a.handleEnd(undefined, 0))).toBe(ErrorCode.DERP_CONNECT);

    const b = new ClientHandshake({ privateKey: clientKey });
    sendBytes(b.handleFrame({ type: 'serverKey', key: serverKey.publicKey.bytes }, 0));
    expect(b.handleFrame({ type: 'health', problem: 'some unrelated note' }, 0)).toEqual([]);
    expect(failCode(b.handleEnd(new Error('ECONNRESET'), 0))).toBe(ErrorCode.DERP_CONNECT);

    const c = new ClientHandshake({ privateKey: clientKey });
    sendBytes(c.handleFrame({ type: 'serverKey', key: serverKey.publicKey.bytes }, 0));
    c.handleFrame({ type: 'health', problem: `${DERP.DENIED_HEALTH_PREFIX}: admission refused` }, 0);
    expect(failCode(c.handleEnd(undefined, 0))).toBe(ErrorCode.DERP_DENIED);
  });

  it('times out at its deadline and not before', () => {
    const hs = new ClientHandshake({ privateKey: clientKey, deadline: 5_000 });
    expect(hs.pollTimeout()).toBe(5_000);
    expect(hs.handleTimeout(4_999)).toEqual([]);
    expect(failCode(hs.handleTimeout(5_000))).toBe(ErrorCode.TIMEOUT);
    expect(hs.pollTimeout()).toBeUndefined();
  });
});
