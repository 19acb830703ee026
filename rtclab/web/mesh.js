// rtclab browser mesh: one RTCPeerConnection per room member, signaling-transport agnostic.
//
// The same choreography as rtclab's Python Peer (and the write-up's VideoRoom): the joiner
// offers to everyone already in the room, the others answer. Candidates are trickled (sent
// as `ice-candidate` the moment the browser finds them, `candidate: null` at the end), and
// trickled candidates that arrive before the remote description are queued, since
// addIceCandidate fails without one. aiortc peers put every candidate in their SDP and never
// trickle; both work.
//
// This file has no imports so the BrowserPeer widget can inline it (anywidget loads one ES
// module from a string, where relative imports cannot resolve).

/** The write-up's threshold: stop feeding a channel once 64 KiB wait in its buffer. */
export const BUFFER_THRESHOLD = 65536;

/** One remote: its RTCPeerConnection, data channels, queued candidates and counters. */
class RemoteLink {
  constructor(remote, role, pc) {
    this.remote = remote;
    this.role = role;
    this.pc = pc;
    this.channels = {};
    this.pending = [];
    this.stream = null;
    this.chatQueue = [];
    this.counters = {dropped: 0, backpressureWaits: 0};
    this.createdAt = performance.now();
    this.connectedAt = null;
  }
}

export class Mesh {
  /**
   * @param {object} o
   * @param {string} o.user  our userId
   * @param {(msg: object) => void} o.send  sends one signaling message (WebSocket or comm)
   * @param {MediaStream} o.stream  local camera/microphone
   * @param {RTCIceServer[]} [o.iceServers]
   * @param {'all'|'relay'} [o.iceTransportPolicy]  'relay': TURN relay candidates only
   * @param {(type: string, detail: object) => void} [o.emit]  UI / test hook
   */
  constructor({user, send, stream, iceServers = [], iceTransportPolicy = 'all', emit = () => {}}) {
    this.user = user;
    this.send = send;
    this.stream = stream;
    this.iceServers = iceServers;
    this.iceTransportPolicy = iceTransportPolicy;
    this.emit = emit;
    this.links = new Map();
    this.videoTrack = stream ? stream.getVideoTracks()[0] || null : null;
    this.cameraTrack = this.videoTrack;
    this.screenTrack = null;
    this.chatSeq = 0;
  }

  // ---------------------------------------------------------------- signaling in

  async handle(msg) {
    try {
      await this._handle(msg);
    } catch (err) {
      console.error('rtclab: handling', msg.type, 'failed', err);
      this.emit('error', {type: msg.type, from: msg.from, message: String(err)});
    }
  }

  async _handle(msg) {
    switch (msg.type) {
      case 'room-joined':
        this.emit('joined', {peers: msg.peers});
        for (const remote of msg.peers) {
          const link = this._link(remote, 'offerer');
          await this._offer(link);
        }
        break;
      case 'peer-joined':
        this.emit('peer-joined', {peer: msg.peerId});
        if (!this.links.has(msg.peerId)) this._link(msg.peerId, 'answerer');
        break;
      case 'offer': {
        let link = this.links.get(msg.from);
        if (link && link.pc.remoteDescription) {
          // a fresh negotiation for a link we had: the remote rebuilt its connection
          this._close(msg.from);
          link = null;
        }
        link = link || this._link(msg.from, 'answerer');
        await this._answer(link, msg.sdp);
        break;
      }
      case 'answer': {
        const link = this.links.get(msg.from);
        if (!link || link.pc.remoteDescription) return;
        await link.pc.setRemoteDescription(description(msg.sdp));
        await this._flush(link);
        break;
      }
      case 'ice-candidate': {
        const link = this.links.get(msg.from);
        if (!link) return;
        link.pending.push(msg.candidate);
        if (link.pc.remoteDescription) await this._flush(link);
        break;
      }
      case 'peer-left':
        this._close(msg.peerId);
        this.emit('peer-left', {peer: msg.peerId});
        break;
      case 'error':
        this.emit('signaling-error', {code: msg.code, message: msg.message});
        break;
      default:
        break;
    }
  }

  // ---------------------------------------------------------------- connections

  _link(remote, role) {
    const pc = new RTCPeerConnection({
      iceServers: this.iceServers, iceTransportPolicy: this.iceTransportPolicy,
    });
    const link = new RemoteLink(remote, role, pc);
    this.links.set(remote, link);
    pc.onicecandidate = ({candidate}) => {
      // trickle: every candidate as soon as it is found; null = end-of-candidates
      this.send({type: 'ice-candidate', to: remote,
                 candidate: candidate ? candidate.toJSON() : null});
    };
    pc.ontrack = (event) => {
      const stream = event.streams[0] || link.stream || new MediaStream();
      if (!event.streams[0]) stream.addTrack(event.track);
      link.stream = stream;
      this.emit('track', {peer: remote, kind: event.track.kind, stream});
    };
    pc.onconnectionstatechange = () => {
      if (pc.connectionState === 'connected' && link.connectedAt === null) {
        link.connectedAt = performance.now();
      }
      this.emit('state', {peer: remote, state: pc.connectionState});
    };
    pc.ondatachannel = ({channel}) => this._attach(link, channel);
    this.emit('connection', {peer: remote, role});
    return link;
  }

