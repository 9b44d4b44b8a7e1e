import { describe, expect, it } from 'vitest';
import { DERP, FrameType, PeerGoneReason, PeerPresentFlags } from '../../src/derp/constants.js';
import { decodeFrame, encodeFrame, FrameReader, isFrameHeader, type Frame } from '../../src/derp/frame.js';
import { DecodeError } from '../../src/errors.js';
import { fromHex, toHex } from '../../src/internal/bytes.js';

// Golden vectors. Source: the DERP v2 frame layouts in tailscale-protocols.md §2.2 (from tailscale derp/derp.go at
// de9ec7e), written out by hand field by field — not produced by our encoder. Keys are patterned so that a field in
// the wrong place shows up in the hex: A = aa×32, B = bb×32.
const A = 'aa'.repeat(32);
const B = 'bb'.repeat(32);
const keyA = fromHex(A);
const keyB = fromHex(B);
// A stand-in sealed box: nonce 01×24, then 18 box bytes cc×18 (the codec does not open boxes).
const SEALED = '01'.repeat(24) + 'cc'.repeat(18);

interface Vector {
  name: string;
  hex: string;
  frame: Frame;
}

const vectors: Vector[] = [
  {
    // type 01 | len 0x28 = 40 | magic "DERP🔑" 44 45 52 50 f0 9f 94 91 | server key[32]
    name: 'ServerKey',
    hex: '01 00000028 4445525 0f09f9491'.replace(/ /g, '') + A,
    frame: { type: 'serverKey', key: keyA },
  },
  {
    // type 02 | len 0x4a = 32 + 24 + 18 | client key[32] | nonce[24] | box[18]
    name: 'ClientInfo',
    hex: '02' + '0000004a' + A + SEALED,
    frame: { type: 'clientInfo', key: keyA, sealed: fromHex(SEALED) },
  },
  {
    // type 03 | len 0x2a = 24 + 18 | nonce[24] | box[18]
    name: 'ServerInfo',
    hex: '03' + '0000002a' + SEALED,
    frame: { type: 'serverInfo', sealed: fromHex(SEALED) },
  },
  {
    // type 04 | len 0x24 = 32 + 4 | destination key[32] | packet de ad be ef
    name: 'SendPacket',
    hex: '04' + '00000024' + B + 'deadbeef',
    frame: { type: 'sendPacket', dst: keyB, packet: fromHex('deadbeef') },
  },
  {
    // type 05 | len 0x24 | source key[32] | packet (protocol v2 carries the source key)
    name: 'RecvPacket',
    hex: '05' + '00000024' + A + 'deadbeef',
    frame: { type: 'recvPacket', src: keyA, packet: fromHex('deadbeef') },
  },
  {
    // type 06 | len 0 (empty)
    name: 'KeepAlive',
    hex: '06' + '00000000',
    frame: { type: 'keepAlive' },
  },
  {
    // type 07 | len 1 | 01 = this server is my home
    name: 'NotePreferred',
    hex: '07' + '00000001' + '01',
    frame: { type: 'notePreferred', preferred: true },
  },
  {
    // type 08 | len 0x21 = 32 + 1 | key[32] | reason 01 = NotHere
    name: 'PeerGone',
    hex: '08' + '00000021' + B + '01',
    frame: { type: 'peerGone', key: keyB, reason: PeerGoneReason.NOT_HERE },
  },
  {
    // type 09 | len 0x33 = 32 + 16 + 2 + 1 | key[32] | IP ::ffff:192.0.2.7 | port 0x0d0c = 3340 | flags 01 regular
    name: 'PeerPresent',
    hex: '09' + '00000033' + B + '00000000000000000000ffff' + 'c0000207' + '0d0c' + '01',
    frame: {
      type: 'peerPresent',
      key: keyB,
      endpoint: { ip: '192.0.2.7', port: 3340 },
      flags: PeerPresentFlags.REGULAR,
    },
  },
  {
    // type 0a | len 0x44 = 32 + 32 + 4 | source key[32] | destination key[32] | packet
    name: 'ForwardPacket',
    hex: '0a' + '00000044' + A + B + 'deadbeef',
    frame: { type: 'forwardPacket', src: keyA, dst: keyB, packet: fromHex('deadbeef') },
  },
  {
    // type 10 | len 0 (mesh key holders only)
    name: 'WatchConns',
    hex: '10' + '00000000',
    frame: { type: 'watchConns' },
  },
  {
    // type 11 | len 0x20 | key[32]
    name: 'ClosePeer',
    hex: '11' + '00000020' + B,
    frame: { type: 'closePeer', key: keyB },
  },
  {
    // type 12 | len 8 | 8 opaque bytes
    name: 'Ping',
    hex: '12' + '00000008' + '0102030405060708',
    frame: { type: 'ping', data: fromHex('0102030405060708') },
  },
  {
    // type 13 | len 8 | the Ping's bytes echoed
    name: 'Pong',
    hex: '13' + '00000008' + '0102030405060708',
    frame: { type: 'pong', data: fromHex('0102030405060708') },
  },
  {
    // type 14 | len 4 | UTF-8 "oops"
    name: 'Health',
    hex: '14' + '00000004' + '6f6f7073',
    frame: { type: 'health', problem: 'oops' },
  },
  {
    // type 15 | len 8 | reconnectIn 0x1388 = 5000 ms | tryFor 0xea60 = 60000 ms
    name: 'Restarting',
    hex: '15' + '00000008' + '00001388' + '0000ea60',
    frame: { type: 'restarting', reconnectInMs: 5000, tryForMs: 60000 },
  },
  {
    // type 7f (unassigned) | len 2 | kept as is, so callers can skip it
    name: 'unknown type',
    hex: '7f' + '00000002' + 'abcd',
    frame: { type: 'unknown', frameType: 0x7f, payload: fromHex('abcd') },
  },
];

