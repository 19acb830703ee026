// BrowserPeer widget front end (anywidget). rtclab.web.widget_esm() prepends mesh.js and
// stats.js to this file, so Mesh, StatsReporter and renderDiagnostics are in scope here.
//
// The notebook's own tab becomes a peer: camera (or Chromium's fake device), a mesh with the
// room, its stats reported back. Signaling rides the widget comm: every message goes to the
// kernel as {kind: 'signal', msg} and the kernel relays it to the lab's signaling server
// (and back as msg:custom), so only the Jupyter port has to be reachable (Binder).

const WIDGET_CSS = `
.rtclab-browser-peer { font: 13px system-ui, sans-serif; }
.rtclab-browser-peer .rtclab-bp-head { margin-bottom: .3em; }
.rtclab-browser-peer .rtclab-bp-videos { display: flex; flex-wrap: wrap; gap: .4em; }
.rtclab-browser-peer figure { margin: 0; position: relative; }
.rtclab-browser-peer video { width: 240px; height: 180px; background: #000; border-radius: 4px; object-fit: contain; }
.rtclab-browser-peer figcaption { position: absolute; left: .3em; bottom: .3em; color: #fff; background: #0008; padding: 0 .3em; border-radius: 3px; }
.rtclab-browser-peer table { border-collapse: collapse; margin-top: .4em; }
.rtclab-browser-peer th, .rtclab-browser-peer td { padding: .1em .5em; text-align: left; border-bottom: 1px solid #ddd; font-variant-numeric: tabular-nums; }
`;

function figure(container, peer, muted) {
  const fig = document.createElement('figure');
  fig.dataset.peer = peer;
  const video = document.createElement('video');
  video.autoplay = true; video.playsInline = true; video.muted = muted;
  const caption = document.createElement('figcaption');
  caption.textContent = peer;
  fig.append(video, caption);
  container.append(fig);
  return video;
}

function render({model, el}) {
  el.classList.add('rtclab-browser-peer');
  const style = document.createElement('style');
  style.textContent = WIDGET_CSS;
  const head = document.createElement('div');
  head.className = 'rtclab-bp-head';
  const videos = document.createElement('div');
  videos.className = 'rtclab-bp-videos';
  const diagnostics = document.createElement('div');
  diagnostics.className = 'rtclab-bp-diag';
  el.append(style, head, videos, diagnostics);
  const local = figure(videos, `${model.get('user')} (this tab)`, true);

  const view = {mesh: null, reporter: null, stream: null, firstFrameMs: null, errors: [], closed: false};
  (window.rtclabBrowserPeers = window.rtclabBrowserPeers || []).push(view);
  const showStatus = () => {
    head.textContent = `BrowserPeer ${model.get('user')} @ ${model.get('room')}: ${model.get('status')}`
      + ` · ${model.get('reports')} stats reports to the lab`;
  };
  showStatus();
  model.on('change:status', showStatus);
  model.on('change:reports', showStatus);

  const send = (msg) => { if (!view.closed) model.send({kind: 'signal', msg}); };
  const onMessage = (content) => {
    if (content && content.kind === 'signal' && view.mesh) view.mesh.handle(content.msg);
  };
  model.on('msg:custom', onMessage);

  const emit = (type, detail) => {
    if (type === 'track') {
      let fig = videos.querySelector(`figure[data-peer="${CSS.escape(detail.peer)}"]`);
      const video = fig ? fig.querySelector('video') : figure(videos, detail.peer, false);
      if (video.srcObject !== detail.stream) video.srcObject = detail.stream;
      if (detail.kind === 'video' && video.requestVideoFrameCallback) {
        video.requestVideoFrameCallback(() => { if (view.firstFrameMs === null) view.firstFrameMs = performance.now(); });
      }
    } else if (type === 'peer-left') {
      videos.querySelector(`figure[data-peer="${CSS.escape(detail.peer)}"]`)?.remove();
    } else if (type === 'error' || type === 'signaling-error') {
      view.errors.push(detail);
    }
  };

  (async () => {
    const stream = await navigator.mediaDevices.getUserMedia({
      video: {width: 320, height: 240, frameRate: 15}, audio: model.get('audio'),
    });
    if (view.closed) { stream.getTracks().forEach((t) => t.stop()); return; }
    view.stream = stream;
    local.srcObject = stream;
    view.mesh = new Mesh({
      user: model.get('user'), send, stream, emit,
      iceServers: model.get('ice_servers'), iceTransportPolicy: model.get('ice_transport_policy'),
    });
    const interval = model.get('stats_interval_ms');
    if (interval > 0) {
      view.reporter = new StatsReporter(view.mesh, {
        interval,
        report: (rows) => send({type: 'stats', rows}),
        render: (rows) => renderDiagnostics(diagnostics, rows),
      });
    }
    // the kernel opens the signaling connection and joins for us (it knows room and user)
    model.send({kind: 'join'});
  })().catch((err) => {
    view.errors.push({message: String(err)});
    head.textContent = `BrowserPeer: ${err}`;
  });

  return () => {
    view.closed = true;
    view.reporter?.stop();
    view.mesh?.close();
    view.stream?.getTracks().forEach((t) => t.stop());
    model.off('msg:custom', onMessage);
    model.off('change:status', showStatus);
    model.off('change:reports', showStatus);
    model.send({kind: 'leave'});
  };
}

export default {render};
