import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import { existsSync } from 'node:fs'
import { readFile, rename, rm, truncate, writeFile } from 'node:fs/promises'
import { createServer } from 'node:net'
import { join } from 'node:path'
import { findRunningNode } from '../src/control/client.js'
import { CONTROL_FILE, TOKEN_FILE } from '../src/control/files.js'
import { MAX_BODY_SIZE } from '../src/protocols/opencloud/api/constants.js'
import { ServiceError } from '../src/protocols/opencloud/api/template.js'
import { Status } from '../src/protocols/opencloud/index.js'
import { killAll, runCli, startCliNode } from './cli-fixtures.js'
import { startNode, tempDir } from './fixtures.js'
import type { CliNode } from './cli-fixtures.js'

const sha256hex = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex')

/** A loopback TCP port nothing listens on */
async function closedPort (): Promise<number> {
  const s = createServer()
  await new Promise<void>(resolve => s.listen(0, '127.0.0.1', resolve))
  const port = (s.address() as { port: number }).port
  await new Promise(resolve => s.close(resolve))
  return port
}

describe('decloud command line (real processes over 127.0.0.1)', function () {
  this.timeout(60_000)

  let work: string
  let serverDir: string
  let clientDir: string
  let server: CliNode
  let file: string
  let content: Buffer

  before(async () => {
    work = await tempDir('decloud-cli-')
    serverDir = join(work, 'server')
    clientDir = join(work, 'client')
    file = join(work, 'f.bin')
    content = randomBytes(300_000)
    await writeFile(file, content)
    server = await startCliNode(serverDir)
  })

  after(async () => {
    await server?.stop('SIGINT').catch(() => {})
    await killAll()
    await rm(work, { recursive: true, force: true })
  })

  const call = async (...args: string[]): ReturnType<typeof runCli> => runCli(['call', server.addr, ...args, '--data-dir', clientDir])

  describe('help and usage', () => {
    it('`decloud help` lists the commands found in the commands folder', async () => {
      const r = await runCli(['help'])
      assert.equal(r.code, 0)
      const text = r.stdout.toString()
      for (const c of ['node', 'call', 'id']) { assert.match(text, new RegExp(`^  ${c} `, 'm')) }
    })

    it('`decloud call --help` prints the command usage', async () => {
      const r = await runCli(['call', '--help'])
      assert.equal(r.code, 0)
      assert.match(r.stdout.toString(), /usage: decloud call <multiaddr> <service>\.<method>/)
    })

    it('an unknown command prints the usage on stderr and exits 2', async () => {
      const r = await runCli(['frobnicate'])
      assert.equal(r.code, 2)
      assert.match(r.stderr, /unknown command "frobnicate"/)
      assert.match(r.stderr, /usage: decloud <command>/)
      assert.equal(r.stdout.length, 0)
    })

    it('bad arguments exit 2 with one line and no stack trace', async () => {
      const bad = [
        ['call', 'not-a-multiaddr', 'sha256.hash'],
        ['call', server.addr, 'sha256'],
        ['call', server.addr, 'sha256.hash', '--timeout', 'soon'],
        ['call', server.addr, 'sha256.hash', '--no-such-option'],
        ['call', server.addr, 'sha256.hash', '--timeout', '300001'],
        ['node', '--network-mode', 'galactic']
      ]
      const results = await Promise.all(bad.map(async args => runCli([...args, '--data-dir', clientDir])))
      for (const [i, r] of results.entries()) {
        assert.equal(r.code, 2, `${bad[i].join(' ')}: ${r.stderr}`)
        assert.match(r.stderr, /^decloud: /)
        assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace')
      }
    })
  })

  describe('malformed input is exit 2 with the command\'s own message', () => {
    it('a truncated peer id in the target', async () => {
      const truncated = server.addr.slice(0, -20)
      const r = await runCli(['call', truncated, 'sha256.hash', '--data-dir', clientDir])
      assert.equal(r.code, 2, r.stderr)
      assert.match(r.stderr, /^decloud: ".*" in .* is not a valid peer id/)
      assert.doesNotMatch(r.stderr, /Incorrect length/)
    })

    it('negative numbers, as option values and as arguments', async () => {
      const cases: Array<[string[], RegExp]> = [
        [['call', server.addr, 'sha256.hash', '--pay', 'auto', '--max', '-1'], /^decloud: --max must be a whole number of satoshis, not "-1"/],
        [['call', server.addr, 'sha256.hash', '--timeout', '-5'], /^decloud: --timeout must be a positive integer, not "-5"/],
        [['wallet', 'send', 'rb1qwcclcj76q4kldfpyhqzq8qrkcfk0ycevzr9ead', '-5'], /^decloud: SATS must be a positive whole number of satoshis, not "-5"/]
      ]
      for (const [args, message] of cases) {
        const r = await runCli([...args, '--data-dir', clientDir])
        assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`)
        assert.match(r.stderr, message)
        assert.doesNotMatch(r.stderr, /ambiguous|Unknown option/)
      }
    })
  })

  describe('remote text reaching the terminal', () => {
    let hostile: Awaited<ReturnType<typeof startNode>>
    // clear screen, set the window title, a C1 CSI, a bell, a right-to-left override
    const detail = 'gone\x1b[2J\x1b]0;owned\x07 \u009b31m red \u202e txt.exe\r'

    before(async () => {
      hostile = await startNode({ sell: [] })
      hostile.opencloud.addService({
        name: 'hostile',
        version: '1.0.0',
        description: 'answers with terminal escape sequences in its status detail',
        methods: { say: { description: 'fails with a hostile detail', units: [], handler: () => { throw new ServiceError(Status.NOT_FOUND, detail) } } }
      })
    })

    after(async () => {
      await hostile?.destroy()
    })

    it('a seller\'s status detail is printed with its control characters escaped', async () => {
      const r = await runCli(['call', hostile.addr, 'hostile.say', '--data-dir', clientDir])
      assert.equal(r.code, 1, r.stderr)
      // eslint-disable-next-line no-control-regex
      assert.doesNotMatch(r.stderr, /[\x00-\x08\x0b-\x1f\x7f-\x9f\u202e]/, 'no raw control characters reach the terminal')
      assert.match(r.stderr, /^client-error\/not-found: gone\\x1b\[2J\\x1b\]0;owned\\x07 \\x9b31m red \\u202e txt\.exe\\x0d\n$/)
    })
  })

  describe('decloud id', () => {
    it('prints the running node\'s peer id, OpenCloud ID and reachability', async () => {
      const r = await runCli(['id', '--data-dir', serverDir])
      assert.equal(r.code, 0, r.stderr)
      // a local-mode node on 127.0.0.1: reachability is not checked (docs/nat.md)
      assert.equal(r.stdout.toString(), `peer id: ${server.peerId}\nopencloud id: oc:${server.peerId}\nreachability: unknown\n`)
    })

    it('fails clearly when the data dir has no key yet', async () => {
      const r = await runCli(['id', '--data-dir', join(work, 'empty')])
      assert.equal(r.code, 1)
      assert.match(r.stderr, /has no key yet/)
    })
  })

  describe('decloud call with a transient client', () => {
    it('sha256.hash --body-file prints the hex digest of the file', async () => {
      const r = await call('sha256.hash', '--body-file', file)
      assert.equal(r.code, 0, r.stderr)
      assert.equal(r.stdout.toString(), sha256hex(content) + '\n')
    })

    it('--body-file - reads the body from stdin', async () => {
      const input = 'hello from stdin\n'
      const r = await runCli(['call', server.addr, 'sha256.hash', '--body-file', '-', '--data-dir', clientDir], { input })
      assert.equal(r.code, 0, r.stderr)
      assert.equal(r.stdout.toString().trim(), sha256hex(Buffer.from(input)))
    })

    it('storage.put, get --out, stat and delete', async () => {
      const put = await call('storage.put', '--body-file', file)
      assert.equal(put.code, 0, put.stderr)
      const id = put.stdout.toString().trim()
      assert.equal(id, sha256hex(content))

      const out = join(work, 'copy.bin')
      const get = await call('storage.get', id, '--out', out)
      assert.equal(get.code, 0, get.stderr)
      assert.ok((await readFile(out)).equals(content), 'byte-identical copy')

      // without --out the raw bytes go to stdout (a pipe here)
      const raw = await call('storage.get', id, '100', '50')
      assert.equal(raw.code, 0, raw.stderr)
      assert.ok(raw.stdout.equals(content.subarray(100, 150)))

      const stat = await call('storage.stat', id)
      assert.equal(stat.code, 0, stat.stderr)
      const meta = JSON.parse(stat.stdout.toString())
      assert.equal(meta.id, id)
      assert.equal(meta.size, content.byteLength)
      assert.equal(meta.yours, true)

      const del = await call('storage.delete', id)
      assert.equal(del.code, 0, del.stderr)
      assert.deepEqual(JSON.parse(del.stdout.toString()), { id, erased: true })

      const gone = await call('storage.get', id)
      assert.equal(gone.code, 1)
      assert.match(gone.stderr, /^client-error\/not-found/)
      assert.equal(gone.stdout.length, 0)
    })

    it('the template methods info, methods and quote, and the core info service', async () => {
      const [info, methods, quote, node] = await Promise.all([
        call('sha256.info'),
        call('sha256.methods'),
        call('storage.quote', 'put', '1024'),
        call('info.info')
      ])
      assert.equal(info.code, 0, info.stderr)
      assert.equal(JSON.parse(info.stdout.toString()).service, 'sha256')

      assert.equal(methods.code, 0, methods.stderr)
      const names = JSON.parse(methods.stdout.toString()).methods.map((m: { name: string }) => m.name)
      assert.ok(names.includes('hash') && names.includes('quote'), names.join(','))

      assert.equal(quote.code, 0, quote.stderr)
      const q = JSON.parse(quote.stdout.toString())
      assert.equal(q.method, 'put')
      assert.deepEqual(q.units, { byte: '1024', second: '1' })
      assert.equal(q.amount, '0')

      assert.equal(node.code, 0, node.stderr)
      const n = JSON.parse(node.stdout.toString()).node
      assert.equal(n.peerId, server.peerId)
      assert.ok(n.addresses.includes(server.addr))
      const services = n.services.map((s: { name: string }) => s.name)
      for (const s of ['info', 'sha256', 'storage']) { assert.ok(services.includes(s), services.join(',')) }
    })

    it('--json prints the whole response as one JSON object', async () => {
      const r = await call('sha256.hash', '--body-file', file, '--json')
      assert.equal(r.code, 0, r.stderr)
      const lines = r.stdout.toString().trim().split('\n')
      assert.equal(lines.length, 1)
      const j = JSON.parse(lines[0])
      assert.equal(j.status, 'ok')
      assert.equal(j.code, 0)
      assert.equal(j.bodyHex, sha256hex(content))
      assert.equal(Buffer.from(j.body, 'base64').toString('hex'), sha256hex(content))
      assert.equal(j.signer, `oc:${server.peerId}`)
      assert.equal(j.peer, server.peerId)
    })

    it('a non-ok status prints its path and detail on stderr and exits 1', async () => {
      const r = await call('nosuch.thing')
      assert.equal(r.code, 1)
      assert.match(r.stderr, /^client-error\/service-unsupported: /)
      const j = await call('nosuch.thing', '--json')
      assert.equal(j.code, 1)
      const body = JSON.parse(j.stdout.toString())
      assert.equal(body.status, 'client-error/service-unsupported')
      assert.equal(body.code, 103)
    })

    it('a body over the node\'s limit is refused before anything is sent', async () => {
      const big = join(work, 'big.bin')
      await writeFile(big, '')
      await truncate(big, MAX_BODY_SIZE + 1)
      const before = await findRunningNode(serverDir)
      const r = await call('sha256.hash', '--body-file', big)
      assert.equal(r.code, 1)
      assert.match(r.stderr, /larger than the largest body a node accepts \(4 MiB\)/)
      const after = await findRunningNode(serverDir)
      assert.equal((after?.node.stats.opencloud as any).requests, (before?.node.stats.opencloud as any).requests, 'nothing reached the node')
      // stdin is bounded the same way
      const piped = await runCli(['call', server.addr, 'sha256.hash', '-f', '-', '--data-dir', clientDir], { input: Buffer.alloc(MAX_BODY_SIZE + 1) })
      assert.equal(piped.code, 1)
      assert.match(piped.stderr, /larger than the largest body/)
    })

    it('no answer (nothing listening) exits 3 with a clear message', async () => {
      const port = await closedPort()
      const r = await runCli(['call', `/ip4/127.0.0.1/tcp/${port}/p2p/${server.peerId}`, 'sha256.hash', '--data-dir', clientDir, '--timeout', '5000'])
      assert.equal(r.code, 3)
      assert.match(r.stderr, /^decloud: no answer from \/ip4\/127\.0\.0\.1\/tcp\/\d+/)
      assert.match(r.stderr, /ECONNREFUSED/)
      assert.doesNotMatch(r.stderr, /\n\s+at /)
    })
  })

  describe('with a node running for the caller\'s data dir', () => {
    let client: CliNode

    before(async () => {
      client = await startCliNode(clientDir)
    })

    after(async () => {
      await client?.stop('SIGKILL')
    })

    it('decloud call goes through that node\'s control API', async () => {
      const r = await call('sha256.hash', '--body-file', file, '--json')
      assert.equal(r.code, 0, r.stderr)
      const j = JSON.parse(r.stdout.toString())
      assert.equal(j.status, 'ok')
      assert.equal(j.bodyHex, sha256hex(content))
      assert.equal(j.signer, `oc:${server.peerId}`)
      assert.equal(j.peer, server.peerId)
      // the running node made the call: it holds the connection to the server
      const running = await findRunningNode(clientDir)
      assert.ok(running != null)
      assert.equal(running.node.peerId, client.peerId)
      const { peers } = await running.client.peers()
      assert.ok(peers.some(p => p.peerId === server.peerId), 'the node is connected to the server')

      // and a non-ok status still exits 1 with the path on stderr
      const bad = await call('nosuch.thing')
      assert.equal(bad.code, 1)
      assert.match(bad.stderr, /^client-error\/service-unsupported/)
    })

    it('a call to the node\'s own address or peer id is served by that node, from a throw-away identity', async () => {
      const mine = ['--data-dir', clientDir]
      const r = await runCli(['call', client.addr, 'sha256.hash', '--body-file', file, ...mine])
      assert.equal(r.code, 0, r.stderr)
      assert.equal(r.stdout.toString(), sha256hex(content) + '\n')
      const j = await runCli(['call', client.peerId, 'info.info', '--json', ...mine])
      assert.equal(j.code, 0, j.stderr)
      const answer = JSON.parse(j.stdout.toString())
      assert.equal(answer.status, 'ok')
      assert.equal(answer.peer, client.peerId)
      assert.equal(JSON.parse(Buffer.from(answer.body, 'base64').toString()).node.peerId, client.peerId)
      // statuses are the node's own: an unknown service is still service-unsupported
      const bad = await runCli(['call', client.addr, 'nosuch.thing', ...mine])
      assert.equal(bad.code, 1)
      assert.match(bad.stderr, /^client-error\/service-unsupported/)
      // paying oneself is refused on the command line
      const pay = await runCli(['call', client.addr, 'storage.put', '--body-file', file, '--pay', 'auto', '--max', '10', ...mine])
      assert.equal(pay.code, 2)
      assert.match(pay.stderr, /a node does not pay itself/)
    })

    it('decloud id --addr and --peer print what a script needs', async () => {
      const a = await runCli(['id', '--addr', '--data-dir', clientDir])
      assert.equal(a.code, 0, a.stderr)
      assert.equal(a.stdout.toString(), client.addr + '\n')
      const p = await runCli(['id', '--peer', '--data-dir', clientDir])
      assert.equal(p.stdout.toString(), client.peerId + '\n')
      const none = await runCli(['id', '--addr', '--data-dir', join(work, 'nothing-runs')])
      assert.equal(none.code, 1)
      assert.match(none.stderr, /no node is running for/)
    })

    it('a second node on the same data dir fails with a clear message', async () => {
      const r = await runCli(['node', '--dev', '--data-dir', clientDir, '--listen', '/ip4/127.0.0.1/tcp/0'])
      assert.equal(r.code, 1)
      assert.match(r.stderr, /already running for the data dir/)
      assert.doesNotMatch(r.stderr, /\n\s+at /)
      // without the control files, the database lock still refuses the second node
      const controlFile = join(clientDir, CONTROL_FILE)
      await rename(controlFile, controlFile + '.hidden')
      try {
        const locked = await runCli(['node', '--dev', '--data-dir', clientDir, '--listen', '/ip4/127.0.0.1/tcp/0'])
        assert.equal(locked.code, 1)
        assert.match(locked.stderr, /^decloud: the data dir .* is in use by another decloud process\n$/)
      } finally {
        await rename(controlFile + '.hidden', controlFile)
      }
      // the first one is unharmed
      assert.ok(await findRunningNode(clientDir))
    })

    it('control files left by a killed node are ignored and replaced; --bootstrap joins a node', async () => {
      const killed = await client.stop('SIGKILL')
      assert.equal(killed.signal, 'SIGKILL')
      assert.ok(existsSync(join(clientDir, CONTROL_FILE)), 'a killed node leaves its control file')
      assert.equal(await findRunningNode(clientDir), undefined)

      // call falls back to a transient client with the same key
      const r = await call('sha256.hash', '--body-file', file, '--json')
      assert.equal(r.code, 0, r.stderr)
      assert.equal(JSON.parse(r.stdout.toString()).peer, server.peerId)

      const id = await runCli(['id', '--data-dir', clientDir])
      assert.equal(id.stdout.toString().split('\n')[0], `peer id: ${client.peerId}`)

      // a new node starts on the same data dir (joining the server's swarm this time) and stops cleanly
      client = await startCliNode(clientDir, ['--bootstrap', server.addr, '--network-mode', 'local'])
      const running = await findRunningNode(clientDir)
      assert.ok(running != null)
      const serverId = server.peerId
      let connected = false
      for (let i = 0; i < 100 && !connected; i++) {
        connected = (await running.client.peers()).peers.some(p => p.peerId === serverId)
        if (!connected) { await new Promise(resolve => setTimeout(resolve, 100)) }
      }
      assert.ok(connected, '--bootstrap connects to the given node')
      const stopped = await client.stop('SIGTERM')
      assert.equal(stopped.code, 0, stopped.stderr)
      assert.ok(!existsSync(join(clientDir, CONTROL_FILE)))
      assert.ok(!existsSync(join(clientDir, TOKEN_FILE)))
    })
  })

  describe('stop and restart', () => {
    it('SIGINT stops the node within 5 s with exit 0; a restart keeps the peer id and the blobs', async () => {
      const put = await call('storage.put', '--body-file', file)
      assert.equal(put.code, 0, put.stderr)
      const id = put.stdout.toString().trim()
      const peerId = server.peerId

      const stopped = await server.stop('SIGINT')
      assert.equal(stopped.code, 0, stopped.stderr)
      assert.ok(stopped.ms < 5_000, `stopped in ${stopped.ms} ms`)
      assert.doesNotMatch(stopped.stderr, /Error/)
      assert.ok(!existsSync(join(serverDir, CONTROL_FILE)), 'control.json removed')
      assert.ok(!existsSync(join(serverDir, TOKEN_FILE)), 'control.token removed')

      server = await startCliNode(serverDir)
      assert.equal(server.peerId, peerId)
      const out = join(work, 'after-restart.bin')
      const get = await call('storage.get', id, '--out', out)
      assert.equal(get.code, 0, get.stderr)
      assert.ok((await readFile(out)).equals(content))
    })
  })
})
