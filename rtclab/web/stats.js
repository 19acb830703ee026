// rtclab browser stats: getStats() -> rows in the units of the lab's samples frame.
//
// The kernel's StatsCollector builds the same rows from aiortc; these columns must mean the
// same thing (see rtclab/stats/convert.py): jitter_ms (W3C jitter is in seconds: x1000),
// fraction_lost 0-1 over the interval on inbound rows; on outbound rows what the remote
// reported (remote-inbound-rtp) under remote_* names (remote_fraction_lost already 0-1 in
// browsers) and its roundTripTime as rtcp_rtt_ms; transport rows carry the selected pair's
// STUN currentRoundTripTime as ice_rtt_ms; bitrate_kbps from byte deltas between two
// reports of the same connection (null on the first one); frames/frames_per_second are
// video only; and the selected candidate pair's types, protocol and addresses on every row.
// What aiortc hides and rtclab counts for its own peers comes from Chromium's own counters
// under the same names: nack_count / pli_count / fir_count (cumulative; received on
// outbound rows, sent on inbound rows), keyframes_encoded / keyframes_decoded,
// retransmitted_packets_sent, target_bitrate_kbps (outbound-rtp targetBitrate),
// available_outgoing_bitrate_kbps (the selected pair's availableOutgoingBitrate, on the
// outbound video row), quality_limitation_reason; and per interval, like the kernel's
// rows: freeze_count, total_freezes_duration_ms (W3C totalFreezesDuration x 1000) and
// frames_dropped. Inbound audio rows add jitter_buffer_ms, from which the lab computes the
// same E-model mos as for its own peers.
//
// No imports, so the BrowserPeer widget can inline it (see mesh.js).

function byType(report, type) {
  const out = [];
  report.forEach((s) => { if (s.type === type) out.push(s); });
  return out;
}

function sum(items, name) {
  let total = null;
  for (const s of items) if (typeof s[name] === 'number') total = (total || 0) + s[name];
  return total;
}

function max(items, name) {
  let best = null;
  for (const s of items) if (typeof s[name] === 'number') best = best === null ? s[name] : Math.max(best, s[name]);
  return best;
}

function delta(now, before) {
  if (now === null || before === null || before === undefined || now < before) return null;
  return now - before;
}

/** Mean time a sample waited in the jitter buffer (W3C jitterBufferDelay / EmittedCount). */
function jitterBufferMs(items) {
  const delay = sum(items, 'jitterBufferDelay');
  const emitted = sum(items, 'jitterBufferEmittedCount');
  return delay === null || !emitted ? null : delay / emitted * 1000;
}

function kbps(bps) {
  return typeof bps === 'number' ? bps / 1000 : null;
}

function rate(now, before, dt, scale = 1) {
  if (now === null || before === null || before === undefined || !dt || now < before) return null;
  return (now - before) / dt * scale;
}

/** nack/pli/fir counts (cumulative; received on outbound rows, sent on inbound rows). */
const feedbackCounts = (stats, video) => ({
  nack_count: sum(stats, 'nackCount'),
  pli_count: video ? sum(stats, 'pliCount') : null,
  fir_count: video ? sum(stats, 'firCount') : null,
});

/** The selected pair: the transport's selectedCandidatePairId, else a nominated succeeded one. */
export function selectedPair(report) {
  let pair = null;
  for (const t of byType(report, 'transport')) {
    if (t.selectedCandidatePairId) pair = report.get(t.selectedCandidatePairId) || pair;
  }
  if (!pair) {
    pair = byType(report, 'candidate-pair').find((p) => p.nominated && p.state === 'succeeded') || null;
  }
  if (!pair) return null;
  const local = report.get(pair.localCandidateId) || {};
  const remote = report.get(pair.remoteCandidateId) || {};
  const address = (c) => (c.address || c.ip) ? `${c.address || c.ip}:${c.port}` : null;
  return {
    pair,
    local_candidate_type: local.candidateType || null,
    remote_candidate_type: remote.candidateType || null,
    protocol: local.protocol || null,
    relay_protocol: local.candidateType === 'relay' ? (local.relayProtocol || null) : null,
    local_address: address(local),
    remote_address: address(remote),
  };
}

