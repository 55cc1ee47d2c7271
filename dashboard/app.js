// decloud dashboard: one page per area, each refreshed every 2 s from the
// node's control API (docs/control-api.md). Every value from the node or its
// peers is inserted as text, never as HTML.

const REFRESH = 2000

/**
 * Builds an element: h('td', { class: 'num' }, 'text', child…)
 *
 * @param tag
 * @param attrs
 * @param {...any} children
 */
function h (tag, attrs = {}, ...children) {
  const el = document.createElement(tag)
  for (const [k, v] of Object.entries(attrs ?? {})) {
    if (v == null || v === false) { continue }
    if (k.startsWith('on')) { el.addEventListener(k.slice(2), v) } else { el.setAttribute(k, v === true ? '' : String(v)) }
  }
  for (const c of children.flat()) {
    if (c == null || c === false) { continue }
    el.append(c instanceof Node ? c : document.createTextNode(String(c)))
  }
  return el
}

class ApiError extends Error {
  constructor (status, type, message) { super(message); this.status = status; this.type = type }
}

async function api (path, { method = 'GET', body, raw = false } = {}) {
  const res = await fetch(path, {
    method,
    credentials: 'same-origin',
    headers: body !== undefined && !(body instanceof Blob) ? { 'content-type': 'application/json' } : {},
    body: body === undefined ? undefined : body instanceof Blob ? body : JSON.stringify(body)
  })
  if (!res.ok) {
    let type = 'http'
    let message = `${res.status} ${res.statusText}`
    try {
      const j = await res.json()
      type = j.error?.type ?? type
      message = j.error?.message ?? message
    } catch {}
    if (res.status === 401) { showError('The session has ended: run `decloud dashboard` for a new login link.') }
    throw new ApiError(res.status, type, message)
  }
  return raw ? res : res.json()
}

/**
 * api() that answers null for an endpoint this node does not have (404: payments off, no policy…)
 *
 * @param path
 */
async function optional (path) {
  try { return await api(path) } catch (e) { if (e.status === 404) { return null } throw e }
}

function showError (text) {
  const el = document.getElementById('error')
  el.textContent = text
  el.hidden = text == null
}

const fmt = {
  bytes (n) {
    n = Number(n)
    if (!Number.isFinite(n)) { return '–' }
    const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB']
    let i = 0
    while (n >= 1024 && i < u.length - 1) { n /= 1024; i++ }
    return `${n >= 100 || i === 0 ? n.toFixed(0) : n.toFixed(1)} ${u[i]}`
  },
  sats (s) { return s == null ? '–' : `${BigInt(s).toLocaleString('en')} sat` },
  time (ms) { return ms == null ? '–' : new Date(ms).toLocaleString() },
  ago (ms) {
    const s = Math.max(0, Math.round((Date.now() - ms) / 1000))
    if (s < 90) { return `${s} s` }
    if (s < 5400) { return `${Math.round(s / 60)} min` }
    if (s < 172800) { return `${Math.round(s / 3600)} h` }
    return `${Math.round(s / 86400)} d`
  },
  until (ms) { return ms == null ? '–' : ms < Date.now() ? `${fmt.ago(ms)} ago` : `in ${fmt.ago(2 * Date.now() - ms)}` },
  short (id) { return id == null ? '–' : id.length > 20 ? `${id.slice(0, 10)}…${id.slice(-6)}` : id }
}

function card (k, v, title) { return h('div', { class: 'card', title }, h('div', { class: 'v' }, v), h('div', { class: 'k' }, k)) }

