import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { Status } from '../src/protocols/opencloud/index.js'
import { startNode } from './fixtures.js'
import type { TestNode } from './fixtures.js'

describe('OpenCloud between two real nodes', () => {
  let a: TestNode
  let b: TestNode

  before(async () => {
    a = await startNode()
    b = await startNode()
  })

  after(async () => {
    await a?.destroy()
    await b?.destroy()
  })

  it('sha256.hash returns the digest of the body', async () => {
    const body = new TextEncoder().encode('hello decloud')
    const res = await a.opencloud.call(b.addr, { service: 'sha256', method: 'hash', body })
    assert.equal(res.path, 'ok')
    assert.equal(Buffer.from(res.body).toString('hex'), createHash('sha256').update(body).digest('hex'))
    assert.equal(res.signer, b.openCloudId)
  })

  it('unknown service → client-error/service-unsupported', async () => {
    const res = await a.opencloud.call(b.addr, { service: 'nope', method: 'x' })
    assert.equal(res.status, Status.SERVICE_UNSUPPORTED)
    assert.equal(res.path, 'client-error/service-unsupported')
  })
})
