import { describe, expect, it } from 'vitest';
import { svgDataUrl, utf8ToBase64 } from '../src/lib/encoding';

describe('svgDataUrl', () => {
  it('base64-encodes UTF-8 text', () => {
    expect(utf8ToBase64('<svg/>')).toBe('PHN2Zy8+');
    expect(utf8ToBase64('é')).toBe('w6k=');
  });

  it('builds a data URL the CSP allows for images', () => {
    const url = svgDataUrl('<svg xmlns="http://www.w3.org/2000/svg"><title>Ünïcode</title></svg>');
    expect(url.startsWith('data:image/svg+xml;base64,')).toBe(true);
    const decoded = new TextDecoder().decode(Uint8Array.from(atob(url.split(',')[1]!), (c) => c.charCodeAt(0)));
    expect(decoded).toContain('Ünïcode');
  });
});