  _addMedia(link, answering) {
    if (!this.stream) return;
    const offered = answering
      ? new Set(link.pc.getTransceivers().map((t) => t.receiver.track.kind)) : null;
    for (const track of this.stream.getTracks()) {
      // an answer cannot add m-lines: only send kinds the offer has
      if (offered && !offered.has(track.kind)) continue;
      const sending = track.kind === 'video' ? this.videoTrack : track;
      if (sending) link.pc.addTrack(sending, this.stream);
    }
  }

  async _offer(link) {
    // tracks before channels: with MAX_BUNDLE, aiortc closes its only transport on the answer
    // when the data channel comes first
    this._addMedia(link, false);
    this._attach(link, link.pc.createDataChannel('chat', {ordered: true}));
    this._attach(link, link.pc.createDataChannel('cursors', {ordered: false, maxRetransmits: 0}));
    await link.pc.setLocalDescription(await link.pc.createOffer());
    this.send({type: 'offer', to: link.remote, sdp: plain(link.pc.localDescription)});
  }

  async _answer(link, sdp) {
    await link.pc.setRemoteDescription(description(sdp));
    this._addMedia(link, true);
    await link.pc.setLocalDescription(await link.pc.createAnswer());
    this.send({type: 'answer', to: link.remote, sdp: plain(link.pc.localDescription)});
    await this._flush(link);
  }

  async _flush(link) {
    const pending = link.pending;
    link.pending = [];
    for (const init of pending) {
      try {
        if (init && init.candidate) await link.pc.addIceCandidate(init);
        else await link.pc.addIceCandidate();  // end-of-candidates
      } catch (err) {
        this.emit('error', {peer: link.remote, message: `addIceCandidate: ${err}`});
      }
    }
  }

  _close(remote) {
    const link = this.links.get(remote);
    if (!link) return;
    this.links.delete(remote);
    link.pc.close();
  }

  close() {
    for (const remote of [...this.links.keys()]) this._close(remote);
  }

  // ---------------------------------------------------------------- data channels

  _attach(link, channel) {
    link.channels[channel.label] = channel;
    channel.bufferedAmountLowThreshold = BUFFER_THRESHOLD / 2;
    channel.onbufferedamountlow = () => this._drain(link);
    channel.onopen = () => this.emit('channel-open', {peer: link.remote, label: channel.label});
    channel.onmessage = (event) => {
      let msg;
      try { msg = JSON.parse(event.data); } catch { return; }
      if (msg.type === 'chat') this.emit('chat', {peer: link.remote, text: String(msg.text)});
      else if (msg.type === 'cursor') this.emit('cursor', {peer: link.remote, x: msg.x, y: msg.y});
    };
  }

  /** Send a chat line to everyone; reliable: over the threshold it queues, never drops. */
  sendChat(text) {
    this.chatSeq += 1;
    const payload = JSON.stringify({type: 'chat', text, seq: this.chatSeq, t: Date.now() / 1000});
    let sent = 0;
    for (const link of this.links.values()) {
      const channel = link.channels.chat;
      if (!channel || channel.readyState !== 'open') continue;
      if (link.chatQueue.length || channel.bufferedAmount > BUFFER_THRESHOLD) {
        link.counters.backpressureWaits += 1;
        link.chatQueue.push(payload);
      } else {
        channel.send(payload);
      }
      sent += 1;
    }
    return sent;
  }

  _drain(link) {
    const channel = link.channels.chat;
    while (channel && link.chatQueue.length && channel.bufferedAmount <= BUFFER_THRESHOLD) {
      channel.send(link.chatQueue.shift());
    }
  }

  /** Send a cursor position to everyone; unreliable: over the threshold it is dropped (counted). */
  sendCursor(x, y) {
    const payload = JSON.stringify({type: 'cursor', x, y});
    let sent = 0;
    for (const link of this.links.values()) {
      const channel = link.channels.cursors;
      if (!channel || channel.readyState !== 'open' || channel.bufferedAmount > BUFFER_THRESHOLD) {
        link.counters.dropped += 1;
        continue;
      }
      channel.send(payload);
      sent += 1;
    }
    return sent;
  }

  // ---------------------------------------------------------------- screen share

  /** Swap `track` into every video sender (replaceTrack: no renegotiation). */
  async setVideoTrack(track) {
    this.videoTrack = track;
    await Promise.all([...this.links.values()].map((link) => {
      const sender = link.pc.getSenders().find((s) => s.track && s.track.kind === 'video');
      return sender ? sender.replaceTrack(track) : null;
    }));
  }

  /** Share `track` (from getDisplayMedia or a canvas) until it ends, then the camera again. */
  async shareScreen(track) {
    track.contentHint = 'detail';  // keep resolution, drop frame rate under pressure
    this.screenTrack = track;
    track.addEventListener('ended', () => this.stopScreenShare());
    await this.setVideoTrack(track);
    this.emit('screen', {sharing: true, width: track.getSettings().width});
  }

  async stopScreenShare() {
    const track = this.screenTrack;
    if (!track) return;
    this.screenTrack = null;
    track.stop();  // stop() fires no 'ended' on our own track: hence the explicit call path
    await this.setVideoTrack(this.cameraTrack);
    this.emit('screen', {sharing: false});
  }
}

/** Only type and sdp: aiortc peers tag their descriptions with an extra `rtclab` key. */
function description(sdp) {
  return {type: sdp.type, sdp: sdp.sdp};
}

function plain(desc) {
  return {type: desc.type, sdp: desc.sdp};
}
