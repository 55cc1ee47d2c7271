import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import { existsSync } from 'node:fs'
import { readFile, rm, stat, writeFile } from 'node:fs/promises'
import { request } from 'node:http'
import { createServer } from 'node:net'
import { join } from 'node:path'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { ControlApiError, ControlClient, ControlServer, CONTROL_FILE, TOKEN_FILE, findRunningNode } from '../src/control/index.js'
import { priceOf } from '../src/market/price-book.js'
import { MAX_BODY_SIZE } from '../src/protocols/opencloud/api/constants.js'
import { eventually as poll, startNode, tempDir } from './fixtures.js'
import { startRegtest } from './regtest.js'
import type { TestNode } from './fixtures.js'
import type { EmbeddedChain } from './regtest.js'
import type { ControlledNode } from '../src/control/index.js'

/** the default lease (30 days): a price per byte·second over it is the old per-byte price */
const MONTH = 2_592_000n // put prices per 512 B × MONTH: 1024 × MONTH lies in [2^31, 2^32), which protons-runtime 7.1.2 cannot encode in a uint64

interface HttpAnswer {
  status: number
  headers: Record<string, string | string[] | undefined>
  json: any
}

/** One raw HTTP request to 127.0.0.1:port; `body` may be a string, bytes, or chunks sent without a length */
async function http (port: number, o: { method?: string, path: string, token?: string, headers?: Record<string, string>, body?: string | Buffer, chunks?: Buffer[] }): Promise<HttpAnswer> {
  return new Promise((resolve, reject) => {
    const req = request({
      host: '127.0.0.1',
      port,
      method: o.method ?? 'GET',
      path: o.path,
      agent: false,
      headers: {
        ...(o.token != null ? { authorization: `Bearer ${o.token}` } : {}),
        ...o.headers
      }
    }, (res) => {
      const parts: Buffer[] = []
      res.on('data', (c: Buffer) => parts.push(c))
      res.on('error', reject)
      res.on('end', () => {
        const text = Buffer.concat(parts).toString('utf8')
        let json: unknown
        try { json = JSON.parse(text) } catch { json = text }
        resolve({ status: res.statusCode ?? 0, headers: res.headers, json })
      })
    })
    // the server may answer and close before the whole body is sent
    req.on('error', reject)
    if (o.chunks != null) {
      for (const c of o.chunks) { req.write(c) }
      req.end()
    } else {
      req.end(o.body)
    }
  })
}

const sha256hex = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex')

/** this file's polling: 20_000 ms, every 100 ms */
const eventually = async (fn: () => Promise<boolean> | boolean, deadline = 20_000, every = 100): Promise<boolean> => poll(fn, deadline, every)

/** A control server for `node` in a fresh data dir, and its token */
async function controlFor (node: ControlledNode): Promise<{ control: ControlServer, token: string, dir: string }> {
  const dir = await tempDir()
  const control = new ControlServer({ node, dataDir: dir })
  await control.start()
  return { control, token: (await readFile(join(dir, TOKEN_FILE), 'utf8')).trim(), dir }
}

