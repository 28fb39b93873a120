// The messaging service's panel of the dashboard: contacts, a conversation with each
// message's delivery state as it changes (queued, sent or stored for later, delivered,
// read) and the way it went (direct, through which relay, held by which mailboxes, or
// through onion circuits), sending, and adding a contact by invite code.

const STATE_TEXT = { stored: 'stored for later' };

export default function mount(root, ctx) {
  const { el } = ctx;
  let current = null;

  const contacts = el('ul', { class: 'contacts', 'aria-label': 'contacts' });
  const messages = el('ol', { class: 'messages', 'aria-live': 'polite' });
  const text = el('input', { id: 'msg-text', type: 'text', placeholder: 'a message', 'aria-label': 'message', autocomplete: 'off' });
  const note = el('p', { class: 'hint', role: 'status' });
  const title = el('h3', {}, 'Pick a contact');
  const send = el('form', { class: 'send', onsubmit: async (e) => {
    e.preventDefault();
    if (!current || !text.value.trim()) return;
    try {
      await ctx.api('/api/v1/msg/send', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ to: current.peer_id, text: text.value }) });
      text.value = '';
      showConversation();
    } catch (err) {
      note.textContent = err.message;
    }
  } }, text, el('button', { type: 'submit' }, 'Send'));

  const code = el('input', { id: 'msg-code', type: 'text', placeholder: 'invite code', 'aria-label': 'invite code', autocomplete: 'off' });
  const name = el('input', { id: 'msg-name', type: 'text', placeholder: 'name', 'aria-label': 'contact name', autocomplete: 'off' });
  const add = el('form', { class: 'add', onsubmit: async (e) => {
    e.preventDefault();
    try {
      const c = await ctx.api('/api/v1/msg/contacts', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ code: code.value.trim(), name: name.value.trim() || null }) });
      note.textContent = `${c.name} is a contact`;
      code.value = '';
      name.value = '';
      showContacts();
    } catch (err) {
      note.textContent = err.message;
    }
  } }, code, name, el('button', { type: 'submit' }, 'Add contact'));
  const invite = el('button', { type: 'button', onclick: async () => {
    try {
      const v = await ctx.api('/api/v1/msg/invite', { method: 'POST' });
      note.replaceChildren('Your invite code (give it to a contact): ', el('code', { class: 'mono' }, v.code));
    } catch (err) {
      note.textContent = err.message;
    }
  } }, 'My invite code');

  root.append(
    el('div', { class: 'msg-layout' },
      el('div', { class: 'msg-side' }, contacts, invite),
      el('div', { class: 'msg-main' }, title, messages, send)),
    add, note);

  /** The hops a message took: me, what carried it, the recipient. */
  function path(m) {
    const hop = (text, cls, title) => el('span', { class: `hop ${cls}`, title: title || text }, text);
    const arrow = () => el('span', { class: 'link', 'aria-hidden': 'true' }, '→');
    const to = current ? current.name : 'them';
    const middle = {
      direct: () => [],
      relay: () => [hop(`relay ${ctx.shortId(m.path.relay)}`, 'relay', m.path.relay)],
      mailboxes: () => [hop(`${m.path.holders.length} mailboxes`, 'mailbox', m.path.holders.join('\n'))],
      onion: () => [hop('onion circuits', 'onion', 'three relays each way; none knows both ends')],
    }[m.path.via];
    const hops = [hop('me', 'me'), ...(middle ? middle() : []), hop(to, 'dest')];
    return el('span', { class: 'path msg-path', 'data-via': m.path.via, 'aria-label': `went ${m.path.via === 'direct' ? 'directly' : 'by ' + m.path.via}` },
      ...hops.flatMap((h, i) => (i ? [arrow(), h] : [h])));
  }

  async function showContacts() {
    const list = await ctx.api('/api/v1/msg/contacts');
    contacts.replaceChildren(...list.map((c) => el('li', {},
      el('button', { type: 'button', class: 'contact' + (current && current.peer_id === c.peer_id ? ' current' : ''), 'data-peer': c.peer_id, title: c.peer_id,
        onclick: () => { current = c; showContacts(); showConversation(); } }, c.name))));
    if (!list.length) contacts.replaceChildren(el('li', { class: 'hint' }, 'No contacts yet: add one by its invite code.'));
  }

  // Reading a conversation marks its messages read, as opening it in any messenger does.
  let busy = false;
  let again = false;
  async function showConversation() {
    if (!current) return;
    if (busy) { again = true; return; }
    busy = true;
    try {
      title.textContent = current.name;
      const list = await ctx.api(`/api/v1/msg/history/${encodeURIComponent(current.peer_id)}`);
      messages.replaceChildren(...list.slice(-200).map((m) => el('li', { class: m.outgoing ? 'out' : 'in', 'data-id': m.id, 'data-state': m.state },
        el('span', { class: 'who' }, m.outgoing ? 'me' : m.from_name),
        el('span', { class: 'text' }, m.text),
        el('span', { class: `state state-${m.state}` }, STATE_TEXT[m.state] || m.state),
        m.outgoing && m.path ? path(m) : '')));
      messages.scrollTop = messages.scrollHeight;
    } finally {
      busy = false;
      if (again) { again = false; showConversation().catch(() => {}); }
    }
  }

  ctx.on((ev) => {
    if (ev.type === 'contact') showContacts().catch(() => {});
    if ((ev.type === 'state' || ev.type === 'message' || ev.type === 'file') && current) showConversation().catch(() => {});
  });
  return showContacts();
}
