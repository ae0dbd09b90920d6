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

  async function api(path) {
    const headers = { accept: 'application/json' };
    if (token) headers.authorization = 'Bearer ' + token;
    const response = await fetch(path, { headers });
    if (response.status === 401) throw new Unauthorized('this collector needs a bearer token');
    const body = await response.json().catch(() => null);
    if (!response.ok) {
      const message = body && body.error ? body.error.message : response.statusText;
      throw new Error(response.status + ': ' + message);
    }
    return body;
  }

  function showError(err) {
    if (err instanceof Unauthorized) return showTokenForm();
    main().replaceChildren(el('div', { class: 'panel' }, el('h1', null, 'Something went wrong'), el('p', { class: 'mono' }, String(err.message || err))));
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
    const hash = location.hash.replace(/^#/, '') || '/';
    const [path, query] = hash.split('?');
    const params = new URLSearchParams(query || '');
    const parts = path.split('/').filter(Boolean).map(decodeURIComponent);
    const run = parts[0] === 'trace' && parts[1] ? traceView(parts[1], params)
      : parts[0] === 'session' && parts[1] ? sessionView(parts[1])
        : parts[0] === 'sessions' ? sessionListView()
          : traceListView(params);
    run.catch(showError);
  }

  // ---------------------------------------------------------- trace list ---

  const FILTERS = [
    ['service', 'Service'], ['agent', 'Agent'], ['session', 'Session'], ['q', 'Root name or trace ID'],
    ['min_duration', 'Min duration (e.g. 250ms)'],
  ];

  async function traceListView(params) {
    const mine = generation;
    const form = el('form', { class: 'filters' });
    const inputs = {};
    for (const [key, label] of FILTERS) {
      inputs[key] = el('input', { type: 'text', name: key, value: params.get(key) || '' });
      form.appendChild(el('label', null, label, inputs[key]));
    }
    for (const [key, label] of [['start', 'From'], ['end', 'To']]) {
      const iso = params.get(key);
      inputs[key] = el('input', { type: 'datetime-local', name: key });
      if (iso) {
        const d = new Date(iso);
        inputs[key].value = new Date(d.getTime() - d.getTimezoneOffset() * 60000).toISOString().slice(0, 16);
      }
      form.appendChild(el('label', null, label, inputs[key]));
    }
    for (const [key, label] of [['errors', 'Errors only'], ['findings', 'Has findings'], ['broken', 'Broken context']]) {
      inputs[key] = el('input', { type: 'checkbox', name: key });
      inputs[key].checked = params.get(key) === 'true';
      form.appendChild(el('label', { class: 'check' }, inputs[key], label));
    }
    form.appendChild(el('button', { type: 'submit' }, 'Filter'));
    form.appendChild(el('button', { type: 'button', onclick: () => { location.hash = '#/'; } }, 'Clear'));
    form.addEventListener('submit', (e) => {
      e.preventDefault();
      const out = new URLSearchParams();
      for (const [key] of FILTERS) if (inputs[key].value.trim()) out.set(key, inputs[key].value.trim());
      for (const key of ['start', 'end']) if (inputs[key].value) out.set(key, new Date(inputs[key].value).toISOString());
      for (const key of ['errors', 'findings', 'broken']) if (inputs[key].checked) out.set(key, 'true');
      location.hash = '#/?' + out.toString();
    });

    const tbody = el('tbody');
    const table = el('table', { class: 'list', 'data-test': 'trace-list' },
      el('thead', null, el('tr', null,
        el('th', null, 'Request'), el('th', null, 'Agents'), el('th', null, 'Started'),
        el('th', { class: 'num' }, 'Duration'), el('th', { class: 'num' }, 'Spans'),
        el('th', { class: 'num' }, 'Tokens in / out'), el('th', { class: 'num' }, 'Cost'),
        el('th', null, 'Findings'), el('th', null, 'Errors'), el('th', null, 'Session'))),
      tbody);
    main().replaceChildren(el('h1', null, 'Requests'), form, table);

    const query = new URLSearchParams(params);
    query.set('limit', '50');
    let last = '';
    let known = null;
    // One row per connected request, as the live pipeline stored it (a
    // request joined from several arrived traces is one row); without a
    // live pipeline, one row per trace as it arrived.
    const refresh = async () => {
      let body = await api('/api/agentrace/requests?' + query.toString());
      let rowsOf = body.requests.map(requestAsRow);
      if (body.live === false) {
        body = await api('/api/agentrace/traces?' + query.toString());
        rowsOf = body.traces;
      }
      if (mine !== generation) return;
      const text = JSON.stringify(rowsOf);
      if (text !== last) {
        last = text;
        const rows = rowsOf.map((t) => traceRow(t, known && !known.has(t.trace_id)));
        tbody.replaceChildren(...(rows.length ? rows : [el('tr', null, el('td', { colspan: 10, class: 'muted' }, 'No requests yet. Send OTLP to :4317 or :4318; a trace is listed once no span of it arrived for the trace timeout.'))]));
        known = new Set(rowsOf.map((t) => t.trace_id));
      }
      status('updated ' + new Date().toLocaleTimeString());
      if (!performance.getEntriesByName('agentrace:list').length) performance.mark('agentrace:list');
      document.body.dataset.ready = 'list';
    };
    const poll = async () => {
      if (mine !== generation) return;
      if (!document.hidden) await refresh().catch((e) => status('update failed: ' + e.message));
      if (mine === generation) pollTimer = setTimeout(poll, POLL_MS);
    };
    await refresh();
    pollTimer = setTimeout(poll, POLL_MS);
  }

  // A request row in the shape of a trace row.
  function requestAsRow(r) {
    return Object.assign({}, r, { trace_id: r.request_id, traces: r.trace_ids });
  }

  function traceRow(t, fresh) {
    const link = el('a', { href: '#/trace/' + encodeURIComponent(t.trace_id) },
      el('span', { class: 'svc' }, t.root_service + ': '), t.root_name);
    const joined = t.traces && t.traces.length > 1
      ? el('span', { class: 'badge join', title: 'arrived as ' + t.traces.join(', ') }, t.traces.length + ' traces joined')
      : null;
    return el('tr', { class: fresh ? 'fresh' : null, 'data-trace': t.trace_id, 'data-traces': (t.traces || [t.trace_id]).join(' ') },
      el('td', null, link, joined, el('div', { class: 'mono muted' }, t.trace_id)),
      el('td', null, (t.agents || []).join(', ')),
      el('td', null, fmtTime(t.start_unix_nano)),
      el('td', { class: 'num' }, fmtMs(t.duration_ms)),
      el('td', { class: 'num' }, String(t.spans)),
      el('td', { class: 'num' }, fmtNum(t.input_tokens) + ' / ' + fmtNum(t.output_tokens)),
      el('td', { class: 'num' }, fmtCost(t.cost_usd)),
      el('td', null, t.findings ? el('span', { class: 'badge find', title: t.broken ? 'trace context broke: ' + plural(t.broken, 'broken hop') : 'findings of the doctor' }, plural(t.findings, 'finding')) : ''),
      el('td', null, t.errors ? el('span', { class: 'badge err' }, plural(t.errors, 'error')) : ''),
      el('td', null, t.session ? el('a', { href: '#/session/' + encodeURIComponent(t.session) }, t.session) : ''));
  }

  // -------------------------------------------------------- session list ---

  async function sessionListView() {
    const body = await api('/api/agentrace/sessions?limit=100');
    const rows = body.sessions.map((s) => el('tr', null,
      el('td', null, el('a', { href: '#/session/' + encodeURIComponent(s.id) }, s.id)),
      el('td', null, fmtTime(s.start_unix_nano)), el('td', null, fmtTime(s.last_unix_nano)),
      el('td', { class: 'num' }, String(s.traces))));
    main().replaceChildren(el('h1', null, 'Sessions'),
      el('table', { class: 'list' }, el('thead', null, el('tr', null,
        el('th', null, 'Session'), el('th', null, 'First span'), el('th', null, 'Last span'), el('th', { class: 'num' }, 'Traces'))),
      el('tbody', null, rows.length ? rows : el('tr', null, el('td', { colspan: 4, class: 'muted' }, 'No sessions yet.')))));
    document.body.dataset.ready = 'sessions';
  }

  // -------------------------------------------------- trace and session ---

  // Fetches a connected view; null when the user has moved on meanwhile.
  async function loadConnected(what, path) {
    const mine = generation;
    status('loading ' + what + '…');
    const body = await api(path);
    if (mine !== generation) return null;
    performance.mark('agentrace:data');
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
    const head = el('div', { class: 'trace-head' },
      el('h1', null, shown[0] ? shown[0].service + ': ' + shown[0].name : traceId),
      el('span', { class: 'mono muted' }, traceId),
      shown[0] ? el('span', null, fmtMs(shown[0].duration_ms)) : null,
      el('span', null, shown.reduce((n, r) => n + r.spans.length, 0) + ' spans'),
      joinedBadge(shown),
      session ? el('a', { href: '#/session/' + encodeURIComponent(session) }, 'session ' + session) : null,
      d.requests.length > shown.length ? el('span', { class: 'muted' }, (d.requests.length - shown.length) + ' other requests in this session') : null);
    renderConnected(head, d, shown, body.spans);
  }

  async function sessionView(sessionId) {
    const body = await loadConnected('session', '/api/agentrace/sessions/' + encodeURIComponent(sessionId));
    if (!body) return;
    const d = body.diagnosis;
    const list = el('ol', { class: 'requests' }, d.requests.map((r) => el('li', null,
      el('a', { href: '#/trace/' + r.trace_id }, r.service + ': ' + r.name), ' ',
      el('span', { class: 'muted' }, fmtTime(r.start_unix_nano) + ' · ' + fmtMs(r.duration_ms)), joinedBadge([r]))));
    const head = el('div', null,
      el('div', { class: 'trace-head' }, el('h1', null, 'Session ' + sessionId),
        el('span', null, d.requests.length + ' requests, ' + d.summary.traces + ' traces as received')),
      list);
    renderConnected(head, d, d.requests, body.spans);
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

  function renderConnected(head, d, requests, otlp) {
    const spans = indexSpans(otlp);
    const rows = waterfallRows(requests, d);
    const detail = el('div', { class: 'panel detail', 'data-test': 'span-detail' }, el('p', { class: 'muted' }, 'Click a span for its attributes, events, links and resource.'));
    const wf = new Waterfall(rows, (row) => showDetail(detail, row, spans.get(row.id), d));
    const diag = diagnosisPane(d, rows, (spanId) => wf.select(spanId));
    main().replaceChildren(head, el('div', { class: 'layout' }, el('div', null, legend(), wf.node, el('h2', null, 'Span'), detail), diag));
    wf.layout();
    status(rows.length + ' spans');
    requestAnimationFrame(() => requestAnimationFrame(() => {
      performance.mark('agentrace:interactive');
      document.body.dataset.ready = 'trace';
    }));
  }

  function legend() {
    const chip = (c, label) => el('span', null, el('i', { style: { background: `var(--${c})` } }), label);
    return el('div', { class: 'legend' },
      chip('llm', 'LLM'), chip('tool', 'tool'), chip('retrieval', 'retrieval'), chip('handoff', 'hand-off'), chip('agent', 'agent'), chip('other', 'other'),
      el('span', { class: 'badge crit' }, 'critical path: outlined'), el('span', { class: 'badge err' }, 'error: red'),
      el('span', { class: 'badge repaired', title: 'a span whose parent agentrace inferred from evidence' }, 'repaired edge'),
      el('span', { class: 'badge synthetic', title: 'a span agentrace made up, e.g. the time a message spent in a queue' }, 'synthetic'),
      el('span', null, 'Drag on the time axis to zoom.'));
  }

  // Flattens the requests' trees (depth first already) into rows on one
  // time axis, in ms from the earliest request's start.
  function waterfallRows(requests, d) {
    const t0 = requests.reduce((m, r) => (BigInt(r.start_unix_nano) < m ? BigInt(r.start_unix_nano) : m), BigInt(requests.length ? requests[0].start_unix_nano : 0));
    const repairs = new Map(d.repairs.filter((r) => r.applied).map((r) => [r.span_id, r]));
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
  // trace of 10,000 spans draws as fast as one of 50.
  class Waterfall {
    constructor(rows, onSelect) {
      this.rows = rows;
      this.onSelect = onSelect;
      this.collapsed = new Set();
      this.selected = null;
      this.end = rows.reduce((m, r) => Math.max(m, r.start + r.dur), 0) || 1;
      this.window = [0, this.end];
      this.visible = rows;
      this.rowsNode = el('div', { class: 'wf-rows' });
      this.body = el('div', { class: 'wf-body', 'data-test': 'waterfall' }, this.rowsNode);
      this.ruler = el('div', { class: 'wf-ruler', title: 'drag to zoom to a time range' });
      this.zoomLabel = el('span', { class: 'muted' });
      this.node = el('div', { class: 'wf' },
        el('div', { class: 'wf-tools' },
          el('button', { type: 'button', onclick: () => this.zoom(0, this.end) }, 'Reset zoom'),
          el('button', { type: 'button', onclick: () => this.setAll(true) }, 'Collapse all'),
          el('button', { type: 'button', onclick: () => this.setAll(false) }, 'Expand all'),
          this.zoomLabel),
        this.ruler, this.body);
      this.body.addEventListener('scroll', () => this.draw());
      window.addEventListener('resize', () => this.layout());
      this.dragZoom();
    }

    layout() {
      this.filter();
      this.draw();
      // The time axis spans exactly the tracks: not the body's scrollbar.
      this.ruler.style.marginRight = (this.body.offsetWidth - this.body.clientWidth) + 'px';
      this.drawRuler();
    }

    setAll(collapse) {
      this.collapsed = new Set(collapse ? this.rows.filter((r) => r.hasChildren && r.depth === 0).map((r) => r.id) : []);
      this.layout();
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

    zoom(a, b) {
      this.window = [Math.max(0, Math.min(a, b)), Math.min(this.end, Math.max(a, b))];
      if (this.window[1] - this.window[0] < 0.001) this.window = [0, this.end];
      const full = this.window[0] === 0 && this.window[1] === this.end;
      this.zoomLabel.textContent = full ? '' : 'zoomed to ' + fmtMs(this.window[0]) + ' – ' + fmtMs(this.window[1]);
      this.draw();
      this.drawRuler();
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

    dragZoom() {
      let from = null;
      let sel = null;
      const at = (e) => {
        const box = this.ruler.getBoundingClientRect();
        return Math.min(1, Math.max(0, (e.clientX - box.left) / box.width));
      };
      this.ruler.addEventListener('mousedown', (e) => {
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
        const span = this.window[1] - this.window[0];
        const a = this.window[0] + from * span;
        const b = this.window[0] + to * span;
        const moved = Math.abs(to - from);
        from = null;
        if (moved > 0.005) this.zoom(a, b);
        else this.drawRuler();
      });
    }

    select(id) {
      const i = this.visible.findIndex((r) => r.id === id);
      if (i < 0) {
        // Expand what hides it, then try again.
        this.collapsed.clear();
        this.filter();
      }
      const j = this.visible.findIndex((r) => r.id === id);
      if (j < 0) return;
      this.selected = id;
      this.body.scrollTop = Math.max(0, j * ROW - this.body.clientHeight / 3);
      this.draw();
      this.onSelect(this.visible[j]);
    }

    draw() {
      const top = this.body.scrollTop;
      const height = this.body.clientHeight || 600;
      const first = Math.max(0, Math.floor(top / ROW) - 5);
      const last = Math.min(this.visible.length, Math.ceil((top + height) / ROW) + 5);
      const nodes = [];
      for (let i = first; i < last; i++) nodes.push(this.rowNode(this.visible[i], i));
      this.rowsNode.replaceChildren(...nodes);
    }

    rowNode(r, i) {
      const toggle = el('span', { class: 'toggle' }, r.hasChildren ? (this.collapsed.has(r.id) ? '▸' : '▾') : '');
      if (r.hasChildren) {
        toggle.addEventListener('click', (e) => {
          e.stopPropagation();
          if (this.collapsed.has(r.id)) this.collapsed.delete(r.id); else this.collapsed.add(r.id);
          this.filter();
          this.draw();
        });
      }
      const label = el('div', { class: 'wf-label', style: { paddingLeft: 4 + r.depth * 12 + 'px' } },
        toggle, el('span', { class: 'svc' }, r.service), el('span', { class: 'name' }, r.name),
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
      if (left < 100 && left + width > 0) {
        track.appendChild(el('div', { class: classes.join(' '), title, style: { left: left + '%', width: width + '%' } }));
        track.appendChild(el('span', { class: 'wf-dur', style: { left: Math.min(92, Math.max(0, left + width)) + '%', marginLeft: '4px' } }, fmtMs(r.dur)));
      }
      const row = el('div', {
        class: 'wf-row' + (this.selected === r.id ? ' selected' : '') + (r.requestStart ? ' request-start' : ''),
        style: { top: i * ROW + 'px' }, 'data-span': r.id,
      }, label, track);
      row.addEventListener('click', () => { this.selected = r.id; this.draw(); this.onSelect(r); });
      return row;
    }
  }

  // --------------------------------------------------------- span detail ---

  function kvTable(pairs) {
    if (!pairs.length) return el('p', { class: 'muted' }, 'none');
    return el('table', null, el('tbody', null, pairs.map(([k, v]) => el('tr', null, el('td', { class: 'k' }, k), el('td', { class: 'mono' }, v)))));
  }
  const attrPairs = (attrs) => (attrs || []).map((kv) => [kv.key, anyText(kv.value)]);
  const KINDS = ['unspecified', 'internal', 'server', 'client', 'producer', 'consumer'];
  const STATUS = ['unset', 'ok', 'error'];

  function showDetail(node, row, found) {
    const parts = [el('h3', null, row.service + ': ' + row.name)];
    if (row.repaired) parts.push(el('p', { class: 'evidence' }, repairTitle(row)));
    if (row.synthetic) parts.push(el('p', { class: 'evidence' }, SYNTHETIC_TITLE));
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
    if (found) {
      const s = found.span;
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

  function diagnosisPane(d, rows, select) {
    const names = new Map(rows.map((r) => [r.id, r.service + ': ' + r.name]));
    const s = d.summary;
    const pane = el('aside', { class: 'panel diag', 'data-test': 'diagnosis' });
    pane.appendChild(el('h2', null, 'Diagnosis'));
    pane.appendChild(el('p', null,
      s.traces + ' trace IDs as received → ' + s.requests + ' connected request(s); ',
      s.findings + ' findings, ' + s.repairs_applied + ' repairs applied, ' + s.synthetic_spans + ' synthetic spans.'));

    pane.appendChild(el('section', { 'data-test': 'findings' }, el('h2', null, 'What broke'),
      d.findings.length ? capped(d.findings, (f) => el('div', { class: 'finding', 'data-kind': f.kind, onclick: () => select(f.span_id) },
        el('span', { class: 'kind' }, f.kind), ' at ', el('span', null, f.service + ': ' + f.name),
        el('div', null, f.message),
        f.evidence ? el('div', { class: 'evidence' }, 'evidence: ' + f.evidence) : null))
        : el('p', { class: 'badge ok' }, 'propagation intact')));

    if (d.repairs.length) {
      pane.appendChild(el('section', { 'data-test': 'repairs' }, el('h2', null, 'Repairs'),
        capped(d.repairs, (r) => el('div', { class: 'repair', onclick: () => select(r.span_id) },
          el('div', null, (names.get(r.span_id) || r.span_id) + ' ← ' + (names.get(r.parent_span_id) || r.parent_span_id)),
          el('div', { class: 'evidence' }, 'evidence ' + r.evidence + (r.detail ? ' (' + r.detail + ')' : '') + ', confidence ' + r.confidence + (r.applied ? ', applied' : ', suggested' + (r.reason ? ': ' + r.reason : '')))))));
    }

    const failures = d.failures && d.failures.length ? d.failures : d.failure ? [d.failure] : [];
    pane.appendChild(el('section', { 'data-test': 'failure' }, el('h2', null, 'What failed'),
      failures.length ? capped(failures, (f) => el('div', null,
        el('p', null, el('span', { class: 'badge err' }, f.category), ' ', f.summary),
        f.error_type || f.message ? el('p', { class: 'mono' }, [f.error_type, f.message].filter(Boolean).join(': ')) : null,
        el('ol', { class: 'chain', 'data-test': 'failure-chain' }, f.chain.map((c, i) => el('li', {
          class: i === f.chain.length - 1 ? 'blamed' : null, onclick: () => select(c.span_id),
        }, c.service + ': ' + c.name + ' (' + c.category + ')')))))
        : el('p', { class: 'badge ok' }, 'no errors')));

    pane.appendChild(timeSection(d));
    pane.appendChild(el('section', { 'data-test': 'agent-graph' }, el('h2', null, 'Agents'), agentGraph(d)));
    return pane;
  }

  function barChart(all, total, classOf) {
    // Fifty agents would push the graph out of sight: the largest few, then the rest together.
    const entries = all.length > MAX_BARS
      ? [...all.slice(0, MAX_BARS - 1), [(all.length - MAX_BARS + 1) + ' more', all.slice(MAX_BARS - 1).reduce((n, e) => n + e[1], 0)]]
      : all;
    return el('div', { class: 'bars' }, entries.map(([label, ms]) => el('div', { class: 'bar-row', 'data-test': 'time-bar' },
      el('span', { title: label }, label),
      el('div', null, el('div', { class: 'bar ' + classOf(label), style: { width: (total ? (ms / total) * 100 : 0) + '%' } })),
      el('span', { class: 'num' }, fmtMs(ms) + ' · ' + Math.round(total ? (ms / total) * 100 : 0) + '%'))));
  }

  function timeSection(d) {
    const byCat = new Map();
    const byAgent = new Map();
    for (const t of d.time_breakdown) {
      byCat.set(t.category, (byCat.get(t.category) || 0) + t.ms);
      byAgent.set(t.agent, (byAgent.get(t.agent) || 0) + t.ms);
    }
    const total = d.critical_path_ms || [...byCat.values()].reduce((a, b) => a + b, 0);
    const sorted = (m) => [...m.entries()].sort((a, b) => b[1] - a[1]);
    return el('section', { 'data-test': 'time-breakdown' }, el('h2', null, 'Where the time went'),
      el('p', { class: 'muted' }, 'critical path ' + fmtMs(d.critical_path_ms)),
      el('h3', null, 'By category'), barChart(sorted(byCat), total, cat),
      el('h3', null, 'By agent'), barChart(sorted(byAgent), total, () => 'by-agent'));
  }

  // The agent graph: agents in rows by delegation depth (callers above the
  // agents they hand work to), hand-offs as arrows.
  function agentGraph(d) {
    const W = 180; const H = 74; const GX = 16; const GY = 46; const PAD = 12; const PER_LINE = 3;
    const rows = new Map();
    for (const a of d.agents) {
      if (!rows.has(a.depth)) rows.set(a.depth, []);
      rows.get(a.depth).push(a);
    }
    // A wide level wraps onto several lines, so that fifty specialists
    // under one orchestrator stay readable in the side pane.
    const lines = [];
    for (const depth of [...rows.keys()].sort((a, b) => a - b)) {
      const row = rows.get(depth);
      for (let i = 0; i < row.length; i += PER_LINE) lines.push(row.slice(i, i + PER_LINE));
    }
    const widest = Math.max(1, ...lines.map((l) => l.length));
    const width = PAD * 2 + widest * (W + GX) - GX;
    const height = PAD * 2 + Math.max(1, lines.length) * (H + GY) - GY;
    const pos = new Map();
    lines.forEach((line, li) => {
      const offset = (width - (line.length * (W + GX) - GX)) / 2;
      line.forEach((a, ci) => pos.set(a.name, { x: offset + ci * (W + GX), y: PAD + li * (H + GY) }));
    });
    const root = svg('svg', { class: 'agent-graph', viewBox: `0 0 ${width} ${height}`, role: 'img', 'aria-label': 'agent graph', style: { maxWidth: width + 'px' } },
      svg('defs', null, svg('marker', { id: 'arrow', viewBox: '0 0 10 10', refX: 10, refY: 5, markerWidth: 7, markerHeight: 7, orient: 'auto-start-reverse' },
        svg('path', { d: 'M0,0 L10,5 L0,10 z' }))));
    for (const e of d.delegations) {
      const a = pos.get(e.from); const b = pos.get(e.to);
      if (!a || !b) continue;
      const x1 = a.x + W / 2; const y1 = a.y + H; const x2 = b.x + W / 2; const y2 = b.y;
      const path = y2 > y1 ? `M${x1},${y1} C${x1},${y1 + GY / 2} ${x2},${y2 - GY / 2} ${x2},${y2}`
        : `M${a.x + W},${a.y + H / 2} C${a.x + W + 40},${a.y + H / 2} ${b.x + W + 40},${b.y + H / 2} ${b.x + W},${b.y + H / 2}`;
      root.appendChild(svg('path', { class: 'edge', d: path, 'marker-end': 'url(#arrow)', 'data-from': e.from, 'data-to': e.to },
        svg('title', null, e.from + ' → ' + e.to + ' via ' + e.via + ' × ' + e.count)));
      root.appendChild(svg('text', { class: 'via', x: (x1 + x2) / 2 + 6, y: (Math.max(y1, y2) + Math.min(y1, y2)) / 2 + 4 }, e.via + (e.count > 1 ? ' ×' + e.count : '')));
    }
    for (const a of d.agents) {
      const p = pos.get(a.name);
      const line = (y, text, cls) => svg('text', { x: p.x + 8, y: p.y + y, class: cls || null }, text);
      root.appendChild(svg('g', { class: 'node' + (a.errors ? ' failed' : ''), 'data-agent': a.name },
        svg('title', null, a.name + ': ' + a.llm_calls + ' LLM calls, ' + a.tool_calls + ' tool calls; with its delegates ' + fmtNum(a.subtree.input_tokens + a.subtree.output_tokens) + ' tokens, ' + fmtCost(a.subtree.cost_usd)),
        svg('rect', { x: p.x, y: p.y, width: W, height: H, rx: 6 }),
        line(16, a.name, 'name'),
        line(32, fmtNum(a.input_tokens) + ' in / ' + fmtNum(a.output_tokens) + ' out tokens'),
        line(47, fmtCost(a.cost_usd) + ' · ' + fmtMs(a.duration_ms)),
        line(62, a.errors ? a.errors + ' error' + (a.errors > 1 ? 's' : '') : a.llm_calls + ' LLM · ' + a.tool_calls + ' tool calls', a.errors ? 'errs' : null)));
    }
    return d.agents.length ? root : el('p', { class: 'muted' }, 'No agents recognised.');
  }

  window.addEventListener('hashchange', route);
  route();
}());
