// The Confab test pattern, for pictures in the browser: read the frame number and capture time
// out of RGBA pixels, and paint a pattern frame on a canvas. The layout is docs/test-pattern.md;
// the Rust side is crates/confab-media/src/pattern.rs. Shared by the desktop UI and the web
// client (the signaling server serves this same file).
(function (root) {
  'use strict';
  const BLOCK = 16;
  const MAGIC = 0xc5;
  const BYTES = 11;
  const BITS = BYTES * 8;

  function crc16(bytes) {
    let crc = 0xffff;
    for (const b of bytes) {
      crc ^= b << 8;
      for (let i = 0; i < 8; i++) {
        crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
      }
    }
    return crc;
  }

  // Capture widths a picture may have been resized down from (as in pattern.rs).
  const CAPTURE_WIDTHS = [320, 352, 480, 640, 960, 1280, 1920, 3840];

  // Pixel rows a reader needs from the top of a frame this wide. `block` is the pattern's block
  // side in this picture's pixels: BLOCK as captured (the most rows any reading needs), BLOCK / 2
  // in a picture shown at half size, BLOCK / 4 at a quarter (a camera sent over a narrow line),
  // any other in a picture resized to the tile it is shown in.
  function rowsNeeded(width, block = BLOCK) {
    return Math.ceil(BITS / Math.floor(width / block + 1e-6)) * block;
  }

  // The stamp read with blocks of `block` pixels (whole or not), or null.
  function readBlocks(rgba, width, height, block) {
    // At least 20 blocks a row (a picture captured at least 320 wide).
    if ((width * BLOCK) / block < 320 - 0.5) return null;
    const cols = Math.floor(width / block + 1e-6);
    if (cols === 0 || Math.ceil(BITS / cols) * block > height + 1e-6) return null;
    const bytes = new Uint8Array(BYTES);
    // The middle half of each block, away from its edges (softened by scaling and JPEG).
    const span = (i) => {
      const start = Math.round(i * block + block / 4);
      const end = Math.round(i * block + (block * 3) / 4);
      return [start, Math.max(end, start + 1)];
    };
    for (let bit = 0; bit < BITS; bit++) {
      const [r0, r1] = span(Math.floor(bit / cols));
      const [c0, c1] = span(bit % cols);
      let sum = 0;
      for (let r = r0; r < r1; r++) {
        for (let c = c0; c < c1; c++) {
          const i = (Math.min(r, height - 1) * width + Math.min(c, width - 1)) * 4;
          sum += Math.floor((rgba[i] * 299 + rgba[i + 1] * 587 + rgba[i + 2] * 114) / 1000);
        }
      }
      if (Math.floor(sum / ((r1 - r0) * (c1 - c0))) > 128) bytes[bit >> 3] |= 0x80 >> (bit & 7);
    }
    if (bytes[0] !== MAGIC) return null;
    const crc = crc16(bytes.subarray(0, 9));
    if (((crc >> 8) & 0xff) !== bytes[9] || (crc & 0xff) !== bytes[10]) return null;
    const view = new DataView(bytes.buffer);
    return { frame: view.getUint32(1), captureUs: view.getUint32(5) };
  }

  // rgba: Uint8ClampedArray of width*height*4 (the whole frame, or just its top
  // rowsNeeded(width) rows). Returns {frame, captureUs} or null. Reads the picture as
  // captured, halved, quartered, or resized from any capture width.
  function read(rgba, width, height) {
    if (rgba.length < width * height * 4) return null;
    const blocks = [BLOCK, BLOCK / 2, BLOCK / 4];
    for (const w0 of CAPTURE_WIDTHS) if (w0 > width) blocks.push((BLOCK * width) / w0);
    for (const block of blocks) {
      const stamp = readBlocks(rgba, width, height, block);
      if (stamp) return stamp;
    }
    return null;
  }

  // Microseconds since the UNIX epoch, as precisely as the page can tell.
  function nowUs() {
    const ms = performance.timeOrigin + performance.now();
    return Math.floor(ms * 1000);
  }

  // Capture -> now, in ms, for a stamp read on this machine (null if implausible).
  function ageMs(stamp, now) {
    const low = Number(BigInt.asUintN(32, BigInt(now === undefined ? nowUs() : now)));
    const age = (low - stamp.captureUs) >>> 0;
    return age < 60e6 ? age / 1000 : null;
  }

  const BARS = ['#ebebeb', '#ebeb10', '#10ebeb', '#10eb10', '#eb10eb', '#eb1010', '#1010eb', '#101010'];

  // Paints frame `n` captured at `captureUs` (u32, low bits of UNIX microseconds).
  function paint(ctx, width, height, n, captureUs) {
    const cols = Math.floor(width / BLOCK);
    const dataRows = Math.min(Math.ceil(BITS / cols) * BLOCK, height);
    const shift = (n * 4) % width;
    for (let b = 0; b < 8; b++) {
      ctx.fillStyle = BARS[b];
      const x0 = (b * width) / 8 - shift;
      for (const x of [x0, x0 + width]) {
        ctx.fillRect(Math.floor(x), dataRows, Math.ceil(width / 8) + 1, height - dataRows);
      }
    }
    const side = Math.floor(Math.min(height - dataRows, width) / 4);
    if (side >= 4) {
      const bounce = (t, span) => {
        if (span <= 0) return 0;
        const p = t % (2 * span);
        return p < span ? p : 2 * span - p;
      };
      ctx.fillStyle = '#808080';
      ctx.fillRect(bounce(n * 3, width - side), dataRows + bounce(n * 2, height - dataRows - side), side, side);
    }
    const bytes = new Uint8Array(BYTES);
    const view = new DataView(bytes.buffer);
    bytes[0] = MAGIC;
    view.setUint32(1, n >>> 0);
    view.setUint32(5, captureUs >>> 0);
    const crc = crc16(bytes.subarray(0, 9));
    bytes[9] = (crc >> 8) & 0xff;
    bytes[10] = crc & 0xff;
    ctx.fillStyle = '#000';
    ctx.fillRect(0, 0, width, dataRows);
    ctx.fillStyle = '#fff';
    for (let bit = 0; bit < BITS; bit++) {
      if (bytes[bit >> 3] & (0x80 >> (bit & 7))) {
        ctx.fillRect((bit % cols) * BLOCK, Math.floor(bit / cols) * BLOCK, BLOCK, BLOCK);
      }
    }
  }

  // The stamp of a picture drawn on a canvas (at its captured size, halved, or resized), or null.
  function readCanvas(ctx, width, height) {
    const rows = Math.min(rowsNeeded(width), height);
    return read(ctx.getImageData(0, 0, width, rows).data, width, rows);
  }

  root.ConfabPattern = { read, readCanvas, rowsNeeded, paint, nowUs, ageMs, BLOCK };
})(typeof window !== 'undefined' ? window : globalThis);
