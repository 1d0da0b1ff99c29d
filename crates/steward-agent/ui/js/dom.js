// Small DOM and formatting helpers. Everything the page shows goes in as
// text nodes or attributes, never as HTML, so nothing an API answer holds
// (a runtime's error message, a hook's output) can become markup.

/**
 * Creates an element. `props`: `class`, `text`, `on<event>` handlers,
 * `dataset` (an object), booleans as present/absent attributes, anything
 * else as an attribute. `children`: nodes or strings (null/false skipped).
 */
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'class') el.className = value;
    else if (key === 'text') el.textContent = value;
    else if (key === 'dataset') Object.assign(el.dataset, value);
    else if (key.startsWith('on') && typeof value === 'function') {
      el.addEventListener(key.slice(2), value);
    } else if (value === true) el.setAttribute(key, '');
    else el.setAttribute(key, String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/**
 * Replaces `el`'s children. The pages re-render live, while someone may be
 * tabbing through them: if the focus was inside `el`, it moves to the new
 * element that stands for the old one, so an update nobody asked for (an
 * event of another runtime) neither throws a keyboard user back to the top
 * of the page nor swallows the Enter they were about to press.
 */
export function fill(el, ...children) {
  const focused = focusedWithin(el);
  el.replaceChildren();
  append(el, children);
  if (focused) {
    const successor = [...el.querySelectorAll(focused.tagName)].find((candidate) => identity(candidate) === focused.identity);
    successor?.focus({ preventScroll: true });
  }
  return el;
}

/** The focused element inside `el` (not `el` itself), as its tag and identity. */
function focusedWithin(el) {
  const active = document.activeElement;
  if (!active || active === el || !el.contains(active)) return null;
  return { tagName: active.tagName, identity: identity(active) };
}

/**
 * What makes a focusable element the same one after a re-render: where a
 * link goes, or what a control is called (its label, else its text).
 */
function identity(el) {
  return el.getAttribute('href') ?? el.getAttribute('aria-label') ?? el.textContent;
}

/** "2d 3h", "3h 12m", "4m 05s", "12s" for a duration in milliseconds. */
export function duration(ms) {
  if (!Number.isFinite(ms) || ms < 0) return '—';
  const s = Math.floor(ms / 1000);
  const d = Math.floor(s / 86400);
  const hours = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = s % 60;
  if (d > 0) return `${d}d ${hours}h`;
  if (hours > 0) return `${hours}h ${String(m).padStart(2, '0')}m`;
  if (m > 0) return `${m}m ${String(sec).padStart(2, '0')}s`;
  return `${sec}s`;
}

/** A local wall-clock time (HH:MM:SS) for an RFC 3339 time. */
export function clock(iso) {
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return iso ?? '';
  return date.toLocaleTimeString([], { hour12: false });
}

/** A number with at most `digits` significant digits, for plot captions. */
export function num(value, digits = 3) {
  if (value === null || value === undefined) return '—';
  if (value === 0) return '0';
  return Number(value.toPrecision(digits)).toString();
}

/**
 * Asks for confirmation in a modal dialog (focus starts on Cancel, Escape
 * cancels). `body`: nodes (form controls in it can be read once it
 * resolves). Resolves to true when confirmed.
 */
export function confirmDialog({ title, body = [], confirmLabel, danger = false }) {
  return new Promise((resolve) => {
    const titleId = `dialog-title-${Math.random().toString(36).slice(2)}`;
    const cancel = h('button', { type: 'button', class: 'button', text: 'Cancel', autofocus: true });
    const confirm = h('button', {
      type: 'button',
      class: danger ? 'button danger' : 'button primary',
      text: confirmLabel,
    });
    const dialog = h('dialog', { class: 'dialog', 'aria-labelledby': titleId },
      h('h2', { id: titleId, text: title }),
      ...body,
      h('div', { class: 'actions' }, cancel, confirm));
    cancel.addEventListener('click', () => dialog.close('cancel'));
    confirm.addEventListener('click', () => dialog.close('confirm'));
    dialog.addEventListener('close', () => {
      dialog.remove();
      resolve(dialog.returnValue === 'confirm');
    });
    document.body.append(dialog);
    dialog.showModal();
    cancel.focus();
  });
}

/** A state badge: the state's name, coloured by what it means. */
export function badge(text, kind = text) {
  return h('span', { class: `badge badge-${kind}`, text });
}
