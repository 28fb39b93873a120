// The chain service's panel of the dashboard: the newest blocks chained left to right,
// the branches reorgs dropped beside them, the node's figures, and mining on or off.

const SHOWN = 12;

export default function mount(root, ctx) {
  const { el } = ctx;
  const stats = el('dl', { class: 'stats' });
  const mine = el('button', { type: 'button', class: 'mine', onclick: async () => {
    const on = mine.dataset.mining !== 'true';
    mine.disabled = true;
    try {
      await ctx.api('/api/v1/chain/mine', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ enabled: on }) });
    } catch (e) {
      note.textContent = e.message;
    } finally {
      mine.disabled = false;
      refresh();
    }
  } }, 'Start mining');
  const blocks = el('ol', { class: 'blocks', 'aria-label': 'newest blocks, oldest first' });
  const forks = el('ul', { class: 'forks', 'aria-label': 'branches dropped by reorgs' });
  const note = el('p', { class: 'hint', role: 'status' });
  root.append(stats, el('div', { class: 'actions' }, mine), blocks, forks, note);

  // Reorgs seen while the page is open: the head that lost, and how deep.
  const reorgs = [];

  function stat(name, value) {
    return el('div', {}, el('dt', {}, name), el('dd', {}, String(value)));
  }

  let busy = false;
  let again = false;
  async function refresh() {
    if (busy) { again = true; return; }
    busy = true;
    try {
      const s = await ctx.api('/api/v1/chain');
      stats.replaceChildren(
        stat('height', s.height),
        stat('difficulty', s.difficulty),
        stat('hash rate', `${s.hash_rate} H/s`),
        stat('mempool', s.mempool),
        stat('chain peers', s.peers),
      );
      stats.dataset.height = s.height;
      mine.dataset.mining = s.mining.enabled;
      mine.textContent = s.mining.enabled ? 'Stop mining' : 'Start mining';
      const from = Math.max(0, s.height - SHOWN + 1);
      const got = await Promise.all(
        Array.from({ length: s.height - from + 1 }, (_, i) => ctx.api(`/api/v1/chain/blocks/${from + i}`).catch(() => null)),
      );
      blocks.replaceChildren(...got.filter(Boolean).map((b) => {
        const n = parseInt(b.number, 16);
        return el('li', { class: 'block', 'data-number': n, title: b.hash },
          el('strong', {}, `#${n}`),
          el('span', { class: 'mono' }, ctx.shortId(b.hash)),
          el('span', {}, `${b.transactions.length} tx`),
          el('span', { class: 'mono hint' }, `by ${ctx.shortId(b.miner)}`));
      }));
      forks.replaceChildren(...reorgs.slice(-5).map((r) => el('li', { class: 'fork' },
        `reorg: ${r.depth} block${r.depth === 1 ? '' : 's'} ending ${ctx.shortId(r.old_head)} dropped for ${ctx.shortId(r.new_head)}`
        + (r.returned_txs ? `, ${r.returned_txs} transactions back to the mempool` : ''))));
    } finally {
      busy = false;
      if (again) { again = false; refresh().catch(() => {}); }
    }
  }

  ctx.on((ev) => {
    if (ev.kind === 'reorg') reorgs.push(ev);
    if (ev.kind === 'new_head' || ev.kind === 'reorg' || ev.kind === 'synced') refresh().catch(() => {});
  });
  ctx.every(5000, refresh);
  return refresh();
}