/**
 * Rows for one connection. `prev` is what the previous call returned as `state` for the
 * same connection (or null); `extra` adds our own counters (data-channel drops).
 */
export function reportToRows(remote, report, prev, {connectionState = null, dropped = 0} = {}) {
  const now = performance.now() / 1000;
  const dt = prev ? now - prev.t : null;
  const totals = {};
  const path = selectedPair(report);
  const base = {
    remote,
    connection_state: connectionState,
    local_candidate_type: path ? path.local_candidate_type : null,
    remote_candidate_type: path ? path.remote_candidate_type : null,
    protocol: path ? path.protocol : null,
    relay_protocol: path ? path.relay_protocol : null,
    local_address: path ? path.local_address : null,
    remote_address: path ? path.remote_address : null,
  };
  const rows = [];
  const before = (key) => (prev ? prev.totals[key] : null);
  const outbound = byType(report, 'outbound-rtp');
  const inbound = byType(report, 'inbound-rtp');
  const remoteInbound = byType(report, 'remote-inbound-rtp');
  for (const kind of ['audio', 'video']) {
    const video = kind === 'video';
    const out = outbound.filter((s) => s.kind === kind);
    const packetsSent = sum(out, 'packetsSent');
    if (packetsSent) {
      const ids = new Set(out.map((s) => s.id));
      const rin = remoteInbound.filter((s) => ids.has(s.localId));
      const bytes = sum(out, 'bytesSent');
      const frames = video ? sum(out, 'framesEncoded') : null;
      totals[`${kind}-out-bytes`] = bytes;
      totals[`${kind}-out-frames`] = frames;
      const rtt = max(rin, 'roundTripTime');
      const jitter = max(rin, 'jitter');
      const reasons = out.map((s) => s.qualityLimitationReason).filter((r) => typeof r === 'string');
      rows.push({
        ...base, kind, direction: 'outbound', ...feedbackCounts(out, video),
        keyframes_encoded: video ? sum(out, 'keyFramesEncoded') : null,
        retransmitted_packets_sent: sum(out, 'retransmittedPacketsSent'),
        target_bitrate_kbps: video ? kbps(sum(out, 'targetBitrate')) : null,
        available_outgoing_bitrate_kbps: video && path ? kbps(path.pair.availableOutgoingBitrate ?? null) : null,
        quality_limitation_reason: video && reasons.length ? reasons.sort().find((r) => r !== 'none') || 'none' : null,
        rtcp_rtt_ms: rtt === null ? null : rtt * 1000,
        packets_sent: packetsSent,
        remote_packets_received: sum(rin, 'packetsReceived'),
        remote_packets_lost: sum(rin, 'packetsLost'),
        remote_fraction_lost: max(rin, 'fractionLost'),
        remote_jitter_ms: jitter === null ? null : jitter * 1000,
        bytes_sent: bytes,
        bitrate_kbps: rate(bytes, before(`${kind}-out-bytes`), dt, 8 / 1000),
        frames,
        frames_per_second: rate(frames, before(`${kind}-out-frames`), dt),
        frame_width: max(out, 'frameWidth'),
      });
    }
    const inb = inbound.filter((s) => s.kind === kind);
    if (inb.length) {
      const received = sum(inb, 'packetsReceived');
      const lost = sum(inb, 'packetsLost');
      const bytes = sum(inb, 'bytesReceived');
      const frames = video ? sum(inb, 'framesDecoded') : null;
      totals[`${kind}-in-bytes`] = bytes;
      totals[`${kind}-in-frames`] = frames;
      totals[`${kind}-in-received`] = received;
      totals[`${kind}-in-lost`] = lost;
      let fraction = null;
      const dRecv = rate(received, before(`${kind}-in-received`), 1);
      const dLost = lost === null || !prev || prev.totals[`${kind}-in-lost`] === undefined
        ? null : lost - prev.totals[`${kind}-in-lost`];
      if (dRecv !== null && dLost !== null) {
        const expected = dRecv + dLost;
        fraction = expected > 0 ? Math.min(1, Math.max(0, dLost / expected)) : 0;
      }
      const jitter = max(inb, 'jitter');
      const freezes = video ? sum(inb, 'freezeCount') : null;
      const frozenMs = video ? sum(inb, 'totalFreezesDuration') : null;
      const framesDropped = video ? sum(inb, 'framesDropped') : null;
      totals[`${kind}-in-freezes`] = freezes;
      totals[`${kind}-in-frozen`] = frozenMs;
      totals[`${kind}-in-dropped`] = framesDropped;
      const perInterval = (value, key, scale = 1) => {
        const d = delta(value, before(key));
        return d === null ? null : d * scale;
      };
      rows.push({
        ...base, kind, direction: 'inbound', ...feedbackCounts(inb, video),
        keyframes_decoded: video ? sum(inb, 'keyFramesDecoded') : null,
        freeze_count: perInterval(freezes, `${kind}-in-freezes`),
        total_freezes_duration_ms: perInterval(frozenMs, `${kind}-in-frozen`, 1000),
        frames_dropped: perInterval(framesDropped, `${kind}-in-dropped`),
        // not a samples column: the lab turns it into the audio row's mos (one-way delay)
        jitter_buffer_ms: kind === 'audio' ? jitterBufferMs(inb) : null,
        jitter_ms: jitter === null ? null : jitter * 1000,
        packets_received: received,
        packets_lost: lost,
        fraction_lost: fraction,
        bytes_received: bytes,
        bitrate_kbps: rate(bytes, before(`${kind}-in-bytes`), dt, 8 / 1000),
        frames,
        frames_per_second: rate(frames, before(`${kind}-in-frames`), dt),
        frame_width: max(inb, 'frameWidth'),
        frame_height: max(inb, 'frameHeight'),
      });
    }
  }
  const channels = byType(report, 'data-channel');
  if (channels.length) {
    const sent = sum(channels, 'bytesSent');
    const got = sum(channels, 'bytesReceived');
    totals['data-out'] = sent;
    totals['data-in'] = got;
    rows.push({...base, kind: 'data', direction: 'outbound', bytes_sent: sent,
               bitrate_kbps: rate(sent, before('data-out'), dt, 8 / 1000),
               messages_sent: sum(channels, 'messagesSent'), messages_dropped: dropped});
    rows.push({...base, kind: 'data', direction: 'inbound', bytes_received: got,
               bitrate_kbps: rate(got, before('data-in'), dt, 8 / 1000),
               messages_received: sum(channels, 'messagesReceived')});
  }
  if (path) {
    const p = path.pair;
    const rtt = typeof p.currentRoundTripTime === 'number' ? p.currentRoundTripTime * 1000 : null;
    totals['tr-out'] = p.bytesSent;
    totals['tr-in'] = p.bytesReceived;
    rows.push({...base, kind: 'transport', direction: 'outbound', ice_rtt_ms: rtt,
               packets_sent: p.packetsSent ?? null, bytes_sent: p.bytesSent ?? null,
               bitrate_kbps: rate(p.bytesSent ?? null, before('tr-out'), dt, 8 / 1000)});
    rows.push({...base, kind: 'transport', direction: 'inbound', ice_rtt_ms: rtt,
               packets_received: p.packetsReceived ?? null, bytes_received: p.bytesReceived ?? null,
               bitrate_kbps: rate(p.bytesReceived ?? null, before('tr-in'), dt, 8 / 1000)});
  }
  return {rows, state: {t: now, totals}};
}

