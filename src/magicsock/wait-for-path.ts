/** MagicSocket.waitForPath: resolves on the first 'path' event of the wanted type; every wait takes a signal. */
import type { EventEmitter } from 'node:events';
import { ErrorCode, MeshsockError, abortError } from '../errors.js';
import type { Clock } from '../internal/clock.js';
import type { PublicKey } from '../key/keys.js';
import type { PathInfo } from './peer-state.js';

export function waitForPath(
  sock: EventEmitter,
  clock: Clock,
  key: PublicKey,
  current: PathInfo,
  opts: { type?: 'direct' | 'derp' | 'any'; signal?: AbortSignal; timeoutMs?: number },
): Promise<PathInfo> {
  const want = opts.type ?? 'direct';
  const ok = (p: PathInfo) => (want === 'any' ? p.type !== 'none' : p.type === want);
  return new Promise<PathInfo>((resolve, reject) => {
    if (ok(current)) return resolve(current);
    if (opts.signal?.aborted) return reject(abortError(opts.signal));
    let cancelTimer: (() => void) | undefined;
    const cleanup = () => {
      sock.off('path', onPath);
      sock.off('close', onClose);
      opts.signal?.removeEventListener('abort', onAbort);
      cancelTimer?.();
    };
    const onPath = (k: PublicKey, path: PathInfo) => {
      if (k.hex === key.hex && ok(path)) {
        cleanup();
        resolve(path);
      }
    };
    const onClose = () => {
      cleanup();
      reject(new MeshsockError(ErrorCode.CLOSED, 'socket closed'));
    };
    const onAbort = () => {
      cleanup();
      reject(abortError(opts.signal!));
    };
    sock.on('path', onPath);
    sock.on('close', onClose);
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    if (opts.timeoutMs !== undefined) {
      cancelTimer = clock.setTimer(() => {
        cleanup();
        reject(
          new MeshsockError(ErrorCode.TIMEOUT, `no ${want} path to ${key.toString()} within ${opts.timeoutMs} ms`),
        );
      }, opts.timeoutMs);
    }
  });
}
