import assert from 'node:assert/strict'
import { connect } from 'node:net'
import { readControlFiles } from '../src/control/files.js'
import { ControlServer } from '../src/control/server.js'
import { startNode } from './fixtures.js'
import type { TestNode } from './fixtures.js'

/** Sends raw bytes and resolves with everything the server answers until it closes */
async function raw (port: number, request: string, keepOpenMs: number): Promise<{ text: string, ms: number }> {
  const start = Date.now()
  return new Promise((resolve, reject) => {
    const s = connect(port, '127.0.0.1', () => { s.write(request) })
    let text = ''
    s.on('data', (b) => { text += b.toString() })
    s.on('error', reject)
    s.on('close', () => { resolve({ text, ms: Date.now() - start }) })
    setTimeout(() => { s.destroy() }, keepOpenMs).unref()
  })
}

describe('control API: files endpoints and request deadlines', function () {
  this.timeout(60_000)
  let node: TestNode
  let control: ControlServer
  let token = ''

  before(async () => {
    node = await startNode({ sell: [] })
    control = new ControlServer({ node, dataDir: node.dataDir, requestTimeout: 600, headersTimeout: 500 })
    await control.start()
    token = (await readControlFiles(node.dataDir))?.token ?? ''
  })

  after(async () => {
    await control?.stop()
    await node?.destroy()
  })

  it('a JSON body that stalls is still cut off after requestTimeout (408), though uploads have no overall deadline', async () => {
    const body = '{"id": "'
    const req = `POST /v1/files/rm HTTP/1.1\r\nhost: 127.0.0.1:${control.port}\r\nauthorization: Bearer ${token}\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n${body}`
    const r = await raw(control.port, req, 10_000)
    assert.match(r.text, /^HTTP\/1\.1 408/)
    assert.match(r.text, /"type":"timeout"/)
    assert.ok(r.ms >= 550 && r.ms < 5_000, `answered after ${r.ms} ms`)
  })

  it('put with no sellers: 409 too-few-sellers with the count, before the body is read; bad ids and unknown files are 400/404', async () => {
    const put = await fetch(`http://127.0.0.1:${control.port}/v1/files/put?redundancy=2/4`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/octet-stream' },
      body: new Uint8Array(1000)
    })
    assert.equal(put.status, 409)
    const e = await put.json() as any
    assert.equal(e.error.type, 'too-few-sellers')
    assert.match(e.error.message, /2\/4 needs 4 distinct sellers; found 0/)
    const get = async (path: string): Promise<Response> => fetch(`http://127.0.0.1:${control.port}${path}`, { headers: { authorization: `Bearer ${token}` } })
    assert.equal((await get('/v1/files/get?id=xyz')).status, 400)
    const missing = await get(`/v1/files/get?id=${'0'.repeat(32)}`)
    assert.equal(missing.status, 404)
    assert.match(((await missing.json()) as any).error.message, /no file/)
    assert.equal((await get(`/v1/files/status?id=${'0'.repeat(32)}`)).status, 404)
    assert.deepEqual(await (await get('/v1/files')).json(), { files: [] })
    assert.equal((await get('/v1/files/put?redundancy=9/3')).status, 405)
  })
})
