// Sluice dashboard and customer portal. Plain JavaScript over the REST API (/api/v1); no framework,
// no build step. Every value from the API is put on the page as text (never as HTML).
'use strict';
(function () {
  const KEY = 'sluice.key';
  const NEXT = 'sluice.next';
  const state = {
    key: sessionStorage.getItem(KEY) || '',
    portal: null,      // GET /api/v1/portal answer when signed in with a portal link
    projects: {},      // uid -> project
    endpointNames: {}, // project uid -> {endpoint uid -> name}
  };
  let renderGen = 0;   // bumped on every route change; views drop stale async results

  // ---------- DOM helpers ----------
  function h(tag, attrs, ...kids) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'class') el.className = v;
      else if (k === 'text') el.textContent = v;
      else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
      else if (k === 'value') el.value = v;
      else el.setAttribute(k, v === true ? '' : String(v));
    }
    for (const kid of kids.flat(Infinity)) {
      if (kid === undefined || kid === null || kid === false) continue;
      el.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
    }
    return el;
  }
  const svgNS = 'http://www.w3.org/2000/svg';
  function s(tag, attrs, ...kids) {
    const el = document.createElementNS(svgNS, tag);
    for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
    for (const kid of kids.flat()) if (kid) el.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
    return el;
  }
  const $ = (sel, root) => (root || document).querySelector(sel);
  const main = () => $('#main');
  function mount(...kids) {
    const m = main();
    m.replaceChildren(...kids.flat(Infinity).filter((k) => k !== null && k !== undefined && k !== false));
  }
  function badge(v) { return h('span', { class: 'badge b-' + String(v || 'unknown').replace(/[^a-z-]/g, '') }, v || 'unknown'); }
  function when(iso) {
    if (!iso) return '—';
    const d = new Date(iso);
    return isNaN(d) ? iso : d.toLocaleString(undefined, { year: 'numeric', month: 'short', day: '2-digit', hour: '2-digit', minute: '2-digit', second: '2-digit' });
  }
  function ago(iso) {
    if (!iso) return '';
    const sec = Math.round((Date.now() - new Date(iso)) / 1000);
    if (sec < 60) return sec + ' s ago';
    if (sec < 3600) return Math.round(sec / 60) + ' min ago';
    if (sec < 86400) return Math.round(sec / 3600) + ' h ago';
    return Math.round(sec / 86400) + ' d ago';
  }
  function short(id) { return id ? id.slice(0, 10) + '…' : '—'; }
  function pretty(text) {
    if (text === undefined || text === null) return '';
    if (typeof text !== 'string') return JSON.stringify(text, null, 2);
    try { return JSON.stringify(JSON.parse(text), null, 2); } catch (e) { return text; }
  }
  function notice(kind, msg) { return h('p', { class: 'notice ' + kind, role: kind === 'error' ? 'alert' : 'status' }, msg); }
  function empty(msg) { return h('div', { class: 'empty' }, msg); }
  function table(cls, headers, rows) {
    return h('div', { class: 'table-wrap' }, h('table', { class: cls },
      h('thead', {}, h('tr', {}, headers.map((x) => h('th', { scope: 'col' }, x)))),
      h('tbody', {}, rows)));
  }
  function headersTable(hdrs) {
    const rows = Object.entries(hdrs || {}).sort().map(([k, v]) => h('tr', {}, h('th', { scope: 'row' }, k), h('td', {}, Array.isArray(v) ? v.join(', ') : v)));
    return rows.length ? h('div', { class: 'table-wrap' }, h('table', { class: 'headers' }, h('tbody', {}, rows))) : h('p', { class: 'muted' }, 'none');
  }

  // ---------- API ----------
  class APIError extends Error { constructor(status, msg) { super(msg); this.status = status; } }
  async function api(method, path, body) {
    const opts = { method, headers: { Authorization: 'Bearer ' + state.key } };
    if (body !== undefined) { opts.headers['Content-Type'] = 'application/json'; opts.body = JSON.stringify(body); }
    let res;
    try { res = await fetch('/api/v1' + path, opts); } catch (e) { throw new APIError(0, 'Sluice is unreachable: ' + e.message); }
    let env = null;
    try { env = await res.json(); } catch (e) { /* not JSON */ }
    if (!res.ok) {
      const err = new APIError(res.status, (env && env.message) || res.status + ' ' + res.statusText);
      if (res.status === 401 && state.key) { signOut(err.message); }
      throw err;
    }
    return env ? env.data : null;
  }
  function qs(params) {
    const p = new URLSearchParams();
    for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== '') p.set(k, v);
    const s = p.toString();
    return s ? '?' + s : '';
  }

  // ---------- routing ----------
  function route() {
    const raw = location.hash.replace(/^#/, '') || '/';
    const [path, query] = raw.split('?');
    return { parts: path.split('/').filter(Boolean).map(decodeURIComponent), query: new URLSearchParams(query || '') };
  }
  function go(path) { if (location.hash !== '#' + path) location.hash = '#' + path; else render(); }
  function link(path, ...kids) { return h('a', { href: '#' + path }, kids); }

  function signOut(msg) {
    state.key = ''; state.portal = null; state.projects = {}; state.endpointNames = {};
    sessionStorage.removeItem(KEY);
    go('/login' + (msg ? '?msg=' + encodeURIComponent(msg) : ''));
  }

  // ---------- chrome ----------
  function setChrome(pid, section) {
    const nav = $('#nav');
    const ctx = $('#context');
    const who = $('#who');
    $('#signout').hidden = !state.key;
    who.textContent = state.portal ? 'Customer portal · owner ' + state.portal.link.owner_id : (state.key ? 'Operator' : '');
    if (!pid) { nav.replaceChildren(); ctx.textContent = ''; return; }
    const p = state.projects[pid];
    ctx.textContent = p ? p.name + (p.type ? ' · ' + p.type : '') : '';
    const items = [['', 'Overview'], ['endpoints', 'Endpoints'], ['events', 'Events'], ['deliveries', 'Deliveries']];
    if (!state.portal) {
      items.push(['subscriptions', 'Subscriptions']);
      if (p && p.type === 'incoming') items.push(['sources', 'Sources']);
      items.push(['portal-links', 'Portal links']);
    }
    const links = items.map(([seg, label]) => {
      const a = link('/p/' + pid + (seg ? '/' + seg : ''), label);
      if (seg === (section || '')) a.setAttribute('aria-current', 'page');
      return a;
    });
    if (!state.portal) links.unshift(link('/projects', 'All projects'));
    nav.replaceChildren(...links);
  }

  async function project(pid) {
    if (state.projects[pid]) return state.projects[pid];
    if (state.portal) {
      const p = state.portal.project;
      state.projects[p.uid] = p;
      return p;
    }
    const p = await api('GET', '/projects/' + pid);
    state.projects[pid] = p;
    return p;
  }
  async function endpointNames(pid) {
    if (state.endpointNames[pid]) return state.endpointNames[pid];
    const names = {};
    try {
      const page = await api('GET', '/projects/' + pid + '/endpoints?perPage=200');
      for (const e of page.content) names[e.uid] = e.name || e.url;
    } catch (e) { /* names are a nicety */ }
    state.endpointNames[pid] = names;
    return names;
  }

  // ---------- main render ----------
  async function render() {
    const gen = ++renderGen;
    // A portal link: /ui/#portal=<token>. Keep the token in this tab only and drop it from the URL.
    const m = location.hash.match(/^#portal=([A-Za-z0-9_-]+)/);
    if (m) {
      state.key = m[1]; state.portal = null; state.projects = {};
      sessionStorage.setItem(KEY, state.key);
      history.replaceState(null, '', location.pathname + '#/');
    }
    const r = route();
    if (!state.key) {
      if (r.parts[0] !== 'login') {
        // Remember a deep link (e.g. to a delivery) across the sign-in.
        if (r.parts.length) sessionStorage.setItem(NEXT, location.hash.slice(1));
        go('/login'); return;
      }
      setChrome(); loginPage(r.query.get('msg')); return;
    }
    try {
      if (state.key.startsWith('pt_') && !state.portal) {
        state.portal = await api('GET', '/portal');
        state.projects[state.portal.project.uid] = state.portal.project;
      }
      if (gen !== renderGen) return;
      const [top, pid, section, id, sub] = r.parts;
      if (top === 'login' || !top) {
        if (state.portal) { go('/p/' + state.portal.project.uid); return; }
        const ps = await api('GET', '/projects');
        if (gen !== renderGen) return;
        for (const p of ps) state.projects[p.uid] = p;
        if (ps.length === 1) { go('/p/' + ps[0].uid); return; }
        go('/projects'); return;
      }
      if (top === 'projects') { setChrome(); await projectsPage(gen); return; }
      if (top !== 'p' || !pid) { setChrome(); mount(h('h1', {}, 'Not found'), h('p', {}, link('/', 'Go to the start page'))); return; }
      if (state.portal && pid !== state.portal.project.uid) { go('/p/' + state.portal.project.uid); return; }
      await project(pid);
      if (gen !== renderGen) return;
      setChrome(pid, section);
      const views = {
        undefined: () => overviewPage(gen, pid),
        endpoints: () => id === 'new' ? endpointNewPage(gen, pid) : id ? endpointPage(gen, pid, id) : endpointsPage(gen, pid, r.query),
        events: () => id ? eventPage(gen, pid, id) : eventsPage(gen, pid, r.query),
        deliveries: () => id ? deliveryPage(gen, pid, id) : deliveriesPage(gen, pid, r.query),
        subscriptions: () => subscriptionsPage(gen, pid),
        sources: () => sourcesPage(gen, pid),
        'portal-links': () => portalLinksPage(gen, pid),
      };
      const view = views[section];
      if (!view) { mount(h('h1', {}, 'Not found')); return; }
      await view(sub);
    } catch (e) {
      if (gen !== renderGen || e.status === 401) return;
      mount(h('h1', {}, 'Something went wrong'), notice('error', e.message),
        h('p', {}, h('button', { type: 'button', onclick: render }, 'Try again')));
    }
  }

  // ---------- login ----------
  function loginPage(msg) {
    const input = h('input', { id: 'key', type: 'password', autocomplete: 'off', required: true, spellcheck: 'false' });
    const err = h('div', { 'aria-live': 'polite' });
    const form = h('form', { class: 'card form', onsubmit: async (ev) => {
      ev.preventDefault();
      state.key = input.value.trim();
      sessionStorage.setItem(KEY, state.key);
      err.replaceChildren();
      try {
        if (state.key.startsWith('pt_')) await api('GET', '/portal'); else await api('GET', '/projects');
        const next = sessionStorage.getItem(NEXT);
        sessionStorage.removeItem(NEXT);
        go(next && next.startsWith('/p/') ? next : '/');
      } catch (e) {
        state.key = ''; sessionStorage.removeItem(KEY);
        err.replaceChildren(notice('error', e.status === 401 ? 'That key was not accepted.' : e.message));
      }
    } },
    h('h1', {}, 'Sign in to Sluice'),
    h('p', { class: 'sub' }, 'Use the root key or a project API key. Customers open the portal link they were given.'),
    msg ? notice('error', msg) : null, err,
    h('label', {}, 'API key', input),
    h('div', {}, h('button', { type: 'submit' }, 'Sign in')),
    h('p', { class: 'muted' }, 'The key stays in this browser tab only (session storage) and is sent to this server alone.'));
    mount(h('div', { class: 'login' }, form));
    input.focus();
  }

  // ---------- projects ----------
  async function projectsPage(gen) {
    const ps = await api('GET', '/projects');
    if (gen !== renderGen) return;
    for (const p of ps) state.projects[p.uid] = p;
    mount(h('h1', {}, 'Projects'), h('p', { class: 'sub' }, ps.length + ' project' + (ps.length === 1 ? '' : 's')),
      ps.length ? table('projects', ['Name', 'Type', 'ID', 'Created'], ps.map((p) => h('tr', {},
        h('td', {}, link('/p/' + p.uid, p.name)), h('td', {}, p.type), h('td', { class: 'mono' }, p.uid), h('td', {}, when(p.created_at)))))
        : empty('No projects yet. Create one with POST /api/v1/projects (root key).'));
  }

  // ---------- overview and chart ----------
  async function overviewPage(gen, pid) {
    const p = state.projects[pid];
    const [stats, failed, eps, names] = await Promise.all([
      api('GET', '/projects/' + pid + '/stats/deliveries'),
      api('GET', '/projects/' + pid + '/eventdeliveries?status=failed&perPage=5'),
      api('GET', '/projects/' + pid + '/endpoints?perPage=100'),
      endpointNames(pid),
    ]);
    if (gen !== renderGen) return;
    const counts = { active: 0, paused: 0, disabled: 0 };
    for (const e of eps.content) counts[e.status] = (counts[e.status] || 0) + 1;
    const totals = stats.minutes.reduce((a, m) => ({ s: a.s + m.success, r: a.r + m.retry, f: a.f + m.failed }), { s: 0, r: 0, f: 0 });
    mount(
      h('h1', {}, state.portal ? 'Your webhooks' : p.name),
      h('p', { class: 'sub' }, state.portal ? 'Endpoints, events and deliveries of ' + state.portal.link.owner_id + ' in ' + p.name : 'Project ' + pid),
      h('div', { class: 'grid2' },
        h('div', { class: 'card' }, h('div', { class: 'muted' }, 'Attempts, last hour'), h('div', { class: 'stat' }, totals.s + totals.r + totals.f),
          h('div', { class: 'muted' }, totals.s + ' ok · ' + totals.r + ' retried · ' + totals.f + ' failed')),
        h('div', { class: 'card' }, h('div', { class: 'muted' }, 'Endpoints'), h('div', { class: 'stat' }, eps.content.length + (eps.pagination.has_next_page ? '+' : '')),
          h('div', { class: 'muted' }, counts.active + ' active · ' + counts.paused + ' paused · ' + counts.disabled + ' disabled'))),
      chartCard(stats, 'Deliveries per minute and latency, last hour'),
      h('h2', {}, 'Latest failed deliveries'),
      failed.content.length ? deliveryTable(pid, failed.content, names) : empty('No failed deliveries.'),
      h('p', {}, link('/p/' + pid + '/deliveries?status=failed', 'All failed deliveries →')));
  }

  function chartCard(stats, title) {
    const pts = stats.minutes;
    const W = 720, H = 220, L = 40, R = 48, T = 12, B = 26;
    const iw = W - L - R, ih = H - T - B, bw = iw / pts.length;
    const maxN = Math.max(1, ...pts.map((m) => m.success + m.retry + m.failed));
    const maxL = Math.max(1, ...pts.map((m) => m.latency_p95_ms || 0));
    const y = (n) => T + ih - (n / maxN) * ih;
    const yl = (ms) => T + ih - (ms / maxL) * ih;
    const g = [];
    g.push(s('line', { x1: L, y1: T + ih, x2: L + iw, y2: T + ih, stroke: '#c3cad3' }));
    g.push(s('text', { x: L - 6, y: T + 10, 'text-anchor': 'end', 'font-size': 11, fill: '#5f6b7a' }, String(maxN)));
    g.push(s('text', { x: L - 6, y: T + ih, 'text-anchor': 'end', 'font-size': 11, fill: '#5f6b7a' }, '0'));
    g.push(s('text', { x: L + iw + 6, y: T + 10, 'font-size': 11, fill: '#1f5fbf' }, Math.round(maxL) + ' ms'));
    pts.forEach((m, i) => {
      const x = L + i * bw + 1;
      let base = 0;
      for (const [k, color] of [['success', '#2e9e55'], ['retry', '#e0a21a'], ['failed', '#d2453b']]) {
        const n = m[k];
        if (!n) continue;
        g.push(s('rect', { x: x, y: y(base + n), width: Math.max(1, bw - 2), height: Math.max(1, y(base) - y(base + n)), fill: color },
          s('title', {}, new Date(m.t).toLocaleTimeString() + ': ' + n + ' ' + k)));
        base += n;
      }
      if (i % 10 === 0) g.push(s('text', { x: x, y: H - 8, 'font-size': 11, fill: '#5f6b7a' }, new Date(m.t).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' })));
    });
    for (const [k, color] of [['latency_avg_ms', '#8aa9dd'], ['latency_p95_ms', '#1f5fbf']]) {
      const xy = pts.map((m, i) => [L + i * bw + bw / 2, m.attempts ? yl(m[k]) : null, m]).filter((p) => p[1] !== null);
      const d = xy.map((p, i) => (i ? 'L' : 'M') + p[0].toFixed(1) + ' ' + p[1].toFixed(1)).join(' ');
      if (xy.length > 1) g.push(s('path', { d, fill: 'none', stroke: color, 'stroke-width': 2 }));
      for (const [x, yy, m] of xy) {
        g.push(s('circle', { cx: x.toFixed(1), cy: yy.toFixed(1), r: 3, fill: color },
          s('title', {}, new Date(m.t).toLocaleTimeString() + ': ' + (k === 'latency_p95_ms' ? 'p95 ' : 'average ') + Math.round(m[k]) + ' ms')));
      }
    }
    const tot = pts.reduce((a, m) => a + m.success + m.retry + m.failed, 0);
    const worst = Math.max(0, ...pts.map((m) => m.latency_p95_ms || 0));
    const label = tot + ' attempts in the last hour; worst p95 latency ' + Math.round(worst) + ' ms';
    return h('section', { class: 'card chart', 'aria-label': title },
      h('h2', {}, title),
      s('svg', { viewBox: '0 0 ' + W + ' ' + H, role: 'img', 'aria-label': label }, g),
      h('div', { class: 'legend' },
        h('span', {}, h('span', { class: 'sw success' }), 'success'), h('span', {}, h('span', { class: 'sw retry' }), 'retry'),
        h('span', {}, h('span', { class: 'sw failed' }), 'failed'), h('span', {}, h('span', { class: 'sw p95' }), 'p95 latency'),
        h('span', {}, h('span', { class: 'sw avg' }), 'average latency'),
        h('span', {}, 'Figures of this node since it started.')));
  }

  // ---------- filters ----------
  // filterForm builds a GET-style filter bar whose values live in the route's query, so every
  // filtered view is a link.
  function filterForm(base, query, fields, extra) {
    const inputs = {};
    const form = h('form', { class: 'filters', role: 'search', onsubmit: (ev) => {
      ev.preventDefault();
      const p = {};
      for (const f of fields) {
        let v = inputs[f.name].value.trim();
        if (v && f.type === 'datetime-local') v = new Date(v).toISOString();
        p[f.name] = v;
      }
      go(base + qs(p));
    } });
    for (const f of fields) {
      let input;
      if (f.options) {
        input = h('select', { name: f.name }, f.options.map(([v, l]) => h('option', { value: v }, l)));
        input.value = query.get(f.name) || '';
      } else {
        let v = query.get(f.name) || '';
        if (v && f.type === 'datetime-local') { const d = new Date(v); v = isNaN(d) ? '' : new Date(d - d.getTimezoneOffset() * 60000).toISOString().slice(0, 16); }
        input = h('input', { name: f.name, type: f.type || 'search', placeholder: f.placeholder || '', value: v, class: f.wide ? 'wide' : '' });
        if (f.search) input.setAttribute('data-search', '');
      }
      inputs[f.name] = input;
      form.append(h('label', {}, f.label, input));
    }
    form.append(h('button', { type: 'submit' }, 'Apply'));
    form.append(h('a', { class: 'button secondary', href: '#' + base }, 'Clear'));
    if (extra) form.append(extra);
    return form;
  }
  const timeFields = [
    { name: 'startDate', label: 'From', type: 'datetime-local' },
    { name: 'endDate', label: 'To', type: 'datetime-local' },
  ];

  // pager renders a table a page at a time, with a "Load more" button that follows next_page_cursor.
  function pager(o) {
    const tbody = h('tbody', {});
    const tbl = h('div', { class: 'table-wrap', hidden: true }, h('table', { class: o.cls },
      h('thead', {}, h('tr', {}, o.headers.map((x) => h('th', { scope: 'col' }, x)))), tbody));
    const holder = h('div', {}, tbl);
    const more = h('button', { type: 'button', class: 'secondary more', hidden: true }, 'Load more');
    const status = h('p', { class: 'muted', 'aria-live': 'polite' });
    let cursor = '';
    let count = 0;
    async function load() {
      more.disabled = true;
      try {
        const page = await o.fetch(cursor);
        count += page.content.length;
        tbody.append(...page.content.map(o.row));
        tbl.hidden = count === 0;
        cursor = page.pagination.next_page_cursor;
        more.hidden = !page.pagination.has_next_page;
        if (!count && !page.pagination.has_next_page) holder.append(empty(o.empty));
        status.textContent = count ? count + ' shown' + (page.pagination.has_next_page ? '; more available' : '') :
          (page.pagination.has_next_page ? 'Nothing found in the part searched so far; load more to keep searching.' : '');
      } catch (e) {
        holder.append(notice('error', e.message));
      } finally { more.disabled = false; }
    }
    more.addEventListener('click', load);
    return { el: h('div', {}, holder, h('div', { class: 'row' }, more, status)), load };
  }

  // ---------- endpoints ----------
  async function endpointsPage(gen, pid, query) {
    const base = '/p/' + pid + '/endpoints';
    const stats = await api('GET', '/projects/' + pid + '/stats/deliveries');
    if (gen !== renderGen) return;
    const live = stats.endpoints || {};
    const fields = [{ name: 'q', label: 'Search name or URL', search: true, wide: true }];
    if (!state.portal) fields.push({ name: 'ownerId', label: 'Owner' });
    const list = pager({
      fetch: (cursor) => api('GET', '/projects/' + pid + '/endpoints' + qs({ q: query.get('q'), ownerId: query.get('ownerId'), perPage: 50, next_page_cursor: cursor })),
      cls: 'endpoints', headers: ['Name', 'URL', 'Owner', 'Status', 'Success', 'Last error', 'Breaker', 'Throughput'],
      empty: 'No endpoints' + (query.toString() ? ' match these filters.' : ' yet. Add one to start receiving webhooks.'),
      row: (e) => {
          const l = live[e.uid] || {};
          const rate = e.health && e.health.attempts ? Math.round(e.health.success_rate * 100) + '%' : '—';
          return h('tr', {},
            h('td', {}, link(base + '/' + e.uid, e.name || e.uid)),
            h('td', { class: 'mono clip', title: e.url }, e.url),
            h('td', {}, e.owner_id || '—'),
            h('td', {}, badge(e.status)),
            h('td', { class: 'num' }, rate),
            h('td', { class: 'err' }, (e.health && e.health.last_error) || (e.health && e.health.last_http_status >= 300 ? 'HTTP ' + e.health.last_http_status : '')),
            h('td', {}, badge(l.breaker || 'closed')),
            h('td', { class: 'num' }, l.attempts_per_minute !== undefined ? l.attempts_per_minute.toFixed(1) + '/min' : '0/min'));
      } });
    mount(h('div', { class: 'row between' }, h('h1', {}, 'Endpoints'), h('a', { class: 'button', href: '#' + base + '/new', id: 'new-endpoint' }, 'New endpoint')),
      h('p', { class: 'sub' }, 'Success rate weighs recent attempts most; breaker and throughput are this node\'s live view.'),
      filterForm(base, query, fields), list.el);
    await list.load();
  }

  function endpointFields(e) {
    const f = {
      name: h('input', { id: 'ep-name', type: 'text', value: e.name || '' }),
      url: h('input', { id: 'ep-url', type: 'url', required: true, value: e.url || '', placeholder: 'https://example.com/webhooks' }),
      owner_id: h('input', { id: 'ep-owner', type: 'text', value: e.owner_id || '' }),
      description: h('input', { id: 'ep-description', type: 'text', value: e.description || '' }),
      http_timeout: h('input', { id: 'ep-timeout', type: 'number', min: 0, max: 300, value: e.http_timeout || '' }),
      rate_limit: h('input', { id: 'ep-rate', type: 'number', min: 0, value: e.rate_limit || '' }),
      rate_limit_duration: h('input', { id: 'ep-rate-dur', type: 'number', min: 0, value: e.rate_limit_duration || '' }),
      support_email: h('input', { id: 'ep-email', type: 'email', value: e.support_email || '' }),
    };
    const layout = [
      h('label', {}, 'URL', f.url), h('label', {}, 'Name', f.name),
      state.portal ? null : h('label', {}, 'Owner ID (the customer it belongs to)', f.owner_id),
      h('label', {}, 'Description', f.description),
      h('div', { class: 'row' }, h('label', {}, 'Timeout (s, 0 = 30)', f.http_timeout), h('label', {}, 'Rate limit (events)', f.rate_limit),
        h('label', {}, 'per seconds', f.rate_limit_duration)),
      h('label', {}, 'Support email', f.support_email),
    ];
    const value = (create) => {
      const out = {};
      for (const k of ['name', 'url', 'description', 'support_email']) if (create ? f[k].value.trim() : true) out[k] = f[k].value.trim();
      if (!state.portal && (create ? f.owner_id.value.trim() : true)) out.owner_id = f.owner_id.value.trim();
      for (const k of ['http_timeout', 'rate_limit', 'rate_limit_duration']) if (f[k].value !== '') out[k] = Number(f[k].value);
      return out;
    };
    return { layout, value };
  }

  async function endpointNewPage(gen, pid) {
    const f = endpointFields({});
    const msg = h('div', { 'aria-live': 'polite' });
    mount(h('h1', {}, 'New endpoint'), h('p', { class: 'sub' }, 'Sluice signs every request with the endpoint\'s secret; one is generated for you.'),
      h('form', { class: 'card form', onsubmit: async (ev) => {
        ev.preventDefault();
        try {
          const e = await api('POST', '/projects/' + pid + '/endpoints', f.value(true));
          delete state.endpointNames[pid];
          go('/p/' + pid + '/endpoints/' + e.uid + '?created=1');
        } catch (e) { msg.replaceChildren(notice('error', e.message)); }
      } }, msg, f.layout, h('div', {}, h('button', { type: 'submit', id: 'create-endpoint' }, 'Create endpoint'))));
    $('#ep-url').focus();
  }

  async function endpointPage(gen, pid, eid) {
    const base = '/p/' + pid + '/endpoints/' + eid;
    const [e, stats, subs] = await Promise.all([
      api('GET', '/projects/' + pid + '/endpoints/' + eid),
      api('GET', '/projects/' + pid + '/stats/deliveries?endpointId=' + eid),
      state.portal ? Promise.resolve(null) : api('GET', '/projects/' + pid + '/subscriptions?endpointId=' + eid),
    ]);
    if (gen !== renderGen) return;
    const l = (stats.endpoints || {})[eid] || {};
    const msg = h('div', { 'aria-live': 'polite' });
    const act = async (method, path, body, done) => {
      try {
        const r = await api(method, '/projects/' + pid + '/endpoints/' + eid + path, body);
        delete state.endpointNames[pid];
        if (done) done(r); else render();
      } catch (err) { msg.replaceChildren(notice('error', err.message)); }
    };
    const f = endpointFields(e);
    const hl = e.health || {};
    const secrets = (e.secrets || []).map((sc) => h('li', {},
      h('span', { class: 'secret' }, sc.public_key ? sc.public_key + ' (public key)' : sc.value),
      ' ', sc.expires_at ? h('span', { class: 'muted' }, 'expires ' + when(sc.expires_at)) : h('span', { class: 'muted' }, 'current')));
    const expHours = h('input', { id: 'rotate-hours', type: 'number', min: 0, max: 720, value: 24 });
    const created = route().query.get('created');
    mount(
      h('div', { class: 'row between' }, h('h1', {}, e.name || e.url),
        h('div', { class: 'row' },
          e.status === 'active' ? h('button', { type: 'button', class: 'secondary', id: 'pause', onclick: () => act('PUT', '/pause') }, 'Pause')
            : h('button', { type: 'button', id: 'activate', onclick: () => act('POST', '/activate') }, 'Activate'),
          h('a', { class: 'button secondary', href: '#/p/' + pid + '/deliveries?endpointId=' + eid }, 'Deliveries'))),
      h('p', { class: 'sub mono' }, e.uid),
      created ? notice('ok', 'Endpoint created. Its signing secret is below; give it to the receiver so it can verify requests.') : null,
      msg,
      h('div', { class: 'grid2' },
        h('div', { class: 'card' }, h('h2', {}, 'Health'), h('dl', { class: 'kv' },
          h('dt', {}, 'Status'), h('dd', {}, badge(e.status)),
          h('dt', {}, 'Success rate'), h('dd', {}, hl.attempts ? Math.round(hl.success_rate * 100) + '% over ' + hl.attempts + ' attempts' : 'no attempts yet'),
          h('dt', {}, 'Consecutive failures'), h('dd', {}, String(hl.consecutive_failures || 0)),
          h('dt', {}, 'Last response'), h('dd', {}, hl.last_http_status ? 'HTTP ' + hl.last_http_status : '—'),
          h('dt', {}, 'Last error'), h('dd', { class: hl.last_error ? 'err' : '' }, hl.last_error || '—'),
          h('dt', {}, 'Last attempt'), h('dd', {}, hl.last_attempt_at ? when(hl.last_attempt_at) + ' (' + ago(hl.last_attempt_at) + ')' : '—'),
          h('dt', {}, 'Breaker'), h('dd', {}, badge(l.breaker || 'closed')),
          h('dt', {}, 'Throughput'), h('dd', {}, (l.attempts_per_minute || 0).toFixed(1) + ' attempts/min (5 min)'))),
        h('div', { class: 'card' }, h('h2', {}, 'Signing secrets'), h('ul', { id: 'secrets' }, secrets),
          h('div', { class: 'row' }, h('label', {}, 'Old secrets stay valid for (hours)', expHours),
            h('button', { type: 'button', id: 'rotate', onclick: () => act('PUT', '/expire_secret', { expiration: Number(expHours.value || 0) },
              () => { msg.replaceChildren(notice('ok', 'Secret rotated. Requests carry signatures with both secrets until the old one expires.')); render(); }) }, 'Rotate secret')))),
      chartCard(stats, 'This endpoint, last hour'),
      h('h2', {}, 'Settings'),
      h('form', { class: 'card form', onsubmit: (ev) => { ev.preventDefault(); act('PUT', '', f.value(false), () => { msg.replaceChildren(notice('ok', 'Saved.')); }); } },
        f.layout, h('div', { class: 'row' }, h('button', { type: 'submit', id: 'save-endpoint' }, 'Save'),
          h('button', { type: 'button', class: 'danger', onclick: () => {
            if (confirm('Delete this endpoint? Its pending deliveries are discarded.')) act('DELETE', '', undefined, () => go('/p/' + pid + '/endpoints'));
          } }, 'Delete endpoint'))),
      subs ? subscriptionsSection(pid, subs.content, eid) : null);
  }

  // ---------- subscriptions ----------
  function subscriptionsSection(pid, subs, eid) {
    const names = state.endpointNames[pid] || {};
    const rows = subs.map((sub) => h('tr', {},
      h('td', {}, sub.name), eid ? null : h('td', {}, link('/p/' + pid + '/endpoints/' + sub.endpoint_id, names[sub.endpoint_id] || short(sub.endpoint_id))),
      h('td', { class: 'mono' }, (sub.filter_config.event_types || []).join(', ')),
      h('td', { class: 'mono clip' }, sub.filter_config.filter ? JSON.stringify(sub.filter_config.filter) : '—'),
      h('td', {}, h('button', { type: 'button', class: 'danger', onclick: async () => {
        if (!confirm('Delete this subscription?')) return;
        try { await api('DELETE', '/projects/' + pid + '/subscriptions/' + sub.uid); render(); } catch (e) { alert(e.message); }
      } }, 'Delete'))));
    return h('section', {}, h('h2', {}, 'Subscriptions'),
      h('p', { class: 'sub' }, 'An endpoint without subscriptions receives every event sent to it or its owner; with subscriptions, only the types (and filters) they match.'),
      rows.length ? table('subscriptions', eid ? ['Name', 'Event types', 'Filter', ''] : ['Name', 'Endpoint', 'Event types', 'Filter', ''], rows) : empty('No subscriptions.'),
      subscriptionForm(pid, eid));
  }

  function jsonOrNull(text, what) {
    if (!text.trim()) return null;
    try { return JSON.parse(text); } catch (e) { throw new Error(what + ' is not valid JSON: ' + e.message); }
  }

  function subscriptionForm(pid, eid) {
    const names = state.endpointNames[pid] || {};
    const endpoint = eid ? null : h('select', { id: 'sub-endpoint', required: true }, Object.entries(names).map(([id, n]) => h('option', { value: id }, n)));
    const types = h('input', { id: 'sub-types', type: 'text', placeholder: '* or invoice.paid, invoice.void', value: '*' });
    const bodyFilter = h('textarea', { id: 'sub-filter-body', placeholder: '{"amount": {"$gte": 1000}}' });
    const headerFilter = h('textarea', { id: 'sub-filter-headers', placeholder: '{"x-tenant": "eu"}' });
    const sampleType = h('input', { id: 'sample-type', type: 'text', value: 'invoice.paid' });
    const sample = h('textarea', { id: 'sample-body', value: '{"invoice": "in_123", "amount": 4200}' });
    const result = h('div', { 'aria-live': 'polite', id: 'filter-result' });
    const typeList = () => types.value.split(',').map((x) => x.trim()).filter(Boolean);
    const filter = () => {
      const f = {};
      const b = jsonOrNull(bodyFilter.value, 'Body filter'); if (b) f.body = b;
      const hd = jsonOrNull(headerFilter.value, 'Header filter'); if (hd) f.headers = hd;
      return Object.keys(f).length ? f : null;
    };
    const test = async () => {
      result.replaceChildren();
      try {
        const ts = typeList();
        const typeOK = ts.length === 0 || ts.includes('*') || ts.includes(sampleType.value.trim());
        const out = [notice(typeOK ? 'ok' : 'error', 'Event type "' + sampleType.value.trim() + '" ' + (typeOK ? 'matches' : 'does not match') + ' ' + (ts.join(', ') || '*') + '.')];
        const f = filter();
        if (f) {
          try {
            const r = await api('POST', '/projects/' + pid + '/subscriptions/test_filter', {
              request: { header: {}, body: jsonOrNull(sample.value, 'Sample event') || {} }, schema: { header: f.headers || {}, body: f.body || {} } });
            const ok = r === true || !!(r && r.is_match);
            out.push(notice(ok ? 'ok' : 'error', 'Filter ' + (ok ? 'matches' : 'does not match') + ' the sample event' +
              (r && r.failed_clause ? ': ' + r.failed_clause + ' fails.' : '.')));
          } catch (e) {
            out.push(notice('error', e.status === 404 ? 'This server cannot test filters (no test_filter route).' : e.message));
          }
        }
        result.replaceChildren(...out);
      } catch (e) { result.replaceChildren(notice('error', e.message)); }
    };
    return h('form', { class: 'card form', onsubmit: async (ev) => {
      ev.preventDefault();
      try {
        const fc = { event_types: typeList() };
        const f = filter();
        if (f) fc.filter = f;
        await api('POST', '/projects/' + pid + '/subscriptions', { endpoint_id: eid || endpoint.value, filter_config: fc });
        render();
      } catch (e) { result.replaceChildren(notice('error', e.message)); }
    } },
    h('h3', {}, 'Add a subscription'),
    endpoint ? h('label', {}, 'Endpoint', endpoint) : null,
    h('label', {}, 'Event types (comma-separated; * for all)', types),
    h('div', { class: 'grid2' }, h('label', {}, 'Body filter (JSON, optional)', bodyFilter), h('label', {}, 'Header filter (JSON, optional)', headerFilter)),
    h('div', { class: 'grid2' }, h('label', {}, 'Sample event type', sampleType), h('label', {}, 'Sample event data (JSON)', sample)),
    result,
    h('div', { class: 'row' }, h('button', { type: 'button', class: 'secondary', onclick: test, id: 'test-filter' }, 'Test against sample'),
      h('button', { type: 'submit', id: 'add-subscription' }, 'Add subscription')));
  }

  async function subscriptionsPage(gen, pid) {
    const [subs] = await Promise.all([api('GET', '/projects/' + pid + '/subscriptions'), endpointNames(pid)]);
    if (gen !== renderGen) return;
    mount(h('h1', {}, 'Subscriptions'), subscriptionsSection(pid, subs.content, null));
  }

  // ---------- events ----------
  async function eventsPage(gen, pid, query) {
    const base = '/p/' + pid + '/events';
    const fields = [{ name: 'q', label: 'Search in payloads', search: true, wide: true, placeholder: 'in_123' },
      { name: 'eventType', label: 'Event type' }, { name: 'endpointId', label: 'Endpoint ID' }];
    if (!state.portal) fields.push({ name: 'ownerId', label: 'Owner' });
    fields.push(...timeFields);
    const p = {};
    for (const f of fields) p[f.name] = query.get(f.name);
    const list = pager({
      fetch: (cursor) => api('GET', '/projects/' + pid + '/events' + qs(Object.assign({ perPage: 50, next_page_cursor: cursor }, p))),
      cls: 'events', headers: ['Received', 'Event type', 'Event', 'Endpoints', 'Idempotency key'],
      empty: 'No events' + (query.toString() ? ' match these filters.' : ' yet.'),
      row: (ev) => h('tr', {},
        h('td', {}, when(ev.created_at)), h('td', { class: 'mono' }, ev.event_type), h('td', { class: 'mono' }, link(base + '/' + ev.uid, ev.uid)),
        h('td', { class: 'num' }, String((ev.endpoints || []).length)), h('td', { class: 'mono' }, ev.idempotency_key || '—')) });
    mount(h('h1', {}, 'Events'), h('p', { class: 'sub' }, 'Newest first. Payload search reads a bounded slice per page; "Load more" keeps searching.'),
      filterForm(base, query, fields), list.el);
    await list.load();
  }

  async function eventPage(gen, pid, evid) {
    const [ev, ds, names] = await Promise.all([
      api('GET', '/projects/' + pid + '/events/' + evid),
      api('GET', '/projects/' + pid + '/eventdeliveries?perPage=100&eventId=' + evid),
      endpointNames(pid)]);
    if (gen !== renderGen) return;
    const msg = h('div', { 'aria-live': 'polite' });
    mount(h('div', { class: 'row between' }, h('h1', {}, ev.event_type),
      h('button', { type: 'button', id: 'replay', onclick: async () => {
        try {
          const r = await api('PUT', '/projects/' + pid + '/events/' + evid + '/replay');
          msg.replaceChildren(notice('ok', 'Replayed to ' + (r.matched_endpoints !== undefined ? r.matched_endpoints : 'the matching') + ' endpoint(s).'));
          setTimeout(() => { if (route().parts[3] === evid) render(); }, 300);
        } catch (e) { msg.replaceChildren(notice('error', e.message)); }
      } }, 'Replay event')),
    h('p', { class: 'sub mono' }, ev.uid), msg,
    h('div', { class: 'card' }, h('dl', { class: 'kv' },
      h('dt', {}, 'Received'), h('dd', {}, when(ev.created_at)),
      h('dt', {}, 'Idempotency key'), h('dd', { class: 'mono' }, ev.idempotency_key || '—'),
      h('dt', {}, 'Sent to'), h('dd', {}, ev.endpoint_id ? 'endpoint ' + (names[ev.endpoint_id] || ev.endpoint_id) : ev.owner_id ? 'owner ' + ev.owner_id : 'all subscribers')),
    h('h3', {}, 'Custom headers'), headersTable(ev.headers),
    h('h3', {}, 'Payload'), h('pre', { class: 'payload' }, pretty(ev.data))),
    h('h2', {}, 'Deliveries'), ds.content.length ? deliveryTable(pid, ds.content, names) : empty('No deliveries: no endpoint matched.'));
  }

  // ---------- deliveries ----------
  const deliveryHeaders = ['Created', 'Status', 'Event type', 'Endpoint', 'Attempts', 'Last response', 'Delivery'];
  function deliveryTable(pid, rows, names) { return table('deliveries', deliveryHeaders, rows.map(deliveryRow(pid, names))); }
  function deliveryRow(pid, names) {
    const base = '/p/' + pid;
    return (d) => h('tr', {},
      h('td', {}, when(d.created_at)), h('td', {}, badge(d.status)), h('td', { class: 'mono' }, d.event_type),
      h('td', {}, link(base + '/endpoints/' + d.endpoint_id, names[d.endpoint_id] || short(d.endpoint_id))),
      h('td', { class: 'num' }, String(d.attempts)),
      h('td', { class: d.last_error || d.last_http_status >= 300 ? 'err' : '' }, d.last_http_status ? 'HTTP ' + d.last_http_status + (d.last_error ? ' · ' + d.last_error : '') : (d.last_error || '—')),
      h('td', { class: 'mono' }, link(base + '/deliveries/' + d.uid, d.uid)));
  }

  async function deliveriesPage(gen, pid, query) {
    const base = '/p/' + pid + '/deliveries';
    const statuses = [['', 'any'], ['failed', 'failed'], ['retry', 'retry'], ['success', 'success'], ['scheduled', 'scheduled'], ['processing', 'processing'], ['discarded', 'discarded']];
    const fields = [{ name: 'status', label: 'Status', options: statuses }, { name: 'eventType', label: 'Event type' },
      { name: 'endpointId', label: 'Endpoint ID' }];
    if (!state.portal) fields.push({ name: 'ownerId', label: 'Owner' });
    fields.push({ name: 'eventId', label: 'Event ID' }, ...timeFields, { name: 'q', label: 'Search in payloads', search: true, wide: true });
    const p = {};
    for (const f of fields) p[f.name] = query.get(f.name);
    const names = await endpointNames(pid);
    if (gen !== renderGen) return;
    const msg = h('div', { 'aria-live': 'polite' });
    const retryAll = h('button', { type: 'button', class: 'secondary', id: 'batch-retry', onclick: async () => {
      const what = p.status ? 'every ' + p.status + ' delivery' : 'every failed or discarded delivery';
      if (!confirm('Resend ' + what + ' matching these filters?')) return;
      try {
        const r = await api('POST', '/projects/' + pid + '/eventdeliveries/batchretry' + qs(p));
        msg.replaceChildren(notice('ok', r.num_success + ' deliveries scheduled again.'));
      } catch (e) { msg.replaceChildren(notice('error', e.message)); }
    } }, 'Retry all matching');
    const list = pager({
      fetch: (cursor) => api('GET', '/projects/' + pid + '/eventdeliveries' + qs(Object.assign({ perPage: 50, next_page_cursor: cursor }, p))),
      cls: 'deliveries', headers: deliveryHeaders, row: deliveryRow(pid, names),
      empty: 'No deliveries' + (query.toString() ? ' match these filters.' : ' yet.') });
    mount(h('h1', {}, 'Deliveries'), h('p', { class: 'sub' }, 'One row per event and endpoint, newest first.'), msg,
      filterForm(base, query, fields, retryAll), list.el);
    await list.load();
  }

  function attemptCard(a, n) {
    const ok = a.http_status >= 200 && a.http_status < 300;
    return h('article', { class: 'card attempt ' + (ok ? 'a-ok' : 'a-bad'), 'aria-label': 'Attempt ' + a.attempt },
      h('div', { class: 'row between' }, h('h3', {}, 'Attempt ' + a.attempt + (n === 0 ? ' (latest)' : '')),
        h('span', { class: 'muted' }, when(a.created_at))),
      h('dl', { class: 'kv' },
        h('dt', {}, 'Response'), h('dd', {}, a.http_status ? badge(ok ? 'success' : 'failed') : null, ' ', a.http_status ? 'HTTP ' + a.http_status : 'no response'),
        h('dt', {}, 'Latency'), h('dd', {}, (a.latency_ms || 0).toFixed(1) + ' ms'),
        h('dt', {}, 'Egress IP'), h('dd', { class: 'mono' }, a.ip_address || 'default'),
        h('dt', {}, 'Request'), h('dd', { class: 'mono' }, (a.method || 'POST') + ' ' + a.url),
        a.error ? h('dt', {}, 'Error') : null, a.error ? h('dd', { class: 'err' }, a.error) : null),
      h('details', {}, h('summary', {}, 'Request headers'), headersTable(a.request_http_header)),
      h('details', {}, h('summary', {}, 'Response headers'), headersTable(a.response_http_header)),
      h('h3', {}, 'Response body' + (a.response_truncated ? ' (first 64 KiB)' : '')),
      a.response_data ? h('pre', { class: 'resp-body' }, pretty(a.response_data)) : h('p', { class: 'muted resp-body' }, 'empty'));
  }

  async function deliveryPage(gen, pid, did) {
    const [d, attempts, names] = await Promise.all([
      api('GET', '/projects/' + pid + '/eventdeliveries/' + did),
      api('GET', '/projects/' + pid + '/eventdeliveries/' + did + '/deliveryattempts'),
      endpointNames(pid)]);
    if (gen !== renderGen) return;
    const msg = h('div', { 'aria-live': 'polite', id: 'delivery-msg' });
    const resend = h('button', { type: 'button', id: 'resend', onclick: async () => {
      resend.disabled = true;
      try {
        await api('PUT', '/projects/' + pid + '/eventdeliveries/' + did + '/resend');
        msg.replaceChildren(notice('ok', 'Resend scheduled. Waiting for the attempt…'));
        // Watch for the new attempt (bounded: 60 polls, 30 s).
        for (let i = 0; i < 60 && gen === renderGen; i++) {
          await new Promise((r) => setTimeout(r, 500));
          const as = await api('GET', '/projects/' + pid + '/eventdeliveries/' + did + '/deliveryattempts');
          if (as.length > attempts.length) { if (gen === renderGen) render(); return; }
        }
        if (gen === renderGen) msg.replaceChildren(notice('ok', 'Resend scheduled; no attempt yet (the endpoint may be paused or its breaker open).'));
      } catch (e) { msg.replaceChildren(notice('error', e.message)); } finally { resend.disabled = false; }
    } }, 'Resend');
    const sorted = attempts.slice().sort((a, b) => b.attempt - a.attempt || (a.created_at < b.created_at ? 1 : -1));
    mount(h('div', { class: 'row between' }, h('h1', {}, 'Delivery'), resend),
      h('p', { class: 'sub mono' }, d.uid), msg,
      h('div', { class: 'card' }, h('dl', { class: 'kv', id: 'delivery-summary' },
        h('dt', {}, 'Status'), h('dd', {}, badge(d.status)),
        h('dt', {}, 'Event'), h('dd', {}, link('/p/' + pid + '/events/' + d.event_id, d.event_type + ' · ' + d.event_id)),
        h('dt', {}, 'Endpoint'), h('dd', {}, link('/p/' + pid + '/endpoints/' + d.endpoint_id, names[d.endpoint_id] || d.endpoint_id)),
        h('dt', {}, 'Owner'), h('dd', {}, d.owner_id || '—'),
        h('dt', {}, 'Attempts'), h('dd', {}, String(d.attempts)),
        h('dt', {}, 'Last response'), h('dd', {}, d.last_http_status ? 'HTTP ' + d.last_http_status : '—'),
        h('dt', {}, 'Next attempt'), h('dd', {}, d.next_attempt_at ? when(d.next_attempt_at) : '—'),
        h('dt', {}, 'Last error'), h('dd', { class: d.last_error ? 'err' : '' }, d.last_error || '—'),
        h('dt', {}, 'Created'), h('dd', {}, when(d.created_at)))),
      h('h2', {}, 'Attempts'),
      sorted.length ? h('div', { id: 'attempts' }, sorted.map(attemptCard)) : empty('No attempt yet.'));
  }

  // ---------- sources ----------
  async function sourcesPage(gen, pid) {
    let list;
    try { list = await api('GET', '/projects/' + pid + '/sources'); } catch (e) {
      if (gen !== renderGen) return;
      mount(h('h1', {}, 'Sources'), e.status === 404 ? empty('This server has no sources API.') : notice('error', e.message));
      return;
    }
    if (gen !== renderGen) return;
    const rows = (list.content || list || []).map((src) => {
      const url = src.ingest_url || src.url || (src.mask_id ? location.origin + '/ingest/' + src.mask_id : '');
      return h('tr', {}, h('td', {}, src.name || src.uid), h('td', {}, src.provider || (src.verifier && src.verifier.type) || src.type || '—'),
        h('td', { class: 'mono' }, url || '—'), h('td', { class: 'mono' }, src.uid));
    });
    mount(h('h1', {}, 'Sources'), h('p', { class: 'sub' }, 'Providers send webhooks to a source\'s ingest URL; subscriptions route them to your endpoints.'),
      rows.length ? table('sources', ['Name', 'Verifier', 'Ingest URL', 'ID'], rows) : empty('No sources yet.'));
  }

  // ---------- portal links ----------
  async function portalLinksPage(gen, pid) {
    const base = '/projects/' + pid + '/portal-links';
    const owner = h('input', { id: 'link-owner', type: 'text', required: true, placeholder: 'customer-1' });
    const name = h('input', { id: 'link-name', type: 'text', placeholder: 'Acme Inc.' });
    const days = h('input', { id: 'link-days', type: 'number', min: 1, max: 366, value: 30 });
    const out = h('div', { 'aria-live': 'polite', id: 'link-created' });
    const makeList = () => pager({
      fetch: (cursor) => api('GET', base + qs({ perPage: 50, next_page_cursor: cursor })),
      cls: 'links', headers: ['Owner', 'Name', 'State', 'Expires', 'Created', ''], empty: 'No portal links yet.',
      row: (l) => h('tr', {},
        h('td', {}, l.owner_id), h('td', {}, l.name || '—'),
        h('td', {}, badge(l.revoked_at ? 'revoked' : l.active ? 'active' : 'expired')),
        h('td', {}, when(l.expires_at)), h('td', {}, when(l.created_at)),
        h('td', {}, l.revoked_at ? '' : h('button', { type: 'button', class: 'danger', onclick: async () => {
          if (!confirm('Revoke the portal link of ' + l.owner_id + '? It stops working at once.')) return;
          try { await api('PUT', base + '/' + l.uid + '/revoke'); render(); } catch (e) { alert(e.message); }
        } }, 'Revoke'))) });
    let list = makeList();
    mount(h('h1', {}, 'Portal links'),
      h('p', { class: 'sub' }, 'A portal link lets one customer (an owner ID) see and fix only their own endpoints and deliveries.'),
      h('form', { class: 'card form', onsubmit: async (ev) => {
        ev.preventDefault();
        try {
          const l = await api('POST', base, { owner_id: owner.value.trim(), name: name.value.trim(), expires_in: Math.round(Number(days.value || 30) * 86400) });
          const urlBox = h('input', { type: 'text', readonly: true, value: l.url, id: 'link-url' });
          out.replaceChildren(notice('ok', 'Link created. Send it to the customer; it is shown only once.'), urlBox);
          urlBox.select();
          const fresh = makeList();
          list.el.replaceWith(fresh.el);
          list = fresh;
          await fresh.load();
        } catch (e) { out.replaceChildren(notice('error', e.message)); }
      } },
      h('h2', {}, 'New link'),
      h('div', { class: 'row' }, h('label', {}, 'Owner ID', owner), h('label', {}, 'Name', name), h('label', {}, 'Valid for (days)', days)),
      h('div', {}, h('button', { type: 'submit', id: 'create-link' }, 'Create link')), out),
      list.el);
    await list.load();
  }

  // ---------- keyboard ----------
  document.addEventListener('keydown', (ev) => {
    if (ev.key !== '/' || ev.ctrlKey || ev.metaKey || ev.altKey) return;
    const t = ev.target;
    if (t && (t.tagName === 'INPUT' || t.tagName === 'TEXTAREA' || t.tagName === 'SELECT' || t.isContentEditable)) return;
    const search = $('[data-search]');
    if (search) { ev.preventDefault(); search.focus(); }
  });

  $('#signout').addEventListener('click', () => signOut());
  window.addEventListener('hashchange', () => { render(); const m = main(); if (m && document.activeElement === document.body) m.focus({ preventScroll: true }); });
  render();
})();
