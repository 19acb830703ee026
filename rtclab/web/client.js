// rtclab stand-alone browser client: http://HOST:PORT/?room=R&user=U served by the signaling
// server (rtclab.web.serve_client). Query parameters:
//   room, user     room and userId (user defaults to a random name)
//   token          signaling token, sent in the `join` message (kept out of the WebSocket URL)
//   turnToken      bearer token for GET /api/turn-credentials (TURN is used only when given;
//                  a refused token (401) is reported in the status, console and
//                  rtclab.errors, and the page goes on without TURN unless policy=relay)
//   policy=relay   iceTransportPolicy 'relay': TURN relay candidates only (needs turnToken)
//   turn=udp,tcp   which of the served TURN URLs to use (udp, tcp, tls = turns:); default all
//   audio=0        no microphone
//   screen=canvas  share a generated canvas instead of asking getDisplayMedia (headless tests)
//   video=pattern  send a tagged canvas test pattern instead of the camera (qoe.js: the
//                  kernel's peers measure each frame's latency; remote frames' tags are read
//                  either way, so browser rows carry latency_ms_p50/p95 for tagged senders)
//   stats=MS       stats interval in ms (default 1000); 0 disables reporting
//
// window.rtclab exposes the state for tests and the console (chat, cursors, peer-left...).
import {Mesh} from './mesh.js';
import {StatsReporter, renderDiagnostics} from './stats.js';
import {FrameReader, taggedCanvasTrack} from './qoe.js';

const params = new URLSearchParams(location.search);
const room = params.get('room') || 'lab';
const user = params.get('user') || `browser-${Math.random().toString(36).slice(2, 7)}`;
const $ = (id) => document.getElementById(id);

const state = {
  room, user, mesh: null, reporter: null, ws: null,
  joined: false, chat: [], cursors: 0, lastCursor: {}, peerJoined: [], peerLeft: [],
  errors: [], firstFrameMs: null, connectedMs: {}, iceServers: [], readers: {},
  policy: params.get('policy') === 'relay' ? 'relay' : 'all',
  turn: null,  // {ok, status, error}: how fetching TURN credentials went (null: not asked)
};
window.rtclab = state;

function setStatus(text) { $('status').textContent = text; }

/** What the status line says about TURN after "room R: N others" (empty when all is well). */
function turnNote() {
  return state.turn && !state.turn.ok ? ` · no TURN: ${state.turn.error}` : '';
}

async function iceServers() {
  const turnToken = params.get('turnToken');
  if (!turnToken) {
    if (state.policy === 'relay') {
      throw new Error('policy=relay needs TURN, and this page has no turnToken '
        + '(open lab.browser_url(...) while lab.turn() runs)');
    }
    return [];
  }
  // TURN REST credentials minted by the lab (HMAC over "<expiry>:<user>", coturn's
  // use-auth-secret); the bearer token keeps strangers from minting relay credentials.
  let response;
  try {
    response = await fetch(`/api/turn-credentials?user=${encodeURIComponent(user)}`,
      {headers: {Authorization: `Bearer ${turnToken}`}});
  } catch (err) {
    response = {ok: false, status: 0, statusText: String(err)};
  }
  if (!response.ok) {
    const why = response.status === 401 ? 'HTTP 401, the turnToken was refused'
      : response.status === 404 ? 'HTTP 404, the lab runs no TURN server (lab.turn())'
        : `HTTP ${response.status} ${response.statusText || ''}`.trim();
    const error = `turn credentials: ${why}`;
    state.turn = {ok: false, status: response.status, error};
    if (state.policy === 'relay') throw new Error(`${error} (policy=relay cannot connect without TURN)`);
    console.error(`rtclab: ${error}; connecting without TURN`);
    state.errors.push({type: 'turn-credentials', status: response.status, message: error});
    setStatus(`${error}; connecting without TURN`);
    return [];
  }
  const creds = await response.json();
  state.turn = {ok: true, status: response.status, error: null};
  const wanted = params.get('turn') ? params.get('turn').split(',') : null;
  const urls = wanted ? creds.urls.filter((u) => wanted.includes(turnTransport(u))) : creds.urls;
  return [{urls, username: creds.username, credential: creds.credential}];
}