/**
 * Polls every link of a Mesh once a `interval` ms: reports rows (`report(rows)`, e.g. a
 * `stats` signaling message) and hands them to `render(rows)` for the diagnostics panel.
 */
export class StatsReporter {
  constructor(mesh, {interval = 1000, report = () => {}, render = () => {}, qoe = () => ({})} = {}) {
    this.mesh = mesh;
    this.qoe = qoe;  // remote -> the interval's QoE columns of its inbound video (qoe.js)
    this.report = report;
    this.render = render;
    this.previous = new Map();
    this.latest = [];
    this.timer = setInterval(() => this.poll(), interval);
  }

  async poll() {
    const rows = [];
    for (const [remote, link] of this.mesh.links) {
      const connState = link.pc.connectionState;
      if (connState === 'closed') continue;
      const report = await link.pc.getStats();
      const {rows: linkRows, state} = reportToRows(remote, report, this.previous.get(link) || null,
        {connectionState: connState, dropped: link.counters.dropped});
      this.previous.set(link, state);
      for (const row of linkRows) {
        if (row.kind === 'video' && row.direction === 'inbound') Object.assign(row, this.qoe(remote));
      }
      rows.push(...linkRows);
    }
    this.latest = rows;
    this.render(rows);
    // frame_width/height are panel-only: the samples frame has no such columns
    if (rows.length) this.report(rows.slice(0, 64).map(({frame_width, frame_height, ...r}) => r));
    return rows;
  }

