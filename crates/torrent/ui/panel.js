// The torrent service's panel of the dashboard: each torrent with its rates and a piece
// map coloured by the peer each piece came from, and the actions a client has (add a
// magnet link or .torrent file, pause, resume, remove).

const COLOURS = ['#7fd1b9', '#ffb86b', '#9fa8ff', '#ff7ab6', '#c3e88d', '#82aaff', '#f78c6c', '#89ddff'];
const MISSING = '#2b3a42';
const HAD = '#a9bcb5';

function rate(b) {
  if (b >= 1e6) return (b / 1e6).toFixed(1) + ' MB/s';
  if (b >= 1e3) return (b / 1e3).toFixed(0) + ' kB/s';
  return b + ' B/s';
}

/** Draws a piece map: a grid of cells, one per piece, in one canvas (10,000 pieces at once). */
export function drawMap(canvas, pm) {
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth;
  const n = Math.max(1, pm.pieces);
  const cell = Math.max(2, Math.min(12, Math.floor(Math.sqrt((w * 60) / n))));
  const cols = Math.max(1, Math.floor(w / cell));
  const h = Math.ceil(n / cols) * cell;
  canvas.style.height = h + 'px';
  canvas.width = Math.round(w * dpr);
  canvas.height = Math.round(h * dpr);
  const g = canvas.getContext('2d');
  g.setTransform(dpr, 0, 0, dpr, 0, 0);
  let filled = 0;
  for (let i = 0; i < pm.pieces; i++) {
    const v = pm.map[i];
    if (v) filled++;
    g.fillStyle = v === 0 ? MISSING : v === 1 ? HAD : COLOURS[(v - 2) % COLOURS.length];
    g.fillRect((i % cols) * cell, Math.floor(i / cols) * cell, cell - (cell > 3 ? 1 : 0), cell - (cell > 3 ? 1 : 0));
  }
  canvas.dataset.filled = filled;
  canvas.dataset.pieces = pm.pieces;
  canvas.setAttribute('aria-label', `piece map: ${filled} of ${pm.pieces} pieces here`);
}

export default function mount(root, ctx) {
  const { el } = ctx;
  const list = el('div', { class: 'torrents' });
  const source = el('input', { id: 'torrent-source', type: 'text', placeholder: 'magnet:?xt=urn:btih:… or an infohash', 'aria-label': 'magnet link or infohash' });
  const file = el('input', { id: 'torrent-file', type: 'file', accept: '.torrent,application/x-bittorrent', 'aria-label': '.torrent file' });
  const note = el('p', { class: 'hint', role: 'status' });
  const form = el('form', { class: 'add', onsubmit: async (e) => {
    e.preventDefault();
    try {
      const body = {};
      if (file.files.length) {
        const bytes = new Uint8Array(await file.files[0].arrayBuffer());
        let bin = '';
        for (const b of bytes) bin += String.fromCharCode(b);
        body.torrent_base64 = btoa(bin);
      } else {
        body.source = source.value.trim();
      }
      const t = await ctx.api('/api/v1/torrent', { method: 'POST', body: JSON.stringify(body), headers: { 'Content-Type': 'application/json' } });
      note.textContent = `added ${t.name || t.id}`;
      source.value = '';
      file.value = '';
      refresh();
    } catch (err) {
      note.textContent = String(err.message || err);
    }
  } }, source, file, el('button', { type: 'submit' }, 'Add'));
  root.append(form, note, list);

  const cards = new Map();

  function card(t) {
    let c = cards.get(t.id);
    if (c) return c;
    const title = el('h3', {}, '');
    const stats = el('p', { class: 'stats-line mono' });
    const map = el('canvas', { class: 'piece-map', role: 'img', 'data-id': t.id });
    const legend = el('p', { class: 'legend' });
    const pause = el('button', { type: 'button', class: 'pause', onclick: async () => {
      const paused = pause.dataset.paused === 'true';
      await ctx.api(`/api/v1/torrent/${t.id}/${paused ? 'resume' : 'pause'}`, { method: 'POST' }).catch((e) => { note.textContent = e.message; });
      refresh();
    } }, 'Pause');
    const remove = el('button', { type: 'button', class: 'remove', onclick: async () => {
      if (!ctx.confirm(`Remove ${title.textContent} from this node? Its files stay on disk.`)) return;
      await ctx.api(`/api/v1/torrent/${t.id}`, { method: 'DELETE' }).catch((e) => { note.textContent = e.message; });
      refresh();
    } }, 'Remove');
    const node = el('article', { class: 'torrent', 'data-id': t.id }, title, stats, map, legend, el('div', { class: 'actions' }, pause, remove));
    c = { node, title, stats, map, legend, pause };
    cards.set(t.id, c);
    list.append(node);
    return c;
  }

  // One refresh at a time; one asked for meanwhile runs after it (so what an action
  // changed shows at once).
  let busy = false;
  let again = false;
  async function refresh() {
    if (busy) { again = true; return; }
    busy = true;
    try {
      const all = await ctx.api('/api/v1/torrent');
      const seen = new Set();
      for (const t of all) {
        seen.add(t.id);
        const c = card(t);
        c.title.textContent = t.name || t.id;
        c.node.dataset.state = t.state;
        c.stats.textContent = `${t.state} · ${(100 * t.progress).toFixed(1)}% · ${t.pieces_have}/${t.pieces_total} pieces · ↓ ${rate(t.download_rate)} ↑ ${rate(t.upload_rate)} · ${t.peers.length} peers`;
        c.pause.dataset.paused = t.state === 'paused';
        c.pause.textContent = t.state === 'paused' ? 'Resume' : 'Pause';
        const pm = await ctx.api(`/api/v1/torrent/${t.id}/pieces`);
        drawMap(c.map, pm);
        c.legend.replaceChildren(
          ...pm.sources.map((s, k) => el('span', { class: 'src' }, el('span', { class: 'swatch', style: { background: COLOURS[k % COLOURS.length] } }), s)),
          el('span', { class: 'src' }, el('span', { class: 'swatch', style: { background: HAD } }), 'here before'),
        );
      }
      for (const [id, c] of cards) {
        if (!seen.has(id)) { c.node.remove(); cards.delete(id); }
      }
      if (!all.length) list.replaceChildren(el('p', { class: 'hint' }, 'No torrents yet: add a magnet link, or run `nodus torrent share <path>`.'));
      else list.querySelector(':scope > p.hint')?.remove();
    } finally {
      busy = false;
      if (again) { again = false; refresh().catch(() => {}); }
    }
  }

  ctx.on(() => refresh().catch(() => {}));
  ctx.every(1000, refresh);
  return refresh();
}
