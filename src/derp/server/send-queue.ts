/**
 * A bounded FIFO of encoded frames for one destination client (tailscale-protocols.md §2.4): it holds at most
 * `capacity` frames, and when full the oldest frame is dropped to make room (Tailscale retries three times dropping
 * from the head, which in a single-threaded server is the same thing). The server keeps one for disco and one for
 * data per client, so a flood of data cannot push out the disco messages that set up a direct path.
 *
 * Frames are held as byte ranges of buffers, not as view objects, and a frame that starts exactly where the tail
 * entry ends in the same buffer (the next SendPacket of a chunk, rewritten in place into a RecvPacket) extends that
 * entry: a run of frames costs one entry, and leaves in one write. Dropping the oldest frame of a run reads its
 * length from its own 5-byte header. Pure data structure.
 */
export class SendQueue {
  private readonly bufs: (Uint8Array | undefined)[];
  private readonly starts: Int32Array;
  private readonly ends: Int32Array;
  private readonly counts: Int32Array;
  private head = 0;
  private entries = 0;
  private frames = 0;
  /** Bytes currently queued. */
  bytes = 0;
  /** The run last removed by `shift`: `outCount` frames in bytes [outStart, outEnd) of outBuf. */
  outBuf: Uint8Array | undefined;
  outStart = 0;
  outEnd = 0;
  outCount = 0;

  constructor(readonly capacity: number) {
    if (!(capacity >= 1)) throw new RangeError(`"capacity" expected >= 1, got ${capacity}`);
    this.bufs = new Array<Uint8Array | undefined>(capacity);
    this.starts = new Int32Array(capacity);
    this.ends = new Int32Array(capacity);
    this.counts = new Int32Array(capacity);
  }

  /** Frames queued. */
  get length(): number {
    return this.frames;
  }

  /**
   * Adds the frame at bytes [start, end) of `buf` (header included) at the tail; returns true when the oldest frame
   * had to be dropped to make room.
   */
  push(buf: Uint8Array, start = 0, end = buf.length): boolean {
    const dropped = this.frames === this.capacity;
    if (dropped) this.dropOldest();
    this.frames++;
    this.bytes += end - start;
    if (this.entries > 0) {
      const t = (this.head + this.entries - 1) % this.capacity;
      if (this.bufs[t] === buf && this.ends[t] === start) {
        this.ends[t] = end;
        this.counts[t]!++;
        return dropped;
      }
    }
    const i = (this.head + this.entries) % this.capacity;
    this.bufs[i] = buf;
    this.starts[i] = start;
    this.ends[i] = end;
    this.counts[i] = 1;
    this.entries++;
    return dropped;
  }

  private dropOldest(): void {
    const i = this.head;
    const buf = this.bufs[i]!;
    if (this.counts[i] === 1) {
      this.shift();
      return;
    }
    // Cut the first frame off the run: its length is in its own header.
    const s = this.starts[i]!;
    const n = 5 + (((buf[s + 1]! << 24) >>> 0) + ((buf[s + 2]! << 16) | (buf[s + 3]! << 8) | buf[s + 4]!));
    this.starts[i] = s + n;
    this.counts[i]!--;
    this.frames--;
    this.bytes -= n;
  }

  /** Removes the oldest run into outBuf / outStart / outEnd / outCount; false when empty. */
  shift(): boolean {
    if (this.entries === 0) return false;
    const i = this.head;
    this.outBuf = this.bufs[i];
    this.outStart = this.starts[i]!;
    this.outEnd = this.ends[i]!;
    this.outCount = this.counts[i]!;
    this.bufs[i] = undefined;
    this.head = (i + 1) % this.capacity;
    this.entries--;
    this.frames -= this.outCount;
    this.bytes -= this.outEnd - this.outStart;
    return true;
  }

  /** The oldest run as a view (tests and slow paths), removed from the queue. */
  shiftView(): Uint8Array | undefined {
    return this.shift() ? this.outBuf!.subarray(this.outStart, this.outEnd) : undefined;
  }

  clear(): void {
    while (this.entries > 0) this.shift();
    this.outBuf = undefined;
  }
}

/**
 * An unbounded-in-count FIFO for small control frames (Pong, PeerGone, PeerPresent, KeepAlive) that must not be
 * dropped by the data queues; the server bounds it by bytes instead (DERP.SERVER_CONTROL_QUEUE_BYTES).
 */
export class ControlQueue {
  private items: Uint8Array[] = [];
  private head = 0;
  bytes = 0;

  get length(): number {
    return this.items.length - this.head;
  }

  push(frame: Uint8Array): void {
    this.items.push(frame);
    this.bytes += frame.length;
  }

  shift(): Uint8Array | undefined {
    if (this.head >= this.items.length) return undefined;
    const f = this.items[this.head]!;
    this.head++;
    this.bytes -= f.length;
    if (this.head === this.items.length) {
      this.items = [];
      this.head = 0;
    } else if (this.head > 1024 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    return f;
  }

  clear(): void {
    this.items = [];
    this.head = 0;
    this.bytes = 0;
  }
}
