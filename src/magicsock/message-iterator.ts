/**
 * The async-iterator face of MagicSocket: `for await (const { data, peer, path } of sock) …`. Buffers up to
 * `highWaterMark` datagrams for a slow reader and drops the oldest beyond that (counted), as a UDP socket's
 * receive buffer would. Ends when the socket closes or the AbortSignal fires.
 */
import type { EventEmitter } from 'node:events';
import type { PublicKey } from '../key/keys.js';
import type { PathInfo } from './peer-state.js';

export interface ReceivedMessage {
  readonly data: Uint8Array;
  readonly peer: PublicKey;
  readonly path: PathInfo;
}

export class MessageIterator implements AsyncIterableIterator<ReceivedMessage> {
  private readonly queue: ReceivedMessage[] = [];
  private waiter: ((r: IteratorResult<ReceivedMessage>) => void) | undefined;
  private done = false;
  private readonly onMessage = (data: Uint8Array, peer: PublicKey, path: PathInfo) => {
    const m = { data, peer, path };
    if (this.waiter) {
      const w = this.waiter;
      this.waiter = undefined;
      w({ value: m, done: false });
      return;
    }
    this.queue.push(m);
    if (this.queue.length > this.highWaterMark) {
      this.queue.shift();
      this.onDrop();
    }
  };
  private readonly onEnd = () => this.finish();

  constructor(
    private readonly source: EventEmitter,
    private readonly highWaterMark: number,
    private readonly signal: AbortSignal | undefined,
    private readonly onDrop: () => void,
  ) {
    source.on('message', this.onMessage);
    source.once('close', this.onEnd);
    if (signal?.aborted) this.finish();
    else signal?.addEventListener('abort', this.onEnd, { once: true });
  }

  next(): Promise<IteratorResult<ReceivedMessage>> {
    const m = this.queue.shift();
    if (m) return Promise.resolve({ value: m, done: false });
    if (this.done) return Promise.resolve({ value: undefined, done: true });
    return new Promise((resolve) => {
      this.waiter = resolve;
    });
  }

  return(): Promise<IteratorResult<ReceivedMessage>> {
    this.finish();
    this.queue.length = 0;
    return Promise.resolve({ value: undefined, done: true });
  }

  [Symbol.asyncIterator](): AsyncIterableIterator<ReceivedMessage> {
    return this;
  }

  private finish(): void {
    if (this.done) return;
    this.done = true;
    this.source.off('message', this.onMessage);
    this.source.off('close', this.onEnd);
    this.signal?.removeEventListener('abort', this.onEnd);
    const w = this.waiter;
    this.waiter = undefined;
    w?.({ value: undefined, done: true });
  }
}
