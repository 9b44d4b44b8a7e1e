/**
 * Server side of the DERP login as pure functions — wire-compatible with Tailscale DERP v2 (tailscale-protocols.md
 * §2.1, §2.3).
 *
 *   → HTTP/1.1 101 Switching Protocols  Upgrade: DERP, Connection: Upgrade, Derp-Version: 2, Derp-Public-Key: <hex>
 *   → ServerKey   magic[8] serverKey[32]               (written in the same segment as the 101)
 *   ← ClientInfo  clientKey[32] nonce[24] box(JSON)     ≤ 256 KiB; opened with (server private, client public)
 *   → ServerInfo  nonce[24] box({"version":2[,"TokenBucketBytesPerSecond":N,"TokenBucketBytesBurst":N]})
 *
 * Opening the box proves the client holds its node private key. ClientInfo JSON is read the way Go's decoder reads
 * it: field names case-insensitively, unknown fields ignored. A matching `meshKey` makes the client a mesh peer.
 */
import { constantTimeEqual } from '../../internal/bytes.js';
import { systemRandom, type RandomSource } from '../../internal/clock.js';
import { NONCE_LEN, SharedKey, TAG_LEN } from '../../key/box.js';
import { PublicKey, type PrivateKey } from '../../key/keys.js';
import { DERP } from '../constants.js';
import { encodeFrame } from '../frame.js';

/** What a client said about itself in ClientInfo. */
export interface ClientInfo {
  version: number;
  canAckPings: boolean;
  isProber: boolean;
  /** Lower-case hex, when the client sent one. */
  meshKey: string | undefined;
}

export type OpenClientInfoResult =
  /** `shared` is the box key between server and client, reused to seal ServerInfo (one X25519 per login). */
  { ok: true; key: PublicKey; info: ClientInfo; isMesh: boolean; shared: SharedKey } | { ok: false; reason: string };

const UTF8 = new TextEncoder();
const UTF8_DEC = new TextDecoder('utf-8', { fatal: true });

function field(o: Record<string, unknown>, name: string): unknown {
  if (name in o) return o[name];
  const lower = name.toLowerCase();
  for (const k of Object.keys(o)) if (k.toLowerCase() === lower) return o[k];
  return undefined;
}

/** Parses ClientInfo JSON leniently. Throws TypeError/SyntaxError when it is not a JSON object. */
export function parseClientInfoJson(text: string): ClientInfo {
  const v: unknown = JSON.parse(text);
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new TypeError('ClientInfo is not a JSON object');
  const o = v as Record<string, unknown>;
  const version = field(o, 'version');
  const mesh = field(o, 'meshKey');
  return {
    version: typeof version === 'number' && Number.isFinite(version) ? version : 0,
    canAckPings: field(o, 'CanAckPings') === true,
    isProber: field(o, 'IsProber') === true,
    meshKey: typeof mesh === 'string' && /^[0-9a-fA-F]{64}$/.test(mesh) ? mesh.toLowerCase() : undefined,
  };
}

/**
 * Opens a ClientInfo frame's box with the server's key and reads the JSON. `serverMeshKey` (lower-case hex) marks
 * clients presenting the same key as mesh peers. Never throws.
 */
export function openClientInfo(
  serverKey: PrivateKey,
  frame: { key: Uint8Array; sealed: Uint8Array },
  serverMeshKey: string | undefined,
): OpenClientInfoResult {
  let key: PublicKey;
  let info: ClientInfo;
  let shared: SharedKey;
  try {
    const crypto = new PublicKey(frame.key);
    if (frame.sealed.length < NONCE_LEN + TAG_LEN) throw new Error('box too short');
    shared = SharedKey.compute(serverKey, crypto);
    const plain = shared.open(frame.sealed.subarray(0, NONCE_LEN), frame.sealed.subarray(NONCE_LEN));
    info = parseClientInfoJson(UTF8_DEC.decode(plain));
    // Kept for the connection's lifetime: a fresh key object without the crypto handle cached on `crypto`.
    key = new PublicKey(frame.key);
  } catch (err) {
    return { ok: false, reason: `bad ClientInfo: ${(err as Error).message}` };
  }
  const isMesh =
    serverMeshKey !== undefined &&
    info.meshKey !== undefined &&
    constantTimeEqual(UTF8.encode(info.meshKey), UTF8.encode(serverMeshKey));
  return { ok: true, key, info, isMesh, shared };
}

/**
 * The ServerInfo frame sealed with `shared` (the box key between server and client, as from openClientInfo),
 * optionally advertising a client-side send limit. Same bytes as Tailscale's SealTo: nonce[24] || box.
 */
export function serverInfoFrame(
  shared: SharedKey,
  limit?: { bytesPerSec: number; burst: number },
  rng: RandomSource = systemRandom,
): Uint8Array {
  const info: Record<string, number> = { version: DERP.PROTOCOL_VERSION };
  if (limit) {
    info.TokenBucketBytesPerSecond = Math.floor(limit.bytesPerSec);
    info.TokenBucketBytesBurst = Math.floor(limit.burst);
  }
  const nonce = rng(NONCE_LEN);
  const box = shared.seal(nonce, UTF8.encode(JSON.stringify(info)));
  const sealed = new Uint8Array(NONCE_LEN + box.length);
  sealed.set(nonce);
  sealed.set(box, NONCE_LEN);
  return encodeFrame({ type: 'serverInfo', sealed });
}

/** The 101 response and the ServerKey frame, as one buffer so both leave in one TCP segment. */
export function upgradeResponse(serverPublic: PublicKey): Uint8Array {
  const head = UTF8.encode(
    'HTTP/1.1 101 Switching Protocols\r\n' +
      'Upgrade: DERP\r\n' +
      'Connection: Upgrade\r\n' +
      `Derp-Version: ${DERP.PROTOCOL_VERSION}\r\n` +
      `Derp-Public-Key: ${serverPublic.hex}\r\n\r\n`,
  );
  const key = encodeFrame({ type: 'serverKey', key: serverPublic.bytes });
  const out = new Uint8Array(head.length + key.length);
  out.set(head);
  out.set(key, head.length);
  return out;
}
