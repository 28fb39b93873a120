// The vault's panel of the dashboard: the patient's records, who holds a grant to which
// of them and until when (revoking asks first), and the audit log as it grows, with its
// anchoring on the chain.

function when(ms) {
  return ms == null ? 'no end' : new Date(ms).toLocaleString();
}

export default function mount(root, ctx) {
  const { el } = ctx;
  const stats = el('dl', { class: 'stats' });
  const grants = el('tbody');
  const log = el('tbody');
  const note = el('p', { class: 'hint', role: 'status' });
  const head = (names) => el('thead', {}, el('tr', {}, ...names.map((h) => el('th', { scope: 'col' }, h))));
  root.append(
    stats,
    el('h3', {}, 'Grants'),
    el('div', { class: 'table-wrap' }, el('table', { class: 'grants' }, head(['provider', 'record types', 'until', 'records', '']), grants)),
    el('h3', {}, 'Audit log, newest first'),
    el('div', { class: 'table-wrap' }, el('table', { class: 'audit' }, head(['#', 'recorded', 'action', 'who', 'outcome', 'detail']), log)),
    note);

  function stat(name, value) {
    return el('div', {}, el('dt', {}, name), el('dd', {}, String(value)));
  }

  let busy = false;
  let again = false;
  async function refresh() {
    if (busy) { again = true; return; }
    busy = true;
    try {
      const s = await ctx.api('/api/v1/vault');
      const [list, entries] = await Promise.all([
        ctx.api('/api/v1/vault/grants'),
        ctx.api(`/api/v1/vault/log?from=${Math.max(0, s.log_entries - 50)}&limit=50`),
      ]);
      const a = s.anchor || {};
      stats.replaceChildren(
        stat('records', s.records),
        stat('grants', s.grants),
        stat('log entries', s.log_entries),
        stat('anchored', a.anchored_block != null ? `entry ${a.anchored_entry} in block ${a.anchored_block}` : 'not yet'),
      );
      grants.replaceChildren(...list.map((g) => el('tr', { 'data-provider': g.provider, class: g.expired ? 'expired' : '' },
        el('td', { class: 'mono', title: g.provider }, ctx.shortId(g.provider)),
        el('td', {}, g.types.length ? g.types.join(', ') : 'all'),
        el('td', {}, g.expired ? `expired ${when(g.until_ms)}` : when(g.until_ms)),
        el('td', {}, String(g.records)),
        el('td', {}, el('button', { type: 'button', class: 'remove revoke', onclick: async () => {
          if (!ctx.confirm(`Revoke ${ctx.shortId(g.provider)}'s grant? What it covered is sealed again under new keys.`)) return;
          try {
            const r = await ctx.api(`/api/v1/vault/grants/${encodeURIComponent(g.provider)}`, { method: 'DELETE' });
            note.textContent = `revoked; ${r.rotated} records sealed again`;
          } catch (e) {
            note.textContent = e.message;
          }
          refresh();
        } }, 'Revoke')))));
      if (!list.length) grants.replaceChildren(el('tr', {}, el('td', { colspan: '5', class: 'hint' }, 'Nobody holds a grant.')));
      log.replaceChildren(...entries.slice().reverse().map((e) => el('tr', { 'data-action': (e.subtype && e.subtype[0] && e.subtype[0].code) || '' },
        el('td', {}, String(e.id)),
        el('td', {}, e.recorded || ''),
        el('td', {}, (e.subtype && e.subtype[0] && e.subtype[0].code) || ''),
        el('td', { class: 'mono' }, ctx.shortId(((((e.agent || [])[0] || {}).who || {}).identifier || {}).value || '')),
        el('td', {}, e.outcome === '0' ? 'ok' : 'refused'),
        el('td', {}, e.outcomeDesc || ''))));
    } finally {
      busy = false;
      if (again) { again = false; refresh().catch(() => {}); }
    }
  }

  ctx.every(2000, refresh);
  return refresh();
}