function table (headers, rows, empty = 'none') {
  if (rows.length === 0) { return h('p', { class: 'muted' }, empty) }
  return h('table', {},
    h('thead', {}, h('tr', {}, headers.map(x => h('th', { class: x.endsWith('#') ? 'num' : null }, x.replace(/#$/, ''))))),
    h('tbody', {}, rows.map(r => h('tr', {}, r.map((c, i) => h('td', { class: headers[i].endsWith('#') ? 'num' : null }, c))))))
}

function bar (used, total) {
  const pct = total > 0 ? Math.min(100, (100 * used) / total) : 0
  const fill = h('div')
  // CSSOM, not a style attribute: the page's CSP allows no inline styles
  fill.style.width = `${pct}%`
  return h('div', { class: 'bar', title: `${pct.toFixed(1)} %` }, fill)
}

/**
 * Bandwidth over time as an SVG chart (bytes per second in and out)
 *
 * @param samples
 */
function chart (samples) {
  const ns = 'http://www.w3.org/2000/svg'
  const svg = document.createElementNS(ns, 'svg')
  svg.setAttribute('class', 'chart')
  svg.setAttribute('viewBox', '0 0 600 160')
  svg.setAttribute('preserveAspectRatio', 'none')
  svg.setAttribute('data-points', String(samples.length))
  if (samples.length < 2) { return svg }
  const rates = samples.slice(1).map((s, i) => {
    const dt = Math.max(1, (s.t - samples[i].t) / 1000)
    return { t: s.t, in: s.in / dt, out: s.out / dt }
  })
  const max = Math.max(1, ...rates.map(r => Math.max(r.in, r.out)))
  const t0 = rates[0].t
  const span = Math.max(1, rates[rates.length - 1].t - t0)
  for (const dir of ['in', 'out']) {
    const p = document.createElementNS(ns, 'polyline')
    p.setAttribute('class', dir)
    p.setAttribute('points', rates.map(r => `${(600 * (r.t - t0)) / span},${155 - (150 * r[dir]) / max}`).join(' '))
    svg.append(p)
  }
  return h('div', {}, svg, h('div', { class: 'muted' }, `last ${fmt.ago(t0)} · peak ${fmt.bytes(max)}/s · blue in, green out`))
}

// ---- pages: mount() builds the page once, refresh() fills what changes ----

const pages = {
  overview: {
    async refresh (root) {
      const [node, stats, alerts] = await Promise.all([api('/v1/node'), api('/v1/stats'), api('/v1/alerts')])
      document.getElementById('who').textContent = `${fmt.short(node.peerId)} · v${node.version}`
      root.replaceChildren(
        h('div', { id: 'alerts' }, alerts.alerts.length === 0
          ? h('p', { class: 'ok' }, 'No alerts.')
          : alerts.alerts.map(a => h('div', { class: `alert ${a.level}`, 'data-kind': a.kind }, a.message))),
        h('div', { class: 'cards' },
          card('connected peers', node.stats.peers),
          card('connections', node.stats.connections),
          card('uptime', fmt.ago(Date.parse(node.startedAt))),
          card('requests served', stats.calls.requests),
          stats.wallet != null ? card('wallet', fmt.sats(BigInt(stats.wallet.confirmed) + BigInt(stats.wallet.unconfirmed))) : null,
          stats.storage != null ? card('storage used', `${fmt.bytes(stats.storage.used)} / ${fmt.bytes(stats.storage.capacity)}`) : null),
        h('h2', {}, 'Bandwidth'),
        stats.bandwidth == null ? h('p', { class: 'muted' }, 'not measured on this node (start it with decloud node, which counts bytes)') : chart(stats.bandwidth),
        h('h2', {}, 'Node'),
        table(['', ''], [
          ['peer id', h('span', { class: 'mono', id: 'peer-id' }, node.peerId)],
          ['OpenCloud ID', h('span', { class: 'mono' }, node.openCloudId)],
          ['version', node.version],
          ['started', fmt.time(Date.parse(node.startedAt))],
          ['addresses', h('div', {}, node.addresses.map(a => h('div', { class: 'mono' }, a)))],
          ['services', node.services.map(s => `${s.name} ${s.version}`).join(', ')]
        ]),
        h('h2', {}, 'Calls answered'),
        table(['service', 'method', 'status', 'count#'],
          Object.entries(stats.calls.byCall).sort((a, b) => b[1] - a[1]).slice(0, 30).map(([k, n]) => [...k.split(' '), n]))
      )
    }
  },

  market: {
    mount (root) {
      const out = h('div', { id: 'sellers-out' })
      const service = h('input', { name: 'service', value: 'storage', size: 12 })
      root.append(
        h('div', { id: 'book' }),
        h('h2', {}, 'Sellers in the DHT'),
        h('form', {
          class: 'inline',
          onsubmit: async (e) => {
            e.preventDefault()
            out.replaceChildren(h('p', { class: 'muted' }, 'looking up…'))
            try {
              const r = await api(`/v1/sellers?service=${encodeURIComponent(service.value)}&timeout=5000`)
              out.replaceChildren(table(['peer', 'found in', 'price', 'addresses'],
                r.sellers.map(s => [h('span', { class: 'mono' }, fmt.short(s.peerId)), s.foundIn.join(', '), s.price != null ? fmt.sats(s.price) : '–', h('span', { class: 'mono' }, (s.addresses ?? []).join(' '))]),
                'no seller found'))
            } catch (err) { out.replaceChildren(h('p', { class: 'bad' }, err.message)) }
          }
        }, 'service', service, h('button', { type: 'submit' }, 'find sellers')),
        out)
    },
    async refresh (root) {
      const [book, node] = await Promise.all([optional('/v1/market'), api('/v1/node')])
      const el = root.querySelector('#book')
      if (book == null) { el.replaceChildren(h('p', { class: 'muted' }, 'this node keeps no price book')); return }
      el.replaceChildren(
        h('h2', {}, `Price book (prices for ${book.summary[0]?.usage ?? '10⁶'} units)`),
        table(['service.method', 'sellers#', 'min#', 'median#', 'max#', 'spread#', 'ours#'],
          book.summary.map(e => {
            const ours = e.sellers.find(s => s.peerId === node.peerId)
            return [`${e.service}.${e.method}`, e.sellers.length, fmt.sats(e.min), fmt.sats(e.median), fmt.sats(e.max), fmt.sats(e.spread), ours != null ? fmt.sats(ours.price) : '–']
          }), 'no prices heard yet'))
    }
  },

  selling: {
    async refresh (root) {
      const [stats, storage, tabs] = await Promise.all([api('/v1/stats'), optional('/v1/storage'), optional('/v1/tabs')])
      const s = stats.storage
      const owed = (tabs?.tabs ?? []).reduce((a, t) => a + BigInt(t.owed), 0n)
      const paid = (tabs?.tabs ?? []).reduce((a, t) => a + BigInt(t.paid), 0n)
      root.replaceChildren(
        h('div', { class: 'cards' },
          s != null ? card('used', fmt.bytes(s.used)) : null,
          s != null ? card('free', fmt.bytes(s.capacity - s.used)) : null,
          s?.pieces != null ? card('pieces', s.pieces) : null,
          storage?.audits != null ? card('audits answered', storage.audits.answered) : null,
          storage?.audits != null && storage.audits.damaged > 0 ? card('audits failed (damaged copy)', storage.audits.damaged) : null,
          tabs != null ? card('earned on tabs', fmt.sats(paid)) : null,
          tabs != null ? card('owed to us', fmt.sats(owed)) : null),
        s != null ? h('div', {}, h('h2', {}, 'Capacity'), bar(s.used, s.capacity)) : null,
        h('h2', {}, 'Leases expiring soonest'),
        storage?.leases != null
          ? table(['piece', 'owner', 'size#', 'expires'], storage.leases.map(l => [h('span', { class: 'mono', 'data-piece': l.id }, fmt.short(l.id)), h('span', { class: 'mono' }, fmt.short(l.owner)), l.size != null ? fmt.bytes(l.size) : '–', fmt.until(l.expiry)]), 'no leases')
          : h('p', { class: 'muted' }, 'this node does not report leases'),
        h('h2', {}, 'Tabs buyers run with us'),
        tabs == null ? h('p', { class: 'muted' }, 'payments are off') : tabsTable(tabs.tabs))
    }
  },

  files: {
    mount (root) {
      const input = h('input', { type: 'file', id: 'upload-file' })
      const redundancy = h('input', { name: 'redundancy', placeholder: 'K/N (default: by sellers found)', size: 26 })
      const progress = h('progress', { max: 1, value: 0, hidden: true })
      const status = h('span', { class: 'muted', id: 'upload-status' })
      root.append(
        h('h2', {}, 'Upload'),
        h('form', {
          class: 'inline',
          onsubmit: (e) => {
            e.preventDefault()
            const f = input.files?.[0]
            if (f == null) { return }
            upload(f, redundancy.value.trim(), progress, status)
          }
        }, input, 'redundancy', redundancy, h('button', { type: 'submit', id: 'upload' }, 'upload'), progress, status),
        h('div', { id: 'files-list' }))
    },
    async refresh (root) {
      const list = await optional('/v1/files')
      const el = root.querySelector('#files-list')
      if (list == null) { el.replaceChildren(h('p', { class: 'muted' }, 'this node does not store files')); return }
      el.replaceChildren(
        h('h2', {}, 'Files'),
        table(['name', 'id', 'size#', 'k/n', 'state', 'health', 'last audit', 'cost#', 'expires', ''],
          list.files.map(f => [f.name ?? '', h('span', { class: 'mono' }, fmt.short(f.id)), fmt.bytes(f.size), `${f.k}/${f.n}`, f.state,
            f.health != null ? h('span', { class: f.health.alive < f.health.total ? 'bad' : 'ok' }, `${f.health.alive} / ${f.health.total} pieces`) : '–',
            f.lastAudit != null ? fmt.until(Date.parse(f.lastAudit)) : '–', fmt.sats(f.cost),
            f.expiry != null ? fmt.until(typeof f.expiry === 'number' ? f.expiry : Date.parse(f.expiry)) : '–',
            f.state === 'complete' ? h('a', { href: `/v1/files/get?id=${encodeURIComponent(f.id)}`, download: f.name ?? f.id }, 'download') : '']), 'no files yet'))
    }
  },

  wallet: {
    async refresh (root) {
      const w = await optional('/v1/wallet')
      if (w == null) { root.replaceChildren(h('p', { class: 'muted' }, 'payments are off on this node')); return }
      const [history, tabs, promises] = await Promise.all([api('/v1/wallet/history?limit=50'), api('/v1/tabs'), api('/v1/promises')])
      root.replaceChildren(
        h('div', { class: 'cards' },
          card('confirmed', fmt.sats(w.balance.confirmed)),
          card('unconfirmed', fmt.sats(w.balance.unconfirmed)),
          card('identity coins', fmt.sats(w.identity.confirmed), 'held on the identity address (never spent: its age is your credential)'),
          card('chain', `${w.chain} @ ${w.height}`)),
        h('h2', {}, 'Identity address'),
        h('div', { class: 'inline' }, h('img', { class: 'qr', src: '/v1/wallet/qr', alt: 'QR code of the identity address' }), h('div', { class: 'mono', id: 'identity-address' }, w.identityAddress)),
        h('h2', {}, 'History'),
        table(['txid', 'confirmations#', 'amount#'], history.transactions.map(t => [h('span', { class: 'mono' }, fmt.short(t.txid)), t.confirmations, h('span', { class: BigInt(t.delta) < 0n ? 'bad' : 'ok' }, fmt.sats(t.delta))]), 'no transactions'),
        h('h2', {}, 'Tabs owed to us'),
        tabsTable(tabs.tabs),
        h('h2', {}, 'Promises we owe'),
        table(['seller', 'defer id', 'amount#', 'due'], promises.promises.map(p => [h('span', { class: 'mono' }, fmt.short(p.seller)), p.deferId ?? '', fmt.sats(p.amount ?? p.accrued ?? '0'), fmt.until(p.dueAt)]), 'no promises outstanding'))
    }
  },

  peers: {
    async refresh (root) {
      const [peers, trust] = await Promise.all([api('/v1/peers'), optional('/v1/reputation')])
      const byPeer = new Map((trust?.peers ?? []).map(t => [t.peer, t]))
      root.replaceChildren(
        h('h2', {}, 'Connected peers'),
        table(['peer', 'address', 'direction', 'rtt#', 'local trust#', 'global trust#'],
          peers.peers.map(p => {
            const t = byPeer.get(p.peerId)
            const c = p.connections[0]
            return [h('span', { class: 'mono' }, fmt.short(p.peerId)), h('span', { class: 'mono' }, c?.remoteAddr ?? ''), c?.direction ?? '', c?.rtt ?? '–', num(t?.local?.trust ?? t?.trust, 3), num(t?.global, 4)]
          }), 'no peers connected'),
        h('h2', {}, 'Trust'),
        trust == null
          ? h('p', { class: 'muted' }, 'this node keeps no reputation records')
          : h('div', {},
            table(['peer', 'trust#', 'local#', 'global#', 'facts#', 'bad#'], trust.peers.map(t => [
              h('a', { href: `#peers/${encodeURIComponent(t.peer)}`, class: 'mono', 'data-peer': t.peer }, fmt.short(t.peer)),
              num(t.trust, 3), num(t.local?.trust, 3), num(t.global, 4), t.facts ?? 0, t.bad ?? 0]), 'no records yet'),
            h('h2', {}, 'Reports received'),
            table(['reporter', 'opinion trust#', 'global#', 'claims#', 'issued'], (trust.reporters ?? []).map(r => [h('span', { class: 'mono' }, fmt.short(r.reporter)), num(r.opinionTrust, 3), num(r.global, 4), r.claims, r.issued != null ? fmt.until(r.issued) : '–']), 'no reports heard yet'),
            h('div', { id: 'peer-detail' })))
      const detail = location.hash.split('/')[1]
      if (detail != null && trust != null) {
        const d = await api(`/v1/reputation?peer=${detail}`)
        root.querySelector('#peer-detail').replaceChildren(
          h('h2', {}, `Records behind ${fmt.short(d.peer)}`),
          table(['when', 'role', 'kind', 'value#', 'weight#'], (d.facts ?? []).map(f => [fmt.time(f.at), f.role, f.kind, f.value, f.weight]), 'no first-hand facts'),
          h('h2', {}, 'What reporters said of it'),
          table(['reporter', 'trust#', 'opinion trust#', 'weight#'], (d.claims ?? []).map(c => [h('span', { class: 'mono' }, fmt.short(c.reporter)), num(c.trust, 3), num(c.opinionTrust, 3), num(c.weight, 3)]), 'no claims'))
      }
    }
  },

  policy: {
    mount (root) {
      const who = h('input', { name: 'who', placeholder: 'oc:12D3KooW… or btc:bc1q…', size: 40 })
      const call = h('input', { name: 'call', value: 'storage.put', size: 16 })
      const out = h('pre', { id: 'explain-out', hidden: true })
      const reloadOut = h('span', { id: 'reload-out', class: 'muted' })
      root.append(
        h('div', { id: 'policy-info' }),
        h('form', {
          class: 'inline',
          onsubmit: async (e) => {
            e.preventDefault()
            try {
              const r = await api('/v1/policy/reload', { method: 'POST', body: {} })
              reloadOut.textContent = r.changed ? `reloaded: ${r.rules} rules` : 'reloaded: unchanged'
            } catch (err) { reloadOut.textContent = err.message }
          }
        }, h('button', { type: 'submit', id: 'reload' }, 'reload the policy file'), reloadOut),
        h('h2', {}, 'Explain'),
        h('form', {
          class: 'inline',
          onsubmit: async (e) => {
            e.preventDefault()
            out.hidden = false
            try {
              const r = await api(`/v1/policy/explain?who=${encodeURIComponent(who.value)}&call=${encodeURIComponent(call.value)}`)
              out.textContent = r.explanation
            } catch (err) { out.textContent = err.message }
          }
        }, 'who', who, 'calls', call, h('button', { type: 'submit' }, 'explain')),
        out)
    },
    async refresh (root) {
      const p = await optional('/v1/policy')
      root.querySelector('#policy-info').replaceChildren(p == null
        ? h('p', { class: 'muted' }, 'this node runs without a policy: every call is allowed at the services\' prices')
        : table(['', ''], [['file', p.file ?? 'the default policy'], ['rules', p.rules], ['reloads', p.reloads], ['last error', p.lastError ?? 'none']]))
    }
  }
}

function num (x, digits) { return typeof x === 'number' ? x.toFixed(digits) : '–' }

function tabsTable (tabs) {
  return table(['payer', 'defer id', 'promised#', 'paid#', 'owed#', 'status', 'due'],
    tabs.map(t => [h('span', { class: 'mono' }, fmt.short(t.payer)), t.deferId, fmt.sats(t.accrued), fmt.sats(t.paid), fmt.sats(t.owed), h('span', { class: t.status === 'broken' ? 'bad' : t.status === 'due' ? 'bad' : null }, t.status), fmt.until(t.dueAt ?? t.latestDue)]), 'no tabs')
}

/**
 * Uploads a file through the node (POST /v1/files/put), with progress
 *
 * @param {File} file - the file picked
 * @param {string} redundancy - K/N, or '' for the node's default
 * @param {HTMLProgressElement} progress - filled as bytes go out
 * @param {HTMLElement} status - bytes, rate, then the file id or the error
 */
function upload (file, redundancy, progress, status) {
  const xhr = new XMLHttpRequest()
  progress.hidden = false
  progress.value = 0
  status.textContent = 'uploading…'
  const started = Date.now()
  xhr.upload.onprogress = (e) => {
    if (!e.lengthComputable) { return }
    progress.value = e.loaded / e.total
    const rate = e.loaded / Math.max(0.001, (Date.now() - started) / 1000)
    status.textContent = `${fmt.bytes(e.loaded)} of ${fmt.bytes(e.total)} · ${fmt.bytes(rate)}/s`
  }
  xhr.onload = () => {
    let j = {}
    try { j = JSON.parse(xhr.responseText) } catch {}
    status.textContent = xhr.status === 200 ? `stored: ${j.id}` : `failed: ${j.error?.message ?? xhr.status}`
  }
  xhr.onerror = () => { status.textContent = 'failed: the node did not answer' }
  xhr.open('POST', `/v1/files/put?name=${encodeURIComponent(file.name.slice(0, 200))}${redundancy !== '' ? `&redundancy=${encodeURIComponent(redundancy)}` : ''}`)
  xhr.setRequestHeader('content-type', 'application/octet-stream')
  xhr.send(file)
}

// ---- the router: #page in the URL, the current page refreshed every 2 s ----

let current = null
let timer = null

async function show () {
  const name = (location.hash.slice(1).split('/')[0] || 'overview')
  const page = pages[name] ?? pages.overview
  for (const a of document.querySelectorAll('#nav a')) { a.classList.toggle('active', a.getAttribute('href') === `#${name}`) }
  const root = h('div', { 'data-page': name })
  document.getElementById('page').replaceChildren(root)
  current = { page, root }
  page.mount?.(root)
  clearTimeout(timer)
  await tick(current)
}

async function tick (c) {
  if (c !== current) { return }
  const live = document.getElementById('live')
  try {
    await c.page.refresh(c.root)
    showError(null)
    live.className = 'ok'
  } catch (err) {
    live.className = 'bad'
    if (err.status !== 401) { showError(`could not refresh: ${err.message}`) }
  }
  if (c === current) { timer = setTimeout(() => { void tick(c) }, REFRESH) }
}

document.getElementById('logout').addEventListener('click', async () => {
  await fetch('/dashboard/logout', { method: 'POST', credentials: 'same-origin' })
  clearTimeout(timer)
  current = null
  document.getElementById('page').replaceChildren(h('p', {}, 'Logged out. Run `decloud dashboard` for a new login link.'))
})
window.addEventListener('hashchange', () => { void show() })
void show()
