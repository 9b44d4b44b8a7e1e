/**
 * The UPnP XML reader does work linear in its input on documents a hostile gateway would send (issue 12, item 6):
 * 64 KiB and 1 MiB of lone `<`, unterminated tags, declarations, comments, deep nesting with closing tags. No wall
 * clock: work is counted — by the parser's own meter (characters scanned plus name comparisons), and, independently
 * of the parser's cooperation, by a Proxy around the text that counts every property the parser reads from it and
 * stops it once a linear budget is spent.
 */
import { describe, expect, it } from 'vitest';
import { parseXml, type XmlWorkMeter } from '../../src/portmap/xml.js';

const KiB = 1024;

/** Documents that made or could make a naive reader rescan the rest of the text once per construct. */
const hostile: Record<string, (n: number) => string> = {
  'lone <': (n) => '<'.repeat(n),
  '< space': (n) => '< '.repeat(n / 2),
  '<!': (n) => '<!'.repeat(n / 2),
  '<!> (declaration without [)': (n) => '<!>'.repeat(Math.floor(n / 3)),
  '<!-- unterminated': (n) => '<!--'.repeat(n / 4),
  '<? unterminated': (n) => '<?'.repeat(n / 2),
  '</ unterminated': (n) => '</'.repeat(n / 2),
  '<a unterminated': (n) => '<a'.repeat(n / 2),
  '<a " (open quote)': (n) => '<a "'.repeat(n / 4),
  'deep nesting, then closing tags that match nothing': (n) => '<a>'.repeat(64) + '</b>'.repeat((n - 192) / 4),
  entities: (n) => '&amp;&#x41;&bogus;'.repeat(Math.floor(n / 18)),
};

function steps(text: string): number {
  const meter: XmlWorkMeter = { steps: 0 };
  parseXml(text, 64, meter);
  return meter.steps;
}

/** The text wrapped so that every property read (char, length, method) costs one unit of a budget. */
function budgeted(text: string, budget: number): { proxy: string; used: () => number } {
  let used = 0;
  const target = new String(text);
  const proxy = new Proxy(target, {
    get(t, prop) {
      if (++used > budget) throw new Error(`work budget of ${budget} reads exceeded`);
      if (prop === 'toString' || prop === 'valueOf') return () => text;
      if (prop === Symbol.toPrimitive) return () => text;
      const v = Reflect.get(t, prop, t) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(text) : v;
    },
  });
  return { proxy: proxy as unknown as string, used: () => used };
}

describe('parseXml: work is linear in the input', () => {
  it.each(Object.keys(hostile))('%s: 64 KiB within 24 steps a byte, and 1 MiB costs ≤ 17× what 64 KiB does', (k) => {
    const small = hostile[k]!(64 * KiB);
    const s = steps(small);
    expect(s).toBeGreaterThan(0);
    expect(s).toBeLessThanOrEqual(24 * small.length);
    const big = hostile[k]!(1024 * KiB); // only once the small one is known to be linear
    const b = steps(big);
    expect(b).toBeLessThanOrEqual(24 * big.length);
    // 16× the input: linear work grows ~16×, quadratic work would grow ~256×.
    expect(b / s).toBeLessThanOrEqual(17);
  });

  it('64 KiB of "<" reads the text at most 32 times per byte (counted from outside the parser)', () => {
    const text = '<'.repeat(64 * KiB);
    const { proxy, used } = budgeted(text, 32 * text.length);
    const doc = parseXml(proxy);
    expect(doc.text).toBe(text); // every lone '<' kept as text
    expect(used()).toBeLessThanOrEqual(32 * text.length);
  });

  it('the same, for unterminated tags and quotes', () => {
    for (const text of ['<a'.repeat(32 * KiB), '< a'.repeat(20 * KiB), `<a x="${'<'.repeat(60 * KiB)}`]) {
      const { proxy } = budgeted(text, 32 * text.length);
      expect(() => parseXml(proxy)).not.toThrow();
    }
  });

  it('still reads what it read before: elements, text, entities, CDATA, declarations skipped', () => {
    const doc = parseXml(
      '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e "boom">]><!-- c --><s:a x="1>2"><b>1 &amp; 2 &#x41;&#66; &e;</b>' +
        '<c><![CDATA[<raw>]]></c><d/> a < b </s:a>',
    );
    const a = doc.children[0]!;
    expect(a.name).toBe('a');
    expect(a.children.map((c) => c.name)).toEqual(['b', 'c', 'd']);
    expect(a.children[0]!.text).toBe('1 & 2 AB &e;');
    expect(a.children[1]!.text).toBe('<raw>');
    expect(a.text).toBe(' a < b ');
  });
});
