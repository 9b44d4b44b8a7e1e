/**
 * A small, tolerant XML reader for the two documents the UPnP client reads: a gateway's device description and
 * its SOAP answers. It builds a tree of elements (local names, namespace prefixes dropped) with their direct text,
 * and never throws: routers ship sloppy XML (stray closing tags, unknown entities, missing declarations), so it
 * recovers the structure it can instead of rejecting the document.
 *
 * Deliberately not a general XML parser, and why no dependency: both documents are small (capped at 64 KiB by the
 * driver), we need element names and text only (no attributes, namespaces, DTDs or validation), and a general
 * parser would bring entity expansion and DOCTYPE handling, the usual XML attack surface, that we then have to
 * turn off. Here, a DOCTYPE is skipped and only the five predefined entities and numeric character references
 * are decoded; any other `&name;` stays as written. Nesting deeper than `maxDepth` is flattened.
 *
 * Linear in the input: every scan starts where the previous one stopped and the cursor moves past whatever was
 * scanned, or the scan found nothing and parsing ends; a `<` that cannot start a tag is taken as text without
 * scanning ahead; a closing tag compares at most `maxDepth` open names. A hostile gateway's 64 KiB of `<` is one
 * pass, not 64 Ki passes. An optional `XmlWorkMeter` counts the work (characters scanned plus name comparisons)
 * so tests can check that bound on adversarial documents without a clock.
 */

/** One element: its local name (no prefix), child elements in order, and its own text (entity-decoded). */
export interface XmlElement {
  readonly name: string;
  readonly children: XmlElement[];
  text: string;
}

const PREDEFINED: Readonly<Record<string, string>> = { lt: '<', gt: '>', amp: '&', quot: '"', apos: "'" };

/** Decodes the predefined entities and numeric character references; anything else is left as written. */
export function decodeEntities(s: string): string {
  if (!s.includes('&')) return s;
  return s.replace(/&(#x[0-9a-fA-F]{1,6}|#[0-9]{1,7}|[a-zA-Z]+);/g, (m, e: string) => {
    if (e[0] === '#') {
      const cp = e[1] === 'x' || e[1] === 'X' ? parseInt(e.slice(2), 16) : parseInt(e.slice(1), 10);
      return cp > 0 && cp <= 0x10ffff && (cp < 0xd800 || cp > 0xdfff) ? String.fromCodePoint(cp) : m;
    }
    return PREDEFINED[e] ?? m;
  });
}

