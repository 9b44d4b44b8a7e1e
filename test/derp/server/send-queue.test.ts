import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ControlQueue, SendQueue } from '../../../src/derp/server/send-queue.js';

describe('SendQueue', () => {
  it('drops the oldest frame when full and keeps FIFO order', () => {
    const q = new SendQueue(3);
    const f = (n: number): Uint8Array => new Uint8Array(n);
    expect(q.push(f(1))).toBe(false);
    q.push(f(2));
    q.push(f(3));
    expect(q.push(f(10), 2, 6)).toBe(true); // bytes [2, 6) of a 10-byte buffer
    expect(q.length).toBe(3);
    expect(q.bytes).toBe(9);
    expect([q.shiftView()?.length, q.shiftView()?.length]).toEqual([2, 3]);
    expect(q.shift()).toBe(true);
    expect([q.outBuf?.length, q.outStart, q.outEnd]).toEqual([10, 2, 6]);
    expect(q.shift()).toBe(false);
    expect(q.bytes).toBe(0);
  });

  it('behaves like a bounded array model under any sequence of pushes and shifts', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 8 }),
        fc.array(fc.option(fc.integer({ min: 0, max: 50 }), { nil: undefined }), { maxLength: 100 }),
        (cap, ops) => {
          const q = new SendQueue(cap);
          const model: number[] = [];
          for (const op of ops) {
            if (op === undefined) expect(q.shiftView()?.length).toBe(model.shift());
            else {
              const dropped = q.push(new Uint8Array(op + 3), 3);
              const expected = model.length === cap;
              if (expected) model.shift();
              model.push(op);
              expect(dropped).toBe(expected);
            }
            expect(q.length).toBe(model.length);
            expect(q.bytes).toBe(model.reduce((a, b) => a + b, 0));
          }
        },
      ),
    );
  });
});

describe('SendQueue runs', () => {
  it('merges frames that follow each other in one buffer, and drops the oldest frame of a run by its header', () => {
    // Three frames back to back in one chunk: lengths 5+3, 5+1, 5+2.
    const chunk = Uint8Array.from([5, 0, 0, 0, 3, 1, 1, 1, 5, 0, 0, 0, 1, 2, 5, 0, 0, 0, 2, 3, 3]);
    const q = new SendQueue(3);
    q.push(chunk, 0, 8);
    q.push(chunk, 8, 14);
    q.push(chunk, 14, 21);
    expect(q.length).toBe(3);
    expect(q.bytes).toBe(21);
    // Full: a fourth frame drops the first frame of the run (8 bytes), found from its length field.
    expect(q.push(new Uint8Array(6), 0, 6)).toBe(true);
    expect(q.length).toBe(3);
    expect(q.bytes).toBe(19);
    expect(q.shift()).toBe(true);
    expect([q.outStart, q.outEnd, q.outCount]).toEqual([8, 21, 2]);
    expect(q.shift()).toBe(true);
    expect([q.outStart, q.outEnd, q.outCount]).toEqual([0, 6, 1]);
    expect(q.length).toBe(0);
  });

  it('does not merge frames with a gap or from another buffer', () => {
    const a = new Uint8Array(30);
    const q = new SendQueue(8);
    q.push(a, 0, 10);
    q.push(a, 11, 20);
    q.push(new Uint8Array(30), 20, 30);
    expect([q.shiftView()?.length, q.shiftView()?.length, q.shiftView()?.length]).toEqual([10, 9, 10]);
  });
});

describe('ControlQueue', () => {
  it('is FIFO, counts bytes and survives long runs', () => {
    const q = new ControlQueue();
    for (let i = 0; i < 5000; i++) q.push(new Uint8Array([i & 0xff, 0]));
    expect(q.bytes).toBe(10_000);
    for (let i = 0; i < 4000; i++) expect(q.shift()?.[0]).toBe(i & 0xff);
    expect(q.length).toBe(1000);
    q.clear();
    expect(q.shift()).toBeUndefined();
    expect(q.bytes).toBe(0);
  });
});
