// The social service's panel of the dashboard: this node's Nostr identity and relay,
// the feed as it replicates (notes of the people followed, and one's own), posting, and
// following by npub or hex key.

export default function mount(root, ctx) {
  const { el } = ctx;
  const me = el('p', { class: 'mono hint' });
  const feed = el('ol', { class: 'feed', 'aria-live': 'polite' });
  const note = el('p', { class: 'hint', role: 'status' });
  const content = el('input', { id: 'social-content', type: 'text', placeholder: 'a note', 'aria-label': 'note', autocomplete: 'off' });
  const post = el('form', { class: 'add', onsubmit: async (e) => {
    e.preventDefault();
    if (!content.value.trim()) return;
    try {
      await ctx.api('/api/v1/social/post', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ content: content.value }) });
      content.value = '';
      refresh();
    } catch (err) {
      note.textContent = err.message;
    }
  } }, content, el('button', { type: 'submit' }, 'Post'));
  const who = el('input', { id: 'social-follow', type: 'text', placeholder: 'npub1… or hex key', 'aria-label': 'key to follow', autocomplete: 'off' });
  const follow = el('form', { class: 'add', onsubmit: async (e) => {
    e.preventDefault();
    try {
      const r = await ctx.api('/api/v1/social/follow', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ pubkey: who.value.trim() }) });
      note.textContent = r.changed ? 'following' : 'already following';
      who.value = '';
      refresh();
    } catch (err) {
      note.textContent = err.message;
    }
  } }, who, el('button', { type: 'submit' }, 'Follow'));
  root.append(me, post, feed, follow, note);

  let self = '';
  let busy = false;
  async function refresh() {
    if (busy) return;
    busy = true;
    try {
      const [s, notes] = await Promise.all([ctx.api('/api/v1/social'), ctx.api('/api/v1/social/feed?limit=50')]);
      self = s.pubkey;
      me.textContent = `${s.npub} · relay ${s.relay} · following ${s.follows} · ${s.stored} events stored`;
      notes.sort((a, b) => b.created_at - a.created_at);
      feed.replaceChildren(...notes.map((n) => el('li', { 'data-id': n.id, 'data-author': n.pubkey },
        el('span', { class: 'who mono', title: n.pubkey }, n.pubkey === self ? 'me' : ctx.shortId(n.pubkey)),
        el('span', { class: 'text' }, n.content),
        el('time', { class: 'hint', datetime: new Date(n.created_at * 1000).toISOString() }, new Date(n.created_at * 1000).toLocaleTimeString()))));
      if (!notes.length) feed.replaceChildren(el('li', { class: 'hint' }, 'No notes yet.'));
    } finally {
      busy = false;
    }
  }

  ctx.on(() => refresh().catch(() => {}));
  ctx.every(3000, refresh);
  return refresh();
}
