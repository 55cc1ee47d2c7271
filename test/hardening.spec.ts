/**
 * The node's local surface under a hostile local process or user: the
 * control API under a flood of half-open connections and DNS rebinding,
 * signals sent to a real `decloud node`, a policy.yaml written after start,
 * and a data dir with loose permissions.
 */
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { existsSync } from 'node:fs'
import { chmod, mkdir, readFile, stat, writeFile } from 'node:fs/promises'
import { request } from 'node:http'
import { connect } from 'node:net'
import { join } from 'node:path'
import { ControlServer, CONTROL_FILE, TOKEN_FILE, findRunningNode } from '../src/control/index.js'
import { checkDataDir, KEY_FILE } from '../src/node/data-dir.js'
import { killAll, startCliNode } from './cli-fixtures.js'
import { eventually, startNode, tempDir } from './fixtures.js'
import type { CliNode } from './cli-fixtures.js'
import type { TestNode } from './fixtures.js'
import type { Socket } from 'node:net'

/** One GET; resolves with the status and the time it took */
async function get (port: number, path: string, headers: Record<string, string>): Promise<{ status: number, ms: number, connection?: string }> {
  const start = Date.now()
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, agent: false, headers }, (res) => {
      res.resume()
      res.on('end', () => { resolve({ status: res.statusCode ?? 0, ms: Date.now() - start, connection: res.headers.connection }) })
    })
    req.setTimeout(20_000, () => { req.destroy(new Error('no answer within 20 s')) })
    req.on('error', reject)
    req.end()
  })
}

/** A socket that connected, with the time it opened and a promise of the time it was closed */
interface Held { socket: Socket, opened: number, closed: Promise<number> }

async function halfHeader (port: number): Promise<Held> {
  const socket = connect({ host: '127.0.0.1', port })
  const closed = new Promise<number>(resolve => { socket.once('close', () => { resolve(Date.now()) }) })
  socket.on('error', () => {})
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve)
    socket.once('error', reject)
  })
  const opened = Date.now()
  // a request line and one header, never the blank line that ends the headers
  socket.write(`GET /v1/node HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n`)
  return { socket, opened, closed }
}

/** Waits (bounded) for a line matching `re` on the node's stderr */
async function line (node: CliNode, re: RegExp, what: string): Promise<void> {
  assert.ok(await eventually(() => re.test(node.stderr()), 20_000, 50), `${what}: no line ${re} on stderr:\n${node.stderr()}`)
}

describe('control API under attack from a local process', function () {
  this.timeout(60_000)
  const HEADERS_TIMEOUT = 1_500
  let node: TestNode
  let control: ControlServer
  let token: string

  before(async () => {
    node = await startNode()
    control = new ControlServer({ node, dataDir: node.dataDir, headersTimeout: HEADERS_TIMEOUT })
    await control.start()
    token = (await readFile(join(node.dataDir, TOKEN_FILE), 'utf8')).trim()
  })

  after(async () => {
    await control?.stop()
    await node?.destroy()
  })

  it('70 sockets stalled in their headers neither lock out a client with the token nor outlive the headers timeout', async () => {
    const held: Held[] = []
    for (let i = 0; i < 70; i++) { held.push(await halfHeader(control.port)) }
    // the slots the flood asked for are more than the server has (64): a request with the token is still served, at once
    const r = await get(control.port, '/v1/node', { authorization: `Bearer ${token}` })
    assert.equal(r.status, 200)
    assert.ok(r.ms < HEADERS_TIMEOUT, `answered in ${r.ms} ms, not after the flood timed out`)
    // a second one, with the flood still holding what it could
    assert.equal((await get(control.port, '/v1/peers', { authorization: `Bearer ${token}` })).status, 200)
    // every stalled socket is closed by the server within the headers timeout (and a margin for a loaded machine)
    const deadline = new Promise<never>((_resolve, reject) => { setTimeout(() => { reject(new Error('stalled sockets still open')) }, HEADERS_TIMEOUT + 5_000).unref() })
    const closedAt = await Promise.race([Promise.all(held.map(async h => h.closed)), deadline])
    const late = held.map((h, i) => closedAt[i] - h.opened).filter(ms => ms > HEADERS_TIMEOUT + 1_000)
    assert.deepEqual(late, [], 'closed later than the headers timeout + 1 s')
  })

  it('the Host header must name the loopback: another name (DNS rebinding) is refused with 421', async () => {
    const auth = { authorization: `Bearer ${token}` }
    for (const host of ['evil.example.com', `evil.example.com:${control.port}`, `127.0.0.1.evil.example.com:${control.port}`, `127.0.0.1:${control.port + 1}`, 'localhost']) {
      const r = await get(control.port, '/v1/node', { ...auth, host })
      assert.equal(r.status, 421, host)
      assert.equal(r.connection, 'close')
    }
    for (const host of [`127.0.0.1:${control.port}`, `localhost:${control.port}`, `[::1]:${control.port}`, `LOCALHOST:${control.port}`]) {
      assert.equal((await get(control.port, '/v1/node', { ...auth, host })).status, 200, host)
    }
  })
})