/** 'udp', 'tcp' or 'tls' (turns:) for a TURN URL. */
function turnTransport(url) {
  if (url.startsWith('turns:')) return 'tls';
  return /[?&]transport=tcp/i.test(url) ? 'tcp' : 'udp';
}

function remoteFigure(peer) {
  let fig = document.querySelector(`figure[data-peer="${CSS.escape(peer)}"]`);
  if (!fig) {
    fig = document.createElement('figure');
    fig.dataset.peer = peer;
    fig.innerHTML = '<video autoplay playsinline></video><figcaption></figcaption>';
    fig.querySelector('figcaption').textContent = peer;
    $('videos').append(fig);
  }
  return fig;
}

function onEvent(type, detail) {
  switch (type) {
    case 'joined':
      state.joined = true;
      setStatus(`room ${room}: ${detail.peers.length} others${turnNote()}`);
      break;
    case 'peer-joined': state.peerJoined.push(detail.peer); break;
    case 'peer-left': {
      state.peerLeft.push(detail.peer);
      state.readers[detail.peer]?.stop();
      delete state.readers[detail.peer];
      const fig = document.querySelector(`figure[data-peer="${CSS.escape(detail.peer)}"]`);
      if (fig) fig.remove();
      document.querySelector(`.cursor[data-peer="${CSS.escape(detail.peer)}"]`)?.remove();
      break;
    }
    case 'track': {
      const video = remoteFigure(detail.peer).querySelector('video');
      if (video.srcObject !== detail.stream) video.srcObject = detail.stream;
      const track = detail.kind === 'video' ? detail.stream.getVideoTracks()[0] : null;
      if (track && state.readers[detail.peer]?.track !== track) {
        state.readers[detail.peer]?.stop();
        state.readers[detail.peer] = new FrameReader(track);
      }
      if (detail.kind === 'video' && state.firstFrameMs === null && video.requestVideoFrameCallback) {
        // page load (navigation start) to the first decoded remote frame on screen
        video.requestVideoFrameCallback(() => {
          if (state.firstFrameMs === null) state.firstFrameMs = performance.now();
        });
      }
      break;
    }
    case 'state':
      if (detail.state === 'connected') state.connectedMs[detail.peer] = performance.now();
      break;
    case 'chat': {
      state.chat.push({from: detail.peer, text: detail.text});
      const li = document.createElement('li');
      li.textContent = `${detail.peer}: ${detail.text}`;
      $('chat-log').append(li);
      break;
    }
    case 'cursor': {
      state.cursors += 1;
      state.lastCursor[detail.peer] = [detail.x, detail.y];
      let dot = document.querySelector(`.cursor[data-peer="${CSS.escape(detail.peer)}"]`);
      if (!dot) {
        dot = document.createElement('div');
        dot.className = 'cursor';
        dot.dataset.peer = detail.peer;
        document.body.append(dot);
      }
      dot.style.left = `${Number(detail.x) || 0}px`;
      dot.style.top = `${Number(detail.y) || 0}px`;
      break;
    }
    case 'error': case 'signaling-error': state.errors.push(detail); break;
    default: break;
  }
}

/** A stand-in screen: a moving pattern on a 960x540 canvas (a different size than the camera). */
function canvasScreen() {
  const canvas = document.createElement('canvas');
  canvas.width = 960; canvas.height = 540;
  const ctx = canvas.getContext('2d');
  let n = 0;
  const draw = () => {
    n += 1;
    ctx.fillStyle = '#135'; ctx.fillRect(0, 0, 960, 540);
    ctx.fillStyle = '#fc0'; ctx.fillRect((n * 7) % 960, 200, 120, 120);
    ctx.fillStyle = '#fff'; ctx.font = '48px sans-serif'; ctx.fillText(`screen ${user} ${n}`, 40, 80);
  };
  draw();
  const stream = canvas.captureStream(15);
  const timer = setInterval(draw, 66);
  const track = stream.getVideoTracks()[0];
  track.addEventListener('ended', () => clearInterval(timer));
  const stop = track.stop.bind(track);
  track.stop = () => { clearInterval(timer); stop(); };
  return track;
}

