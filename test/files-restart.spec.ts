import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { copyFile, mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { findRunningNode } from '../src/control/index.js'
import { CATALOG_COPIES } from '../src/files/index.js'
import { KEY_FILE } from '../src/node/data-dir.js'
import { killAll, runCli, startCliNode } from './cli-fixtures.js'
import { eventually, startNode, tempDir } from './fixtures.js'
import type { CliNode } from './cli-fixtures.js'
import type { TestNode } from './fixtures.js'

const MiB = 1024 * 1024

describe('files: kill -9 of the buyer\'s node mid-upload', function () {
  this.timeout(180_000)
  const sellers: TestNode[] = []
  let node: CliNode | undefined
  let dir: string

  before(async () => {
    sellers.push(await startNode())
    for (let i = 1; i < 4; i++) { sellers.push(await startNode({ bootstrap: [sellers[0].addr] })) }
    dir = await tempDir()
  })

  after(async () => {
    await node?.stop()
    await killAll()
    await Promise.all(sellers.map(async s => s.destroy()))
  })

  const held = async (): Promise<number> => (await Promise.all(sellers.map(async s => (await s.storage.count()).blobs))).reduce((a, b) => a + b, 0)

  async function start (dataDir = join(dir, 'node')): Promise<CliNode> {
    const n = await startCliNode(dataDir, ['--bootstrap', sellers[0].addr])
    const running = await findRunningNode(n.dataDir)
    assert.ok(running != null)
    const found = await eventually(async () => (await running.client.sellers({ service: 'storage', timeout: 2_000 })).sellers.length >= 4, 60_000, 500)
    assert.ok(found, 'the node found the 4 sellers')
    return n
  }

  it('on restart the cut-short upload is cleaned up: no file listed, no piece left at any seller; a new put works', async () => {
    node = await start()
    const file = join(dir, 'big.bin')
    await writeFile(file, randomBytes(64 * MiB))
    const put = runCli(['put', file, '--redundancy', '2/4', '--json', '--data-dir', node.dataDir], { timeout: 120_000 })
    // killed once some pieces are at the sellers, long before the 32 segments are all placed
    assert.ok(await eventually(async () => await held() >= 8, 60_000, 20), 'pieces reached the sellers')
    const killed = await node.stop('SIGKILL')
    assert.equal(killed.signal, 'SIGKILL')
    const cut = await put
    assert.notEqual(cut.code, 0, 'the put did not complete')
    const orphans = await held()
    assert.ok(orphans > 0, 'the crash left pieces at the sellers')

    node = await start()
    // the node cleans up on its own at start: every piece of the unfinished upload is deleted
    assert.ok(await eventually(async () => await held() === 0, 60_000, 200), `sellers still hold ${await held()} pieces`)
    assert.ok(await eventually(async () => /files: 1 unfinished upload\(s\) cleaned up, \d+ pieces deleted\n/.test(node?.stderr() ?? ''), 10_000, 100), node.stderr())
    const ls = await runCli(['ls', '--json', '--data-dir', node.dataDir])
    assert.equal(ls.code, 0, ls.stderr)
    assert.deepEqual(JSON.parse(ls.stdout.toString()).files, [])

    // the user puts the file again: it completes, and only its pieces are held
    const small = randomBytes(3 * MiB)
    await writeFile(file, small)
    const again = await runCli(['put', file, '--redundancy', '2/4', '--json', '--data-dir', node.dataDir], { timeout: 60_000 })
    assert.equal(again.code, 0, again.stderr)
    const r = JSON.parse(again.stdout.toString())
    // and the file catalog (backup.ts): one piece on CATALOG_COPIES sellers
    assert.ok(await eventually(async () => await held() === 4 * r.segments + CATALOG_COPIES, 10_000, 100), `sellers hold ${await held()} pieces, not ${4 * r.segments} + ${CATALOG_COPIES}`)
    const get = await runCli(['get', r.id, '-o', '-', '--data-dir', node.dataDir], { timeout: 60_000 })
    assert.equal(get.code, 0, get.stderr)
    assert.ok(get.stdout.equals(small))
  })

  it('decloud restore in a fresh data dir with the same seed (no wallet: the node key) lists the file; get gives identical bytes', async () => {
    assert.ok(node != null)
    const data = randomBytes(2 * MiB + 99)
    const file = join(dir, 'kept.bin')
    await writeFile(file, data)
    const put = await runCli(['put', file, '--redundancy', '2/4', '--json', '--data-dir', node.dataDir], { timeout: 60_000 })
    assert.equal(put.code, 0, put.stderr)
    const { id } = JSON.parse(put.stdout.toString())
    const old = node.dataDir
    await node.stop()
    // the data dir is lost; the user kept the seed (here: the node key, since this node has no wallet)
    const fresh = join(dir, 'fresh')
    await mkdir(fresh, { mode: 0o700 })
    await copyFile(join(old, KEY_FILE), join(fresh, KEY_FILE))
    node = await start(fresh)
    const ls0 = await runCli(['ls', '--json', '--data-dir', fresh])
    assert.deepEqual(JSON.parse(ls0.stdout.toString()).files, [])
    const r = await runCli(['restore', '--json', '--data-dir', fresh], { timeout: 120_000 })
    assert.equal(r.code, 0, r.stderr)
    assert.ok(JSON.parse(r.stdout.toString()).restored.includes(id), r.stdout.toString())
    const ls = await runCli(['ls', '--json', '--data-dir', fresh])
    const listed = JSON.parse(ls.stdout.toString()).files.map((f: any) => [f.id, f.name, f.size, f.state])
    assert.ok(listed.some((f: any[]) => f.join() === [id, 'kept.bin', data.byteLength, 'complete'].join()), ls.stdout.toString())
    const get = await runCli(['get', id, '-o', '-', '--data-dir', fresh], { timeout: 60_000 })
    assert.equal(get.code, 0, get.stderr)
    assert.ok(get.stdout.equals(data), 'identical bytes')
  })

  it('decloud restore with another seed: no catalog, a clear error, nothing listed', async () => {
    await node?.stop()
    node = await start(join(dir, 'stranger'))
    const r = await runCli(['restore', '--data-dir', node.dataDir], { timeout: 120_000 })
    assert.equal(r.code, 1, r.stderr)
    assert.match(r.stderr, /no file catalog of this seed was found/)
    const ls = await runCli(['ls', '--json', '--data-dir', node.dataDir])
    assert.deepEqual(JSON.parse(ls.stdout.toString()).files, [])
  })
})