function decodeWhole(bytes: Uint8Array): Frame {
  const r = new FrameReader(DERP.MAX_CLIENT_FRAME);
  r.push(bytes);
  const f = r.next();
  expect(r.next()).toBeUndefined();
  expect(r.buffered).toBe(0);
  if (!f) throw new Error('no frame');
  return f;
}

describe('DERP frame golden vectors', () => {
  it('covers every frame type in the constants table', () => {
    const covered = new Set(vectors.map((v) => fromHex(v.hex)[0]));
    for (const t of Object.values(FrameType)) expect(covered.has(t), `type 0x${t.toString(16)}`).toBe(true);
  });

  for (const v of vectors) {
    it(`${v.name}: encodes to the layout and decodes back`, () => {
      expect(toHex(encodeFrame(v.frame))).toBe(v.hex);
      expect(decodeWhole(fromHex(v.hex))).toEqual(v.frame);
    });
  }
});

describe('DERP frame decoding leniency and strictness', () => {
  it('reads PeerGone without a reason byte (old servers) as Disconnected', () => {
    expect(decodeFrame(0x08, keyB)).toEqual({ type: 'peerGone', key: keyB, reason: PeerGoneReason.DISCONNECTED });
  });

  it('reads the short PeerPresent forms of old servers', () => {
    expect(decodeFrame(0x09, keyB)).toEqual({ type: 'peerPresent', key: keyB, endpoint: undefined, flags: 0 });
    const withAddr = fromHex(B + '00000000000000000000ffff7f000001' + '0050');
    expect(decodeFrame(0x09, withAddr)).toEqual({
      type: 'peerPresent',
      key: keyB,
      endpoint: { ip: '127.0.0.1', port: 80 },
      flags: 0,
    });
  });

  it('ignores future bytes after ServerKey and after a Ping body', () => {
    const sk = fromHex('4445525' + '0f09f9491' + A + '0102');
    expect(decodeFrame(0x01, sk)).toEqual({ type: 'serverKey', key: keyA });
    expect(decodeFrame(0x12, fromHex('0102030405060708' + 'ff'.repeat(20)))).toEqual({
      type: 'ping',
      data: fromHex('0102030405060708'),
    });
  });

  it('rejects a ServerKey with the wrong magic and short payloads with DecodeError', () => {
    expect(() => decodeFrame(0x01, fromHex('4445525' + '0f09f9490' + A))).toThrow(DecodeError);
    for (const [type, len] of [
      [0x01, 39],
      [0x02, 32 + 24 + 15],
      [0x03, 39],
      [0x04, 31],
      [0x05, 31],
      [0x07, 0],
      [0x08, 31],
      [0x09, 31],
      [0x0a, 63],
      [0x11, 31],
      [0x12, 7],
      [0x13, 7],
      [0x15, 7],
    ] as const) {
      expect(() => decodeFrame(type, new Uint8Array(len)), `type 0x${type.toString(16)}`).toThrow(DecodeError);
    }
  });

  it('turns invalid UTF-8 in Health into U+FFFD instead of failing', () => {
    expect(decodeFrame(0x14, fromHex('6fff'))).toEqual({ type: 'health', problem: 'o\ufffd' });
  });

  it('refuses to encode fields of the wrong size', () => {
    expect(() => encodeFrame({ type: 'sendPacket', dst: new Uint8Array(31), packet: new Uint8Array(1) })).toThrow(
      RangeError,
    );
    expect(() => encodeFrame({ type: 'ping', data: new Uint8Array(9) })).toThrow(RangeError);
    expect(() => encodeFrame({ type: 'peerGone', key: keyB, reason: 256 })).toThrow(RangeError);
    expect(() => encodeFrame({ type: 'restarting', reconnectInMs: -1, tryForMs: 0 })).toThrow(RangeError);
    expect(() => encodeFrame({ type: 'unknown', frameType: 300, payload: new Uint8Array(0) })).toThrow(RangeError);
  });

  it('isFrameHeader never throws', () => {
    expect(isFrameHeader(new Uint8Array(5))).toBe(true);
    expect(isFrameHeader(new Uint8Array(4))).toBe(false);
    expect(isFrameHeader(undefined as unknown as Uint8Array)).toBe(false);
  });
});

