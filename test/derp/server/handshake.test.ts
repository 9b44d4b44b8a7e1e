import nacl from 'tweetnacl';
import { describe, expect, it } from 'vitest';
import { decodeFrame } from '../../../src/derp/frame.js';
import {
  openClientInfo,
  parseClientInfoJson,
  serverInfoFrame,
  upgradeResponse,
} from '../../../src/derp/server/handshake.js';
import { toHex } from '../../../src/internal/bytes.js';
import { SharedKey, sealTo } from '../../../src/key/box.js';
import { PrivateKey } from '../../../src/key/keys.js';

const server = PrivateKey.generate();
const client = PrivateKey.generate();
const MESH = '0f'.repeat(32);
const enc = (s: string): Uint8Array => new TextEncoder().encode(s);

describe('server handshake functions', () => {
  it("reads ClientInfo JSON the way Go's decoder does: any key case, unknown fields ignored", () => {
    expect(parseClientInfoJson('{"version":2,"CanAckPings":true}')).toEqual({
      version: 2,
      canAckPings: true,
      isProber: false,
      meshKey: undefined,
    });
    expect(
      parseClientInfoJson(
        `{"VERSION":1,"canackpings":true,"isprober":true,"MeshKey":"${MESH.toUpperCase()}","AppName":"x"}`,
      ),
    ).toEqual({
      version: 1,
      canAckPings: true,
      isProber: true,
      meshKey: MESH,
    });
    expect(parseClientInfoJson('{"meshKey":"short"}').meshKey).toBeUndefined();
    expect(() => parseClientInfoJson('null')).toThrow(TypeError);
  });

  it('opens a ClientInfo sealed by tweetnacl and recognises the mesh key', () => {
    const nonce = new Uint8Array(24).fill(3);
    const boxed = nacl.box(
      enc(`{"version":2,"CanAckPings":true,"meshKey":"${MESH}"}`),
      nonce,
      server.publicKey.bytes,
      client.bytes,
    );
    const sealed = new Uint8Array([...nonce, ...boxed]);
    const r = openClientInfo(server, { key: client.publicKey.bytes, sealed }, MESH);
    expect(r.ok && r.isMesh && r.key.equals(client.publicKey) && r.info.canAckPings).toBe(true);
    const other = openClientInfo(server, { key: client.publicKey.bytes, sealed }, 'ee'.repeat(32));
    expect(other.ok && !other.isMesh).toBe(true);
    const none = openClientInfo(server, { key: client.publicKey.bytes, sealed }, undefined);
    expect(none.ok && !none.isMesh).toBe(true);
  });

  it('never throws on bad input: wrong key, short box, bad UTF-8', () => {
    const wrong = sealTo(client, PrivateKey.generate().publicKey, enc('{}'));
    for (const sealed of [wrong, new Uint8Array(10), sealTo(client, server.publicKey, Uint8Array.of(0xc3, 0x28))]) {
      const r = openClientInfo(server, { key: client.publicKey.bytes, sealed }, undefined);
      expect(r.ok).toBe(false);
    }
  });

  it('seals ServerInfo to the client, with the advertised limit', () => {
    const f = serverInfoFrame(SharedKey.compute(server, client.publicKey), { bytesPerSec: 1234.5, burst: 99_999 });
    const d = decodeFrame(f[0]!, f.subarray(5));
    if (d.type !== 'serverInfo') throw new Error(d.type);
    const plain = nacl.box.open(d.sealed.subarray(24), d.sealed.subarray(0, 24), server.publicKey.bytes, client.bytes);
    expect(JSON.parse(new TextDecoder().decode(plain!))).toEqual({
      version: 2,
      TokenBucketBytesPerSecond: 1234,
      TokenBucketBytesBurst: 99_999,
    });
  });

  it('writes the 101 and the ServerKey frame in one buffer', () => {
    const b = upgradeResponse(server.publicKey);
    const text = new TextDecoder().decode(b);
    const end = text.indexOf('\r\n\r\n') + 4;
    expect(text.slice(0, end)).toBe(
      `HTTP/1.1 101 Switching Protocols\r\nUpgrade: DERP\r\nConnection: Upgrade\r\nDerp-Version: 2\r\nDerp-Public-Key: ${server.publicKey.hex}\r\n\r\n`,
    );
    expect(toHex(b.subarray(end))).toBe('0100000028' + '4445525' + '0f09f9491' + server.publicKey.hex);
  });
});