async function screenTrack() {
  if (params.get('screen') !== 'canvas' && navigator.mediaDevices.getDisplayMedia) {
    try {
      const stream = await navigator.mediaDevices.getDisplayMedia({video: true});
      return stream.getVideoTracks()[0];
    } catch (err) {
      console.warn('rtclab: getDisplayMedia failed, sharing a canvas instead:', err);
    }
  }
  return canvasScreen();
}

state.shareScreen = async () => {
  const track = await screenTrack();
  await state.mesh.shareScreen(track);
  $('local').srcObject = new MediaStream([track]);
  $('share').textContent = 'Stop sharing';
  return track.getSettings();
};
state.stopScreenShare = async () => {
  await state.mesh.stopScreenShare();
  $('local').srcObject = state.stream;
  $('share').textContent = 'Share screen';
};
state.sendChat = (text) => {
  const n = state.mesh.sendChat(text);
  const li = document.createElement('li');
  li.textContent = `${user} (you): ${text}`;
  $('chat-log').append(li);
  return n;
};
state.sendCursor = (x, y) => state.mesh.sendCursor(x, y);
state.leave = () => {
  state.reporter?.stop();
  if (state.ws && state.ws.readyState === WebSocket.OPEN) state.ws.send(JSON.stringify({type: 'leave'}));
  state.mesh?.close();
  state.ws?.close();
  setStatus('left');
};

async function main() {
  $('who').textContent = `${user} @ ${room}`;
  state.iceServers = await iceServers();
  const audio = params.get('audio') !== '0';
  const pattern = params.get('video') === 'pattern';
  let stream;
  if (pattern) {
    stream = audio ? await navigator.mediaDevices.getUserMedia({audio}) : new MediaStream();
    stream.addTrack(taggedCanvasTrack({width: 320, height: 240, fps: 15}));
  } else {
    stream = await navigator.mediaDevices.getUserMedia({
      video: {width: 320, height: 240, frameRate: 15}, audio,
    });
  }
  state.stream = stream;
  $('local').srcObject = stream;
  const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
  const ws = new WebSocket(`${scheme}://${location.host}${params.get('signal') || '/signal'}`);
  state.ws = ws;
  const send = (msg) => { if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(msg)); };
  const mesh = new Mesh({
    user, send, stream, iceServers: state.iceServers, iceTransportPolicy: state.policy, emit: onEvent,
  });
  state.mesh = mesh;
  ws.onopen = () => {
    const join = {type: 'join', roomId: room, userId: user};
    if (params.get('token')) join.token = params.get('token');
    send(join);
  };
  ws.onmessage = (event) => mesh.handle(JSON.parse(event.data));
  ws.onclose = () => setStatus('signaling closed');
  const interval = Number(params.get('stats') ?? 1000);
  if (interval > 0) {
    state.reporter = new StatsReporter(mesh, {
      interval,
      report: (rows) => send({type: 'stats', rows}),
      qoe: (remote) => state.readers[remote]?.take() || {},
      render: (rows) => renderDiagnostics($('diagnostics'), rows),
    });
  }
  $('share').onclick = () => (mesh.screenTrack ? state.stopScreenShare() : state.shareScreen());
  $('leave').onclick = state.leave;
  $('chat-form').onsubmit = (event) => {
    event.preventDefault();
    const text = $('chat-input').value.trim();
    if (text) state.sendChat(text);
    $('chat-input').value = '';
  };
  let last = 0;
  document.addEventListener('mousemove', ({clientX, clientY}) => {
    const now = performance.now();
    if (now - last < 33) return;  // ~30 Hz is plenty for a cursor
    last = now;
    mesh.sendCursor(clientX, clientY);
  });
}

main().catch((err) => {
  console.error(err);
  state.errors.push({message: String(err)});
  setStatus(`error: ${err}`);
});
