// The nodus dashboard. Everything shown comes from the node's API, called with the
// token as a bearer header; the token arrives in the login URL's fragment, which no
// request carries, and is kept in this tab's sessionStorage only.
'use strict';

const $ = (id) => document.getElementById(id);
const TOKEN = 'nodus.token';
const EVENTS_KEPT = 200;
const PEER_ROWS = 200;

/** Takes the token out of the address bar (so it is in no bookmark or history entry). */
function takeToken() {
  const m = /(?:^#|&)token=([^&]*)/.exec(location.hash);
  if (m) {
    sessionStorage.setItem(TOKEN, decodeURIComponent(m[1]));
    history.replaceState(null, '', location.pathname + location.search);
  }
  return sessionStorage.getItem(TOKEN);
}

class Unauthorized extends Error {}

async function api(path, init = {}) {
  const token = sessionStorage.getItem(TOKEN);
  // Logged out: panels still polling ask nothing of the node.
  if (!token) throw new Unauthorized('logged out');
  const headers = { Authorization: 'Bearer ' + token, ...(init.headers || {}) };
  const r = await fetch(path, { ...init, headers, cache: 'no-store' });
  if (r.status === 401) {
    const body = await r.json().catch(() => ({}));
    throw new Unauthorized(body.error || 'the node refused the token');
  }
  const body = await r.json();
  if (!r.ok) throw new Error(body.error || r.statusText);
  return body;
}

function showLogin(why) {
  sessionStorage.removeItem(TOKEN);
  // What a previous token showed goes too.
  net.status = null;
  net.peers = [];
  renderNetwork();
  for (const id of ['self', 'routing', 'nat', 'dht']) $(id).textContent = id === 'self' ? '' : '-';
  $('peer-count').textContent = '-';
  $('events').replaceChildren();
  for (const p of document.querySelectorAll('main > section[id^="panel-"], #narration')) p.remove();
  panelHandlers.clear();
  for (const t of panelTimers.splice(0)) clearInterval(t);
  panelsMounted = false;
  narration = null;
  document.body.dataset.state = 'login';
  $('dash').hidden = true;
  $('login').hidden = false;
  $('login-why').textContent = why;
  setLive(false, 'logged out');
  $('token').focus();
}

function setLive(on, text) {
  const el = $('live');
  el.classList.toggle('on', on);
  el.textContent = text;
}

// ---- network panel ----

const net = { status: null, peers: [] };

function shortId(id) {
  return id.length > 16 ? id.slice(0, 8) + '…' + id.slice(-6) : id;
}

function rttColour(ms) {
  if (ms == null) return '#a9bcb5';
  const t = Math.min(1, Math.log10(1 + ms) / 2.5); // 0 ms green .. ~300 ms red
  return `hsl(${Math.round(150 - 150 * t)}, 70%, 60%)`;
}

function renderNetwork() {
  const s = net.status;
  if (s) {
    $('self').textContent = s.peer_id;
    $('routing').textContent = s.routing_table_size;
    // "public <address>": the word fits the figure; the address shows on hover.
    $('nat').textContent = s.nat.split(' ')[0];
    $('nat').title = s.nat;
    $('dht').textContent = s.dht_queries;
  }
  $('peer-count').textContent = net.peers.length;
  drawPeers();
  const body = $('peers').tBodies[0];
  const rows = net.peers.slice(0, PEER_ROWS).map((p) => {
    const tr = document.createElement('tr');
    const cells = [
      [shortId(p.peer_id), p.peer_id],
      [(p.addresses || [])[0] || '', (p.addresses || []).join('\n')],
      [p.rtt_ms == null ? '-' : p.rtt_ms.toFixed(1) + ' ms', ''],
      [(p.agent || '') + (p.relayed ? ' (relayed)' : ''), ''],
    ];
    for (const [text, title] of cells) {
      const td = document.createElement('td');
      td.className = 'mono';
      td.textContent = text;
      if (title) td.title = title;
      tr.appendChild(td);
    }
    return tr;
  });
  body.replaceChildren(...rows);
  const more = net.peers.length - rows.length;
  $('peers-more').textContent = more > 0 ? `and ${more} more` : '';
}

/** A canvas sized to its box at the screen's pixel density, cleared: its context and size in CSS pixels. */
function fitCanvas(c) {
  const dpr = window.devicePixelRatio || 1;
  const w = c.clientWidth, h = c.clientHeight;
  if (c.width !== Math.round(w * dpr) || c.height !== Math.round(h * dpr)) {
    c.width = Math.round(w * dpr);
    c.height = Math.round(h * dpr);
  }
  const g = c.getContext('2d');
  g.setTransform(dpr, 0, 0, dpr, 0, 0);
  g.clearRect(0, 0, w, h);
  return { g, w, h };
}

/** This node in the middle, its peers on rings around it: canvas, so a thousand draw at once. */
function drawPeers() {
  const c = $('peer-map');
  const { g, w, h } = fitCanvas(c);
  const cx = w / 2, cy = h / 2, n = net.peers.length;
  const maxR = Math.min(w, h) / 2 - 24;
  const perRing = Math.max(12, Math.ceil(Math.sqrt(n) * 3));
  const rings = Math.max(1, Math.ceil(n / perRing));
  const dot = n > 200 ? 2.5 : 6;
  net.peers.forEach((p, i) => {
    const ring = Math.floor(i / perRing);
    const onRing = Math.min(perRing, n - ring * perRing);
    const a = (2 * Math.PI * (i % perRing)) / onRing + ring * 0.3;
    const r = maxR * (rings === 1 ? 1 : 0.45 + (0.55 * ring) / (rings - 1));
    const x = cx + r * Math.cos(a), y = cy + r * Math.sin(a);
    g.strokeStyle = rttColour(p.rtt_ms);
    g.globalAlpha = n > 200 ? 0.35 : 0.8;
    g.setLineDash(p.relayed ? [4, 4] : []);
    g.beginPath(); g.moveTo(cx, cy); g.lineTo(x, y); g.stroke();
    g.globalAlpha = 1;
    g.fillStyle = '#e8f1ee';
    g.beginPath(); g.arc(x, y, dot, 0, 2 * Math.PI); g.fill();
    if (n <= 24) {
      g.fillStyle = '#a9bcb5';
      g.font = '11px ui-monospace, monospace';
      g.textAlign = x < cx ? 'right' : 'left';
      g.fillText(shortId(p.peer_id), x + (x < cx ? -10 : 10), y + 4);
    }
  });
  g.setLineDash([]);
  g.fillStyle = '#7fd1b9';
  g.beginPath(); g.arc(cx, cy, 10, 0, 2 * Math.PI); g.fill();
  c.setAttribute('aria-label', `this node and its ${n} peers`);
}

async function refreshNetwork() {
  const [status, peers] = await Promise.all([api('/api/v1/status'), api('/api/v1/peers')]);
  net.status = status;
  net.peers = peers.peers.slice().sort((a, b) => a.peer_id.localeCompare(b.peer_id));
  renderNetwork();
}

// ---- events ----

/** One line for an event: its kind and its short scalar fields (a panel shows the rest). */
function describe(v) {
  if (typeof v !== 'object' || v === null) return String(v);
  const { type, kind, ...rest } = v;
  const detail = Object.entries(rest)
    .filter(([, x]) => x !== null && typeof x !== 'object')
    .slice(0, 5)
    .map(([k, x]) => `${k}=${typeof x === 'string' && x.length > 24 ? shortId(x) : x}`)
    .join(' ');
  return `${type || kind || ''} ${detail}`.trim();
}

function addEvent(name, data) {
  let v;
  try { v = JSON.parse(data); } catch { v = data; }
  for (const h of panelHandlers.get(name) || []) {
    try { h(v); } catch (e) { console.error(`the ${name} panel failed on an event`, e); }
  }
  if (name === 'net' && v && /^peer_/.test(v.type || '')) scheduleRefresh();
  // The narration panel shows these, many a second in a demo.
  if (name === 'narration') {
    if (!narration) showNarration().catch(fail);
    return;
  }
  // Progress reports come every second per transfer: their panel shows them.
  if (v && (v.kind === 'progress' || v.type === 'progress')) return;
  const li = document.createElement('li');
  const svc = document.createElement('span');
  svc.className = 'svc';
  svc.textContent = name;
  li.append(svc, describe(v));
  const list = $('events');
  list.prepend(li);
  while (list.children.length > EVENTS_KEPT) list.lastChild.remove();
}

// ---- the services' panels (each service contributes its own, see nodus_service::Panel) ----

/** An element with attributes (`on...` are listeners, `style` an object) and children. */
function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'class') e.className = v;
    // Through the CSSOM: the page's content security policy refuses style attributes.
    else if (k === 'style') Object.assign(e.style, v);
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  e.append(...children);
  return e;
}

