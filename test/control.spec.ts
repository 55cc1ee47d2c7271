import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import { existsSync } from 'node:fs'
import { readFile, stat, writeFile } from 'node:fs/promises'
import { request } from 'node:http'
import { createServer } from 'node:net'
import { join } from 'node:path'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { ControlApiError, ControlClient, ControlServer, CONTROL_FILE, TOKEN_FILE, findRunningNode } from '../src/control/index.js'
import { MAX_BODY_SIZE } from '../src/protocols/opencloud/constants.js'
import { startNode } from './fixtures.js'
import type { TestNode } from './fixtures.js'

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
      for (const c of o.chunks) req.write(c)
      req.end()
    } else {
      req.end(o.body)
    }
  })
}

const sha256hex = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex')

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
    for (const headers of cases) {
      for (const [method, path] of [['GET', '/v1/node'], ['GET', '/v1/peers'], ['POST', '/v1/call'], ['GET', '/nope']]) {
        const r = await http(control.port, { method, path, headers, body: method === 'POST' ? '{}' : undefined })
        assert.equal(r.status, 401, `${method} ${path} ${JSON.stringify(headers)}`)
        assert.equal(r.json.error.type, 'unauthorized')
        assert.equal(r.headers['www-authenticate'], 'Bearer')
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
    const id = Buffer.from(put.json.body, 'base64').toString()
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
    const id = Buffer.from(put.json.body, 'base64').toString()
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
