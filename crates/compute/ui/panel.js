// The compute service's panel of the dashboard: the projects this node coordinates,
// with progress and each volunteer's credit; what this node donates, with a switch; and
// a form to submit a project (a WASI module and a range of inputs).

export default function mount(root, ctx) {
  const { el } = ctx;
  const mine = el('p', { class: 'volunteer-line mono' });
  const toggle = el('button', { type: 'button', class: 'donate', onclick: async () => {
    const on = toggle.dataset.on !== 'true';
    toggle.disabled = true;
    try {
      await ctx.api('/api/v1/compute/volunteer', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ on }) });
    } catch (e) {
      note.textContent = e.message;
    } finally {
      toggle.disabled = false;
      refresh();
    }
  } }, 'Donate cores');
  const projects = el('div', { class: 'projects' });
  const note = el('p', { class: 'hint', role: 'status' });

  const name = el('input', { id: 'compute-name', type: 'text', placeholder: 'project name', 'aria-label': 'project name', required: '' });
  const module = el('input', { id: 'compute-module', type: 'file', accept: '.wasm,application/wasm', 'aria-label': 'WASI module (.wasm)', required: '' });
  const from = el('input', { id: 'compute-from', type: 'number', min: '0', value: '0', 'aria-label': 'first input' });
  const to = el('input', { id: 'compute-to', type: 'number', min: '1', value: '100', 'aria-label': 'inputs up to (not included)' });
  const args = el('input', { id: 'compute-args', type: 'text', placeholder: 'arguments after the input', 'aria-label': 'arguments' });
  const quorum = el('input', { id: 'compute-quorum', type: 'number', min: '1', value: '2', 'aria-label': 'quorum' });
  const submit = el('form', { class: 'add', onsubmit: async (e) => {
    e.preventDefault();
    try {
      const bytes = new Uint8Array(await module.files[0].arrayBuffer());
      const hex = Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
      const r = await ctx.api('/api/v1/compute/projects', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({
        name: name.value.trim(), module: hex,
        inputs: { range: { from: Number(from.value), to: Number(to.value) } },
        args: args.value.trim() ? args.value.trim().split(/\s+/) : [],
        quorum: Number(quorum.value),
      }) });
      note.textContent = `submitted ${r.project}`;
      refresh();
    } catch (err) {
      note.textContent = err.message;
    }
  } }, name, module, from, to, args, quorum, el('button', { type: 'submit' }, 'Submit project'));
  root.append(el('div', { class: 'actions' }, toggle), mine, projects, submit, note);

  function project(p) {
    const pct = p.units ? (100 * p.done) / p.units : 0;
    const bar = el('progress', { max: String(p.units), value: String(p.done), 'aria-label': `${p.done} of ${p.units} units done` });
    const rows = p.volunteers.map((v) => el('tr', { 'data-peer': v.peer },
      el('td', { class: 'mono', title: v.peer }, ctx.shortId(v.peer)),
      el('td', {}, String(v.credit)), el('td', {}, String(v.valid)), el('td', {}, String(v.invalid)),
      el('td', {}, v.trusted ? 'yes' : 'not yet')));
    return el('article', { class: 'project', 'data-id': p.id, 'data-state': p.state },
      el('h3', {}, `${p.name} `, el('small', { class: 'hint' }, p.state)),
      bar,
      el('p', { class: 'hint' }, `${p.done}/${p.units} units (${pct.toFixed(0)}%), ${p.in_progress} running, ${p.failed} failed · ${p.valid} results agreed, ${p.invalid} refused`),
      el('table', {}, el('thead', {}, el('tr', {}, ...['volunteer', 'credit', 'valid', 'refused', 'trusted'].map((h) => el('th', { scope: 'col' }, h)))), el('tbody', {}, ...rows)));
  }

  let busy = false;
  async function refresh() {
    if (busy) return;
    busy = true;
    try {
      const [v, list] = await Promise.all([ctx.api('/api/v1/compute/volunteer'), ctx.api('/api/v1/compute/projects')]);
      toggle.dataset.on = v.on;
      toggle.textContent = v.on ? 'Stop donating' : 'Donate cores';
      mine.textContent = v.on
        ? `donating ${v.cores} core${v.cores === 1 ? '' : 's'}: ${v.running.length} unit${v.running.length === 1 ? '' : 's'} running, ${v.queued} queued, ${v.units_run} run in all`
        : 'not donating';
      projects.replaceChildren(...list.map(project));
      if (!list.length) projects.replaceChildren(el('p', { class: 'hint' }, 'No projects coordinated here yet.'));
    } finally {
      busy = false;
    }
  }

  ctx.every(1000, refresh);
  return refresh();
}
