// agentrace web UI. Plain JavaScript, no build step, no dependencies.
//
// Every value that comes from a span is untrusted text. This file builds the
// page with createElement / createElementNS and textContent only; it never
// hands a string to the HTML parser. The server's Content-Security-Policy
// forbids inline script as a second wall.
'use strict';

(function () {
  const ROW = 22; // px, one waterfall row; keep in step with --row in app.css
  const POLL_MS = 3000;
  const MAX_LIST = 200; // longest list of findings or repairs drawn in full
  const MAX_BARS = 12; // bars per time chart
  const CATEGORIES = ['llm', 'tool', 'retrieval', 'handoff', 'agent', 'other', 'unexplained'];

  let token = sessionStorage.getItem('agentrace.token') || '';
  let pollTimer = null;
  let generation = 0; // bumps on every route change; stale async work checks it

  // ---------------------------------------------------------------- DOM ---

  // el('div', {class: 'x', title: 't', onclick: f}, 'text', child, ...)
  function el(tag, props, ...kids) {
    const node = document.createElement(tag);
    setProps(node, props);
    append(node, kids);
    return node;
  }

  function svg(tag, props, ...kids) {
    const node = document.createElementNS('http://www.w3.org/2000/svg', tag);
    setProps(node, props);
    append(node, kids);
    return node;
  }

  function setProps(node, props) {
    if (!props) return;
    for (const [k, v] of Object.entries(props)) {
      if (v === undefined || v === null || v === false) continue;
      if (k.startsWith('on') && typeof v === 'function') node.addEventListener(k.slice(2), v);
      else if (k === 'style' && typeof v === 'object') Object.assign(node.style, v);
      else node.setAttribute(k, String(v));
    }
  }

  function append(node, kids) {
    for (const kid of kids.flat()) {
      if (kid === undefined || kid === null || kid === false) continue;
      node.appendChild(kid instanceof Node ? kid : document.createTextNode(String(kid)));
    }
  }

  const main = () => document.getElementById('main');
  const status = (text) => { document.getElementById('status').textContent = text; };

  // ------------------------------------------------------------- format ---

  function fmtMs(ms) {
    if (ms === undefined || ms === null || isNaN(ms)) return '';
    if (ms < 1) return Math.round(ms * 1000) + ' µs';
    if (ms < 1000) return (ms < 10 ? ms.toFixed(1) : Math.round(ms)) + ' ms';
    if (ms < 60000) return (ms / 1000).toFixed(2) + ' s';
    return (ms / 60000).toFixed(1) + ' min';
  }
  function fmtNum(n) {
    if (!n) return '0';
    if (n >= 1e6) return (n / 1e6).toFixed(1) + 'M';
    if (n >= 1e4) return (n / 1e3).toFixed(1) + 'k';
    return String(n);
  }
  const plural = (n, word) => n + ' ' + word + (n === 1 ? '' : 's');
  // As the CLI prints it: six decimals below a cent ($0.000137, not $0.0001), else two.
  const fmtCost = (c) => (c ? '$' + (c < 0.01 ? c.toFixed(6).replace(/0+$/, '') : c.toFixed(2)) : '—');
  function fmtTime(unixNano) {
    const ms = Number(BigInt(unixNano || 0) / 1000000n);
    return new Date(ms).toLocaleString();
  }
  const cat = (c) => (CATEGORIES.includes(c) ? c : 'other');

  // OTLP JSON AnyValue to display text.
  function anyText(v) {
    if (!v) return '';
    if ('stringValue' in v) return v.stringValue;
    if ('intValue' in v) return String(v.intValue);
    if ('doubleValue' in v) return String(v.doubleValue);
    if ('boolValue' in v) return String(v.boolValue);
    if ('bytesValue' in v) return '0x' + String(v.bytesValue);
    if ('arrayValue' in v) return '[' + (v.arrayValue.values || []).map(anyText).join(', ') + ']';
    if ('kvlistValue' in v) return '{' + (v.kvlistValue.values || []).map((kv) => kv.key + ': ' + anyText(kv.value)).join(', ') + '}';
    return JSON.stringify(v);
  }

  // ---------------------------------------------------------------- API ---

  class Unauthorized extends Error {}
  class HttpError extends Error {
    constructor(status, message) { super(message); this.status = status; }
  }

  async function api(path) {
    const headers = { accept: 'application/json' };
    if (token) headers.authorization = 'Bearer ' + token;
    let response;
    try {
      response = await fetch(path, { headers });
    } catch (e) {
      throw new HttpError(0, 'the collector did not answer (' + e.message + ')');
    }
    if (response.status === 401) throw new Unauthorized('this collector needs a bearer token');
    const body = await response.json().catch(() => null);
    if (!response.ok) {
      const message = body && body.error ? body.error.message : response.statusText;
      throw new HttpError(response.status, message);
    }
    return body;
  }

  // What went wrong, in words, and what to do about it.
  function showError(err, what) {
    if (err instanceof Unauthorized) return showTokenForm();
    const code = err instanceof HttpError ? err.status : -1;
    const hint = code === 404 ? 'Check the ID. A trace is kept once it arrived; its request is listed once no span of it arrived for the trace timeout, so a trace sent a moment ago may need a few more seconds.'
      : code === 400 ? 'The address asks for something the collector cannot read; the message says which part.'
        : code === 0 ? 'Is the collector still running? This page retries when you press Retry.'
          : code >= 500 ? 'The collector failed to answer; its log says why. Retry in a moment.'
            : 'Retry, or go back to the list of requests.';
    status('could not load ' + what);
    main().replaceChildren(el('div', { class: 'panel error', role: 'alert', 'data-test': 'error' },
      el('h1', null, 'Could not load ' + what),
      el('p', { class: 'mono' }, (code > 0 ? code + ': ' : '') + String(err.message || err)),
      el('p', null, hint),
      el('p', null, el('button', { type: 'button', onclick: route }, 'Retry'), ' ', el('a', { href: '#/' }, 'All requests'))));
    document.body.dataset.ready = 'error';
  }

  function showTokenForm() {
    const input = el('input', { type: 'password', autocomplete: 'off', placeholder: 'bearer token' });
    const form = el('form', { class: 'panel token-form' },
      el('h1', null, 'Bearer token'),
      el('p', { class: 'muted' }, 'This collector is protected by auth.bearer_token. The token is kept for this tab only.'),
      input, el('button', { type: 'submit' }, 'Open'));
    form.addEventListener('submit', (e) => {
      e.preventDefault();
      token = input.value.trim();
      sessionStorage.setItem('agentrace.token', token);
      route();
    });
    main().replaceChildren(form);
    input.focus();
  }

  // ------------------------------------------------------------- routes ---

  function route() {
    generation += 1;
    if (pollTimer) clearTimeout(pollTimer);
    pollTimer = null;
    delete document.body.dataset.ready;
    delete document.body.dataset.spans;
    const hash = location.hash.replace(/^#/, '') || '/';
    const [path, query] = hash.split('?');
    const params = new URLSearchParams(query || '');
    const parts = path.split('/').filter(Boolean).map(decodeURIComponent);
    const [what, run] = parts[0] === 'trace' && parts[1] ? ['trace ' + parts[1], traceView(parts[1], params)]
      : parts[0] === 'session' && parts[1] ? ['session ' + parts[1], sessionView(parts[1])]
        : parts[0] === 'sessions' ? ['the sessions', sessionListView()]
          : ['the requests', traceListView(params)];
    const mine = generation;
    run.catch((e) => { if (mine === generation) showError(e, what); });
  }

  // ---------------------------------------------------------- request list ---

  const PAGE = 50;
  // Columns that sort, by the API's `sort=` name.
  const SORTS = { start: 'Started', duration: 'Duration', spans: 'Spans', tokens: 'Tokens in / out', cost: 'Cost', findings: 'Findings' };
  const PRESETS = [['', 'Any time'], ['15m', 'Last 15 minutes'], ['1h', 'Last hour'], ['6h', 'Last 6 hours'], ['24h', 'Last 24 hours'], ['7d', 'Last 7 days'], ['custom', 'Custom range']];
  const PRESET_MS = { '15m': 9e5, '1h': 3.6e6, '6h': 2.16e7, '24h': 8.64e7, '7d': 6.048e8 };
  // What each kind of finding means, in the list's badges.
  const KIND_LABEL = {
    orphan_root: 'orphaned hop', trace_discontinuity: 'split trace', tool_root: 'tool lost context',
    missing_parent: 'missing parent', lost_context: 'lost context', timing_gap: 'unexplained gap',
  };
  const HEX32 = /^[0-9a-fA-F]{32}$/;

  async function traceListView(params) {
    const mine = generation;
    const facets = await api('/api/agentrace/facets').catch(() => ({ services: [], agents: [], models: [] }));
    if (mine !== generation) return;
    const form = el('form', { class: 'filters', 'aria-label': 'filter the requests' });
    const inputs = {};
    const field = (label, input) => { form.appendChild(el('label', null, label, input)); return input; };
    const picker = (key, label, names) => {
      const current = params.get(key) || '';
      const options = [el('option', { value: '' }, 'Any ' + label.toLowerCase())];
      for (const n of new Set([...names, ...(current ? [current] : [])])) options.push(el('option', { value: n, selected: n === current }, n));
      inputs[key] = field(label, el('select', { name: key }, options));
    };
    picker('service', 'Service', facets.services || []);
    picker('agent', 'Agent', facets.agents || []);
    picker('model', 'Model', facets.models || []);
    inputs.session = field('Session', el('input', { type: 'text', name: 'session', value: params.get('session') || '' }));
    inputs.q = field('Root name contains', el('input', { type: 'text', name: 'q', value: params.get('q') || '' }));
    inputs.min_duration = field('Min duration (e.g. 250ms)', el('input', { type: 'text', name: 'min_duration', value: params.get('min_duration') || '', size: 8 }));
    const range = params.get('range') || (params.get('start') || params.get('end') ? 'custom' : '');
    inputs.range = field('Time', el('select', { name: 'range' }, PRESETS.map(([v, t]) => el('option', { value: v, selected: v === range }, t))));
    const custom = el('span', { class: 'custom-range' });
    for (const [key, label] of [['start', 'From'], ['end', 'To']]) {
      const iso = params.get(key);
      inputs[key] = el('input', { type: 'datetime-local', name: key });
      if (iso) {
        const d = new Date(iso);
        inputs[key].value = new Date(d.getTime() - d.getTimezoneOffset() * 60000).toISOString().slice(0, 16);
      }
      custom.appendChild(el('label', null, label, inputs[key]));
    }
    custom.hidden = range !== 'custom';
    inputs.range.addEventListener('change', () => { custom.hidden = inputs.range.value !== 'custom'; });
    form.appendChild(custom);
    for (const [key, label] of [['errors', 'Errors only'], ['findings', 'Has findings'], ['broken', 'Broken context']]) {
      inputs[key] = el('input', { type: 'checkbox', name: key });
      inputs[key].checked = params.get(key) === 'true';
      form.appendChild(el('label', { class: 'check' }, inputs[key], label));
    }
    form.appendChild(el('button', { type: 'submit' }, 'Filter'));
    form.appendChild(el('button', { type: 'button', onclick: () => { location.hash = '#/'; } }, 'Clear'));
    const sort = SORTS[params.get('sort')] ? params.get('sort') : 'start';
    const order = params.get('order') === 'asc' ? 'asc' : 'desc';
    const page = Math.max(0, parseInt(params.get('page') || '0', 10) || 0);
    // The list's own address: the filters, then the order and page given.
    const go = (changes) => {
      const out = new URLSearchParams(params);
      for (const [k, v] of Object.entries(changes)) { if (v === '' || v === null) out.delete(k); else out.set(k, v); }
      location.hash = '#/?' + out.toString();
    };
    form.addEventListener('submit', (e) => {
      e.preventDefault();
      const out = {};
      for (const key of ['service', 'agent', 'model', 'session', 'q', 'min_duration', 'range']) out[key] = inputs[key].value.trim();
      for (const key of ['start', 'end']) out[key] = out.range === 'custom' && inputs[key].value ? new Date(inputs[key].value).toISOString() : '';
      for (const key of ['errors', 'findings', 'broken']) out[key] = inputs[key].checked ? 'true' : '';
      out.page = '';
      go(out);
    });

    // Any arrived trace ID opens the request that holds it.
    const idInput = el('input', { type: 'text', name: 'trace', placeholder: '32 hex digits', size: 34, spellcheck: 'false', 'aria-describedby': 'open-hint' });
    const idHint = el('span', { id: 'open-hint', class: 'muted', 'aria-live': 'polite' });
    const opener = el('form', { class: 'open-trace', 'aria-label': 'open a trace by ID' },
      el('label', null, 'Open a trace ID', idInput), el('button', { type: 'submit' }, 'Open'), idHint);
    opener.addEventListener('submit', (e) => {
      e.preventDefault();
      const id = idInput.value.trim().toLowerCase();
      if (!HEX32.test(id)) { idHint.textContent = 'A trace ID is 32 hex digits, as in a traceparent header.'; idInput.focus(); return; }
      location.hash = '#/trace/' + id;
    });

    const head = el('tr', null, el('th', { scope: 'col' }, 'Request'), el('th', { scope: 'col', class: 'wide-only' }, 'Agents'));
    const sortHeader = (key, numeric) => {
      const active = sort === key;
      const arrow = active ? (order === 'asc' ? ' ▲' : ' ▼') : '';
      return el('th', { scope: 'col', class: numeric ? 'num' : null, 'aria-sort': active ? (order === 'asc' ? 'ascending' : 'descending') : 'none' },
        el('button', { type: 'button', class: 'sort', 'data-sort': key, onclick: () => go({ sort: key === 'start' && !active ? '' : key, order: active && order === 'desc' ? 'asc' : '', page: '' }) }, SORTS[key] + arrow));
    };
    head.append(sortHeader('start'), sortHeader('duration', true), sortHeader('spans', true), sortHeader('tokens', true), sortHeader('cost', true),
      sortHeader('findings'), el('th', { scope: 'col' }, 'Errors'), el('th', { scope: 'col', class: 'wide-only' }, 'Session'));
    const tbody = el('tbody');
    const table = el('table', { class: 'list', 'data-test': 'trace-list' }, el('caption', { class: 'visually-hidden' }, 'Requests, one row per connected request'), el('thead', null, head), tbody);
    const shown = el('span', { class: 'muted', 'data-test': 'page-label' });
    const prev = el('button', { type: 'button', 'data-test': 'prev-page', onclick: () => go({ page: page > 1 ? String(page - 1) : '' }) }, '← Newer');
    const next = el('button', { type: 'button', 'data-test': 'next-page', onclick: () => go({ page: String(page + 1) }) }, 'Older →');
    if (sort !== 'start' || order === 'asc') { prev.textContent = '← Previous'; next.textContent = 'Next →'; }
    prev.disabled = page === 0;
    const pager = el('nav', { class: 'pager', 'aria-label': 'pages of requests' }, prev, shown, next);
    main().replaceChildren(el('h1', null, 'Requests'), form, opener, el('div', { class: 'table-scroll' }, table), pager);

    const query = new URLSearchParams();
    for (const key of ['service', 'agent', 'model', 'session', 'q', 'min_duration', 'errors', 'findings', 'broken', 'start', 'end']) {
      if (params.get(key)) query.set(key, params.get(key));
    }
    if (sort !== 'start') query.set('sort', sort);
    if (order === 'asc') query.set('order', 'asc');
    query.set('limit', String(PAGE + 1));
    if (page) query.set('offset', String(page * PAGE));
    let last = '';
    let known = null;
    // One row per connected request, as the live pipeline stored it (a
    // request joined from several arrived traces is one row); without a
    // live pipeline, one row per trace as it arrived.
    const refresh = async () => {
      if (PRESET_MS[range]) query.set('start', new Date(Date.now() - PRESET_MS[range]).toISOString());
      let body = await api('/api/agentrace/requests?' + query.toString());
      let rowsOf = body.requests.map(requestAsRow);
      if (body.live === false) {
        body = await api('/api/agentrace/traces?' + query.toString());
        rowsOf = body.traces;
      }
      if (mine !== generation) return;
      const more = rowsOf.length > PAGE;
      rowsOf = rowsOf.slice(0, PAGE);
      next.disabled = !more;
      shown.textContent = rowsOf.length ? 'rows ' + (page * PAGE + 1) + '–' + (page * PAGE + rowsOf.length) : '';
      const text = JSON.stringify(rowsOf);
      if (text !== last) {
        last = text;
        const rows = rowsOf.map((t) => traceRow(t, known && !known.has(t.trace_id)));
        const empty = page ? 'No more requests on this page: go back a page.'
          : params.toString() ? 'No request matches these filters. Clear them to see every request.'
            : 'No requests yet. Send OTLP to :4317 (gRPC) or :4318 (HTTP); a request is listed once no span of it arrived for the trace timeout.';
        tbody.replaceChildren(...(rows.length ? rows : [el('tr', null, el('td', { colspan: 10, class: 'muted' }, empty))]));
        known = new Set(rowsOf.map((t) => t.trace_id));
      }
      status('updated ' + new Date().toLocaleTimeString());
      if (!performance.getEntriesByName('agentrace:list').length) performance.mark('agentrace:list');
      document.body.dataset.ready = 'list';
    };
    const poll = async () => {
      if (mine !== generation) return;
      if (!document.hidden) await refresh().catch((e) => status('update failed: ' + e.message + '; retrying'));
      if (mine === generation) pollTimer = setTimeout(poll, POLL_MS);
    };
    await refresh();
    pollTimer = setTimeout(poll, POLL_MS);
  }

  // A request row in the shape of a trace row.
  function requestAsRow(r) {
    return Object.assign({}, r, { trace_id: r.request_id, traces: r.trace_ids });
  }

  // One badge per kind of finding, saying what it means; its tooltip is the
  // first such finding's message.
  function findingBadges(t) {
    if (t.finding_kinds && t.finding_kinds.length) {
      return t.finding_kinds.map((k) => el('span', {
        class: 'badge ' + (k.broken ? 'broken' : 'gap'), 'data-kind': k.kind,
        title: (k.count > 1 ? k.count + ' × ' : '') + k.message,
      }, (KIND_LABEL[k.kind] || k.kind) + (k.count > 1 ? ' ×' + k.count : '')));
    }
    if (!t.findings) return '';
    return el('span', { class: 'badge ' + (t.broken ? 'broken' : 'gap'), title: t.broken ? 'trace context broke: ' + plural(t.broken, 'broken hop') : 'findings of the doctor' }, plural(t.findings, 'finding'));
  }

  function traceRow(t, fresh) {
    const link = el('a', { href: '#/trace/' + encodeURIComponent(t.trace_id) },
      el('span', { class: 'svc' }, t.root_service + ': '), t.root_name);
    const joined = t.traces && t.traces.length > 1
      ? el('span', { class: 'badge join', title: 'arrived as ' + t.traces.join(', ') }, t.traces.length + ' traces joined')
      : null;
    const failed = t.failed || t.errors
      ? el('span', { class: 'badge err', title: t.failure || plural(t.errors || 1, 'error') }, t.failed ? 'failed' : plural(t.errors, 'error'))
      : '';
    return el('tr', { class: fresh ? 'fresh' : null, 'data-trace': t.trace_id, 'data-traces': (t.traces || [t.trace_id]).join(' ') },
      el('td', null, link, joined, el('div', { class: 'mono muted id' }, t.trace_id)),
      el('td', { class: 'wide-only' }, (t.agents || []).join(', ')),
      el('td', null, fmtTime(t.start_unix_nano)),
      el('td', { class: 'num' }, fmtMs(t.duration_ms)),
      el('td', { class: 'num' }, String(t.spans)),
      el('td', { class: 'num' }, fmtNum(t.input_tokens) + ' / ' + fmtNum(t.output_tokens)),
      el('td', { class: 'num' }, fmtCost(t.cost_usd)),
      el('td', { class: 'badges' }, findingBadges(t)),
      el('td', null, failed),
      el('td', { class: 'wide-only' }, t.session ? el('a', { href: '#/session/' + encodeURIComponent(t.session) }, t.session) : ''));
  }

  // -------------------------------------------------------- session list ---

  async function sessionListView() {
    const body = await api('/api/agentrace/sessions?limit=100');
    const rows = body.sessions.map((s) => el('tr', { 'data-session': s.id },
      el('td', null, el('a', { href: '#/session/' + encodeURIComponent(s.id) }, s.id)),
      el('td', null, fmtTime(s.start_unix_nano)),
      el('td', { class: 'num' }, s.requests ? fmtMs(s.duration_ms) : ''),
      el('td', { class: 'num' }, String(s.requests || 0)),
      el('td', { class: 'num' }, String(s.traces)),
      el('td', { class: 'num' }, fmtNum(s.input_tokens) + ' / ' + fmtNum(s.output_tokens)),
      el('td', { class: 'num' }, fmtCost(s.cost_usd)),
      el('td', null, s.errors ? el('span', { class: 'badge err' }, plural(s.errors, 'failed request')) : ''),
      el('td', null, s.findings ? el('span', { class: 'badge ' + (s.broken ? 'broken' : 'gap'), title: s.broken ? plural(s.broken, 'broken hop') : 'unexplained gaps only' }, plural(s.findings, 'finding')) : '')));
    main().replaceChildren(el('h1', null, 'Sessions'),
      el('div', { class: 'table-scroll' }, el('table', { class: 'list', 'data-test': 'session-list' },
        el('caption', { class: 'visually-hidden' }, 'Sessions, most recently active first'),
        el('thead', null, el('tr', null,
          el('th', { scope: 'col' }, 'Session'), el('th', { scope: 'col' }, 'Started'), el('th', { scope: 'col', class: 'num' }, 'Duration'),
          el('th', { scope: 'col', class: 'num' }, 'Requests'), el('th', { scope: 'col', class: 'num' }, 'Traces'),
          el('th', { scope: 'col', class: 'num' }, 'Tokens in / out'), el('th', { scope: 'col', class: 'num' }, 'Cost'),
          el('th', { scope: 'col' }, 'Errors'), el('th', { scope: 'col' }, 'Findings'))),
        el('tbody', null, rows.length ? rows : el('tr', null, el('td', { colspan: 9, class: 'muted' }, 'No sessions yet: a session is named by session.id or gen_ai.conversation.id on a span.'))))));
    status(plural(rows.length, 'session'));
    document.body.dataset.ready = 'sessions';
  }

  // -------------------------------------------------- trace and session ---

  // Fetches a connected view in two pieces: the diagnosis with the
  // connected tree, which the page draws at once, then the repaired spans
  // as OTLP JSON (attributes, events, links), for the span details. Null
  // when the user has moved on meanwhile.
  async function loadConnected(what, path) {
    const mine = generation;
    status('loading ' + what + '…');
    const body = await api(path + '?spans=false');
    if (mine !== generation) return null;
    performance.mark('agentrace:data');
    // Asked for once the page is interactive: on a busy machine the second
    // answer must not compete with the first paint.
    body.spans = () => api(path).then((full) => full.spans);
    return body;
  }

  async function traceView(traceId) {
    const body = await loadConnected('trace', '/api/agentrace/traces/' + encodeURIComponent(traceId));
    if (!body) return;
    const d = body.diagnosis;
    // The request this trace is part of (a joined orphan lives in its
    // producer's request); the rest of the session is a click away.
    const requests = d.requests.filter((r) => r.original_traces.includes(traceId) || r.trace_id === traceId);
    const shown = requests.length ? requests : d.requests;
    const session = shown.map((r) => r.session).find(Boolean);
    const first = shown[0];
    const usage = shown.reduce((u, r) => ({
      input: u.input + r.usage.input_tokens, output: u.output + r.usage.output_tokens, cost: u.cost + r.usage.cost_usd,
    }), { input: 0, output: 0, cost: 0 });
    const head = el('div', { class: 'trace-head' },
      el('h1', null, first ? first.service + ': ' + first.name : traceId),
      el('span', { class: 'mono muted id' }, traceId),
      first ? el('span', null, fmtMs(first.duration_ms)) : null,
      el('span', null, shown.reduce((n, r) => n + r.spans.length, 0) + ' spans'),
      el('span', null, fmtNum(usage.input) + ' / ' + fmtNum(usage.output) + ' tokens · ' + fmtCost(usage.cost)),
      joinedBadge(shown),
      session ? el('a', { href: '#/session/' + encodeURIComponent(session) }, 'session ' + session) : null,
      d.requests.length > shown.length ? el('span', { class: 'muted' }, (d.requests.length - shown.length) + ' other requests in this session') : null);
    renderConnected(head, d, shown, body.spans, 'request');
  }

  async function sessionView(sessionId) {
    const body = await loadConnected('session', '/api/agentrace/sessions/' + encodeURIComponent(sessionId));
    if (!body) return;
    const d = body.diagnosis;
    // Turn by turn: each request's answer, what it cost, what broke or failed.
    const failures = d.failures && d.failures.length ? d.failures : d.failure ? [d.failure] : [];
    const turns = d.requests.map((r, i) => {
      const mineFindings = d.findings.filter((f) => r.original_traces.includes(f.trace_id));
      const failed = failures.find((f) => r.original_traces.includes(f.trace_id));
      return el('tr', { 'data-request': r.trace_id },
        el('td', { class: 'num' }, String(i + 1)),
        el('td', null, el('a', { href: '#/trace/' + r.trace_id }, el('span', { class: 'svc' }, r.service + ': '), r.name), joinedBadge([r])),
        el('td', null, fmtTime(r.start_unix_nano)),
        el('td', { class: 'num' }, fmtMs(r.duration_ms)),
        el('td', { class: 'num' }, fmtNum(r.usage.input_tokens) + ' / ' + fmtNum(r.usage.output_tokens)),
        el('td', { class: 'num' }, fmtCost(r.usage.cost_usd)),
        el('td', { class: 'badges' }, findingBadges({ finding_kinds: kindsOf(mineFindings) })),
        el('td', null, failed ? el('span', { class: 'badge err', title: failed.summary }, 'failed') : ''));
    });
    const totals = d.requests.reduce((t, r) => ({ input: t.input + r.usage.input_tokens, output: t.output + r.usage.output_tokens, cost: t.cost + r.usage.cost_usd }), { input: 0, output: 0, cost: 0 });
    const head = el('div', null,
      el('div', { class: 'trace-head' }, el('h1', null, 'Session ' + sessionId),
        el('span', null, plural(d.requests.length, 'request') + ', ' + d.summary.traces + ' traces as received'),
        el('span', null, fmtNum(totals.input) + ' / ' + fmtNum(totals.output) + ' tokens · ' + fmtCost(totals.cost))),
      el('div', { class: 'table-scroll' }, el('table', { class: 'list turns', 'data-test': 'turns' },
        el('caption', { class: 'visually-hidden' }, 'The session turn by turn'),
        el('thead', null, el('tr', null, el('th', { scope: 'col', class: 'num' }, 'Turn'), el('th', { scope: 'col' }, 'Request'), el('th', { scope: 'col' }, 'Started'),
          el('th', { scope: 'col', class: 'num' }, 'Duration'), el('th', { scope: 'col', class: 'num' }, 'Tokens in / out'), el('th', { scope: 'col', class: 'num' }, 'Cost'),
          el('th', { scope: 'col' }, 'Findings'), el('th', { scope: 'col' }, 'Failure'))),
        el('tbody', null, turns))));
    renderConnected(head, d, d.requests, body.spans, 'session');
  }

  // Findings counted by kind, as the request list's rows carry them.
  function kindsOf(findings) {
    const out = [];
    for (const f of findings) {
      const k = out.find((o) => o.kind === f.kind);
      if (k) k.count += 1; else out.push({ kind: f.kind, broken: f.kind !== 'timing_gap', count: 1, message: f.message });
    }
    return out;
  }

  function joinedBadge(requests) {
    const joined = requests.reduce((n, r) => n + r.original_traces.length, 0);
    if (joined <= requests.length) return null;
    return el('span', {
      class: 'badge repaired', 'data-test': 'joined',
      title: 'agentrace joined ' + joined + ' trace IDs, as they arrived, into ' + requests.length + ' connected request(s) from evidence in the spans',
    }, joined + ' traces joined into one');
  }

  // Indexes the connected view's OTLP JSON by span ID, for span details.
  function indexSpans(otlp) {
    const index = new Map();
    for (const rs of (otlp && otlp.resourceSpans) || []) {
      for (const ss of rs.scopeSpans || []) {
        for (const span of ss.spans || []) index.set(span.spanId, { span, resource: rs.resource, scope: ss.scope });
      }
    }
    return index;
  }

  // The waterfall on the left; beside it a pane with two tabs, the
  // diagnosis and the selected span's detail.
  function renderConnected(head, d, requests, otlp, scope) {
    let spans = null; // the OTLP spans by ID, once they arrived
    let shownRow = null;
    const traces = new Set(requests.flatMap((r) => r.original_traces));
    const own = (x) => traces.has(x.trace_id);
    const findings = d.findings.filter(own);
    const rows = waterfallRows(requests, d, findings);
    const detail = el('div', { class: 'detail', 'data-test': 'span-detail' }, el('p', { class: 'muted' }, 'Select a span (click, or arrow keys in the waterfall) for its attributes, messages, events, links and resource.'));
    const side = new SidePane(detail);
    // A span chosen in the waterfall opens the Span tab; one chosen from the
    // diagnosis (a finding, a repair, an agent) is shown in the waterfall and
    // its detail made ready, while the diagnosis stays in view.
    const wf = new Waterfall(rows, (row, quiet) => {
      shownRow = row;
      showDetail(detail, row, spans ? spans.get(row.id) : undefined, !spans);
      if (!quiet) side.show('span');
    });
    const mine = generation;
    const fetchSpans = () => Promise.resolve(typeof otlp === 'function' ? otlp() : otlp).then((o) => {
      if (mine !== generation) return;
      spans = indexSpans(o);
      performance.mark('agentrace:spans');
      if (shownRow) showDetail(detail, shownRow, spans.get(shownRow.id), false);
      document.body.dataset.spans = 'loaded';
    }, (e) => { if (mine === generation) status('span details could not be loaded: ' + e.message); });
    side.setDiagnosis(diagnosisPane(d, requests, findings, rows, scope, (spanId) => wf.select(spanId, true), (agent) => wf.selectAgent(agent)));
    main().replaceChildren(head, legend(), el('div', { class: 'layout' }, el('div', { class: 'wf-col' }, wf.node), side.node));
    wf.layout();
    status(rows.length + ' spans');
    requestAnimationFrame(() => requestAnimationFrame(() => {
      performance.mark('agentrace:interactive');
      document.body.dataset.ready = 'trace';
      fetchSpans();
    }));
  }

  // Two tabs, keyboard-operable as the ARIA tabs pattern says.
  class SidePane {
    constructor(detail) {
      this.panels = { diagnosis: el('div', { class: 'tab-panel', role: 'tabpanel', id: 'panel-diagnosis', 'aria-labelledby': 'tab-diagnosis', tabindex: 0 }),
        span: el('div', { class: 'tab-panel', role: 'tabpanel', id: 'panel-span', 'aria-labelledby': 'tab-span', tabindex: 0 }, detail) };
      this.tabs = {};
      const list = el('div', { class: 'tabs', role: 'tablist', 'aria-label': 'diagnosis or span' });
      for (const [key, label] of [['diagnosis', 'Diagnosis'], ['span', 'Span']]) {
        const tab = el('button', { type: 'button', role: 'tab', id: 'tab-' + key, 'aria-controls': 'panel-' + key, 'data-tab': key }, label);
        tab.addEventListener('click', () => this.show(key));
        tab.addEventListener('keydown', (e) => {
          if (e.key === 'ArrowRight' || e.key === 'ArrowLeft') {
            const other = key === 'diagnosis' ? 'span' : 'diagnosis';
            this.show(other);
            this.tabs[other].focus();
          }
        });
        this.tabs[key] = tab;
        list.appendChild(tab);
      }
      this.node = el('aside', { class: 'panel side', 'aria-label': 'diagnosis and span detail' }, list, this.panels.diagnosis, this.panels.span);
      this.show('diagnosis');
    }

    setDiagnosis(node) { this.panels.diagnosis.replaceChildren(node); }

    show(key) {
      for (const [k, tab] of Object.entries(this.tabs)) {
        const on = k === key;
        tab.setAttribute('aria-selected', String(on));
        tab.tabIndex = on ? 0 : -1;
        this.panels[k].hidden = !on;
      }
      this.panels[key].scrollTop = 0;
    }
  }

  function legend() {
    const chip = (c, label) => el('span', null, el('i', { class: 'swatch ' + c }), label);
    return el('div', { class: 'legend' },
      chip('llm', 'LLM'), chip('tool', 'tool'), chip('retrieval', 'retrieval'), chip('handoff', 'hand-off'), chip('agent', 'agent'), chip('other', 'other'),
      el('span', { class: 'badge crit' }, 'critical path: outlined'), el('span', { class: 'badge err' }, 'error: red'),
      el('span', { class: 'badge repaired', title: 'a span whose parent agentrace inferred from evidence' }, 'repaired edge'),
      el('span', { class: 'badge synthetic', title: 'a span agentrace made up, e.g. the time a message spent in a queue' }, 'synthetic'),
      el('span', null, el('span', { class: 'mark broken' }, '!'), ' broken hop'), el('span', null, el('span', { class: 'mark gap' }, '↔'), ' unexplained gap'),
      el('span', null, 'Drag on the time axis or the overview to zoom.'));
  }

  // Flattens the requests' trees (depth first already) into rows on one
  // time axis, in ms from the earliest request's start.
  function waterfallRows(requests, d, findings) {
    const t0 = requests.reduce((m, r) => (BigInt(r.start_unix_nano) < m ? BigInt(r.start_unix_nano) : m), BigInt(requests.length ? requests[0].start_unix_nano : 0));
    const repairs = new Map(d.repairs.filter((r) => r.applied).map((r) => [r.span_id, r]));
    const marks = new Map();
    for (const f of findings) {
      if (!marks.has(f.span_id)) marks.set(f.span_id, []);
      marks.get(f.span_id).push(f);
    }
    const rows = [];
    requests.forEach((r, ri) => {
      const base = Number(BigInt(r.start_unix_nano) - t0) / 1e6;
      r.spans.forEach((s, i) => {
        const next = r.spans[i + 1];
        rows.push({
          id: s.span_id, parent: s.parent_span_id, depth: s.depth, name: s.name, service: s.service, agent: s.agent,
          kind: s.kind, category: s.category, start: base + s.offset_ms, dur: s.duration_ms, error: s.error,
          synthetic: s.synthetic, repaired: s.repaired, repair: repairs.get(s.span_id), critical: s.critical,
          trace: s.original_trace_id, hasChildren: !!next && next.depth > s.depth, requestStart: i === 0 && ri > 0,
          findings: marks.get(s.span_id) || [],
        });
      });
    });
    return rows;
  }

  function repairTitle(row) {
    const r = row.repair;
    let text = 'Repaired edge: agentrace joined this span to its parent from evidence "' + row.repaired + '"';
    if (r) text += ' (' + r.detail + ', confidence ' + r.confidence + ')';
    text += '. It arrived as a root of trace ' + row.trace + '.';
    return text;
  }
  const SYNTHETIC_TITLE = 'Synthetic span: agentrace made it up to show the time between a producer and its consumer (queue transit). No service sent it.';

  // ----------------------------------------------------------- waterfall ---

  // A virtualised waterfall: only the rows in view are in the DOM, so a
  // trace of 10,000 spans draws as fast as one of 50. It is one ARIA tree:
  // arrow keys move the selection, Left/Right collapse and expand, Enter
  // shows the span, Home/End jump.
  class Waterfall {
    constructor(rows, onSelect) {
      this.rows = rows;
      this.onSelect = onSelect;
      this.collapsed = new Set();
      this.selected = null;
      this.matches = [];
      this.match = -1;
      this.end = rows.reduce((m, r) => Math.max(m, r.start + r.dur), 0) || 1;
      this.window = [0, this.end];
      this.visible = rows;
      this.rowsNode = el('div', { class: 'wf-rows', role: 'none' });
      this.body = el('div', {
        class: 'wf-body', 'data-test': 'waterfall', role: 'tree', tabindex: 0,
        'aria-label': 'spans, ' + rows.length + ' in all: arrow keys move, Left and Right collapse and expand, Enter opens the span',
      }, this.rowsNode);
      this.ruler = el('div', { class: 'wf-ruler', title: 'drag to zoom to a time range' });
      this.minimap = el('canvas', { class: 'wf-minimap', height: 36, role: 'img', 'aria-label': 'overview of all ' + rows.length + ' spans; click to scroll there, drag to zoom' });
      this.zoomLabel = el('span', { class: 'muted zoom-label' });
      this.search = el('input', { type: 'search', class: 'wf-search', placeholder: 'find span', 'aria-label': 'find spans by name, service or agent' });
      this.found = el('span', { class: 'muted', 'aria-live': 'polite', 'data-test': 'search-count' });
      this.node = el('div', { class: 'wf' },
        el('div', { class: 'wf-tools' },
          el('button', { type: 'button', onclick: () => this.zoom(0, this.end) }, 'Reset zoom'),
          el('button', { type: 'button', title: 'one row per request root', onclick: () => this.setAll(true) }, 'Collapse all'),
          el('button', { type: 'button', onclick: () => this.setAll(false) }, 'Expand all'),
          el('button', { type: 'button', 'data-test': 'collapse-level', title: 'hide the deepest level shown', onclick: () => this.level(-1) }, '− level'),
          el('button', { type: 'button', 'data-test': 'expand-level', title: 'show one more level', onclick: () => this.level(1) }, '+ level'),
          el('span', { class: 'wf-find' }, this.search,
            el('button', { type: 'button', 'aria-label': 'previous match', 'data-test': 'search-prev', onclick: () => this.step(-1) }, '↑'),
            el('button', { type: 'button', 'aria-label': 'next match', 'data-test': 'search-next', onclick: () => this.step(1) }, '↓'),
            this.found),
          this.zoomLabel),
        el('div', { class: 'wf-minimap-wrap' }, this.minimap), this.ruler, this.body);
      this.body.addEventListener('scroll', () => { this.draw(); this.drawMinimap(false); });
      this.body.addEventListener('keydown', (e) => this.key(e));
      // Keyboard focus lands on the first row; without redrawing, so that a
      // mouse press that focused the tree still clicks the row it pressed.
      this.body.addEventListener('focus', () => {
        if (this.selected || !this.visible.length) return;
        this.selected = this.visible[0].id;
        this.body.setAttribute('aria-activedescendant', 'row-' + this.selected);
        const node = this.rowsNode.querySelector('[data-span="' + CSS.escape(this.selected) + '"]');
        if (node) { node.classList.add('selected'); node.setAttribute('aria-selected', 'true'); }
      });
      this.search.addEventListener('input', () => this.find(this.search.value));
      this.search.addEventListener('keydown', (e) => { if (e.key === 'Enter') { e.preventDefault(); this.step(e.shiftKey ? -1 : 1); } });
      window.addEventListener('resize', () => this.layout());
      this.dragZoom(this.ruler, () => this.window);
      this.dragZoom(this.minimap, () => [0, this.end], (f) => {
        const i = Math.floor(f * this.visible.length);
        this.body.scrollTop = Math.max(0, i * ROW - this.body.clientHeight / 2);
      });
    }

    layout() {
      this.filter();
      this.draw();
      // The time axis spans exactly the tracks: not the body's scrollbar.
      const gutter = (this.body.offsetWidth - this.body.clientWidth) + 'px';
      this.ruler.style.marginRight = gutter;
      this.minimap.parentNode.style.marginRight = gutter;
      this.drawRuler();
      this.drawMinimap();
    }

    setAll(collapse) {
      this.collapsed = new Set(collapse ? this.rows.filter((r) => r.hasChildren && r.depth === 0).map((r) => r.id) : []);
      this.refilter();
    }

    // Collapses the deepest level shown, or opens the shallowest collapsed one.
    level(delta) {
      if (delta < 0) {
        const parents = this.visible.filter((r) => r.hasChildren && !this.collapsed.has(r.id));
        if (!parents.length) return;
        const depth = Math.max(...parents.map((r) => r.depth));
        for (const r of parents) if (r.depth === depth) this.collapsed.add(r.id);
      } else {
        const shut = this.visible.filter((r) => this.collapsed.has(r.id));
        if (!shut.length) return;
        const depth = Math.min(...shut.map((r) => r.depth));
        for (const r of shut) if (r.depth === depth) this.collapsed.delete(r.id);
      }
      this.refilter();
    }

    refilter() {
      this.filter();
      this.draw();
      this.drawMinimap();
    }

    // Rows not hidden under a collapsed ancestor (rows come depth first).
    filter() {
      const out = [];
      let hideBelow = Infinity;
      for (const r of this.rows) {
        if (r.depth > hideBelow) continue;
        hideBelow = Infinity;
        out.push(r);
        if (this.collapsed.has(r.id)) hideBelow = r.depth;
      }
      this.visible = out;
      this.rowsNode.style.height = out.length * ROW + 'px';
    }

    // Shows a time range, and scrolls to the first span that runs in it.
    zoom(a, b) {
      this.window = [Math.max(0, Math.min(a, b)), Math.min(this.end, Math.max(a, b))];
      if (this.window[1] - this.window[0] < 0.001) this.window = [0, this.end];
      const full = this.window[0] === 0 && this.window[1] === this.end;
      this.zoomLabel.textContent = full ? '' : 'zoomed to ' + fmtMs(this.window[0]) + ' – ' + fmtMs(this.window[1]);
      if (!full) {
        const [from, to] = this.window;
        let i = this.visible.findIndex((r) => r.start >= from && r.start <= to);
        if (i < 0) i = this.visible.findIndex((r) => r.start <= to && r.start + r.dur >= from);
        if (i >= 0) this.body.scrollTop = Math.max(0, i * ROW - ROW);
      }
      this.draw();
      this.drawRuler();
      this.drawMinimap(false);
    }

    x(ms) { return ((ms - this.window[0]) / (this.window[1] - this.window[0])) * 100; }

    drawRuler() {
      const ticks = [];
      for (let i = 0; i <= 4; i++) {
        const ms = this.window[0] + ((this.window[1] - this.window[0]) * i) / 5;
        ticks.push(el('div', { class: 'tick', style: { left: (i * 20) + '%' } }, fmtMs(ms)));
      }
      this.ruler.replaceChildren(...ticks);
    }

    // Every visible span as a hairline, the rows in view and the zoomed
    // range outlined. The hairlines are drawn once per layout (`base`);
    // a scroll only moves the outline.
    drawMinimap(base) {
      const c = this.minimap;
      // On a scroll the width is the last layout's: reading it again would
      // force the browser to lay out the rows just drawn.
      const width = base === false && this.baseWidth ? this.baseWidth : c.parentNode ? c.parentNode.clientWidth : 0;
      if (!width) return;
      const H = 36;
      const ratio = window.devicePixelRatio || 1;
      if (base !== false || !this.base || this.baseWidth !== width) {
        const css = getComputedStyle(document.documentElement);
        const colours = new Map();
        const colour = (name) => {
          if (!colours.has(name)) colours.set(name, css.getPropertyValue('--' + name).trim() || '#999');
          return colours.get(name);
        };
        this.base = document.createElement('canvas');
        this.base.width = Math.round(width * ratio);
        this.base.height = Math.round(H * ratio);
        this.baseWidth = width;
        this.ink = colour('ink');
        const g = this.base.getContext('2d');
        g.setTransform(ratio, 0, 0, ratio, 0, 0);
        const n = this.visible.length || 1;
        const step = Math.max(1, Math.floor(n / (H * 4)));
        for (let i = 0; i < this.visible.length; i += step) {
          const r = this.visible[i];
          g.fillStyle = colour(r.error ? 'err' : cat(r.category));
          g.fillRect((r.start / this.end) * width, (i / n) * H, Math.max(1, (r.dur / this.end) * width), Math.max(1, H / n));
        }
      }
      if (c.width !== Math.round(width * ratio)) { c.width = Math.round(width * ratio); c.style.width = width + 'px'; }
      const g = c.getContext('2d');
      g.setTransform(1, 0, 0, 1, 0, 0);
      g.clearRect(0, 0, c.width, c.height);
      g.drawImage(this.base, 0, 0);
      g.setTransform(ratio, 0, 0, ratio, 0, 0);
      const n = this.visible.length || 1;
      const top = this.body.scrollTop / ROW;
      const shown = (this.body.clientHeight || 600) / ROW;
      g.strokeStyle = this.ink;
      g.lineWidth = 1;
      g.strokeRect((this.window[0] / this.end) * width + 0.5, (top / n) * H + 0.5,
        Math.max(2, ((this.window[1] - this.window[0]) / this.end) * width - 1), Math.max(2, Math.min(H, (shown / n) * H) - 1));
    }

    // Drag across `node` to zoom to that stretch of `range()`; a click
    // without a drag goes to `click` with where it landed (0 to 1, down).
    dragZoom(node, range, click) {
      let from = null;
      let sel = null;
      const at = (e) => {
        const box = node.getBoundingClientRect();
        return Math.min(1, Math.max(0, (e.clientX - box.left) / box.width));
      };
      node.addEventListener('mousedown', (e) => {
        e.preventDefault();
        from = at(e);
        sel = el('div', { class: 'sel', style: { left: from * 100 + '%', width: '0' } });
        this.ruler.appendChild(sel);
      });
      window.addEventListener('mousemove', (e) => {
        if (from === null) return;
        const to = at(e);
        sel.style.left = Math.min(from, to) * 100 + '%';
        sel.style.width = Math.abs(to - from) * 100 + '%';
      });
      window.addEventListener('mouseup', (e) => {
        if (from === null) return;
        const to = at(e);
        const [lo, hi] = range();
        const a = lo + from * (hi - lo);
        const b = lo + to * (hi - lo);
        const moved = Math.abs(to - from);
        from = null;
        if (moved > 0.005) this.zoom(a, b);
        else {
          this.drawRuler();
          if (click) {
            const box = node.getBoundingClientRect();
            click(Math.min(1, Math.max(0, (e.clientY - box.top) / box.height)));
          }
        }
      });
    }

    // Selects a span by ID, opening whatever hides it (`quiet`: without
    // taking the side pane to the span).
    select(id, quiet) {
      if (this.visible.findIndex((r) => r.id === id) < 0) {
        const at = this.rows.findIndex((r) => r.id === id);
        if (at < 0) return;
        // Open every collapsed ancestor: the rows before it with a smaller depth.
        let depth = this.rows[at].depth;
        for (let i = at - 1; i >= 0 && depth > 0; i--) {
          if (this.rows[i].depth < depth) { this.collapsed.delete(this.rows[i].id); depth = this.rows[i].depth; }
        }
        this.filter();
      }
      const j = this.visible.findIndex((r) => r.id === id);
      if (j >= 0) this.selectIndex(j, true, quiet);
    }

    // Selects the first span of an agent (a node of the agent graph).
    selectAgent(agent) {
      const row = this.rows.find((r) => r.agent === agent);
      if (row) {
        this.search.value = agent;
        this.find(agent);
        this.select(row.id, true);
      }
    }

    selectIndex(j, show, quiet) {
      const r = this.visible[j];
      if (!r) return;
      this.selected = r.id;
      const top = j * ROW;
      const view = this.body.clientHeight || 600;
      if (top < this.body.scrollTop || top + ROW > this.body.scrollTop + view) this.body.scrollTop = Math.max(0, top - view / 3);
      this.draw();
      this.body.setAttribute('aria-activedescendant', 'row-' + r.id);
      if (show) this.onSelect(r, quiet);
    }

    key(e) {
      const j = this.visible.findIndex((r) => r.id === this.selected);
      const r = this.visible[j];
      const page = Math.max(1, Math.floor((this.body.clientHeight || 600) / ROW) - 1);
      const moves = { ArrowDown: 1, ArrowUp: -1, PageDown: page, PageUp: -page };
      if (e.key in moves) {
        this.selectIndex(Math.min(this.visible.length - 1, Math.max(0, (j < 0 ? 0 : j + moves[e.key]))), true);
      } else if (e.key === 'Home') this.selectIndex(0, true);
      else if (e.key === 'End') this.selectIndex(this.visible.length - 1, true);
      else if (e.key === 'ArrowRight' && r) {
        if (r.hasChildren && this.collapsed.has(r.id)) this.toggle(r);
        else if (r.hasChildren) this.selectIndex(j + 1, true);
      } else if (e.key === 'ArrowLeft' && r) {
        if (r.hasChildren && !this.collapsed.has(r.id)) this.toggle(r);
        else {
          for (let i = j - 1; i >= 0; i--) if (this.visible[i].depth < r.depth) { this.selectIndex(i, true); break; }
        }
      } else if ((e.key === 'Enter' || e.key === ' ') && r) {
        if (e.key === ' ' && r.hasChildren) this.toggle(r);
        else this.onSelect(r);
      } else return;
      e.preventDefault();
    }

    toggle(r) {
      if (this.collapsed.has(r.id)) this.collapsed.delete(r.id); else this.collapsed.add(r.id);
      this.refilter();
    }

    // The stretches of a span with no child at work, the longest first
    // (those of at least a tenth of the span, or the longest one).
    idle(r) {
      if (!this.kids) {
        this.kids = new Map();
        for (const c of this.rows) {
          if (!this.kids.has(c.parent)) this.kids.set(c.parent, []);
          this.kids.get(c.parent).push([c.start, c.start + c.dur]);
        }
      }
      const kids = (this.kids.get(r.id) || []).slice().sort((x, y) => x[0] - y[0]);
      const out = [];
      let at = r.start;
      for (const [a, b] of kids) {
        if (a > at) out.push([at, a]);
        at = Math.max(at, b);
      }
      if (r.start + r.dur > at) out.push([at, r.start + r.dur]);
      out.sort((x, y) => (y[1] - y[0]) - (x[1] - x[0]));
      return out.filter((g, i) => i === 0 || g[1] - g[0] >= r.dur / 10);
    }

    // Search within the trace: name, service, agent or span ID.
    find(text) {
      const q = text.trim().toLowerCase();
      this.matches = q ? this.rows.filter((r) => (r.name + ' ' + r.service + ' ' + r.agent + ' ' + r.id).toLowerCase().includes(q)).map((r) => r.id) : [];
      this.match = -1;
      this.found.textContent = q ? (this.matches.length ? this.matches.length + ' found' : 'none found') : '';
      this.draw();
    }

    step(delta) {
      if (!this.matches.length) { this.find(this.search.value); if (!this.matches.length) return; }
      this.match = (this.match + delta + this.matches.length) % this.matches.length;
      this.found.textContent = (this.match + 1) + ' of ' + this.matches.length;
      this.select(this.matches[this.match]);
    }

    draw() {
      const top = this.body.scrollTop;
      const height = this.body.clientHeight || 600;
      const first = Math.max(0, Math.floor(top / ROW) - 5);
      const last = Math.min(this.visible.length, Math.ceil((top + height) / ROW) + 5);
      const matched = new Set(this.matches);
      const nodes = [];
      for (let i = first; i < last; i++) nodes.push(this.rowNode(this.visible[i], i, matched));
      this.rowsNode.replaceChildren(...nodes);
    }

    rowNode(r, i, matched) {
      const toggle = el('span', { class: 'toggle', 'aria-hidden': 'true' }, r.hasChildren ? (this.collapsed.has(r.id) ? '▸' : '▾') : '');
      if (r.hasChildren) {
        toggle.addEventListener('click', (e) => { e.stopPropagation(); this.toggle(r); });
      }
      const marks = [];
      const broken = r.findings.filter((f) => f.kind !== 'timing_gap');
      const gaps = r.findings.filter((f) => f.kind === 'timing_gap');
      if (broken.length) marks.push(el('span', { class: 'mark broken', role: 'img', 'aria-label': 'broken hop: ' + broken[0].kind, title: broken.map((f) => f.kind + ': ' + f.message).join('\n'), 'data-test': 'finding-mark' }, '!'));
      if (gaps.length) marks.push(el('span', { class: 'mark gap', role: 'img', 'aria-label': 'unexplained gap', title: gaps.map((f) => f.message).join('\n'), 'data-test': 'finding-mark' }, '↔'));
      const label = el('div', { class: 'wf-label', style: { paddingLeft: 4 + Math.min(r.depth, 24) * 12 + 'px' } },
        toggle, marks, el('span', { class: 'svc' }, r.service), el('span', { class: 'name' }, r.name),
        r.repaired ? el('span', { class: 'badge repaired', 'data-test': 'repaired-edge', title: repairTitle(r) }, 'repaired') : null,
        r.synthetic ? el('span', { class: 'badge synthetic', 'data-test': 'synthetic-span', title: SYNTHETIC_TITLE }, 'synthetic') : null,
        r.error ? el('span', { class: 'badge err' }, 'error') : null);
      const left = this.x(r.start);
      const width = Math.max(0, this.x(r.start + r.dur) - left);
      const classes = ['wf-bar', cat(r.category)];
      if (r.critical) classes.push('crit');
      if (r.error) classes.push('err');
      if (r.synthetic) classes.push('synthetic');
      if (r.repaired) classes.push('repaired');
      const title = r.synthetic ? SYNTHETIC_TITLE : r.repaired ? repairTitle(r)
        : r.name + ' · ' + fmtMs(r.dur) + ' at +' + fmtMs(r.start) + (r.critical ? ' · on the critical path' : '');
      const track = el('div', { class: 'wf-track' });
      if (gaps.length) {
        for (const [a, b] of this.idle(r)) {
          const x1 = Math.max(0, this.x(a));
          const x2 = Math.min(100, this.x(b));
          if (x2 > x1) track.appendChild(el('div', { class: 'wf-gap', title: 'no child span at work for ' + fmtMs(b - a) + ' (+' + fmtMs(a) + ' to +' + fmtMs(b) + ')', style: { left: x1 + '%', width: (x2 - x1) + '%' } }));
        }
      }
      if (left < 100 && left + width > 0) {
        // Clipped to the track: a zoomed bar never paints over the names.
        const a = Math.max(0, left);
        const b = Math.min(100, left + width);
        track.appendChild(el('div', { class: classes.join(' '), title, style: { left: a + '%', width: Math.max(0, b - a) + '%' } }));
        if (b < 92) track.appendChild(el('span', { class: 'wf-dur', style: { left: b + '%', marginLeft: '4px' } }, fmtMs(r.dur)));
      }
      const classesRow = ['wf-row'];
      if (this.selected === r.id) classesRow.push('selected');
      if (r.requestStart) classesRow.push('request-start');
      if (matched.has(r.id)) classesRow.push('match');
      const row = el('div', {
        class: classesRow.join(' '), id: 'row-' + r.id, role: 'treeitem', 'aria-level': r.depth + 1,
        'aria-selected': String(this.selected === r.id), 'aria-expanded': r.hasChildren ? String(!this.collapsed.has(r.id)) : null,
        'aria-label': r.service + ': ' + r.name + ', ' + fmtMs(r.dur) + (r.error ? ', error' : '') + (r.findings.length ? ', ' + plural(r.findings.length, 'finding') : ''),
        style: { top: i * ROW + 'px' }, 'data-span': r.id,
      }, label, track);
      row.addEventListener('click', () => { this.selected = r.id; this.body.setAttribute('aria-activedescendant', 'row-' + r.id); this.draw(); this.onSelect(r); });
      return row;
    }
  }

  // --------------------------------------------------------- span detail ---

  const LONG = 300; // characters of a value shown before "show all"

  // A value as text: JSON pretty-printed, long text cut with a button to
  // show it all, and a copy button.
  function valueNode(text) {
    let shownText = text;
    let pre = false;
    const t = text.trim();
    if ((t.startsWith('{') && t.endsWith('}')) || (t.startsWith('[') && t.endsWith(']'))) {
      try { shownText = JSON.stringify(JSON.parse(t), null, 2); pre = true; } catch (e) { /* not JSON: as is */ }
    }
    const body = el(pre ? 'pre' : 'span', { class: pre ? 'json' : null });
    const wrap = el('div', { class: 'value' }, body);
    const long = shownText.length > LONG;
    const setText = (all) => { body.textContent = all || !long ? shownText : shownText.slice(0, LONG) + '…'; };
    setText(false);
    if (long) {
      const more = el('button', { type: 'button', class: 'link', 'aria-expanded': 'false' }, 'show all ' + shownText.length.toLocaleString() + ' characters');
      more.addEventListener('click', () => {
        const open = more.getAttribute('aria-expanded') !== 'true';
        setText(open);
        more.setAttribute('aria-expanded', String(open));
        more.textContent = open ? 'show less' : 'show all ' + shownText.length.toLocaleString() + ' characters';
      });
      wrap.appendChild(more);
    }
    if (long || pre) {
      const copy = el('button', { type: 'button', class: 'link' }, 'copy');
      copy.addEventListener('click', () => {
        const done = () => { copy.textContent = 'copied'; setTimeout(() => { copy.textContent = 'copy'; }, 1500); };
        if (navigator.clipboard) navigator.clipboard.writeText(text).then(done, () => { copy.textContent = 'copy failed'; });
      });
      wrap.appendChild(copy);
    }
    return wrap;
  }

  // An attribute key that wraps after its dots, not inside a word.
  function keyNode(k) {
    const node = el('th', { scope: 'row', class: 'k' });
    String(k).split('.').forEach((part, i) => {
      if (i) node.append('.', el('wbr'));
      node.append(part);
    });
    return node;
  }

  function kvTable(pairs) {
    if (!pairs.length) return el('p', { class: 'muted' }, 'none');
    return el('table', { class: 'kv' }, el('tbody', null, pairs.map(([k, v]) => el('tr', null, keyNode(k), el('td', { class: 'mono' }, valueNode(String(v)))))));
  }
  const attrPairs = (attrs) => (attrs || []).map((kv) => [kv.key, anyText(kv.value)]);
  const KINDS = ['unspecified', 'internal', 'server', 'client', 'producer', 'consumer'];
  const STATUS = ['unset', 'ok', 'error'];

  // The messages of an LLM call, when the redaction policy kept them: the
  // GenAI conventions' `gen_ai.input.messages` / `gen_ai.output.messages`
  // (JSON), OpenLLMetry's `gen_ai.prompt.N.*` / `gen_ai.completion.N.*`,
  // OpenInference's `llm.input_messages.N.message.*` / `llm.output_messages.N.message.*`.
  function chatMessages(attrs) {
    const get = new Map((attrs || []).map((kv) => [kv.key, anyText(kv.value)]));
    const out = [];
    const fromJson = (key) => {
      const text = get.get(key);
      if (!text) return;
      let list;
      try { list = JSON.parse(text); } catch (e) { return; }
      if (!Array.isArray(list)) return;
      for (const m of list) {
        if (!m || typeof m !== 'object') continue;
        const parts = Array.isArray(m.parts) ? m.parts.map((p) => (p.content !== undefined ? (typeof p.content === 'string' ? p.content : JSON.stringify(p.content))
          : p.type === 'tool_call' ? 'tool call ' + (p.name || '') + ' ' + JSON.stringify(p.arguments || {}) : JSON.stringify(p))).join('\n')
          : typeof m.content === 'string' ? m.content : JSON.stringify(m.content || '');
        out.push({ role: m.role || 'message', text: parts });
      }
    };
    const indexed = (prefix, roleKey, contentKey) => {
      for (let i = 0; i < 200; i++) {
        const role = get.get(prefix + i + roleKey);
        const content = get.get(prefix + i + contentKey);
        if (role === undefined && content === undefined) break;
        out.push({ role: role || 'message', text: content || '' });
      }
    };
    fromJson('gen_ai.input.messages');
    indexed('gen_ai.prompt.', '.role', '.content');
    indexed('llm.input_messages.', '.message.role', '.message.content');
    fromJson('gen_ai.output.messages');
    indexed('gen_ai.completion.', '.role', '.content');
    indexed('llm.output_messages.', '.message.role', '.message.content');
    return out;
  }

  function chatNode(messages) {
    return el('ol', { class: 'chat', 'data-test': 'chat' }, messages.map((m) => el('li', { class: 'msg ' + (['user', 'assistant', 'system', 'tool'].includes(m.role) ? m.role : 'other') },
      el('div', { class: 'role' }, m.role), valueNode(m.text))));
  }

  function showDetail(node, row, found, loading) {
    const parts = [el('h3', null, row.service + ': ' + row.name)];
    if (row.repaired) parts.push(el('p', { class: 'evidence' }, repairTitle(row)));
    if (row.synthetic) parts.push(el('p', { class: 'evidence' }, SYNTHETIC_TITLE));
    for (const f of row.findings) parts.push(el('p', { class: 'finding', 'data-kind': f.kind }, el('span', { class: 'kind' }, f.kind), ' ', f.message));
    const basics = [
      ['span id', row.id], ['trace id (as received)', row.trace], ['agent', row.agent], ['category', row.category],
      ['start', '+' + fmtMs(row.start)], ['duration', fmtMs(row.dur)], ['critical path', row.critical ? 'yes' : 'no'],
    ];
    if (found) {
      const s = found.span;
      basics.push(['kind', KINDS[s.kind] || String(s.kind)]);
      basics.push(['status', (STATUS[(s.status && s.status.code) || 0] || '') + (s.status && s.status.message ? ': ' + s.status.message : '')]);
      if (s.parentSpanId) basics.push(['parent span id', s.parentSpanId]);
    }
    parts.push(kvTable(basics));
    if (loading) parts.push(el('p', { class: 'muted' }, 'Loading attributes, events and links…'));
    if (found) {
      const s = found.span;
      const chat = chatMessages(s.attributes);
      if (chat.length) parts.push(el('h3', null, 'Conversation'), chatNode(chat));
      parts.push(el('h3', null, 'Attributes'), kvTable(attrPairs(s.attributes)));
      parts.push(el('h3', null, 'Events'));
      parts.push((s.events || []).length ? el('div', null, s.events.map((e) => el('div', null,
        el('b', null, e.name), ' ', el('span', { class: 'muted' }, '+' + fmtMs(Number(BigInt(e.timeUnixNano || 0) - BigInt(s.startTimeUnixNano || 0)) / 1e6)),
        kvTable(attrPairs(e.attributes))))) : el('p', { class: 'muted' }, 'none (sensitive events are removed by the collector)'));
      parts.push(el('h3', null, 'Links'));
      parts.push((s.links || []).length ? el('div', null, s.links.map((l) => el('div', null,
        el('span', { class: 'mono' }, l.traceId + ' / ' + l.spanId), kvTable(attrPairs(l.attributes))))) : el('p', { class: 'muted' }, 'none'));
      parts.push(el('h3', null, 'Resource'), kvTable(attrPairs(found.resource && found.resource.attributes)));
      if (found.scope && found.scope.name) parts.push(el('p', { class: 'muted' }, 'scope ' + found.scope.name + (found.scope.version ? ' ' + found.scope.version : '')));
    }
    node.replaceChildren(...parts);
  }

  // ------------------------------------------------------------ diagnosis ---

  function capped(items, draw) {
    const out = items.slice(0, MAX_LIST).map(draw);
    if (items.length > MAX_LIST) out.push(el('p', { class: 'muted' }, 'and ' + (items.length - MAX_LIST) + ' more'));
    return out;
  }

  // A button that selects a span (findings, repairs, failure chain).
  function jump(label, select, spanId, props) {
    return el('button', Object.assign({ type: 'button', class: 'jump', onclick: () => select(spanId) }, props || {}), label);
  }

  function diagnosisPane(d, requests, findings, rows, scope, select, selectAgent) {
    const names = new Map(rows.map((r) => [r.id, r.service + ': ' + r.name]));
    const traces = new Set(requests.flatMap((r) => r.original_traces));
    const repairs = d.repairs.filter((r) => traces.has(r.trace_id));
    const applied = repairs.filter((r) => r.applied).length;
    const synthetic = rows.filter((r) => r.synthetic).length;
    const pane = el('div', { class: 'diag', 'data-test': 'diagnosis' });
    const arrived = requests.reduce((n, r) => n + r.original_traces.length, 0);
    pane.appendChild(el('p', { class: 'caption' },
      arrived + ' trace IDs as received → ' + plural(requests.length, 'connected request') + '; ',
      plural(findings.length, 'finding') + ', ' + plural(applied, 'repair') + ' applied, ' + plural(synthetic, 'synthetic span') + '.'));
    pane.appendChild(fragmentStrip(requests, repairs, names));

    // Identical findings (same kind at the same operation) are one card with a count.
    const groups = [];
    for (const f of findings) {
      const key = f.kind + '\u0000' + f.service + '\u0000' + f.name;
      const g = groups.find((x) => x.key === key);
      if (g) g.items.push(f); else groups.push({ key, items: [f] });
    }
    pane.appendChild(el('section', { 'data-test': 'findings' }, el('h2', null, 'What broke'),
      groups.length ? capped(groups, (g) => {
        const f = g.items[0];
        // Each press goes to the next span of the group.
        let at = 0;
        const go = el('button', { type: 'button', class: 'jump', title: g.items.length > 1 ? 'select the next of ' + g.items.length : 'select the span' }, f.service + ': ' + f.name);
        go.addEventListener('click', () => { select(g.items[at].span_id); at = (at + 1) % g.items.length; });
        const card = el('div', { class: 'finding' + (f.kind === 'timing_gap' ? ' gap' : ''), 'data-kind': f.kind, 'data-count': g.items.length },
          el('div', null, el('span', { class: 'kind' }, f.kind), g.items.length > 1 ? el('span', { class: 'badge' }, '×' + g.items.length) : null, ' at ', go),
          messageNode(f.message),
          f.evidence ? el('div', { class: 'evidence' }, 'evidence: ' + f.evidence) : null);
        return card;
      }) : el('p', { class: 'badge ok' }, 'propagation intact')));

    if (repairs.length) {
      pane.appendChild(el('section', { 'data-test': 'repairs' }, el('h2', null, 'Repairs'),
        capped(repairs, (r) => el('div', { class: 'repair' },
          jump((names.get(r.span_id) || r.span_id) + ' ← ' + (names.get(r.parent_span_id) || r.parent_span_id), select, r.span_id),
          el('div', { class: 'evidence' }, 'evidence ' + r.evidence + (r.detail ? ' (' + r.detail + ')' : '') + ', confidence ' + r.confidence + (r.applied ? ', applied' : ', suggested' + (r.reason ? ': ' + r.reason : '')))))));
    }

    const all = d.failures && d.failures.length ? d.failures : d.failure ? [d.failure] : [];
    const failures = all.filter((f) => traces.has(f.trace_id));
    pane.appendChild(el('section', { 'data-test': 'failure' }, el('h2', null, 'What failed'),
      failures.length ? capped(failures, (f) => el('div', null,
        el('p', null, el('span', { class: 'badge err' }, f.category), ' ', f.summary),
        f.error_type || f.message ? el('p', { class: 'mono' }, [f.error_type, f.message].filter(Boolean).join(': ')) : null,
        el('ol', { class: 'chain', 'data-test': 'failure-chain' }, f.chain.map((c, i) => el('li', {
          class: i === f.chain.length - 1 ? 'blamed' : null,
        }, jump(c.service + ': ' + c.name + ' (' + c.category + ')', select, c.span_id))))))
        : el('p', { class: 'badge ok' }, 'no errors')));

    const whole = d.requests.length > requests.length;
    pane.appendChild(timeSection(d, whole));
    pane.appendChild(el('section', { 'data-test': 'agent-graph' }, el('h2', null, 'Agents' + (whole ? ' (whole session)' : '')), agentGraph(d, selectAgent)));
    return pane;
  }

  // A finding's message: what happened in view, how to fix it folded away
  // (the doctor ends each message with "; fix: …").
  function messageNode(message) {
    const at = message.lastIndexOf('; fix: ');
    if (at < 0) return el('div', null, message);
    return el('div', null, message.slice(0, at) + '.',
      el('details', { class: 'fix' }, el('summary', null, 'How to fix'), el('div', null, message.slice(at + 7))));
  }

  // Before and after: the traces as they arrived, and which were joined to which.
  function fragmentStrip(requests, repairs, names) {
    const strip = el('div', { class: 'fragments', 'data-test': 'fragments' });
    for (const r of requests) {
      if (r.original_traces.length < 2) continue;
      const counts = new Map();
      for (const s of r.spans) if (!s.synthetic) counts.set(s.original_trace_id, (counts.get(s.original_trace_id) || 0) + 1);
      strip.appendChild(el('div', { class: 'fragment-row' },
        el('span', { class: 'muted' }, 'arrived as'),
        r.original_traces.map((t) => {
          const joinedBy = repairs.find((x) => x.trace_id === t && x.applied);
          return el('span', { class: 'fragment' + (joinedBy ? ' joined' : ''), title: t + (joinedBy ? ': joined to ' + (names.get(joinedBy.parent_span_id) || joinedBy.parent_span_id) + ' by ' + joinedBy.evidence : ': the request\'s root') },
            el('span', { class: 'mono' }, t.slice(0, 6) + '…' + t.slice(-4)), ' ', plural(counts.get(t) || 0, 'span'), joinedBy ? el('span', { class: 'via' }, ' ↳ by ' + joinedBy.evidence) : null);
        }),
        el('span', { class: 'muted' }, '→ one request')));
    }
    return strip;
  }

  // One stacked bar: each part's share of the total, labelled below
  // (`note` adds to a part's hover text).
  function stackedBar(parts, total, classOf, test, note) {
    const bar = el('div', { class: 'stack', role: 'img', 'aria-label': parts.map(([l, ms]) => l + ' ' + fmtMs(ms)).join(', ') },
      parts.map(([label, ms]) => el('div', { class: 'seg ' + classOf(label), title: label + ': ' + fmtMs(ms), style: { width: (total ? (ms / total) * 100 : 0) + '%' } })));
    const keys = el('ul', { class: 'stack-keys' }, parts.map(([label, ms]) => el('li', { 'data-test': test, title: label + ': ' + fmtMs(ms) + ' on the critical path' + (note ? note(label) : '') },
      el('i', { class: 'swatch ' + classOf(label) }), el('span', { class: 'label', title: label }, label), ' ',
      el('span', { class: 'num' }, fmtMs(ms) + ' · ' + Math.round(total ? (ms / total) * 100 : 0) + '%'))));
    return el('div', null, bar, keys);
  }

  function timeSection(d, whole) {
    const byCat = new Map();
    const byAgent = new Map();
    for (const t of d.time_breakdown) {
      byCat.set(t.category, (byCat.get(t.category) || 0) + t.ms);
      byAgent.set(t.agent, (byAgent.get(t.agent) || 0) + t.ms);
    }
    const total = [...byCat.values()].reduce((a, b) => a + b, 0) || d.critical_path_ms;
    const sorted = (m) => [...m.entries()].sort((a, b) => b[1] - a[1]);
    // Many agents: the largest few, then the rest together.
    const top = (entries) => (entries.length > MAX_BARS
      ? [...entries.slice(0, MAX_BARS - 1), [(entries.length - MAX_BARS + 1) + ' more', entries.slice(MAX_BARS - 1).reduce((n, e) => n + e[1], 0)]]
      : entries);
    const agentClass = new Map(sorted(byAgent).map(([a], i) => [a, 'agent-' + (i % 6)]));
    return el('section', { 'data-test': 'time-breakdown' }, el('h2', null, 'Where the time went' + (whole ? ' (whole session)' : '')),
      el('p', { class: 'caption' }, 'Counted along the critical path (' + fmtMs(d.critical_path_ms) + '): at each instant the time goes to the span at work that the request waited on, not to a parent waiting for its children, so the parts add up to the critical path. An agent whose span ran longer is credited only for the time nothing it called was at work.'),
      el('h3', null, 'By category'), stackedBar(sorted(byCat), total, cat, 'time-bar'),
      el('h3', null, 'By agent'), stackedBar(top(sorted(byAgent)), total, (a) => agentClass.get(a) || 'agent-rest', 'time-bar', (a) => {
        const stats = d.agents.find((x) => x.name === a);
        return stats ? '; its spans ran ' + fmtMs(stats.duration_ms) + ', the rest of that waiting on others' : '';
      }));
  }

  // The agent graph as a layered directed graph: callers above the agents
  // they hand work to, each layer ordered to keep edges short, wrapped to
  // the pane's width so that text stays readable. A node selects its spans.
  function agentGraph(d, selectAgent) {
    if (!d.agents.length) return el('p', { class: 'muted' }, 'No agents recognised.');
    const holder = el('div', { class: 'graph-holder' });
    // Laid out for the pane's width once it has one, and again only when a
    // new width changes how many agents fit on a line (a hidden tab has no
    // width: nothing is redrawn for it).
    let perLine = 0;
    const draw = () => {
      const width = holder.clientWidth;
      if (!width) return;
      const fit = agentsPerLine(width);
      if (fit === perLine) return;
      perLine = fit;
      holder.replaceChildren(agentSvg(d, selectAgent, width));
    };
    requestAnimationFrame(draw);
    if (window.ResizeObserver) new ResizeObserver(draw).observe(holder);
    return holder;
  }

  const NODE_W = 168; const NODE_GAP = 28; const GRAPH_PAD = 12;
  const agentsPerLine = (width) => Math.max(1, Math.floor((width - 2 * GRAPH_PAD + NODE_GAP) / (NODE_W + NODE_GAP)));

  function agentSvg(d, selectAgent, paneWidth) {
    const W = NODE_W; const H = 74; const GX = NODE_GAP; const GY = 54; const PAD = GRAPH_PAD;
    const perLine = agentsPerLine(paneWidth);
    const byDepth = new Map();
    for (const a of d.agents) {
      if (!byDepth.has(a.depth)) byDepth.set(a.depth, []);
      byDepth.get(a.depth).push(a);
    }
    // Order each layer by the mean place of its callers (barycentre): fewer crossings.
    const place = new Map();
    const lines = [];
    for (const depth of [...byDepth.keys()].sort((a, b) => a - b)) {
      const layer = byDepth.get(depth);
      const score = (a) => {
        const from = d.delegations.filter((e) => e.to === a.name && place.has(e.from)).map((e) => place.get(e.from));
        return from.length ? from.reduce((x, y) => x + y, 0) / from.length : Infinity;
      };
      layer.sort((a, b) => score(a) - score(b) || a.name.localeCompare(b.name));
      layer.forEach((a, i) => place.set(a.name, i));
      for (let i = 0; i < layer.length; i += perLine) lines.push(layer.slice(i, i + perLine));
    }
    const widest = Math.max(1, ...lines.map((l) => l.length));
    const width = Math.max(PAD * 2 + widest * (W + GX) - GX, 200);
    const height = PAD * 2 + lines.length * (H + GY) - GY;
    const pos = new Map();
    lines.forEach((line, li) => {
      const offset = (width - (line.length * (W + GX) - GX)) / 2;
      line.forEach((a, ci) => pos.set(a.name, { x: offset + ci * (W + GX), y: PAD + li * (H + GY) }));
    });
    const root = svg('svg', { class: 'agent-graph', viewBox: `0 0 ${width} ${height}`, width, height, role: 'group', 'aria-label': 'agent graph: ' + plural(d.agents.length, 'agent') + ', ' + plural(d.delegations.length, 'hand-off') },
      svg('defs', null, svg('marker', { id: 'arrow', viewBox: '0 0 10 10', refX: 10, refY: 5, markerWidth: 7, markerHeight: 7, orient: 'auto-start-reverse' },
        svg('path', { d: 'M0,0 L10,5 L0,10 z' }))));
    for (const e of d.delegations) {
      const a = pos.get(e.from); const b = pos.get(e.to);
      if (!a || !b) continue;
      let path; let lx; let ly;
      if (b.y > a.y) {
        const x1 = a.x + W / 2; const y1 = a.y + H; const x2 = b.x + W / 2; const y2 = b.y;
        path = `M${x1},${y1} C${x1},${y1 + GY / 2} ${x2},${y2 - GY / 2} ${x2},${y2}`;
        lx = (x1 + x2) / 2; ly = (y1 + y2) / 2;
      } else if (b.y === a.y) {
        // Same line: an arc above, between the two boxes.
        const [l, r] = a.x < b.x ? [a, b] : [b, a];
        const x1 = a === l ? l.x + W : r.x; const x2 = a === l ? r.x : l.x + W;
        path = `M${x1},${a.y + H / 2} L${x2},${b.y + H / 2}`;
        lx = (x1 + x2) / 2; ly = a.y + H / 2 - 6;
      } else {
        // Back up: along the right side, inside the drawing.
        const x1 = a.x + W; const x2 = b.x + W; const bend = Math.min(width - 2, Math.max(x1, x2) + GX / 2);
        path = `M${x1},${a.y + H / 2} C${bend},${a.y + H / 2} ${bend},${b.y + H / 2} ${x2},${b.y + H / 2}`;
        lx = bend - 4; ly = (a.y + b.y + H) / 2;
      }
      root.appendChild(svg('path', { class: 'edge', d: path, 'marker-end': 'url(#arrow)', 'data-from': e.from, 'data-to': e.to },
        svg('title', null, e.from + ' → ' + e.to + ' via ' + e.via + ' × ' + e.count)));
      const label = e.via + (e.count > 1 ? ' ×' + e.count : '');
      root.appendChild(svg('rect', { class: 'via-bg', x: lx - label.length * 3.2 - 3, y: ly - 9, width: label.length * 6.4 + 6, height: 13, rx: 3 }));
      root.appendChild(svg('text', { class: 'via', x: lx, y: ly, 'text-anchor': 'middle' }, label));
    }
    for (const a of d.agents) {
      const p = pos.get(a.name);
      const cut = (t, n) => (t.length > n ? t.slice(0, n - 1) + '…' : t);
      const line = (y, text, cls) => svg('text', { x: p.x + 8, y: p.y + y, class: cls || null }, text);
      const summary = a.name + ': ' + a.llm_calls + ' LLM calls, ' + a.tool_calls + ' tool calls, ' + fmtNum(a.input_tokens) + ' in / ' + fmtNum(a.output_tokens) + ' out tokens, ' + fmtCost(a.cost_usd) + (a.errors ? ', ' + plural(a.errors, 'error') : '') + '; with its delegates ' + fmtNum(a.subtree.input_tokens + a.subtree.output_tokens) + ' tokens, ' + fmtCost(a.subtree.cost_usd);
      const node = svg('g', { class: 'node' + (a.errors ? ' failed' : ''), 'data-agent': a.name, tabindex: 0, role: 'button', 'aria-label': 'select the spans of ' + summary },
        svg('title', null, summary),
        svg('rect', { x: p.x, y: p.y, width: W, height: H, rx: 6 }),
        line(16, cut(a.name, 22), 'name'),
        line(32, fmtNum(a.input_tokens) + ' in / ' + fmtNum(a.output_tokens) + ' out tokens'),
        line(47, fmtCost(a.cost_usd) + ' · ' + fmtMs(a.duration_ms)),
        line(62, a.errors ? a.errors + ' error' + (a.errors > 1 ? 's' : '') : a.llm_calls + ' LLM · ' + a.tool_calls + ' tool calls', a.errors ? 'errs' : null));
      node.addEventListener('click', () => selectAgent(a.name));
      node.addEventListener('keydown', (e) => { if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); selectAgent(a.name); } });
      root.appendChild(node);
    }
    return root;
  }

  // ---------------------------------------------------------------- theme ---

  // Light or dark from the system, unless the switch says otherwise.
  function initTheme() {
    const button = document.getElementById('theme');
    const modes = ['auto', 'dark', 'light'];
    const system = window.matchMedia('(prefers-color-scheme: dark)');
    let mode = localStorage.getItem('agentrace.theme') || 'auto';
    const apply = () => {
      document.documentElement.dataset.theme = mode === 'auto' ? (system.matches ? 'dark' : 'light') : mode;
      if (button) button.textContent = 'Theme: ' + mode;
      // Canvas colours come from the theme: redraw what is on screen.
      window.dispatchEvent(new Event('resize'));
    };
    apply();
    system.addEventListener('change', () => { if (mode === 'auto') apply(); });
    if (button) {
      button.addEventListener('click', () => {
        mode = modes[(modes.indexOf(mode) + 1) % modes.length];
        if (mode === 'auto') localStorage.removeItem('agentrace.theme'); else localStorage.setItem('agentrace.theme', mode);
        apply();
      });
    }
  }

  initTheme();
  window.addEventListener('hashchange', route);
  route();
}());
