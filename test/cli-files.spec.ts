import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { findRunningNode } from '../src/control/index.js'
import { killAll, runCli, startCliNode } from './cli-fixtures.js'
import { eventually, startNode, tempDir } from './fixtures.js'
import type { CliNode } from './cli-fixtures.js'
import type { TestNode } from './fixtures.js'

describe('decloud put/get/ls/status/rm through a running node', function () {
  this.timeout(120_000)
  const sellers: TestNode[] = []
  let node: CliNode
  let dir: string
  const data = randomBytes(3 * 1024 * 1024 + 777)

  before(async () => {
    sellers.push(await startNode())
    for (let i = 1; i < 4; i++) { sellers.push(await startNode({ bootstrap: [sellers[0].addr] })) }
    dir = await tempDir()
    node = await startCliNode(join(dir, 'node'), ['--bootstrap', sellers[0].addr])
    const running = await findRunningNode(node.dataDir)
    assert.ok(running != null)
    const found = await eventually(async () => (await running.client.sellers({ service: 'storage', timeout: 2_000 })).sellers.length >= 4, 60_000, 500)
    assert.ok(found, 'the node found the 4 sellers')
    await writeFile(join(dir, 'data.bin'), data)
  })

  after(async () => {
    await node?.stop()
    await killAll()
    await Promise.all(sellers.map(async s => s.destroy()))
  })

  it('put --json, ls, get --out, status, rm: the bytes come back identical', async () => {
    const put = await runCli(['put', join(dir, 'data.bin'), '--redundancy', '2/4', '--json', '--data-dir', node.dataDir], { timeout: 60_000 })
    assert.equal(put.code, 0, put.stderr)
    const r = JSON.parse(put.stdout.toString())
    assert.match(r.id, /^[0-9a-f]{32}$/)
    assert.equal(r.size, data.byteLength)
    assert.equal(r.k, 2)
    assert.equal(r.n, 4)
    assert.equal(r.sellers.length, 4)
    assert.equal(r.cost, '0')

    const ls = await runCli(['ls', '--json', '--data-dir', node.dataDir])
    assert.equal(ls.code, 0, ls.stderr)
    assert.deepEqual(JSON.parse(ls.stdout.toString()).files.map((f: any) => [f.id, f.name, f.size, f.state]), [[r.id, 'data.bin', data.byteLength, 'complete']])

    const out = join(dir, 'copy.bin')
    const get = await runCli(['get', r.id, '--out', out, '--data-dir', node.dataDir], { timeout: 60_000 })
    assert.equal(get.code, 0, get.stderr)
    assert.ok((await readFile(out)).equals(data), 'identical bytes')

    const st = await runCli(['status', r.id, '--json', '--data-dir', node.dataDir])
    assert.equal(st.code, 0, st.stderr)
    const status = JSON.parse(st.stdout.toString())
    assert.equal(status.segments.length, r.segments)
    assert.ok(status.segments.every((s: any) => s.alive === 4), st.stdout.toString())

    const rm = await runCli(['rm', r.id, '--data-dir', node.dataDir])
    assert.equal(rm.code, 0, rm.stderr)
    assert.match(rm.stderr, new RegExp(`removed ${r.id}: ${4 * r.segments} pieces deleted`))
    const after = await runCli(['get', r.id, '--out', join(dir, 'gone.bin'), '--data-dir', node.dataDir])
    assert.equal(after.code, 1)
    assert.match(after.stderr, /no file/)
  })

  it('put - (stdin) prints the id on stdout; get -o - writes the bytes to stdout', async () => {
    const small = randomBytes(200_000)
    const put = await runCli(['put', '-', '--redundancy', '1/3', '--data-dir', node.dataDir], { input: small, timeout: 60_000 })
    assert.equal(put.code, 0, put.stderr)
    const id = put.stdout.toString().trim()
    assert.match(id, /^[0-9a-f]{32}$/)
    assert.match(put.stderr, /1 of 3 pieces each, on 3 sellers/)
    const get = await runCli(['get', id, '-o', '-', '--data-dir', node.dataDir], { timeout: 60_000 })
    assert.equal(get.code, 0, get.stderr)
    assert.ok(get.stdout.equals(small))
  })

  it('too few sellers for the redundancy: refused with a clear message before the file is sent', async () => {
    const put = await runCli(['put', join(dir, 'data.bin'), '--redundancy', '4/8', '--data-dir', node.dataDir], { timeout: 60_000 })
    assert.equal(put.code, 1)
    assert.match(put.stderr, /4\/8 needs 8 distinct sellers; found 4/)
    assert.equal(put.stdout.toString(), '')
  })

  it('bad command lines are usage errors', async () => {
    for (const args of [['put'], ['put', 'x', '--redundancy', '3/2'], ['put', 'x', '--duration', '0d'], ['get', 'nothex'], ['rm'], ['status', 'abc']]) {
      const r = await runCli([...args, '--data-dir', node.dataDir])
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`)
    }
  })
})
