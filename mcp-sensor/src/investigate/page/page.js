'use strict';
// Draws the investigation report embedded in #report-data (the JSON of
// `mcp-sensor investigate --format json`). Everything from the log is
// attacker-influenced: it only ever reaches the page through textContent
// and setAttribute, never as markup.
(function () {
  const R = JSON.parse(document.getElementById('report-data').textContent);
  const TS = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?Z$/;
  const firstTs = R.sessions.length ? R.sessions[0].start : null;
  const BASE = firstTs && TS.test(firstTs) ? Date.parse(TS.exec(firstTs)[1] + 'Z') : 0;

  // ms since BASE; keeps sub-ms precision that Date.parse would drop
  function ms(ts) {
    const m = ts ? TS.exec(ts) : null;
    if (!m) return null;
    return (Date.parse(m[1] + 'Z') - BASE) + (m[2] ? Number('0.' + m[2]) * 1000 : 0);
  }
  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  function add(parent, ...kids) { kids.forEach(k => k && parent.appendChild(k)); return parent; }
  function dur(d) {
    if (d === null || d === undefined || isNaN(d)) return '';
    const a = Math.abs(d);
    if (a < 1) return d.toFixed(2) + ' ms';
    if (a < 1000) return d.toFixed(1) + ' ms';
    if (a < 60000) return (d / 1000).toFixed(2) + ' s';
    return Math.floor(d / 60000) + 'm ' + String(Math.round((d % 60000) / 1000)).padStart(2, '0') + 's';
  }
  function clock(ts) { return ts ? (ts.split('T')[1] || ts).slice(0, 12) : ''; }
  function idText(id) { return id === null || id === undefined ? '—' : JSON.stringify(id); }

  // ---------- header ----------
  const calls = R.sessions.reduce((n, s) => n + s.calls.length, 0);
  const alerts = R.sessions.reduce((n, s) => n + s.alerts, 0) + R.other_alerts.length;
  const events = R.sources.reduce((n, s) => n + s.events, 0);
  const chip = (label, n, cls) => { const c = el('span', 'chip' + (cls ? ' ' + cls : '')); add(c, el('b', '', n), document.createTextNode(' ' + label)); return c; };
  add(document.getElementById('summary'),
    chip('sessions', R.sessions.length), chip('calls', calls),
    chip(alerts === 1 ? 'alert' : 'alerts', alerts, alerts ? 'alerting' : ''),
    chip('events from ' + R.sources.length + ' file' + (R.sources.length === 1 ? '' : 's'), events));
  const banners = document.getElementById('banners');
  const lost = R.losses.queue + Object.values(R.losses.kernel).reduce((a, b) => a + b, 0) + Object.values(R.losses.other).reduce((a, b) => a + b, 0);
  if (lost) add(banners, el('div', 'banner bad', 'The sensor lost events while writing these logs (' + JSON.stringify(R.losses) + '): the timeline may be incomplete.'));
  R.sources.filter(s => s.bad_lines).forEach(s => add(banners, el('div', 'banner',
    s.path + ': ' + s.bad_lines + ' line(s) were not events' + (s.torn_tail ? ' (the last one torn: the log was being written)' : '') + ' and are not shown.')));
  if (R.filters) add(banners, el('div', 'banner', 'Filtered: ' + JSON.stringify(R.filters)));

  // ---------- tooltip ----------
  const tip = document.getElementById('tip');
  const tipData = new WeakMap();
  function showTip(ev, lines) {
    tip.replaceChildren();
    lines.forEach(([cls, text]) => add(tip, el('div', cls, text)));
    tip.hidden = false;
    const x = Math.min(ev.clientX + 14, window.innerWidth - tip.offsetWidth - 8);
    const y = ev.clientY + 16 + tip.offsetHeight > window.innerHeight ? ev.clientY - tip.offsetHeight - 10 : ev.clientY + 16;
    tip.style.left = x + 'px'; tip.style.top = y + 'px';
  }
  document.addEventListener('mouseover', ev => { const d = tipData.get(ev.target); if (d) showTip(ev, d); });
  document.addEventListener('mouseout', ev => { if (tipData.has(ev.target)) tip.hidden = true; });

  // ---------- timeline pieces ----------
  function span(c, sessionEnd) {
    const acts = c.activity.map(a => ms(a.ts)).filter(x => x !== null);
    let start = ms(c.request_ts);
    const end = ms(c.response_ts);
    if (start === null && end !== null && c.latency_ms !== null) start = end - c.latency_ms;
    if (start === null) start = acts.length ? Math.min(...acts) : end;
    return [start, end !== null ? end : Math.max(sessionEnd, ...acts)];
  }
  function ticks(track, d0, d1, origin) {
    const range = d1 - d0, raw = range / 7, pow = Math.pow(10, Math.floor(Math.log10(raw)));
    const step = [1, 2, 5, 10].map(m => m * pow).find(s => s >= raw) || raw;
    for (let v = Math.ceil((d0 - origin) / step) * step; v + origin <= d1; v += step) {
      const t = el('div', 'tick'), x = (v + origin - d0) / range * 100;
      t.style.left = x + '%';
      if (x < 93) add(t, el('span', '', Math.abs(v) < 1e-9 ? '0' : (v > 0 ? '+' : '') + dur(v)));
      add(track, t);
    }
  }
  function markFor(a, x, ctx) {
    const m = el('div', 'mark ' + a.kind);
    if (a.failed) m.classList.add('failed');
    if (a.in_flight) m.classList.add('shared');
    if (a.alerts.length) m.classList.add('alert');
    m.style.left = x + '%';
    m.setAttribute('data-kind', a.kind);
    const lines = [['tk', a.kind + (a.pid !== null ? '  pid ' + a.pid + ' ' + (a.comm || '') : '')],
      ['ts', clock(a.ts) + (ctx.origin !== null ? '  (+' + dur(ms(a.ts) - ctx.origin) + ')' : '')], ['sm', a.summary]];
    if (a.in_flight) lines.push(['', 'one of ' + a.in_flight.length + ' requests in flight: ' + a.in_flight.map(idText).join(', ')]);
    if (a.after_response) lines.push(['', 'after the response (a process the call started)']);
    a.alerts.forEach(al => lines.push(['al', '⚠ ' + al.severity + ' ' + al.rule + (al.count > 1 ? ' ×' + al.count : '') + ': ' + al.description]));
    tipData.set(m, lines);
    m.addEventListener('click', ev => { ev.stopPropagation(); ctx.row.classList.add('open'); const tr = ctx.trs[ctx.i]; if (tr) { tr.scrollIntoView({ block: 'center', behavior: 'smooth' }); tr.classList.remove('flash'); void tr.offsetWidth; tr.classList.add('flash'); } });
    return m;
  }
  function alertBox(al) {
    const b = el('div', 'alert-box');
    add(b, el('b', '', '⚠ ' + al.severity.toUpperCase() + ' ' + al.rule), document.createTextNode(' [' + al.action + '] ' + al.description));
    if (al.count > 1) add(b, el('div', 'note', '×' + al.count + ' (first ' + al.ts + (al.last_ts ? ', last ' + al.last_ts : '') + ')'));
    if (al.summary) add(b, el('div', 'note', (al.event_kind || '') + ': ' + al.summary));
    return b;
  }
  function actTable(acts, origin, trs) {
    const tbl = el('table', 'acts');
    const head = el('tr');
    ['time', 'kind', 'pid', 'process', 'what'].forEach(h => add(head, el('th', '', h)));
    add(tbl, head);
    acts.forEach(a => {
      const tr = el('tr', a.failed ? 'failed' : '');
      if (a.alerts.length) tr.classList.add('has-alert');
      const when = origin !== null ? '+' + dur(ms(a.ts) - origin) : clock(a.ts);
      const what = el('td', 'sum', a.summary);
      if (a.in_flight) add(what, el('div', 'note shared', 'one of ' + a.in_flight.length + ' requests in flight (' + a.in_flight.map(idText).join(', ') + '): the sensor does not guess which'));
      if (a.after_response) add(what, el('div', 'note', 'after the response: a process this call started'));
      if (a.phase) add(what, el('div', 'note', a.phase.replace('_', ' ')));
      a.alerts.forEach(al => add(what, alertBox(al)));
      add(tr, el('td', 't', when), add(el('td'), el('span', 'kind ' + a.kind, a.kind)), el('td', 't', a.pid), el('td', '', a.comm || ''), what);
      trs.push(tr);
      add(tbl, tr);
    });
    return tbl;
  }
  function kv(pairs) {
    const dl = el('dl', 'kv');
    pairs.filter(p => p[1] !== null && p[1] !== undefined && p[1] !== '').forEach(([k, v]) => add(dl, el('dt', '', k), v instanceof Node ? add(el('dd'), v) : el('dd', '', v)));
    return dl;
  }

  function callRow(s, c, dom, sessionEnd, zoom) {
    const [c0, c1] = span(c, sessionEnd);
    const row = el('div', 'row call' + (c.alerts.length ? ' alerting' : ''));
    row.setAttribute('data-id', idText(c.id));
    row.setAttribute('data-tool', c.tool || c.method || '');
    const label = el('div', 'label');
    const txt = el('span', 'txt');
    add(txt, el('span', 'call-id', '#' + idText(c.id) + ' '), el('span', 'call-name', c.tool || c.method || '?'));
    if (c.tool && c.method) add(txt, el('span', 'call-id', ' ' + c.method));
    add(label, el('span', 'dot ' + c.status), txt);
    if (c.alerts.length) add(label, el('span', 'alert-flag', '⚠ ' + c.alerts.length));
    const track = el('div', 'track');
    const bar = el('div', 'call-bar ' + c.status + (c.alerts.length ? ' alerting' : ''));
    const pos = x => (x - dom[0]) / (dom[1] - dom[0]) * 100;
    const left = Math.max(0, pos(c0)), right = Math.min(100, pos(c1));
    bar.style.left = left + '%';
    bar.style.width = Math.max(0, right - left) + '%';
    tipData.set(bar, [['tk', (c.tool || c.method || '?') + '  #' + idText(c.id)], ['ts', clock(c.request_ts) + '  ' + (c.latency_ms !== null ? dur(c.latency_ms) : 'no response')],
      ['sm', c.arguments ? JSON.stringify(c.arguments).slice(0, 300) : ''], ['sm', c.result ? '→ ' + c.result.slice(0, 300) : '']]);
    if (c1 >= dom[0] && c0 <= dom[1]) {
      add(track, bar);
      const kinds = {};
      c.activity.forEach(a => { kinds[a.kind] = (kinds[a.kind] || 0) + 1; });
      const said = [c.latency_ms !== null ? dur(c.latency_ms) : 'no response'].concat(Object.keys(kinds).sort().map(k => kinds[k] + ' ' + k));
      const bl = el('div', 'bar-label', said.join(' · '));
      if (right > 80) { bl.style.right = (100 - left) + '%'; bl.classList.add('left'); } else bl.style.left = right + '%';
      add(track, bl);
    }
    const details = el('div', 'details');
    const trs = [];
    const ctx = { row, trs, origin: c0 };
    c.activity.forEach((a, i) => { const x = pos(ms(a.ts)); if (x >= 0 && x <= 100) add(track, markFor(a, x, Object.assign({ i }, ctx))); });
    const zoomBtn = el('button', '', 'zoom the axis to this call');
    zoomBtn.addEventListener('click', ev => { ev.stopPropagation(); const pad = Math.max((c1 - c0) * 0.15, 0.05); zoom([c0 - pad, c1 + pad]); });
    add(details,
      kv([['tool', c.tool], ['method', c.method], ['request id', idText(c.id)], ['request', c.request_ts || 'not in the log (known from its response or activity)'],
        ['response', c.response_ts], ['latency', c.latency_ms !== null ? dur(c.latency_ms) : null], ['status', c.status.replace('_', ' ') + (c.is_error ? ' (is_error)' : '')],
        ['result', c.result], ['arguments', c.arguments ? el('pre', '', JSON.stringify(c.arguments, null, 2)) : null],
        ['note', c.truncated ? 'the request was longer than the sensor keeps: arguments may be cut' : null]]),
      zoomBtn);
    const own = c.alerts.filter(al => !c.activity.some(a => a.alerts.some(x => JSON.stringify(x) === JSON.stringify(al))));
    own.forEach(al => add(details, alertBox(al)));
    add(details, c.activity.length ? actTable(c.activity, c0, trs) : el('div', 'note', 'no host activity attributed to this call'));
    add(row, label, track, details);
    row.addEventListener('click', ev => { if (!details.contains(ev.target)) row.classList.toggle('open'); });
    return row;
  }

  function outsideRow(s, dom, origin) {
    const row = el('div', 'row outside-row');
    const label = el('div', 'label');
    add(label, el('span', 'txt', 'outside any call (' + s.outside.length + ')'));
    const n = s.outside.reduce((k, a) => k + a.alerts.length, 0);
    if (n) { add(label, el('span', 'alert-flag', '⚠ ' + n)); row.classList.add('alerting'); }
    const track = el('div', 'track');
    const details = el('div', 'details');
    const trs = [];
    const ctx = { row, trs, origin };
    s.outside.forEach((a, i) => { const x = (ms(a.ts) - dom[0]) / (dom[1] - dom[0]) * 100; if (x >= 0 && x <= 100) add(track, markFor(a, x, Object.assign({ i }, ctx))); });
    add(details, el('div', 'note', 'start-up, between calls, and after exit: no request was in flight'), actTable(s.outside, origin, trs));
    add(row, label, track, details);
    row.addEventListener('click', ev => { if (!details.contains(ev.target)) row.classList.toggle('open'); });
    return row;
  }

  function sessionCard(s) {
    const card = el('section', 'session' + (s.alerts ? ' has-alerts' : ''));
    card.setAttribute('data-pid', s.server.pid);
    const t0 = ms(s.start), t1 = Math.max(ms(s.end), t0 + 1);
    const head = el('div', 's-head');
    add(head, el('span', 's-name', s.server.name), el('span', 's-meta', 'pid ' + s.server.pid + (s.server.instance > 1 ? ' (pid reused: session ' + s.server.instance + ')' : '')),
      el('span', 's-meta', s.start.replace('T', ' ').slice(0, 23) + ' UTC · ' + dur(t1 - t0) + ' · ' + s.calls.length + ' calls'));
    if (s.exit) add(head, el('span', 'badge ' + (s.exit.signal !== null ? 'killed' : 'exit'), s.exit.signal !== null ? 'killed by signal ' + s.exit.signal : 'exited ' + s.exit.code));
    if (s.alerts) add(head, el('span', 'badge alert', '⚠ ' + s.alerts + (s.alerts === 1 ? ' alert' : ' alerts')));
    const tools = el('div', 's-tools');
    const reset = el('button', '', 'reset zoom');
    reset.hidden = true;
    const toCalls = el('button', '', 'zoom to the calls');
    const expand = el('button', '', 'expand all');
    add(tools, toCalls, reset, expand);
    expand.addEventListener('click', () => {
      const rows = Array.from(body.querySelectorAll('.row'));
      const open = !rows.every(r => r.classList.contains('open'));
      rows.forEach(r => r.classList.toggle('open', open));
      expand.textContent = open ? 'collapse all' : 'expand all';
    });
    add(head, tools);
    if (s.server.names.length > 1) add(head, el('div', 's-meta', 'also named: ' + s.server.names.filter(n => n !== s.server.name).join(' | ')));
    const body = el('div', 'body');
    const full = [t0 - (t1 - t0) * 0.01, t1 + (t1 - t0) * 0.01];
    function draw(dom) {
      body.replaceChildren();
      reset.hidden = dom === full;
      const axisRow = el('div', 'axis-row');
      const axis = el('div', 'track axis');
      ticks(axis, dom[0], dom[1], t0);
      add(axisRow, el('div', 'label', 'since start'), axis);
      add(body, axisRow);
      if (s.outside.length) add(body, outsideRow(s, dom, t0));
      s.calls.forEach(c => add(body, callRow(s, c, dom, t1, draw)));
      if (!s.calls.length && !s.outside.length) add(body, el('div', 'empty', 'nothing in this session matches'));
    }
    reset.addEventListener('click', () => draw(full));
    const spans = s.calls.map(c => span(c, t1));
    if (spans.length) {
      const a = Math.min(...spans.map(x => x[0])), b = Math.max(...spans.map(x => x[1])), pad = Math.max((b - a) * 0.03, 0.05);
      toCalls.addEventListener('click', () => draw([a - pad, b + pad]));
    } else toCalls.hidden = true;
    draw(full);
    // #calls: start zoomed to the calls; #expand: every row open (for printing)
    if (/calls/.test(location.hash) && !toCalls.hidden) toCalls.click();
    if (/expand/.test(location.hash)) expand.click();
    return add(card, head, body);
  }

  const main = document.getElementById('sessions');
  R.sessions.forEach(s => add(main, sessionCard(s)));
  if (R.other_alerts.length) {
    const card = el('section', 'session has-alerts');
    add(card, add(el('div', 's-head'), el('span', 's-name', 'alerts outside any server')));
    R.other_alerts.forEach(al => add(card, alertBox(al)));
    add(main, card);
  }
  if (!R.sessions.length && !R.other_alerts.length) add(main, el('div', 'empty', 'Nothing matches.'));
  document.body.setAttribute('data-rendered', 'true');
})();