describe('decloud node: signals and a policy written after start', function () {
  this.timeout(120_000)
  after(async () => { await killAll() })

  it('SIGHUP without a policy file keeps the node running; a policy.yaml created later takes effect; every reload prints a line', async () => {
    const dir = await tempDir('decloud-hup-')
    const node = await startCliNode(dir)
    process.kill(node.process.pid as number, 'SIGHUP')
    await line(node, /^policy reloaded: no policy file, the default policy \(\d+ rules\)$/m, 'SIGHUP with no file')
    assert.equal(node.process.exitCode, null)
    assert.equal(node.process.signalCode, null)
    const running = await findRunningNode(dir)
    assert.ok(running != null, 'the control API still answers')
    const before = await running.client.request('GET', '/policy') as { file: string | null, rules: number }
    assert.equal(before.file, null)

    // created after start: the watcher of the data dir picks it up
    const file = join(dir, 'policy.yaml')
    await writeFile(file, 'version: 1\nrules:\n  - scope: global\n    deny: true\n')
    await line(node, new RegExp(`^policy reloaded from ${file.replace(/[.]/g, '\\.')}: 1 rules$`, 'm'), 'policy.yaml created')
    const after = await running.client.request('GET', '/policy') as { file: string | null, rules: number }
    assert.deepEqual({ file: after.file, rules: after.rules }, { file, rules: 1 })

    // a bad edit is refused, on the watcher and on SIGHUP, with the line
    await writeFile(file, 'version: 1\nrules:\n  - scope: global\n    rate-limt: 4\n')
    await line(node, /^policy not reloaded: policy\.yaml:4:5: unknown command "rate-limt".*$/m, 'bad edit')
    const refused = node.stderr().split('\n').filter(l => l.startsWith('policy not reloaded:')).length
    process.kill(node.process.pid as number, 'SIGHUP')
    assert.ok(await eventually(() => node.stderr().split('\n').filter(l => l.startsWith('policy not reloaded: policy.yaml:4:5:')).length > refused, 20_000, 50), node.stderr())
    assert.equal((await running.client.request('GET', '/policy') as { rules: number }).rules, 1, 'the policy in force is kept')

    const stopped = await node.stop('SIGINT')
    assert.equal(stopped.code, 0, stopped.stderr)
    assert.ok(!existsSync(join(dir, CONTROL_FILE)) && !existsSync(join(dir, TOKEN_FILE)))
  })

  it('a node with --no-policy survives SIGHUP and says there is nothing to reload', async () => {
    const dir = await tempDir('decloud-hup-')
    const node = await startCliNode(dir, ['--no-policy'])
    process.kill(node.process.pid as number, 'SIGHUP')
    await line(node, /^SIGHUP: this node runs without a policy \(--no-policy\), nothing to reload$/m, 'SIGHUP with --no-policy')
    assert.ok(await findRunningNode(dir) != null, 'still running')
    const stopped = await node.stop('SIGTERM')
    assert.equal(stopped.code, 0, stopped.stderr)
  })

  for (const signal of ['SIGUSR2', 'SIGQUIT', 'SIGALRM'] as NodeJS.Signals[]) {
    it(`a node ended by ${signal} (nobody handles it) removes its control files`, async () => {
      const dir = await tempDir('decloud-sig-')
      const node = await startCliNode(dir)
      assert.ok(existsSync(join(dir, CONTROL_FILE)) && existsSync(join(dir, TOKEN_FILE)))
      const r = await node.stop(signal)
      assert.equal(r.signal, signal, 'the signal still ends the node, as it would have')
      assert.ok(!existsSync(join(dir, CONTROL_FILE)), 'control.json removed')
      assert.ok(!existsSync(join(dir, TOKEN_FILE)), 'control.token removed')
    })
  }

  for (const [how, code, exitCode] of [['process.exit()', 'process.exit(3)', 3], ['an uncaught exception', 'throw new Error(\'boom\')', 1]] as const) {
    it(`a process with a control server that ends by ${how} removes its control files`, async () => {
      const dir = await tempDir('decloud-exit-')
      const script = `
        const { ControlServer } = await import(${JSON.stringify(new URL('../src/control/server.js', import.meta.url).href)})
        const control = new ControlServer({ node: {}, dataDir: ${JSON.stringify(dir)} })
        await control.start()
        console.log('up')
        setTimeout(() => { ${code} }, 10)
      `
      const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'pipe'] })
      let out = ''
      child.stdout.on('data', (b: Buffer) => { out += b.toString() })
      child.stdout.once('data', () => { assert.ok(existsSync(join(dir, CONTROL_FILE)), 'written at start') })
      const [exit] = await Promise.race([once(child, 'exit'), new Promise<never>((_resolve, reject) => { setTimeout(() => { child.kill('SIGKILL'); reject(new Error('no exit')) }, 20_000).unref() })])
      assert.equal(out, 'up\n')
      assert.equal(exit, exitCode)
      assert.ok(!existsSync(join(dir, CONTROL_FILE)) && !existsSync(join(dir, TOKEN_FILE)))
    })
  }
})

