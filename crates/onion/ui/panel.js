// The onion service's panel of the dashboard: each circuit drawn as you → guard →
// middle → exit (or → onion service), with the layers of encryption a cell still has
// on each stretch, its age and bytes; the relay's role, with a switch.

function bytes(n) {
  if (n >= 1e9) return (n / 1e9).toFixed(2) + ' GB';
  if (n >= 1e6) return (n / 1e6).toFixed(1) + ' MB';
  if (n >= 1e3) return (n / 1e3).toFixed(0) + ' kB';
  return n + ' B';
}

export default function mount(root, ctx) {
  const { el } = ctx;
  const stats = el('dl', { class: 'stats' });
  const relay = el('button', { type: 'button', class: 'relay', onclick: async () => {
    const on = relay.dataset.on !== 'true';
    relay.disabled = true;
    try {
      await ctx.api('/api/v1/onion/relay', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ on }) });
    } catch (e) {
      note.textContent = e.message;
    } finally {
      relay.disabled = false;
      refresh();
    }
  } }, 'Relay for others');
  const circuits = el('ol', { class: 'circuits', 'aria-label': 'circuits' });
  const note = el('p', { class: 'hint', role: 'status' });
  root.append(stats, el('div', { class: 'actions' }, relay), circuits, note);

  function stat(name, value) {
    return el('div', {}, el('dt', {}, name), el('dd', {}, String(value)));
  }

  function drawCircuit(c) {
    const hops = c.hops.length;
    const parts = [el('span', { class: 'hop me' }, 'you')];
    c.hops.forEach((h, i) => {
      // Between the client and hop i, a cell still has the layers of hops i.. on it.
      const n = hops - i;
      const layers = Array.from({ length: n }, () => el('i', { class: 'layer' }));
      parts.push(el('span', { class: 'link', 'data-layers': n, title: `${n} layer${n === 1 ? '' : 's'} of encryption on this stretch` }, ...layers, ' →'));
      const role = i === 0 ? 'guard' : i === hops - 1 ? (c.service ? 'rendezvous' : 'exit') : 'middle';
      parts.push(el('span', { class: 'hop', title: h, 'data-peer': h }, el('small', {}, role), ' ', ctx.shortId(h)));
    });
    parts.push(el('span', { class: 'link', 'data-layers': 0, title: 'plain from here on, as for any connection' }, '→'));
    parts.push(el('span', { class: 'hop dest' }, c.service ? `${ctx.shortId(c.service)} (onion service)` : c.peer ? `mailbox ${ctx.shortId(c.peer)}` : 'the Internet'));
    return el('li', { class: 'circuit' },
      el('div', { class: 'path' }, ...parts),
      el('p', { class: 'hint mono' },
        `${c.age_secs} s old · ↑ ${bytes(c.sent_bytes)} ↓ ${bytes(c.received_bytes)}`
        + (c.window && c.window.rtt_us ? ` · window ${c.window.window} cells, round trip ${(c.window.rtt_us / 1000).toFixed(1)} ms` : '')
        + (c.isolated ? ' · isolated by SOCKS credentials' : '')));
  }

  let busy = false;
  async function refresh() {
    if (busy) return;
    busy = true;
    try {
      const s = await ctx.api('/api/v1/onion');
      stats.replaceChildren(
        stat('relays known', s.relays_known),
        stat('exits', s.exits_known),
        stat('circuits', s.circuits.length),
        stat('SOCKS5', s.socks),
        stat('this node', s.relay ? (s.exit ? 'relay and exit' : 'relay') : 'client'),
      );
      relay.dataset.on = s.relay;
      relay.textContent = s.relay ? 'Stop relaying' : 'Relay for others';
      circuits.replaceChildren(...s.circuits.map(drawCircuit));
      if (!s.circuits.length) circuits.replaceChildren(el('li', { class: 'hint' }, `No circuits yet: point a program at socks5h://${s.socks}.`));
    } finally {
      busy = false;
    }
  }

  ctx.every(2000, refresh);
  return refresh();
}
