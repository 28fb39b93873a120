// The content gateway's panel of the dashboard: where the gateway listens, a form that
// opens any torrent's file for streaming (a magnet link or infohash, or a .torrent file)
// and gives its player and file links, and the torrents the gateway keeps as its cache,
// least recently watched first. The links open on the gateway's own port.

export default function mount(root, ctx) {
  const { el } = ctx;
  const where = el('p', { class: 'stats-line mono' });
  const opened = el('ul', { class: 'opened', 'aria-label': 'opened for streaming' });
  const cached = el('ul', { class: 'cached', 'aria-label': 'the gateway\'s cache' });
  const note = el('p', { class: 'hint', role: 'status' });
  let base = '';

  const source = el('input', { id: 'gateway-source', type: 'text', placeholder: 'magnet link or infohash', 'aria-label': 'magnet link or infohash', autocomplete: 'off' });
  const file = el('input', { id: 'gateway-torrent', type: 'file', accept: '.torrent,application/x-bittorrent', 'aria-label': 'or a .torrent file' });
  const number = el('input', { id: 'gateway-file', type: 'number', min: '1', placeholder: 'file', 'aria-label': 'file number (by default the largest)' });
  const form = el('form', { class: 'add', onsubmit: async (e) => {
    e.preventDefault();
    const body = {};
    if (file.files.length) {
      const bytes = new Uint8Array(await file.files[0].arrayBuffer());
      body.torrent_base64 = btoa(Array.from(bytes, (b) => String.fromCharCode(b)).join(''));
    } else if (source.value.trim()) {
      body.source = source.value.trim();
    } else {
      note.textContent = 'Give a magnet link, an infohash or a .torrent file.';
      return;
    }
    if (number.value) body.file = Number(number.value);
    note.textContent = 'opening…';
    try {
      const o = await ctx.api('/api/v1/gateway/open', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
      note.textContent = '';
      source.value = '';
      file.value = '';
      const play = `${base}/play/${o.id}/${o.path.split('/').map(encodeURIComponent).join('/')}`;
      opened.prepend(el('li', { 'data-id': o.id, 'data-url': o.url },
        el('span', { class: 'mono' }, o.path), ' ',
        el('a', { href: play, target: '_blank', rel: 'noopener noreferrer', class: 'play' }, 'play'), ' ',
        el('a', { href: o.url, target: '_blank', rel: 'noopener noreferrer', class: 'file' }, 'file'), ' ',
        el('a', { href: `${base}/content/${o.id}/`, target: '_blank', rel: 'noopener noreferrer' }, 'all files')));
      refresh();
    } catch (err) {
      note.textContent = err.message;
    }
  } }, source, file, number, el('button', { type: 'submit' }, 'Open for streaming'));

  root.append(where, form, note, el('h3', {}, 'Opened'), opened, el('h3', {}, 'Cache (least recently watched first)'), cached);

  async function refresh() {
    const s = await ctx.api('/api/v1/gateway');
    base = s.url;
    where.replaceChildren('gateway at ', el('a', { href: s.url, target: '_blank', rel: 'noopener noreferrer' }, s.url));
    cached.replaceChildren(...s.cached.map((id) => el('li', { 'data-id': id },
      el('a', { href: `${base}/content/${id}/`, target: '_blank', rel: 'noopener noreferrer', class: 'mono' }, ctx.shortId(id)))));
    if (!s.cached.length) cached.replaceChildren(el('li', { class: 'hint' }, 'nothing cached'));
  }
  ctx.every(10000, refresh);
  return refresh();
}