const panelHandlers = new Map();
const panelTimers = [];
let panelsMounted = false;

function panelContext(service) {
  return {
    api,
    el,
    shortId,
    fitCanvas,
    on: (handler) => {
      if (!panelHandlers.has(service)) panelHandlers.set(service, []);
      panelHandlers.get(service).push(handler);
    },
    confirm: (question) => window.confirm(question),
    // A panel's polling, stopped at logout (a login mounts the panels again).
    every: (ms, refresh) => {
      panelTimers.push(setInterval(() => { refresh().catch(() => {}); }, ms));
    },
  };
}

// ---- the narration: what drives this node's network says it does (nodus demo's steps) ----

let narration = null;
/** Mounts the narration panel once there is something narrated, or reloads it (after a reconnect). */
function showNarration() {
  if (!narration) narration = mountNarration();
  else narration = narration.then(async (panel) => {
    if (panel) panel.load(await api('/api/v1/narration'));
    return panel;
  });
  return narration;
}

async function mountNarration() {
  const view = await api('/api/v1/narration');
  if (!view.steps.length && !view.nodes.length) {
    narration = null;
    return null;
  }
  const mod = await import('/ui/narration.js');
  // Logged out while this was on its way: nothing of it is shown.
  if (!sessionStorage.getItem(TOKEN)) return null;
  const section = el('section', { id: 'narration', class: 'panel wide', 'aria-labelledby': 'narration-title' });
  $('dash').prepend(section);
  const panel = mod.default(section, panelContext('narration'), view);
  section.dataset.mounted = 'true';
  return panel;
}