describe('data dir permissions', function () {
  this.timeout(60_000)
  after(async () => { await killAll() })

  it('an existing dir open to others is warned about, left as it is; the secret files in it go back to 0600', async () => {
    const dir = join(await tempDir('decloud-perm-'), 'data')
    await mkdir(dir, { mode: 0o755 })
    await chmod(dir, 0o755)
    await writeFile(join(dir, KEY_FILE), 'x', { mode: 0o644 })
    await chmod(join(dir, KEY_FILE), 0o644)
    await writeFile(join(dir, 'wallet.json'), '{}', { mode: 0o640 })
    await chmod(join(dir, 'wallet.json'), 0o640)
    const warnings = await checkDataDir(dir)
    assert.equal(warnings.length, 3, warnings.join('\n'))
    assert.match(warnings[0], /the data dir .* is open to other users \(mode 0755\)/)
    assert.equal((await stat(dir)).mode & 0o777, 0o755, 'the user\'s dir keeps its mode')
    assert.equal((await stat(join(dir, KEY_FILE))).mode & 0o777, 0o600)
    assert.equal((await stat(join(dir, 'wallet.json'))).mode & 0o777, 0o600)
    // once tightened, only the dir is left to say
    assert.equal((await checkDataDir(dir)).length, 1)
    await chmod(dir, 0o700)
    assert.deepEqual(await checkDataDir(dir), [])
  })

  it('decloud node prints the warning at start', async () => {
    const dir = join(await tempDir('decloud-perm-'), 'data')
    await mkdir(dir)
    await chmod(dir, 0o750)
    const node = await startCliNode(dir)
    assert.match(node.stderr(), /^warning: the data dir .* is open to other users \(mode 0750\).*chmod 700/m)
    await node.stop()
  })
})
