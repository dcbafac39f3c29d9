// The test pattern's reader (ui/pattern.js): pictures as painted, halved, and resized to the
// size a tile shows them at (as the desktop app sends them), read back like a canvas is.
'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
require(path.join(__dirname, '..', '..', 'ui', 'pattern.js'));
const P = globalThis.ConfabPattern;

// A canvas 2D context that paints fillRect in solid colours into RGBA pixels.
function canvas(width, height) {
  const data = new Uint8ClampedArray(width * height * 4);
  const ctx = {
    fillStyle: '#000',
    fillRect(x, y, w, h) {
      const hex = this.fillStyle.length === 4
        ? this.fillStyle.slice(1).split('').map((c) => parseInt(c + c, 16))
        : [1, 3, 5].map((i) => parseInt(this.fillStyle.slice(i, i + 2), 16));
      for (let r = Math.max(0, Math.floor(y)); r < Math.min(height, Math.floor(y + h)); r++) {
        for (let c = Math.max(0, Math.floor(x)); c < Math.min(width, Math.floor(x + w)); c++) {
          data.set([...hex, 255], (r * width + c) * 4);
        }
      }
    },
  };
  return { ctx, data };
}

// Bilinear resampling of RGBA pixels, as a browser or the app's resizer does.
function resize(src, sw, sh, dw, dh) {
  const out = new Uint8ClampedArray(dw * dh * 4);
  for (let y = 0; y < dh; y++) {
    const fy = Math.min(Math.max(((y + 0.5) * sh) / dh - 0.5, 0), sh - 1);
    const y0 = Math.floor(fy);
    const y1 = Math.min(y0 + 1, sh - 1);
    for (let x = 0; x < dw; x++) {
      const fx = Math.min(Math.max(((x + 0.5) * sw) / dw - 0.5, 0), sw - 1);
      const x0 = Math.floor(fx);
      const x1 = Math.min(x0 + 1, sw - 1);
      for (let k = 0; k < 4; k++) {
        const at = (r, c) => src[(r * sw + c) * 4 + k];
        const top = at(y0, x0) * (x1 - fx || 1) + (x1 === x0 ? 0 : at(y0, x1) * (fx - x0));
        const bottom = at(y1, x0) * (x1 - fx || 1) + (x1 === x0 ? 0 : at(y1, x1) * (fx - x0));
        out[(y * dw + x) * 4 + k] = y1 === y0 ? top : top * (y1 - fy) + bottom * (fy - y0);
      }
    }
  }
  return out;
}

test('a painted picture reads back at its size, halved, and resized to any tile', () => {
  const { ctx, data } = canvas(1280, 720);
  P.paint(ctx, 1280, 720, 4242, 123456789);
  const want = { frame: 4242, captureUs: 123456789 };
  assert.deepEqual(P.read(data, 1280, 720), want);
  for (const [w, h] of [[640, 360], [320, 180], [800, 450], [1088, 612], [1000, 562], [700, 394]]) {
    assert.deepEqual(P.read(resize(data, 1280, 720, w, h), w, h), want, `${w}x${h}`);
  }
  // Only the rows a reader needs (what readCanvas takes from a canvas).
  const rows = P.rowsNeeded(800);
  const tile = resize(data, 1280, 720, 800, 450);
  assert.deepEqual(P.read(tile.subarray(0, 800 * rows * 4), 800, rows), want);
});

test('what is not a pattern reads as nothing', () => {
  const { ctx, data } = canvas(640, 360);
  ctx.fillStyle = '#808080';
  ctx.fillRect(0, 0, 640, 360);
  assert.equal(P.read(data, 640, 360), null);
  // Too small to carry the blocks, and too short a buffer.
  assert.equal(P.read(new Uint8ClampedArray(100 * 50 * 4), 100, 50), null);
  assert.equal(P.read(new Uint8ClampedArray(10), 640, 360), null);
});
