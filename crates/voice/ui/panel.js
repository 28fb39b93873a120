// The voice service's panel of the dashboard: calls ringing or on, with their route and
// how the media is doing (received, lost, jitter), hang up or reject (asked first); the
// history with each call's outcome and quality; the voice relay's figures.

function secs(ms) {
  const s = Math.round(ms / 1000);
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`;
}

function quality(q) {
  if (!q) return '';
  const got = q.received + q.lost;
  const loss = got ? (100 * q.lost) / got : 0;
  return `${q.received} frames in, ${loss.toFixed(1)}% lost, jitter ${q.jitter_ms.toFixed(1)} ms, longest gap ${q.longest_gap_ms} ms`;
}

export default function mount(root, ctx) {
  const { el } = ctx;
  const live = el('ul', { class: 'calls', 'aria-live': 'polite' });
  const past = el('tbody');
  const relay = el('p', { class: 'hint' });
  const note = el('p', { class: 'hint', role: 'status' });
  root.append(
    el('h3', {}, 'Calls'), live,
    el('h3', {}, 'History'),
    el('div', { class: 'table-wrap' }, el('table', { class: 'history' },
      el('thead', {}, el('tr', {}, ...['with', 'direction', 'outcome', 'duration', 'quality'].map((h) => el('th', { scope: 'col' }, h)))), past)),
    relay, note);

  async function act(what, call, question) {
    if (!ctx.confirm(question)) return;
    try {
      await ctx.api(`/api/v1/voice/${what}`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ call }) });
    } catch (e) {
      note.textContent = e.message;
    }
    refresh();
  }

  let busy = false;
  let again = false;
  async function refresh() {
    if (busy) { again = true; return; }
    busy = true;
    try {
      const [s, history] = await Promise.all([ctx.api('/api/v1/voice'), ctx.api('/api/v1/voice/history?limit=20')]);
      live.replaceChildren(...s.calls.map((c) => {
        const ringing = c.state === 'ringing' && c.direction === 'incoming';
        const buttons = ringing
          ? [el('button', { type: 'button', class: 'remove reject', onclick: () => act('reject', c.id, `Reject ${c.name}'s call?`) }, 'Reject')]
          : [el('button', { type: 'button', class: 'remove hangup', onclick: () => act('hangup', c.id, `Hang up on ${c.name}?`) }, 'Hang up')];
        return el('li', { class: 'call', 'data-id': c.id, 'data-state': c.state },
          el('strong', {}, c.name), ` ${c.direction} · ${c.state}`,
          c.answered_ms ? ` · ${secs(Date.now() - c.answered_ms)}` : '',
          c.route ? el('span', { class: 'mono hint' }, ` · ${c.route}`) : '',
          el('div', { class: 'hint' }, quality(c.quality)),
          el('div', { class: 'actions' }, ...buttons));
      }));
      if (!s.calls.length) live.replaceChildren(el('li', { class: 'hint' }, 'No call now: `nodus call <contact>` places one.'));
      past.replaceChildren(...history.filter((c) => c.state === 'ended').map((c) => el('tr', { 'data-id': c.id, 'data-outcome': c.outcome || '' },
        el('td', {}, c.name), el('td', {}, c.direction), el('td', {}, c.outcome || ''),
        el('td', {}, secs(c.duration_ms)), el('td', {}, quality(c.quality)))));
      const r = s.relay;
      relay.textContent = r.enabled
        ? `voice relay at ${r.addr}: ${r.calls} calls, ${r.forwarded} packets forwarded, ${r.garbage} garbage dropped`
        : 'voice relay off';
    } finally {
      busy = false;
      if (again) { again = false; refresh().catch(() => {}); }
    }
  }

  ctx.on(() => refresh().catch(() => {}));
  ctx.every(1000, refresh);
  return refresh();
}