/** Escapes text for an element's content or an attribute value. */
export function escapeXml(s: string): string {
  return s.replace(/[<>&"']/g, (c) => `&${{ '<': 'lt', '>': 'gt', '&': 'amp', '"': 'quot', "'": 'apos' }[c]!};`);
}

function localName(tag: string): string {
  const colon = tag.lastIndexOf(':');
  return colon >= 0 ? tag.slice(colon + 1) : tag;
}

/** Work done by one `parseXml` call: characters scanned plus closing-tag name comparisons. */
export interface XmlWorkMeter {
  steps: number;
}

/** End of a start or end tag from `from` (the index of its `>`), honouring quoted attribute values; -1 if none. */
function tagEnd(s: string, from: number, meter: XmlWorkMeter | undefined): number {
  let quote = '';
  for (let i = from; i < s.length; i++) {
    const c = s[i]!;
    if (quote) {
      if (c === quote) quote = '';
    } else if (c === '"' || c === "'") quote = c;
    else if (c === '>') {
      if (meter) meter.steps += i + 1 - from;
      return i;
    }
  }
  if (meter) meter.steps += s.length - from;
  return -1;
}

/** `s.indexOf(needle, from)`, metered: the characters it looked at. */
function find(s: string, needle: string, from: number, meter: XmlWorkMeter | undefined): number {
  const at = s.indexOf(needle, from);
  if (meter) meter.steps += (at < 0 ? s.length : at + needle.length) - from;
  return at;
}

/** Whether `c` may start an element name ([A-Za-z_:]). */
function nameStart(c: number): boolean {
  return (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || c === 0x5f || c === 0x3a;
}

/**
 * Parses `text` into a synthetic document element (name `#document`) whose children are the top-level
 * elements. Never throws; unclosed elements are closed at the end, a closing tag without a matching open
 * element is ignored, and one that skips open elements closes them too.
 */
export function parseXml(text: string, maxDepth = 64, meter?: XmlWorkMeter): XmlElement {
  const doc: XmlElement = { name: '#document', children: [], text: '' };
  const stack: XmlElement[] = [doc];
  /** Lower-case names of the open elements, beside `stack`, so a closing tag never lower-cases them again. */
  const lower: string[] = [''];
  const top = (): XmlElement => stack[stack.length - 1]!;
  const n = text.length;
  let i = 0;
  while (i < n) {
    const lt = find(text, '<', i, meter);
    const chunk = lt < 0 ? text.slice(i) : text.slice(i, lt);
    if (chunk) top().text += decodeEntities(chunk);
    if (lt < 0) break;
    if (text.startsWith('<!--', lt)) {
      const end = find(text, '-->', lt + 4, meter);
      i = end < 0 ? n : end + 3;
    } else if (text.startsWith('<![CDATA[', lt)) {
      const end = find(text, ']]>', lt + 9, meter);
      top().text += text.slice(lt + 9, end < 0 ? n : end);
      i = end < 0 ? n : end + 3;
    } else if (text.startsWith('<?', lt)) {
      const end = find(text, '?>', lt + 2, meter);
      i = end < 0 ? n : end + 2;
    } else if (text.startsWith('<!', lt)) {
      // DOCTYPE (possibly with an internal subset in brackets): skipped, never interpreted. The `[` is looked for
      // only before the first `>`, so each `<!` scans just its own declaration.
      const gt = find(text, '>', lt, meter);
      const head = gt < 0 ? n : gt;
      let bracket = -1;
      for (let k = lt; k < head; k++) {
        if (text.charCodeAt(k) === 0x5b) {
          bracket = k;
          break;
        }
      }
      const end = bracket >= 0 ? find(text, ']>', bracket, meter) : gt;
      i = end < 0 ? n : end + (end === gt ? 1 : 2);
    } else if (text[lt + 1] === '/') {
      const end = tagEnd(text, lt + 2, meter);
      const name = localName(text.slice(lt + 2, end < 0 ? n : end).trim()).toLowerCase();
      for (let d = stack.length - 1; d > 0; d--) {
        if (meter) meter.steps++;
        if (lower[d] === name) {
          stack.length = d;
          lower.length = d;
          break;
        }
      }
      i = end < 0 ? n : end + 1;
    } else if (!nameStart(text.charCodeAt(lt + 1))) {
      top().text += '<'; // a lone '<' in text: keep it as text, without looking ahead for a '>'
      i = lt + 1;
    } else {
      const end = tagEnd(text, lt + 1, meter);
      const raw = text.slice(lt + 1, end < 0 ? n : end);
      const m = /^[A-Za-z_:][\w.:-]*/.exec(raw)!;
      i = end < 0 ? n : end + 1;
      const el: XmlElement = { name: localName(m[0]), children: [], text: '' };
      top().children.push(el);
      const selfClosing = raw.endsWith('/');
      if (!selfClosing && stack.length <= maxDepth) {
        stack.push(el);
        lower.push(el.name.toLowerCase());
      }
    }
  }
  return doc;
}

/** The first direct child named `name` (case-insensitive), or undefined. */
export function childElement(el: XmlElement, name: string): XmlElement | undefined {
  const want = name.toLowerCase();
  return el.children.find((c) => c.name.toLowerCase() === want);
}

/** Every element named `name` (case-insensitive) below `el`, in document order. */
export function descendants(el: XmlElement, name: string): XmlElement[] {
  const want = name.toLowerCase();
  const out: XmlElement[] = [];
  const walk = (e: XmlElement): void => {
    for (const c of e.children) {
      if (c.name.toLowerCase() === want) out.push(c);
      walk(c);
    }
  };
  walk(el);
  return out;
}

/** The trimmed text of the first direct child named `name`, or undefined. */
export function childText(el: XmlElement, name: string): string | undefined {
  const c = childElement(el, name);
  return c === undefined ? undefined : c.text.trim();
}
