/**
 * The dashboard in a real browser (Debian's Chromium driven by
 * playwright-core) against a real node with payments on an embedded regtest
 * chain: login by one-time link, every page, live refresh, and the
 * protections: no cookie, a spent link, a forged cross-site POST.
 */
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { existsSync } from 'node:fs'
import { readFile, writeFile } from 'node:fs/promises'
import { createServer, request } from 'node:http'
import { join } from 'node:path'
import { chromium } from 'playwright-core'
import { ControlClient, ControlServer } from '../src/control/index.js'
import { Status } from '../src/protocols/opencloud/pb/opencloud.js'
import { eventually, startNode, tempDir } from './fixtures.js'
import { startRegtest } from './regtest.js'
import type { TestNode } from './fixtures.js'
import type { EmbeddedChain } from './regtest.js'
import type { Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { Browser, Page } from 'playwright-core'

/** Debian's chromium package (CI installs it with apt; see .ci/run) */
export const CHROMIUM = process.env.DECLOUD_CHROMIUM ?? '/usr/bin/chromium'

interface Answer { status: number, headers: Record<string, string | string[] | undefined>, body: string }

async function http (port: number, options: { method?: string, path: string, headers?: Record<string, string>, body?: string }): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, method: options.method ?? 'GET', path: options.path, headers: options.headers }, res => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => { resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }) })
    })
    req.on('error', reject)
    req.end(options.body)
  })
}