describe('local control API', () => {
  let a: TestNode
  let b: TestNode
  let control: ControlServer
  let token: string

  before(async () => {
    a = await startNode()
    b = await startNode()
    control = new ControlServer({ node: a, dataDir: a.dataDir })
    await control.start()
    token = (await readFile(join(a.dataDir, TOKEN_FILE), 'utf8')).trim()
  })

  after(async () => {
    await control?.stop()
    await a?.destroy()
    await b?.destroy()
  })

  it('writes control.json (port, pid, version) and a 0600 token file of 32 random bytes', async () => {
    const info = JSON.parse(await readFile(join(a.dataDir, CONTROL_FILE), 'utf8'))
    assert.equal(info.port, control.port)
    assert.equal(info.pid, process.pid)
    assert.equal(typeof info.version, 'string')
    assert.match(token, /^[0-9a-f]{64}$/)
    assert.equal((await stat(join(a.dataDir, TOKEN_FILE))).mode & 0o777, 0o600)
    assert.equal((await stat(join(a.dataDir, CONTROL_FILE))).mode & 0o077, 0, 'control.json is not readable by others')
  })

  it('refuses requests without the right bearer token (401)', async () => {
    const cases: Array<Record<string, string>> = [
      {},
      { authorization: `Bearer ${'0'.repeat(64)}` },
      { authorization: `Bearer ${token.slice(0, 63)}` },
      { authorization: `Bearer ${token}x` },
      { authorization: `Basic ${token}` },
      { authorization: token }
    ]
    // every endpoint the server has (its own table: a new one is covered too), with both
    // methods, and paths it does not have
    const routes = control.routes
    assert.ok(routes.length >= 13 && ['/v1/node', '/v1/wallet', '/v1/wallet/send', '/v1/chain/mine', '/v1/policy/reload'].every(p => routes.some(r => r.path === p)), JSON.stringify(routes))
    const requests = [...routes.flatMap(r => [[r.method, r.path], [r.method === 'GET' ? 'POST' : 'GET', r.path]]), ['GET', '/nope'], ['POST', '/v1/wallet/nope']]
    for (const headers of cases) {
      for (const [method, path] of requests) {
        const r = await http(control.port, { method, path, headers, body: method === 'POST' ? '{}' : undefined })
        assert.equal(r.status, 401, `${method} ${path} ${JSON.stringify(headers)}`)
        if (path === '/' || path.startsWith('/dashboard')) {
          // the dashboard's pages: a short HTML note for a browser without a session
          assert.match(String(r.headers['content-type']), /^text\/html/)
          assert.equal(r.headers.connection, 'close')
          continue
        }
        assert.equal(r.json.error.type, 'unauthorized')
        assert.equal(r.headers['www-authenticate'], 'Bearer')
        assert.equal(r.headers.connection, 'close', 'no connection is kept for a client without the token')
      }
    }
    // the token does not leak into an answer
    const r = await http(control.port, { path: '/v1/node', headers: { authorization: 'Bearer x' } })
    assert.ok(!JSON.stringify(r.json).includes(token))
  })

  it('GET /v1/node describes the node', async () => {
    const r = await http(control.port, { path: '/v1/node', token })
    assert.equal(r.status, 200)
    assert.equal(r.headers['content-type'], 'application/json; charset=utf-8')
    assert.equal(r.json.peerId, a.peerId.toString())
    assert.equal(r.json.openCloudId, a.openCloudId)
    assert.deepEqual(r.json.addresses, a.addresses())
    assert.ok(r.json.services.some((s: { name: string }) => s.name === 'storage'))
    assert.equal(r.json.pid, process.pid)
    assert.equal(typeof r.json.stats.opencloud.requests, 'number')
    assert.equal(typeof r.json.stats.storage.capacity, 'number')
  })

  it('POST /v1/call calls a remote node with this node\'s identity; GET /v1/peers lists the connection', async () => {
    const body = randomBytes(1000)
    const r = await http(control.port, {
      method: 'POST',
      path: '/v1/call',
      token,
      body: JSON.stringify({ target: b.addr, service: 'sha256', method: 'hash', body: body.toString('base64') })
    })
    assert.equal(r.status, 200, JSON.stringify(r.json))
    assert.equal(r.json.status, 'ok')
    assert.equal(r.json.code, 0)
    assert.equal(r.json.bodyHex, sha256hex(body))
    assert.equal(r.json.signer, b.openCloudId)
    assert.equal(r.json.peer, b.peerId.toString())

    // the caller seen by b is a: put through the API, then stat says "yours" to a only
    const put = await http(control.port, { method: 'POST', path: '/v1/call', token, body: JSON.stringify({ target: b.addr, service: 'storage', method: 'put', body: body.toString('base64') }) })
    const id: string = JSON.parse(Buffer.from(put.json.body, 'base64').toString()).id
    assert.equal(id, sha256hex(body))
    const mine = await a.opencloud.call(b.addr, { service: 'storage', method: 'stat', args: [id] })
    assert.equal(JSON.parse(Buffer.from(mine.body).toString()).yours, true)

    const peers = await http(control.port, { path: '/v1/peers', token })
    assert.equal(peers.status, 200)
    const p = peers.json.peers.find((x: { peerId: string }) => x.peerId === b.peerId.toString())
    assert.ok(p != null, 'b is listed')
    assert.equal(p.openCloudId, b.openCloudId)
    assert.ok(p.connections.length >= 1)
    assert.match(p.connections[0].remoteAddr, /^\/ip4\/127\.0\.0\.1\/tcp\//)

    // a peer id alone works once the node knows the peer's addresses
    const byId = await http(control.port, { method: 'POST', path: '/v1/call', token, body: JSON.stringify({ target: b.peerId.toString(), service: 'info', method: 'info' }) })
    assert.equal(byId.json.status, 'ok')
  })

  it('POST /v1/call to the node itself is served by the node, from a throw-away identity; it cannot be paid for', async () => {
    const self = a.peerId.toString()
    // by address and by bare peer id: libp2p would refuse to dial its own peer id ("Can not dial self")
    for (const target of [a.addr, self]) {
      const r = await http(control.port, { method: 'POST', path: '/v1/call', token, body: JSON.stringify({ target, service: 'info', method: 'info' }) })
      assert.equal(r.status, 200, JSON.stringify(r.json))
      assert.equal(r.json.status, 'ok')
      assert.equal(r.json.peer, self)
      assert.equal(JSON.parse(Buffer.from(r.json.body, 'base64').toString()).node.peerId, self)
    }
    // served as a stranger's call: the node's own statuses
    const bad = await http(control.port, { method: 'POST', path: '/v1/call', token, body: JSON.stringify({ target: a.addr, service: 'nosuch', method: 'thing' }) })
    assert.equal(bad.json.status, 'client-error/service-unsupported')
    const pay = await http(control.port, { method: 'POST', path: '/v1/call', token, body: JSON.stringify({ target: a.addr, service: 'info', method: 'info', pay: 'auto', max: '10' }) })
    assert.equal(pay.status, 400)
    assert.match(pay.json.error.message, /a node does not pay itself/)
  })

  it('a non-ok OpenCloud status is a 200 answer carrying that status', async () => {
    const r = await http(control.port, { method: 'POST', path: '/v1/call', token, body: JSON.stringify({ target: b.addr, service: 'nope', method: 'x', args: [] }) })
    assert.equal(r.status, 200)
    assert.equal(r.json.status, 'client-error/service-unsupported')
    assert.equal(r.json.code, 103)
    assert.match(r.json.detail, /nope/)
  })

  it('malformed requests → 400 with a message', async () => {
    const bodies = [
      '{not json',
      '',
      '[1,2]',
      '"text"',
      JSON.stringify({ service: 'sha256', method: 'hash' }),
      JSON.stringify({ target: 'garbage', service: 'sha256', method: 'hash' }),
      JSON.stringify({ target: b.addr, service: '', method: 'hash' }),
      JSON.stringify({ target: b.addr, service: 'sha256', method: 'x'.repeat(65) }),
      JSON.stringify({ target: b.addr, service: 'sha256', method: 'hash', args: 'a' }),
      JSON.stringify({ target: b.addr, service: 'sha256', method: 'hash', args: [1] }),
      JSON.stringify({ target: b.addr, service: 'sha256', method: 'hash', args: new Array(33).fill('a') }),
      JSON.stringify({ target: b.addr, service: 'sha256', method: 'hash', body: 'not base64!' }),
      JSON.stringify({ target: b.addr, service: 'sha256', method: 'hash', timeout: -1 }),
      JSON.stringify({ target: b.addr, service: 'sha256', method: 'hash', timeout: 1e9 })
    ]
    for (const body of bodies) {
      const r = await http(control.port, { method: 'POST', path: '/v1/call', token, body })
      assert.equal(r.status, 400, body)
      assert.equal(r.json.error.type, 'bad-request')
      assert.ok(r.json.error.message.length > 0)
    }
    const bad = await http(control.port, { method: 'POST', path: '/v1/call', token, body: '{not json' })
    assert.match(bad.json.error.message, /not valid JSON/)
  })

  it('unknown paths → 404, wrong methods → 405', async () => {
    assert.equal((await http(control.port, { path: '/v1/nothing', token })).status, 404)
    const r = await http(control.port, { method: 'GET', path: '/v1/call', token })
    assert.equal(r.status, 405)
    assert.equal(r.headers.allow, 'POST')
    assert.equal((await http(control.port, { method: 'DELETE', path: '/v1/node', token })).status, 405)
  })

  it('oversized request bodies are refused (413) and the API keeps serving', async () => {
    // declared too large: refused before the body is read
    const declared = await http(control.port, {
      method: 'POST',
      path: '/v1/call',
      token,
      headers: { 'content-length': String(9 * 1024 * 1024), 'content-type': 'application/json' },
      chunks: [Buffer.from('{"target":"')]
    }).catch(err => err)
    assert.equal(declared.status, 413, String(declared))
    assert.equal(declared.json.error.type, 'too-large')

    // streamed without a length, past the limit
    const streamed = await http(control.port, {
      method: 'POST',
      path: '/v1/call',
      token,
      chunks: [Buffer.from('{"body":"'), ...new Array(9).fill(Buffer.alloc(1024 * 1024, 0x41)), Buffer.from('"}')]
    }).catch(err => err)
    if (streamed instanceof Error) {
      // the server may close the socket before the client finished writing
      assert.match(String((streamed as any).code), /ECONNRESET|EPIPE/)
    } else {
      assert.equal(streamed.status, 413)
    }

    // a body that decodes past the node's limit
    const big = await http(control.port, { method: 'POST', path: '/v1/call', token, body: JSON.stringify({ target: b.addr, service: 'sha256', method: 'hash', body: Buffer.alloc(MAX_BODY_SIZE + 1).toString('base64') }) })
    assert.equal(big.status, 413)
    assert.match(big.json.error.message, /exceeds the limit of 4194304 bytes/)

    // exactly the limit is fine, both ways (storage.get answers 4 MiB, base64 in JSON)
    const max = randomBytes(MAX_BODY_SIZE)
    const put = await http(control.port, { method: 'POST', path: '/v1/call', token, body: JSON.stringify({ target: b.addr, service: 'storage', method: 'put', body: max.toString('base64') }) })
    assert.equal(put.json.status, 'ok', put.json.detail)
    const id: string = JSON.parse(Buffer.from(put.json.body, 'base64').toString()).id
    assert.equal(id, sha256hex(max))
    const client = new ControlClient({ port: control.port, token })
    const got = await client.call({ target: b.addr, service: 'storage', method: 'get', args: [id] })
    assert.equal(got.status, 'ok')
    assert.ok(Buffer.from(got.body, 'base64').equals(max))

    assert.equal((await http(control.port, { path: '/v1/node', token })).status, 200)
  })

  it('a target that does not answer → 502 transport; a deadline → 504 timeout', async () => {
    const s = createServer()
    await new Promise<void>(resolve => s.listen(0, '127.0.0.1', resolve))
    const port = (s.address() as { port: number }).port
    await new Promise(resolve => s.close(resolve))
    // a peer a is not connected to (an open connection would be reused, whatever the address)
    const stranger = peerIdFromPrivateKey(await generateKeyPair('Ed25519')).toString()
    const r = await http(control.port, { method: 'POST', path: '/v1/call', token, body: JSON.stringify({ target: `/ip4/127.0.0.1/tcp/${port}/p2p/${stranger}`, service: 'sha256', method: 'hash' }) })
    assert.equal(r.status, 502)
    assert.equal(r.json.error.type, 'transport')
    assert.match(r.json.error.message, /ECONNREFUSED/)

    // a listener that never speaks: the dial cannot finish before the deadline
    const silent = createServer(() => {})
    await new Promise<void>(resolve => silent.listen(0, '127.0.0.1', resolve))
    try {
      const sp = (silent.address() as { port: number }).port
      const t = await http(control.port, { method: 'POST', path: '/v1/call', token, body: JSON.stringify({ target: `/ip4/127.0.0.1/tcp/${sp}/p2p/${stranger}`, service: 'sha256', method: 'hash', timeout: 300 }) })
      assert.equal(t.status, 504, JSON.stringify(t.json))
      assert.equal(t.json.error.type, 'timeout')
    } finally {
      silent.close()
    }
  })

  it('GET /v1/sellers and /v1/market: malformed, unknown or repeated query parameters → 400', async () => {
    const bad = [
      '/v1/sellers',
      '/v1/sellers?method=put',
      '/v1/sellers?service=',
      '/v1/sellers?service=Storage',
      '/v1/sellers?service=-storage',
      `/v1/sellers?service=${'s'.repeat(65)}`,
      '/v1/sellers?service=storage%00',
      '/v1/sellers?service=storage&method=put.x',
      '/v1/sellers?service=storage&units=-1',
      '/v1/sellers?service=storage&units=1.5',
      `/v1/sellers?service=storage&units=${'9'.repeat(21)}`,
      '/v1/sellers?service=storage&timeout=0',
      '/v1/sellers?service=storage&timeout=120001',
      '/v1/sellers?service=storage&timeout=1e3',
      '/v1/sellers?service=storage&timeout=',
      '/v1/sellers?service=storage&limit=0',
      '/v1/sellers?service=storage&limit=21',
      '/v1/sellers?service=storage&limit=two',
      '/v1/sellers?service=storage&service=sha256',
      '/v1/sellers?service=storage&color=blue',
      '/v1/market?service=STORAGE',
      '/v1/market?method=',
      '/v1/market?units=abc',
      '/v1/market?timeout=1000',
      '/v1/market?service=storage&service=storage'
    ]
    for (const path of bad) {
      const r = await http(control.port, { path, token })
      assert.equal(r.status, 400, `${path}: ${JSON.stringify(r.json)}`)
      assert.equal(r.json.error.type, 'bad-request')
      assert.ok(r.json.error.message.length > 0)
    }
    assert.match((await http(control.port, { path: '/v1/sellers?service=storage&limit=21', token })).json.error.message, /^limit: /)
    assert.match((await http(control.port, { path: '/v1/sellers?service=storage&color=blue', token })).json.error.message, /unknown query parameter "color"/)
    // the largest values are accepted
    const ok = await http(control.port, { path: `/v1/market?service=storage&method=put&units=${'9'.repeat(20)}`, token })
    assert.equal(ok.status, 200, JSON.stringify(ok.json))
    // other methods, and the token, as for every endpoint
    const post = await http(control.port, { method: 'POST', path: '/v1/sellers?service=storage', token, body: '{}' })
    assert.equal(post.status, 405)
    assert.equal(post.headers.allow, 'GET')
    assert.equal((await http(control.port, { method: 'DELETE', path: '/v1/market', token })).status, 405)
    assert.equal((await http(control.port, { path: '/v1/market' })).status, 401)
    assert.equal((await http(control.port, { path: '/v1/sellers?service=storage', headers: { authorization: 'Bearer x' } })).status, 401)
  })

  it('GET /v1/sellers and /v1/market → 404 on a node without a market', async () => {
    const bare: ControlledNode = { peerId: a.peerId, openCloudId: a.openCloudId, addresses: () => a.addresses(), opencloud: a.opencloud, libp2p: a.libp2p }
    const { control: c, token: t, dir } = await controlFor(bare)
    try {
      for (const path of ['/v1/sellers?service=storage', '/v1/market', '/v1/market?service=storage']) {
        const r = await http(c.port, { path, token: t })
        assert.equal(r.status, 404, path)
        assert.equal(r.json.error.type, 'not-found')
        assert.match(r.json.error.message, /no market/)
      }
      // parameters are checked first
      assert.equal((await http(c.port, { path: '/v1/sellers?service=Bad', token: t })).status, 400)
      assert.equal((await http(c.port, { path: '/v1/node', token: t })).status, 200)
    } finally {
      await c.stop()
      await rm(dir, { recursive: true, force: true })
    }
  })

  it('a client that disconnects ends its seller lookup', async () => {
    // a node with no peer: the lookup waits for one until its deadline
    const lonely = await startNode({ sell: [] })
    const signals: AbortSignal[] = []
    const node: ControlledNode = {
      peerId: lonely.peerId,
      openCloudId: lonely.openCloudId,
      addresses: () => lonely.addresses(),
      opencloud: lonely.opencloud,
      libp2p: lonely.libp2p,
      market: lonely.market,
      rankSellers: async (service, options) => {
        if (options.signal != null) { signals.push(options.signal) }
        return lonely.rankSellers(service, options)
      }
    }
    const { control: c, token: t, dir } = await controlFor(node)
    try {
      const req = request({ host: '127.0.0.1', port: c.port, path: '/v1/sellers?service=storage&timeout=60000', agent: false, headers: { authorization: `Bearer ${t}` } })
      req.on('error', () => {})
      req.end()
      assert.ok(await eventually(() => signals.length === 1, 5_000), 'the lookup did not start')
      assert.equal(signals[0].aborted, false)
      req.destroy()
      assert.ok(await eventually(() => signals[0].aborted, 5_000), 'the lookup was not aborted')
      // the API keeps serving, and a lookup with a short deadline answers with what it found
      const r = await http(c.port, { path: '/v1/sellers?service=storage&timeout=200', token: t })
      assert.equal(r.status, 200, JSON.stringify(r.json))
      assert.deepEqual(r.json.sellers, [])
      assert.equal(r.json.service, 'storage')
    } finally {
      await c.stop()
      await lonely.destroy()
      await rm(dir, { recursive: true, force: true })
    }
  })

  it('ControlClient and findRunningNode: find the node, call through it, refuse a wrong token', async () => {
    const running = await findRunningNode(a.dataDir)
    assert.ok(running != null)
    assert.equal(running.info.port, control.port)
    assert.equal(running.node.peerId, a.peerId.toString())
    const res = await running.client.call({ target: b.addr, service: 'sha256', method: 'hash', body: Buffer.from('x').toString('base64') })
    assert.equal(res.bodyHex, sha256hex(Buffer.from('x')))

    const wrong = new ControlClient({ port: control.port, token: 'f'.repeat(64) })
    await assert.rejects(wrong.node(), (err: any) => err instanceof ControlApiError && err.status === 401 && err.type === 'unauthorized')
  })

  it('stale control files (a port that refuses) mean no node is running', async () => {
    const dir = b.dataDir
    const s = createServer()
    await new Promise<void>(resolve => s.listen(0, '127.0.0.1', resolve))
    const port = (s.address() as { port: number }).port
    await new Promise(resolve => s.close(resolve))
    await writeFile(join(dir, CONTROL_FILE), JSON.stringify({ port, pid: process.pid, version: 'x' }))
    await writeFile(join(dir, TOKEN_FILE), 'a'.repeat(64), { mode: 0o600 })
    assert.equal(await findRunningNode(dir), undefined)
    // a process that is gone
    await writeFile(join(dir, CONTROL_FILE), JSON.stringify({ port: control.port, pid: 2 ** 22 + 12345, version: 'x' }))
    assert.equal(await findRunningNode(dir), undefined)
    // garbage
    await writeFile(join(dir, CONTROL_FILE), '{oops')
    assert.equal(await findRunningNode(dir), undefined)
  })

  it('stop removes the control files and closes the port', async () => {
    const extra = new ControlServer({ node: b, dataDir: b.dataDir })
    await extra.start()
    const port = extra.port
    assert.ok(existsSync(join(b.dataDir, CONTROL_FILE)))
    // the stale token of the previous test was replaced by a fresh 0600 file
    assert.equal((await stat(join(b.dataDir, TOKEN_FILE))).mode & 0o777, 0o600)
    await extra.stop()
    assert.ok(!existsSync(join(b.dataDir, CONTROL_FILE)))
    assert.ok(!existsSync(join(b.dataDir, TOKEN_FILE)))
    await assert.rejects(http(port, { path: '/v1/node' }), (err: any) => err.code === 'ECONNREFUSED')
    assert.equal(await findRunningNode(b.dataDir), undefined)
    await extra.stop()
  })
})

describe('local control API: sellers and market in a swarm', function () {
  this.timeout(90_000)
  let boot: TestNode
  let sellers: TestNode[] = []
  let buyer: TestNode
  let control: ControlServer
  let token: string
  let dir: string
  const putRates = [3n, 1n]
  const market = { announceInterval: 10 * 60_000 }

  before(async () => {
    boot = await startNode({ sell: [], market })
    sellers = await Promise.all(putRates.map(async rate => startNode({
      bootstrap: [boot.addr],
      sell: ['storage'],
      storage: { pricing: { put: { rate, per: 512n * MONTH }, get: { rate: 1n, per: 1024n } } },
      market
    })))
    // the buyer sells storage too (free): it is in its own price book, never among the sellers it lists
    buyer = await startNode({ bootstrap: [boot.addr], market });
    ({ control, token, dir } = await controlFor(buyer))
  })

  after(async () => {
    await control?.stop()
    await Promise.all([boot, ...sellers, buyer].map(async n => n?.destroy()))
    if (dir != null) { await rm(dir, { recursive: true, force: true }) }
  })

  it('GET /v1/market shows the price book; GET /v1/sellers ranks the other sellers, cheapest first', async () => {
    const self = buyer.peerId.toString()
    const [s0, s1] = sellers.map(n => n.peerId.toString())
    const knows = (): boolean => [s0, s1, self].every(p => buyer.market.book.entries({ service: 'storage', method: 'put', peerId: p }).length === 1)
    assert.ok(await eventually(knows), `book: ${buyer.market.book.size}`)

    const m = await http(control.port, { path: `/v1/market?service=storage&method=put&units=${2048n * MONTH}`, token })
    assert.equal(m.status, 200, JSON.stringify(m.json))
    assert.equal(typeof m.json.generated, 'number')
    assert.equal(m.json.summary.length, 1)
    const put = m.json.summary[0]
    assert.equal(put.service, 'storage')
    assert.equal(put.method, 'put')
    assert.deepEqual(put.units, ['byte', 'second'])
    assert.equal(put.usage, String(2048n * MONTH))
    // the buyer's free price, then 1 and 3 sat per 512 B-month: 0, 4, 12 sat for 2 KiB for a month
    assert.deepEqual(put.sellers.map((e: any) => e.peerId), [self, s1, s0])
    assert.deepEqual(put.sellers.map((e: any) => e.price), ['0', '4', '12'])
    assert.deepEqual([put.min, put.median, put.max, put.spread], ['0', '4', '12', '12'])
    assert.equal(typeof put.sellers[1].age, 'number')
    const all = await http(control.port, { path: '/v1/market', token })
    // every service/method, sorted (the buyer's own free sha256.hash too)
    assert.deepEqual(all.json.summary.map((x: any) => `${x.service}.${x.method}`), ['sha256.hash', 'storage.get', 'storage.put', 'storage.renew'])

    // the DHT has the sellers' provider records once their provide round ended
    const q = `/v1/sellers?service=storage&method=put&units=${2048n * MONTH}&timeout=5000`
    let r: HttpAnswer = { status: 0, headers: {}, json: undefined }
    const inBoth = async (): Promise<boolean> => {
      r = await http(control.port, { path: q, token })
      return r.status === 200 && r.json.sellers.length === 2 && r.json.sellers.every((x: any) => x.foundIn.includes('dht'))
    }
    assert.ok(await eventually(inBoth, 30_000, 500), JSON.stringify(r.json))
    assert.equal(r.json.service, 'storage')
    assert.equal(r.json.method, 'put')
    assert.equal(r.json.usage, String(2048n * MONTH))
    assert.equal(typeof r.json.elapsed, 'number')
    assert.deepEqual(r.json.sellers.map((x: any) => x.peerId), [s1, s0])
    assert.deepEqual(r.json.sellers.map((x: any) => x.price), [
      priceOf({ base: 0n, rate: 1n, per: 512n * MONTH, units: ['byte', 'second'] }, 2048n * MONTH).toString(),
      priceOf({ base: 0n, rate: 3n, per: 512n * MONTH, units: ['byte', 'second'] }, 2048n * MONTH).toString()
    ])
    for (const x of r.json.sellers) {
      assert.deepEqual([...x.foundIn].sort(), ['book', 'dht'])
      assert.ok(x.addresses.length > 0)
      assert.ok(x.addresses.every((a: string) => a.startsWith('/ip4/127.0.0.1/tcp/') && a.endsWith(`/p2p/${String(x.peerId)}`)), x.addresses.join(' '))
      assert.deepEqual(Object.keys(x.prices).sort(), ['get', 'put', 'renew'])
    }
    assert.deepEqual(r.json.sellers[0].prices.put, { ...r.json.sellers[0].prices.put, base: '0', rate: '1', per: String(512n * MONTH), units: ['byte', 'second'] })

    // limit bounds the answer; without a method storage ranks by put, as `decloud sellers` does (rankingMethod)
    const one = await http(control.port, { path: '/v1/sellers?service=storage&method=put&limit=1&timeout=5000', token })
    assert.deepEqual(one.json.sellers.map((x: any) => x.peerId), [s1])
    assert.equal(one.json.usage, undefined)
    const noMethod = await http(control.port, { path: '/v1/sellers?service=storage&timeout=5000', token })
    assert.equal(noMethod.json.method, 'put')
    // ControlClient speaks both endpoints
    const client = new ControlClient({ port: control.port, token })
    assert.deepEqual((await client.sellers({ service: 'storage', method: 'put', units: 2048n * MONTH, timeout: 5_000 })).sellers.map(x => x.price), ['4', '12'])
    assert.equal((await client.market({ service: 'storage', method: 'put' })).summary.length, 1)
    // a service nobody sells
    const none = await http(control.port, { path: '/v1/sellers?service=nothing&timeout=2000', token })
    assert.equal(none.status, 200)
    assert.deepEqual(none.json.sellers, [])
  })

  it('POST /v1/call with cheapest: the node ranks the other sellers and calls the cheapest; no seller → 404 no-seller', async () => {
    const [s0, s1] = sellers.map(n => n.peerId.toString())
    const knows = (): boolean => [s0, s1].every(p => buyer.market.book.entries({ service: 'storage', method: 'put', peerId: p }).length === 1)
    assert.ok(await eventually(knows), `book: ${buyer.market.book.size}`)
    const body = randomBytes(2048).toString('base64')
    const r = await http(control.port, { method: 'POST', path: '/v1/call', token, body: JSON.stringify({ cheapest: true, service: 'storage', method: 'put', body, timeout: 10_000, lookupTimeout: 3_000 }) })
    assert.equal(r.status, 200, JSON.stringify(r.json))
    // 1 sat per 512 B-month beats 3; the buyer's own free price is not a seller to itself; 2 KiB for the default 30 days
    assert.equal(r.json.seller.peerId, s1)
    assert.equal(r.json.seller.price, '4')
    assert.equal(r.json.peer, s1)
    assert.deepEqual(r.json.skipped, [])
    // ControlClient: the same, with its HTTP deadline covering the lookup and each seller
    const client = new ControlClient({ port: control.port, token })
    assert.equal((await client.call({ cheapest: true, service: 'storage', method: 'put', body, units: '2048', lookupTimeout: 3_000 })).seller?.peerId, s1)

    const both = await http(control.port, { method: 'POST', path: '/v1/call', token, body: JSON.stringify({ cheapest: true, target: sellers[0].addr, service: 'storage', method: 'put' }) })
    assert.equal(both.status, 400)
    const none = await http(control.port, { method: 'POST', path: '/v1/call', token, body: JSON.stringify({ cheapest: true, service: 'nothing', method: 'x', lookupTimeout: 1_000 }) })
    assert.equal(none.status, 404, JSON.stringify(none.json))
    assert.equal(none.json.error.type, 'no-seller')
  })
})

describe('local control API: wallet and policy of a node with payments', function () {
  this.timeout(120_000)
  let chain: EmbeddedChain
  let node: TestNode
  let control: ControlServer
  let token: string
  let dir: string
  let policyFile: string

  before(async () => {
    chain = await startRegtest()
    dir = await tempDir()
    policyFile = join(dir, 'policy.yaml')
    await writeFile(policyFile, 'version: 1\nrules:\n  - scope: global\n    allow: true\n')
    node = await startNode({ payments: { chain, fulfilment: false }, policy: { file: policyFile } });
    ({ control, token } = await controlFor(node))
  })

  after(async () => {
    await control?.stop()
    await node?.destroy()
    await chain?.close()
    if (dir != null) { await rm(dir, { recursive: true, force: true }) }
  })

  it('POST /v1/wallet/send: a bad address, a dust amount or a bad fee rate is a 400 bad-request; too much is insufficient-funds', async () => {
    const wallet = node.payments?.wallet
    assert.ok(wallet != null)
    const to = await wallet.newAddress()
    const send = async (body: unknown): Promise<HttpAnswer> => http(control.port, { method: 'POST', path: '/v1/wallet/send', token, body: JSON.stringify(body) })
    for (const body of [
      { address: 'bc1qnotregtest', amount: '10000' },
      { address: to, amount: '1' },
      { address: to, amount: '10000', feeRate: '200000' },
      { address: to, amount: '1.5' }
    ]) {
      const r = await send(body)
      assert.equal(r.status, 400, `${JSON.stringify(body)}: ${JSON.stringify(r.json)}`)
      assert.equal(r.json.error.type, 'bad-request')
    }
    const poor = await send({ address: to, amount: (21_000_000n * 100_000_000n).toString() })
    assert.equal(poor.status, 400, JSON.stringify(poor.json))
    assert.equal(poor.json.error.type, 'insufficient-funds')
  })

  it('GET /v1/policy and POST /v1/policy/reload: a bad file keeps the policy in force, a good one takes effect', async () => {
    const info = await http(control.port, { path: '/v1/policy', token })
    assert.equal(info.status, 200)
    assert.equal(info.json.rules, 1)
    await writeFile(policyFile, 'version: 1\nrules:\n  - scope: global\n    allow: yes\n')
    const bad = await http(control.port, { method: 'POST', path: '/v1/policy/reload', token, body: '{}' })
    assert.equal(bad.status, 400)
    assert.equal(bad.json.error.type, 'bad-policy')
    assert.match(bad.json.error.message, /policy\.yaml:4:12: allow takes true/)
    await writeFile(policyFile, 'version: 1\nrules:\n  - scope: global\n    allow: true\n  - scope: { service: storage }\n    deny: true\n')
    const good = await http(control.port, { method: 'POST', path: '/v1/policy/reload', token, body: '{}' })
    assert.equal(good.status, 200, JSON.stringify(good.json))
    assert.equal(good.json.rules, 2, 'the answer describes the file as written before the request')
    assert.equal(good.json.changed, true)
    assert.equal(good.json.lastError, undefined)
  })
})
