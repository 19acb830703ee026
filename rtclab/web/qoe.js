// rtclab frame tags in the browser: the same strip rtclab/qoe/tag.py stamps and reads.
//
// A tagged canvas source (video=pattern) stamps each frame with its id and capture time
// (performance.timeOrigin + performance.now(): the machine's wall clock, as the kernel's
// time.time()); a FrameReader reads the tag of every remote frame shown, so latency is
// measured both ways between a browser and aiortc peers. Layout, correction and CRC-32 as in
// tag.py: 2 rows x 40 cells (width/40 wide, twice as tall) at the bottom; frame id (16 bits),
// capture ms mod 2^24, source (4 bits), version (4 bits), CRC-32; at most 2 unclear cells
// tried both ways and 2 wrong cells corrected; anything else that fails the CRC is rejected.
//
// No imports, so it can be inlined like stats.js.

const COLUMNS = 40;
const ROWS = 2;
const BITS = COLUMNS * ROWS;
const TALL = 2;
const VERSION = 1;
const TIME_MODULUS = 2 ** 24;
const SOURCE_BROWSER = 3;
const MID = (16 + 235) / 2;
const MARGIN = 40;
const SKEW_MS = 60000;

const CRC_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n += 1) {
    let c = n;
    for (let k = 0; k < 8; k += 1) c = c & 1 ? 0xEDB88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

/** zlib's CRC-32 of a byte array. */
export function crc32(bytes) {
  let c = 0xFFFFFFFF;
  for (const b of bytes) c = CRC_TABLE[(c ^ b) & 0xFF] ^ (c >>> 8);
  return (c ^ 0xFFFFFFFF) >>> 0;
}

function tagBits(frameId, captureMs, source) {
  const id = frameId % 65536;
  const ms = captureMs % TIME_MODULUS;
  const payload = [id >> 8, id & 0xFF, (ms >> 16) & 0xFF, (ms >> 8) & 0xFF, ms & 0xFF,
    ((source & 0xF) << 4) | VERSION];
  const crc = crc32(payload);
  const bytes = [...payload, crc >>> 24, (crc >>> 16) & 0xFF, (crc >>> 8) & 0xFF, crc & 0xFF];
  const bits = [];
  for (const byte of bytes) for (let k = 7; k >= 0; k -= 1) bits.push((byte >> k) & 1);
  return bits;
}

/** Draw the tag strip at the bottom of a 2-D canvas context. */
export function stampTag(ctx, width, height, frameId, captureMs, source = SOURCE_BROWSER) {
  const bits = tagBits(frameId, captureMs, source);
  const cell = width / COLUMNS;
  const xs = Array.from({length: COLUMNS + 1}, (_, k) => Math.round(k * cell));
  const ys = Array.from({length: ROWS + 1}, (_, r) => Math.round(height - (ROWS - r) * cell * TALL));
  for (let r = 0; r < ROWS; r += 1) {
    for (let c = 0; c < COLUMNS; c += 1) {
      ctx.fillStyle = bits[r * COLUMNS + c] ? '#fff' : '#000';
      ctx.fillRect(xs[c], ys[r], xs[c + 1] - xs[c], ys[r + 1] - ys[r]);
    }
  }
}

/** Pixel rows the strip covers in a `width`-wide frame. */
export function stripHeight(width) { return Math.round(ROWS * TALL * width / COLUMNS); }

function syndrome(bits) {
  const bytes = [];
  for (let i = 0; i < 10; i += 1) {
    let byte = 0;
    for (let k = 0; k < 8; k += 1) byte = (byte << 1) | bits[i * 8 + k];
    bytes.push(byte);
  }
  const field = ((bytes[6] << 24) | (bytes[7] << 16) | (bytes[8] << 8) | bytes[9]) >>> 0;
  return {value: (crc32(bytes.slice(0, 6)) ^ field) >>> 0, bytes};
}

let ERRORS = null;  // syndrome -> the one or two flipped bits that cause it (built once)

function errorTable() {
  if (ERRORS) return ERRORS;
  const zero = syndrome(new Array(BITS).fill(0)).value;
  const single = [];
  for (let b = 0; b < BITS; b += 1) {
    const bits = new Array(BITS).fill(0);
    bits[b] = 1;
    single.push((syndrome(bits).value ^ zero) >>> 0);
  }
  ERRORS = new Map();
  for (let i = 0; i < BITS; i += 1) ERRORS.set(single[i], [i]);
  for (let i = 0; i < BITS; i += 1) {
    for (let j = i + 1; j < BITS; j += 1) ERRORS.set((single[i] ^ single[j]) >>> 0, [i, j]);
  }
  return ERRORS;
}

/**
 * The tag in a strip's luma (limited range) cell means, or null. `means` holds the 80 cell
 * means, row by row.
 */
export function decodeMeans(means) {
  const erased = [];
  const bits = means.map((m, i) => {
    if (Math.abs(m - MID) < MARGIN) erased.push(i);
    return m > MID ? 1 : 0;
  });
  if (erased.length > 2) return null;
  const errors = errorTable();
  let found = null;
  for (let mask = 0; mask < (1 << erased.length); mask += 1) {
    const candidate = bits.slice();
    erased.forEach((bit, k) => { if ((mask >> k) & 1) candidate[bit] ^= 1; });
    const s = syndrome(candidate).value;
    if (s !== 0) {
      const extra = errors.get(s);
      const budget = Math.min(2, Math.floor((4 - erased.length) / 2));
      if (!extra || extra.length > budget || extra.some((b) => erased.includes(b))) continue;
      for (const b of extra) candidate[b] ^= 1;
    }
    const key = candidate.join('');
    if (found !== null && found.key !== key) return null;  // ambiguous: trust neither
    found = {key, bytes: syndrome(candidate).bytes};
  }
  if (found === null) return null;
  const p = found.bytes;
  if ((p[5] & 0xF) !== VERSION) return null;
  return {frameId: (p[0] << 8) | p[1], captureMs: (p[2] << 16) | (p[3] << 8) | p[4], source: p[5] >> 4};
}

/** The full capture time (ms) of a wrapped one, read at `nowMs` on the sender's clock. */
export function unwrapCaptureMs(captureMs, nowMs) {
  let behind = (((nowMs - captureMs) % TIME_MODULUS) + TIME_MODULUS) % TIME_MODULUS;
  if (behind > TIME_MODULUS - SKEW_MS) behind -= TIME_MODULUS;
  return nowMs - behind;
}

export function wallClockMs() { return performance.timeOrigin + performance.now(); }

/**
 * Cell means of the strip, from `luma(x, y)` (limited-range luma of a pixel of the strip
 * image, `width` x `rows`, y from the strip's top).
 */
function cellMeans(luma, width, rows) {
  const cell = width / COLUMNS;
  const half = Math.max(1, cell / 2);
  const means = [];
  for (let r = 0; r < ROWS; r += 1) {
    const centreY = rows - (ROWS - r - 0.5) * cell * TALL;
    const top = Math.max(0, Math.round(centreY - (half * TALL) / 2));
    const bottom = Math.min(rows, Math.max(top + 1, Math.round(centreY + (half * TALL) / 2)));
    for (let c = 0; c < COLUMNS; c += 1) {
      const centreX = (c + 0.5) * cell;
      const left = Math.max(0, Math.round(centreX - half / 2));
      const right = Math.min(width, Math.max(left + 1, Math.round(centreX + half / 2)));
      let total = 0;
      for (let y = top; y < bottom; y += 1) for (let x = left; x < right; x += 1) total += luma(x, y);
      means.push(total / ((bottom - top) * (right - left)));
    }
  }
  return means;
}

/** Limited-range luma of the strip of a WebCodecs VideoFrame, as `(x, y) -> Y`, or null. */
async function stripLuma(frame, rows) {
  const width = frame.codedWidth ? frame.visibleRect.width : frame.displayWidth;
  const top = frame.visibleRect.height - rows;
  const rect = {x: frame.visibleRect.x, y: frame.visibleRect.y + top, width, height: rows};
  const format = frame.format || '';
  const buffer = new Uint8Array(frame.allocationSize({rect}));
  const layout = await frame.copyTo(buffer, {rect});
  const {offset, stride} = layout[0];
  if (format.startsWith('I4') || format.startsWith('NV12')) {
    return (x, y) => buffer[offset + y * stride + x];  // already limited-range Y
  }
  const [r, g, b] = format.startsWith('BGR') ? [2, 1, 0] : [0, 1, 2];
  return (x, y) => {
    const i = offset + y * stride + x * 4;
    return 16 + (219 / 255) * (0.299 * buffer[i + r] + 0.587 * buffer[i + g] + 0.114 * buffer[i + b]);
  };
}

/** A 320x240 (by default) canvas test pattern, tagged, as a video track. */
export function taggedCanvasTrack({width = 320, height = 240, fps = 15} = {}) {
  const canvas = document.createElement('canvas');
  canvas.width = width; canvas.height = height;
  const ctx = canvas.getContext('2d');
  const stream = canvas.captureStream(fps);
  const track = stream.getVideoTracks()[0];
  const colours = ['#fff', '#ff0', '#0ff', '#0f0', '#f0f', '#f00', '#00f', '#282828'];
  const strip = stripHeight(width);
  const box = Math.max(8, Math.floor(Math.min(width, height) / 6));
  let index = 0;
  const draw = () => {
    const shift = (index * 2) % width;
    const bar = width / colours.length;
    colours.forEach((colour, k) => {
      ctx.fillStyle = colour;
      const x = (k * bar + shift) % width;
      ctx.fillRect(x, 0, bar + 1, height);
      ctx.fillRect(x - width, 0, bar + 1, height);
    });
    const spanY = Math.max(1, height - strip - box);
    ctx.fillStyle = '#222';
    ctx.fillRect((index * 4) % (width - box), (index * 2) % spanY, box, box);
    ctx.fillStyle = '#000';
    ctx.fillRect(0, 0, 90, 14);
    ctx.fillStyle = '#fff';
    ctx.font = '11px monospace';
    ctx.fillText(`#${index} browser`, 3, 11);
    stampTag(ctx, width, height, index, Math.round(wallClockMs()));
    index += 1;
  };
  draw();
  const timer = setInterval(draw, 1000 / fps);
  const stop = track.stop.bind(track);
  track.stop = () => { clearInterval(timer); stop(); };
  track.addEventListener('ended', () => clearInterval(timer));
  return track;
}

/**
 * Reads the tag of every decoded frame of a remote video track (WebCodecs frames through
 * MediaStreamTrackProcessor, beside whatever displays the track), keeping each tagged
 * frame's latency (capture -> decoded here) until `take()` hands them over, once per stats
 * report. Without MediaStreamTrackProcessor nothing is read (and nothing reported).
 */
export class FrameReader {
  constructor(track) {
    this.track = track;
    this.latencies = [];
    this.untagged = 0;
    this.tagged = 0;
    this.stopped = false;
    if (typeof MediaStreamTrackProcessor === 'undefined') return;
    // eslint-disable-next-line no-undef
    this.reader = new MediaStreamTrackProcessor({track}).readable.getReader();
    this.loop().catch((err) => console.warn('rtclab: frame tags not read:', err));
  }

  async loop() {
    while (!this.stopped) {
      const {value: frame, done} = await this.reader.read();
      if (done) return;
      const decoded = wallClockMs();
      try {
        const width = frame.visibleRect.width;
        const height = frame.visibleRect.height;
        const rows = stripHeight(width);
        let tag = null;
        if (width >= COLUMNS && rows > 0 && rows <= height / 2) {
          tag = decodeMeans(cellMeans(await stripLuma(frame, rows), width, rows));
        }
        if (tag) {
          this.tagged += 1;
          this.latencies.push(decoded - unwrapCaptureMs(tag.captureMs, Math.round(decoded)));
        } else {
          this.untagged += 1;
        }
      } finally {
        frame.close();
      }
    }
  }

  /** The interval's QoE columns (as the kernel's): latency percentiles, untagged frames. */
  take() {
    const sorted = this.latencies.sort((a, b) => a - b);
    const pick = (q) => {
      if (!sorted.length) return null;
      const pos = (sorted.length - 1) * q;
      const lo = Math.floor(pos);
      const hi = Math.min(sorted.length - 1, lo + 1);
      return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
    };
    const out = {latency_ms_p50: pick(0.5), latency_ms_p95: pick(0.95), frames_untagged: this.untagged};
    this.latencies = [];
    this.untagged = 0;
    return out;
  }

  stop() {
    this.stopped = true;
    this.reader?.cancel().catch(() => {});
  }
}