describe('dashboard, in Chromium', function () {
  this.timeout(180_000)
  let chain: EmbeddedChain
  let node: TestNode
  let control: ControlServer
  let browser: Browser
  let page: Page
  let evil: Server
  let evilPort: number
  const sellers: TestNode[] = []

  before(async function () {
    assert.ok(existsSync(CHROMIUM), `Chromium is needed at ${CHROMIUM} (apt-get install chromium; .ci/run does)`)
    chain = await startRegtest()
    const dir = await tempDir()
    const policyFile = join(dir, 'policy.yaml')
    await writeFile(policyFile, 'version: 1\nrules:\n  - scope: global\n    allow: true\n')
    node = await startNode({ payments: { chain, fulfilment: false }, policy: { file: policyFile }, metrics: true })
    // three free storage sellers in the node's swarm, for the Files page
    for (let i = 0; i < 3; i++) { sellers.push(await startNode({ bootstrap: [node.addr] })) }
    assert.ok(await eventually(async () => (await node.rankSellers('storage', { method: 'put', timeout: 2_000 })).length >= 3, 60_000, 500), 'the node found its 3 sellers')
    control = new ControlServer({ node, dataDir: node.dataDir, prometheus: true })
    await control.start()
    // another site on this machine, whose page tries to change the node
    evil = createServer((req, res) => {
      res.writeHead(200, { 'content-type': 'text/html' })
      res.end(`<!doctype html><form id="f" method="POST" action="http://127.0.0.1:${control.port}/v1/policy/reload" enctype="text/plain"><input name="{}" value=""></form>
        <script>
          fetch('http://127.0.0.1:${control.port}/v1/policy/reload', { method: 'POST', credentials: 'include', mode: 'no-cors', body: '{}' }).finally(() => { document.title = 'sent' })
        </script>`)
    })
    await new Promise<void>(resolve => evil.listen(0, '127.0.0.1', resolve))
    evilPort = (evil.address() as AddressInfo).port
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync']
    })
    page = await (await browser.newContext()).newPage()
  })

  after(async () => {
    await browser?.close()
    evil?.close()
    await control?.stop()
    await node?.destroy()
    await Promise.all(sellers.map(async s => s.destroy()))
    await chain?.close()
  })

  it('without a session every page and endpoint is refused, and a login link works once', async () => {
    for (const path of ['/dashboard/', '/dashboard/app.js', '/v1/node', '/v1/stats', '/metrics']) {
      const a = await http(control.port, { path })
      assert.equal(a.status, 401, `${path} without cookie or token`)
    }
    const url = control.loginUrl()
    const first = await http(control.port, { path: new URL(url).pathname + new URL(url).search })
    assert.equal(first.status, 303)
    const cookie = String(first.headers['set-cookie'])
    assert.match(cookie, /decloud_session=[^;]+; HttpOnly; SameSite=Strict; Path=\//)
    const again = await http(control.port, { path: new URL(url).pathname + new URL(url).search })
    assert.equal(again.status, 401, 'a login link is spent once used')
    const session = cookie.split(';')[0]
    const ok = await http(control.port, { path: '/v1/node', headers: { cookie: session } })
    assert.equal(ok.status, 200)
    assert.equal(JSON.parse(ok.body).peerId, node.peerId.toString())
    const wrong = await http(control.port, { path: '/v1/node', headers: { cookie: 'decloud_session=forged' } })
    assert.equal(wrong.status, 401)
    // what `decloud dashboard` asks for, through the control client
    const { url: fromClient } = await new ControlClient({ port: control.port, token: await tokenOf(node.dataDir) }).dashboardLogin()
    const viaClient = new URL(fromClient)
    assert.equal((await http(control.port, { path: viaClient.pathname + viaClient.search })).status, 303)
  })

  it('a POST with the cookie from another origin, or without an Origin, is refused; from the dashboard\'s origin it passes', async () => {
    const url = new URL(control.loginUrl())
    const session = String((await http(control.port, { path: url.pathname + url.search })).headers['set-cookie']).split(';')[0]
    const reload = async (headers: Record<string, string>): Promise<Answer> => http(control.port, { method: 'POST', path: '/v1/policy/reload', headers: { cookie: session, 'content-type': 'application/json', ...headers }, body: '{}' })
    const cross = await reload({ origin: `http://127.0.0.1:${evilPort}` })
    assert.equal(cross.status, 403)
    assert.equal(JSON.parse(cross.body).error.type, 'cross-site')
    assert.equal((await reload({})).status, 403, 'no Origin header')
    assert.equal((await reload({ origin: control.origin, 'sec-fetch-site': 'cross-site' })).status, 403)
    assert.equal((await reload({ origin: control.origin, 'sec-fetch-site': 'same-origin' })).status, 200)
  })

  it('logs in from the printed link and shows every page with live data', async () => {
    await page.goto(control.loginUrl())
    assert.equal(new URL(page.url()).pathname, '/dashboard/')
    const cookies = await page.context().cookies()
    const c = cookies.find(x => x.name === 'decloud_session')
    assert.ok(c != null && c.httpOnly && c.sameSite === 'Strict', 'an HttpOnly, SameSite=Strict session cookie')
    // overview
    await page.waitForSelector('#peer-id')
    assert.equal(await page.textContent('#peer-id'), node.peerId.toString())
    assert.ok(await page.isVisible('svg.chart'), 'a bandwidth chart')
    // live: a request served after the page loaded shows up without a reload
    const before = Number(await page.locator('.card', { hasText: 'requests served' }).locator('.v').textContent())
    await node.opencloud.call(node.addr, { service: 'sha256', method: 'hash', body: new Uint8Array([1]) }).catch(() => {})
    await fetch(`http://127.0.0.1:${control.port}/v1/call`, { method: 'POST', headers: { authorization: `Bearer ${await tokenOf(node.dataDir)}`, 'content-type': 'application/json' }, body: JSON.stringify({ target: node.addr, service: 'sha256', method: 'hash', body: 'AQ==' }) })
    assert.ok(await eventually(async () => Number(await page.locator('.card', { hasText: 'requests served' }).locator('.v').textContent()) > before, 10_000), 'the overview refreshed by itself')

    await page.click('a[href="#wallet"]')
    await page.waitForSelector('#identity-address')
    assert.equal(await page.textContent('#identity-address'), node.payments?.wallet.identityAddress)
    const qr = await page.locator('img.qr').evaluate((img: HTMLImageElement) => img.complete && img.naturalWidth > 0)
    assert.ok(qr, 'the QR code of the identity address loaded')

    await page.click('a[href="#market"]')
    await page.waitForSelector('#book h2, #book p')

    // a buyer takes a lease here: Storage sold lists it
    const put = await sellers[0].opencloud.call(node.addr, { service: 'storage', method: 'put', args: ['3600'], body: randomBytes(5000) })
    assert.equal(put.status, Status.OK, put.detail)
    const pieceId = JSON.parse(new TextDecoder().decode(put.body)).id
    await page.click('a[href="#selling"]')
    await page.waitForSelector('.card >> text=used')
    await page.waitForSelector(`[data-piece="${String(pieceId)}"]`)

    await page.click('a[href="#peers"]')
    await page.waitForSelector('text=Connected peers')

    await page.click('a[href="#policy"]')
    await page.waitForSelector('#policy-info table')
    await page.fill('input[name=who]', `oc:${node.peerId.toString()}`)
    await page.fill('input[name=call]', 'storage.put')
    await page.click('form >> text=explain')
    await page.waitForFunction(() => (document.querySelector('#explain-out')?.textContent ?? '').includes('storage.put'))
    await page.click('#reload')
    await page.waitForFunction(() => (document.querySelector('#reload-out')?.textContent ?? '').startsWith('reloaded'))
  })

  it('Files: uploads from the browser with progress, lists the file with its health, downloads the same bytes; Peers shows trust', async () => {
    const data = randomBytes(3 * 1024 * 1024 + 77)
    await page.goto(`${control.origin}/dashboard/#files`)
    await page.waitForSelector('#files-list')
    await page.setInputFiles('#upload-file', { name: 'photo.bin', mimeType: 'application/octet-stream', buffer: data })
    await page.fill('input[name=redundancy]', '2/3')
    await page.click('#upload')
    await page.waitForFunction(() => /^(stored|failed)/.test(document.querySelector('#upload-status')?.textContent ?? ''), undefined, { timeout: 60_000 })
    const status = await page.textContent('#upload-status') ?? ''
    assert.match(status, /^stored: [0-9a-f]+/)
    const id = status.slice('stored: '.length)
    const files = await node.files.list()
    assert.deepEqual(files.map(f => f.id), [id])
    await page.waitForSelector('#files-list >> text=photo.bin')
    const [download] = await Promise.all([page.waitForEvent('download'), page.click('#files-list >> text=download')])
    const path = await download.path()
    assert.ok(Buffer.from(await readFile(path)).equals(data), 'the downloaded bytes are the uploaded ones')

    // the node bought from the sellers: their records show on Peers & trust
    await page.click('a[href="#peers"]')
    await page.waitForSelector('a[data-peer]', { timeout: 15_000 })
    const shown = await page.locator('a[data-peer]').evaluateAll(els => els.map(e => e.getAttribute('data-peer')))
    assert.ok(sellers.some(sl => shown.includes(sl.peerId.toString())), `a seller among ${shown.join(', ')}`)
    await page.locator('a[data-peer]').first().click()
    await page.waitForSelector('#peer-detail h2')
  })

  it('a page on another site cannot use the session: its POST changes nothing', async () => {
    const policy = node.policy
    assert.ok(policy?.reloader != null)
    const reloads = policy.reloader.reloads
    // same browser context: the session cookie is there, the browser must not send it cross-site
    const evilPage = await page.context().newPage()
    const statuses: number[] = []
    evilPage.on('requestfinished', r => { if (r.url().includes('/v1/policy/reload')) { void r.response().then(x => { if (x != null) { statuses.push(x.status()) } }) } })
    await evilPage.goto(`http://127.0.0.1:${evilPort}/`)
    await evilPage.waitForFunction(() => document.title === 'sent')
    await evilPage.close()
    assert.equal(policy.reloader.reloads, reloads, 'the forged POST did not reload the policy')
  })

  it('/metrics serves the Prometheus text format with libp2p\'s and decloud\'s counters', async () => {
    const a = await http(control.port, { path: '/metrics', headers: { authorization: `Bearer ${await tokenOf(node.dataDir)}` } })
    assert.equal(a.status, 200)
    assert.match(String(a.headers['content-type']), /text\/plain/)
    assert.match(a.body, /^decloud_opencloud_calls_total\{service="sha256",method="hash",status="OK"\} [1-9]/m)
    assert.match(a.body, /^libp2p_data_transfer_bytes_total\{protocol="global sent"\} [1-9]/m)
    assert.match(a.body, /^decloud_storage_capacity_bytes [1-9]/m)
    assert.match(a.body, /^decloud_wallet_balance_sats\{state="confirmed"\} [1-9]/m)
  })
})

async function tokenOf (dataDir: string): Promise<string> {
  const { readFile } = await import('node:fs/promises')
  return (await readFile(join(dataDir, 'control.token'), 'utf8')).trim()
}