describe('FrameReader', () => {
  it('raises DecodeError as soon as an oversize header is in, before its payload arrives', () => {
    const r = new FrameReader(100);
    r.push(fromHex('04' + '00000065')); // 101 > 100
    expect(() => r.next()).toThrow(DecodeError);
  });

  it('does not allocate what a header merely declares', () => {
    const r = new FrameReader(DERP.MAX_CLIENT_FRAME);
    r.push(fromHex('0400'));
    expect(r.next()).toBeUndefined();
    r.push(fromHex('0fffff' + '00')); // declares ~1 MiB, delivers 1 byte
    expect(r.next()).toBeUndefined();
    // The pending buffer holds what arrived, not the 1 MiB the header announced.
    expect((r as unknown as { pend: Uint8Array }).pend.length).toBeLessThan(64);
  });

  it('returns views into the pushed chunk without copying when frames are whole', () => {
    const chunk = fromHex('06' + '00000000' + '13' + '00000008' + '0102030405060708');
    const r = new FrameReader(1000);
    r.push(chunk);
    expect(r.next()).toEqual({ type: 'keepAlive' });
    const pong = r.next();
    expect(pong?.type).toBe('pong');
    if (pong?.type === 'pong') expect(pong.data.buffer).toBe(chunk.buffer);
  });

  it('reassembles a frame split across many chunks and across undrained pushes', () => {
    const bytes = encodeFrame({ type: 'sendPacket', dst: keyB, packet: new Uint8Array(5000).fill(7) });
    const r = new FrameReader(DERP.MAX_CLIENT_FRAME);
    for (let i = 0; i < bytes.length; i += 3) r.push(bytes.subarray(i, i + 3)); // never drained in between
    const f = r.next();
    expect(f?.type).toBe('sendPacket');
    if (f?.type === 'sendPacket') expect(f.packet).toEqual(new Uint8Array(5000).fill(7));
    expect(r.next()).toBeUndefined();
    expect(r.buffered).toBe(0);
  });

  it('release() keeps a partial frame but lets go of the chunk; skipTo() jumps ahead within the chunk', () => {
    const f1 = encodeFrame({ type: 'recvPacket', src: keyA, packet: new Uint8Array(10).fill(1) });
    const f2 = encodeFrame({ type: 'recvPacket', src: keyB, packet: new Uint8Array(10).fill(2) });
    const f3 = encodeFrame({ type: 'keepAlive' });
    const all = new Uint8Array([...f1, ...f2, ...f3]);
    const r = new FrameReader(1000);
    r.push(all.subarray(0, f1.length + 7));
    expect(r.nextFrame()).toBe(true);
    expect(r.nextFrame()).toBe(false);
    r.release();
    all.fill(0xee, f1.length, f1.length + 7); // the caller reuses its chunk: the partial frame was copied out
    r.push(Uint8Array.from([...f2, ...f3]).subarray(7));
    const g = r.next();
    expect(g?.type === 'recvPacket' && g.packet.every((x) => x === 2)).toBe(true);
    expect(r.next()).toEqual({ type: 'keepAlive' });

    const r2 = new FrameReader(1000);
    r2.push(new Uint8Array([...f1, ...f2, ...f3]));
    expect(r2.nextFrame()).toBe(true);
    r2.skipTo(f1.length + f2.length); // the caller consumed f2 itself
    expect(r2.next()).toEqual({ type: 'keepAlive' });
    expect(() => r2.skipTo(0)).toThrow(RangeError);
  });

  it('keeps a payload view valid while later frames in the same push are read', () => {
    const f1 = encodeFrame({ type: 'recvPacket', src: keyA, packet: new Uint8Array(40).fill(1) });
    const f2 = encodeFrame({ type: 'recvPacket', src: keyB, packet: new Uint8Array(40).fill(2) });
    const both = new Uint8Array([...f1, ...f2]);
    const r = new FrameReader(1000);
    r.push(both.subarray(0, 30)); // f1 split: pending
    expect(r.next()).toBeUndefined();
    r.push(both.subarray(30)); // completes f1 from the pending buffer; f2 lies whole in this chunk
    const a = r.next();
    const b = r.next();
    expect(r.next()).toBeUndefined();
    expect(a?.type === 'recvPacket' && a.packet.every((x) => x === 1)).toBe(true);
    expect(b?.type === 'recvPacket' && b.packet.every((x) => x === 2)).toBe(true);
  });
});