  stop() { clearInterval(this.timer); }
}

/** Diagnostics panel: one line per remote (path, RTT, loss, jitter, bitrates, video). */
export function renderDiagnostics(element, rows) {
  const byRemote = new Map();
  for (const r of rows) {
    if (!byRemote.has(r.remote)) byRemote.set(r.remote, []);
    byRemote.get(r.remote).push(r);
  }
  const fmt = (v, digits = 0, unit = '') => (v === null || v === undefined ? '–' : `${v.toFixed(digits)}${unit}`);
  const lines = [];
  for (const [remote, rs] of byRemote) {
    const find = (kind, dir) => rs.find((r) => r.kind === kind && r.direction === dir) || {};
    const tr = find('transport', 'outbound');
    const vin = find('video', 'inbound');
    const vout = find('video', 'outbound');
    const ain = find('audio', 'inbound');
    const any = rs[0];
    const path = any.local_candidate_type ? `${any.local_candidate_type}/${any.remote_candidate_type} ${any.protocol || ''}` : '–';
    lines.push(`<tr data-remote="${escapeHtml(remote)}"><td>${escapeHtml(remote)}</td><td>${escapeHtml(any.connection_state || '')}</td>`
      + `<td>${escapeHtml(path)}</td><td>${fmt(tr.ice_rtt_ms, 1, ' ms')}</td>`
      + `<td>${fmt(vin.fraction_lost === null || vin.fraction_lost === undefined ? null : vin.fraction_lost * 100, 1, ' %')}</td>`
      + `<td>${fmt(vin.jitter_ms ?? ain.jitter_ms, 1, ' ms')}</td>`
      + `<td>${fmt(vin.bitrate_kbps, 0)} / ${fmt(vout.bitrate_kbps, 0)} kbps</td>`
      + `<td>${vin.frame_width ? `${vin.frame_width}×${vin.frame_height}` : '–'} ${fmt(vin.frames_per_second, 0, ' fps')}</td></tr>`);
  }
  element.innerHTML = '<table><thead><tr><th>remote</th><th>state</th><th>path</th><th>RTT</th>'
    + '<th>loss</th><th>jitter</th><th>in / out video</th><th>received video</th></tr></thead>'
    + `<tbody>${lines.join('')}</tbody></table>`;
}

function escapeHtml(text) {
  return String(text).replace(/[&<>"']/g, (c) => ({'&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;'}[c]));
}
