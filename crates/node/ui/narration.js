// The narration panel: what the program driving this node's network says it is doing
// (`nodus demo`'s steps, one by one), the network's nodes (running or stopped), and
// what each node does meanwhile, drawn as it happens. Fed by GET /api/v1/narration and
// the event stream's `narration` events.

const ACTIVITY_SHOWN = 150;
const FLASH_MS = 1600;
const STATE_TEXT = { running: 'running', ok: 'ok', failed: 'FAILED' };

function hue(name) {
  let h = 0;
  for (const c of name) h = (h * 31 + c.charCodeAt(0)) % 360;
  return h;
}

export default function mount(root, ctx, view) {
  const { el } = ctx;
  const steps = [];
  const nodes = new Map();
  // Recent activities, for the map's flashes and lines.
  let flashes = [];
  let animating = false;

  const title = el('h2', { id: 'narration-title' }, 'Narration');
  const summary = el('p', { id: 'narration-summary', class: 'stats-line', role: 'status', 'aria-live': 'polite' });
  const list = el('ol', { id: 'narration-steps', class: 'steps', 'aria-label': 'steps' });
  const map = el('canvas', { id: 'narration-map', role: 'img', 'aria-label': 'the network\'s nodes' });
  const legend = el('p', { class: 'hint' }, 'each node flashes when it does something, in the colour of the service; a line joins it to the nodes its event names; grey: stopped');
  const activity = el('ol', { id: 'narration-activity', class: 'activity', 'aria-label': 'what the nodes do' });
  root.append(title, summary, el('div', { class: 'narration-grid' }, list, el('div', {}, map, legend, activity)));

  function renderSummary() {
    const ok = steps.filter((s) => s && s.state === 'ok').length;
    const failed = steps.filter((s) => s && s.state === 'failed').length;
    const running = steps.find((s) => s && s.state === 'running');
    const up = [...nodes.values()].filter((n) => n.running).length;
    root.dataset.stepsOk = ok;
    root.dataset.stepsFailed = failed;
    summary.textContent = (running ? `step ${running.index + 1} running: ${running.what} · ` : '')
      + `${ok} ok, ${failed} failed · ${up} of ${nodes.size} nodes running`;
  }

  function stepItem(s) {
    return el('li', { 'data-index': s.index, 'data-state': s.state, class: `step step-${s.state}` },
      el('span', { class: `state state-${s.state === 'ok' ? 'delivered' : s.state}` }, STATE_TEXT[s.state] || s.state),
      ' ', el('span', { class: 'what' }, s.what),
      s.figure ? el('small', { class: 'figure' }, s.figure) : '',
      s.elapsed_ms != null ? el('small', { class: 'hint' }, ` ${(s.elapsed_ms / 1000).toFixed(1)} s`) : '');
  }

  function setStep(s) {
    steps[s.index] = s;
    const li = stepItem(s);
    const old = list.querySelector(`li[data-index="${s.index}"]`);
    if (old) old.replaceWith(li);
    else list.append(li);
    if (s.state === 'running') li.scrollIntoView({ block: 'nearest' });
    renderSummary();
  }

  function addActivity(a, draw = true) {
    const li = el('li', { 'data-node': a.node, 'data-service': a.service },
      el('span', { class: 'svc', style: { color: `hsl(${hue(a.service)}, 70%, 70%)` } }, `node ${a.node} · ${a.service}`),
      ` ${a.kind} `, el('span', { class: 'hint' }, a.detail));
    activity.prepend(li);
    while (activity.children.length > ACTIVITY_SHOWN) activity.lastChild.remove();
    if (draw) {
      flashes.push({ ...a, seen: performance.now() });
      animate();
    }
  }

  function positions(w, h) {
    const sorted = [...nodes.values()].sort((a, b) => a.index - b.index);
    const cx = w / 2, cy = h / 2, r = Math.min(w, h) / 2 - 28;
    const at = new Map();
    sorted.forEach((n, i) => {
      const a = -Math.PI / 2 + (2 * Math.PI * i) / Math.max(1, sorted.length);
      at.set(n.index, { x: cx + r * Math.cos(a), y: cy + r * Math.sin(a), n });
    });
    return at;
  }

  function draw() {
    if (!map.clientWidth || !map.clientHeight) return;
    const { g, w, h } = ctx.fitCanvas(map);
    const at = positions(w, h);
    const now = performance.now();
    flashes = flashes.filter((f) => now - f.seen < FLASH_MS);
    const glow = new Map();
    for (const f of flashes) {
      const from = at.get(f.node);
      if (!from) continue;
      const fade = 1 - (now - f.seen) / FLASH_MS;
      const colour = `hsla(${hue(f.service)}, 70%, 65%, ${fade})`;
      glow.set(f.node, colour);
      g.strokeStyle = colour;
      g.lineWidth = 2;
      for (const other of f.with) {
        const to = at.get(other);
        if (!to) continue;
        g.beginPath(); g.moveTo(from.x, from.y); g.lineTo(to.x, to.y); g.stroke();
      }
    }
    g.lineWidth = 1;
    const dot = at.size > 40 ? 5 : 11;
    for (const [index, { x, y, n }] of at) {
      if (glow.has(index)) {
        g.fillStyle = glow.get(index);
        g.beginPath(); g.arc(x, y, dot + 7, 0, 2 * Math.PI); g.fill();
      }
      g.fillStyle = n.running ? '#e8f1ee' : '#4a5a60';
      g.beginPath(); g.arc(x, y, dot, 0, 2 * Math.PI); g.fill();
      if (!n.running) {
        g.strokeStyle = '#ff7a7a';
        g.beginPath(); g.moveTo(x - dot, y - dot); g.lineTo(x + dot, y + dot);
        g.moveTo(x + dot, y - dot); g.lineTo(x - dot, y + dot); g.stroke();
      }
      if (at.size <= 40) {
        g.fillStyle = '#0f1417';
        g.font = 'bold 11px ui-monospace, monospace';
        g.textAlign = 'center';
        g.fillText(String(index), x, y + 4);
      }
    }
    map.setAttribute('aria-label', `the network's ${at.size} nodes, ${[...at.values()].filter((p) => p.n.running).length} running`);
  }

  function animate() {
    if (animating) return;
    animating = true;
    const frame = () => {
      draw();
      if (flashes.length) requestAnimationFrame(frame);
      else animating = false;
    };
    requestAnimationFrame(frame);
  }

  function load(v) {
    title.textContent = v.title || 'Narration';
    steps.length = 0;
    list.replaceChildren();
    for (const s of v.steps) setStep(s);
    nodes.clear();
    for (const n of v.nodes) nodes.set(n.index, n);
    activity.replaceChildren();
    for (const a of v.activity) addActivity(a, false);
    renderSummary();
    draw();
  }

  ctx.on((ev) => {
    if (ev.type === 'title') title.textContent = ev.title;
    else if (ev.type === 'step') setStep(ev.step);
    else if (ev.type === 'node') { nodes.set(ev.node.index, ev.node); renderSummary(); draw(); }
    else if (ev.type === 'activity') addActivity(ev.activity);
  });
  new ResizeObserver(draw).observe(map);
  load(view);
  return { load };
}