async function mountPanels() {
  if (panelsMounted) return;
  panelsMounted = true;
  const { panels } = await api('/api/v1/ui/panels');
  for (const p of panels) {
    const body = document.createElement('div');
    body.className = 'panel-body';
    const h = document.createElement('h2');
    h.id = `${p.service}-title`;
    h.textContent = p.title;
    const section = document.createElement('section');
    section.className = 'panel wide';
    section.id = `panel-${p.service}`;
    section.setAttribute('aria-labelledby', h.id);
    section.append(h, body);
    $('dash').append(section);
    const ctx = panelContext(p.service);
    try {
      const mod = await import(p.script);
      await mod.default(body, ctx);
      section.dataset.mounted = 'true';
    } catch (e) {
      body.textContent = `This panel failed to load: ${e.message}`;
      console.error(`the ${p.service} panel failed`, e);
    }
  }
}

let refreshTimer = null;
function scheduleRefresh() {
  if (refreshTimer) return;
  refreshTimer = setTimeout(() => {
    refreshTimer = null;
    refreshNetwork().catch(fail);
  }, 200);
}

/** The node's event stream (Server-Sent Events), read with fetch so the token goes in a header. */
let following = false;
async function follow() {
  if (following) return;
  following = true;
  try { await followLoop(); } finally { following = false; }
}

async function followLoop() {
  for (;;) {
    try {
      const r = await fetch('/api/v1/events', {
        headers: { Authorization: 'Bearer ' + sessionStorage.getItem(TOKEN) },
        cache: 'no-store',
      });
      if (r.status === 401) throw new Unauthorized('the node refused the token');
      const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
      let buf = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        // Logged out meanwhile: this stream was opened with the old token.
        if (!sessionStorage.getItem(TOKEN)) { reader.cancel(); return; }
        buf += value;
        let end;
        while ((end = buf.indexOf('\n\n')) >= 0) {
          const block = buf.slice(0, end);
          buf = buf.slice(end + 2);
          let name = 'message', data = '';
          for (const line of block.split('\n')) {
            if (line.startsWith('event:')) name = line.slice(6).trim();
            else if (line.startsWith('data:')) data += line.slice(5).trimStart();
          }
          if (name === 'ready') {
            setLive(true, 'live');
            document.body.dataset.state = 'live';
            refreshNetwork().catch(fail);
            showNarration().catch(fail);
          } else if (data) {
            addEvent(name, data);
          }
        }
      }
    } catch (e) {
      if (e instanceof Unauthorized) return fail(e);
    }
    setLive(false, 'reconnecting');
    await new Promise((r) => setTimeout(r, 2000));
  }
}

function fail(e) {
  if (e instanceof Unauthorized) showLogin(e.message);
  else setLive(false, 'node unreachable');
}

let polling = null;
async function start() {
  $('login').hidden = true;
  try {
    await refreshNetwork();
  } catch (e) {
    return fail(e);
  }
  $('dash').hidden = false;
  renderNetwork();
  follow();
  mountPanels().catch(fail);
  if (!polling) {
    polling = setInterval(() => {
      if (document.body.dataset.state !== 'login') refreshNetwork().catch(fail);
    }, 5000);
    new ResizeObserver(drawPeers).observe($('peer-map'));
  }
}

$('login-form').addEventListener('submit', (e) => {
  e.preventDefault();
  sessionStorage.setItem(TOKEN, $('token').value.trim());
  $('token').value = '';
  start();
});

// A login link opened in a tab that already shows the page changes only the fragment.
window.addEventListener('hashchange', () => {
  if (/token=/.test(location.hash) && takeToken()) start();
});

if (takeToken()) start();
else showLogin('No token yet.');
