import assert from 'node:assert/strict'
import { writeFileSync } from 'node:fs'
import { readFile, rename, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import {
  PolicyEngine, PolicyReloader, RateLimiter, ConcurrencyLimiter, chainStages, defaultPolicy, loadPolicyFile,
  minimumPayment, openNodePolicy, parsePolicy, policyStages, validatePolicy, DEFAULT_POLICY_YAML
} from '../src/policy/index.js'
import { NonceStore, PaymentType, Reason, Status, createPipeline, defaultPaymentGate, openCloudVerifier, requestDigest, runPipeline } from '../src/protocols/opencloud/index.js'
import { sha256Service } from '../src/services/sha256.js'
import { killAll, runCli } from './cli-fixtures.js'
import { eventually, tempDir } from './fixtures.js'
import { signedRequest, startBareNode } from './protocol-fixtures.js'
import type { BareNode } from './protocol-fixtures.js'
import type { PolicyContext, Policy, PolicyReloadEvent, PolicyStages, ReloadResult, Rule } from '../src/policy/index.js'
import type { CallState, Stage } from '../src/protocols/opencloud/api/call.js'
import type { BitcoinCredentialState } from '../src/protocols/opencloud/api/template.js'
import type { ServiceDefinition } from '../src/protocols/opencloud/api/template.js'
import type { PeerId, PrivateKey } from '@libp2p/interface'

const enc = new TextEncoder()
const FIXTURES = fileURLToPath(new URL('../../test/fixtures/policy/', import.meta.url))
const EXAMPLE = fileURLToPath(new URL('../../policy.example.yaml', import.meta.url))

/** Peer ids in the right shape (the engine only compares them) */
const A = '12D3KooWRBy97UB99e3J6hiPesre1MZeuNQvfan4gBziswrRJsNK'
const B = '12D3KooWQYhTNQdmr3ArTeUHRYzFg94BKyTkoWBDWez9kSCVe2Xo'
const ADDR = 'bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080'
const ADDR2 = 'bcrt1qrp33g0q5c5txsp9arysrx4k6zdkfs4nce4xj0gdcccefvpysxf3qzf3ya8'

function policy (text: string, file = 'policy.yaml'): Policy {
  return parsePolicy(text, { file })
}

function engineOf (text: string): PolicyEngine {
  return new PolicyEngine(policy(text))
}

/** The PolicyError message for a text (fails the test when it parses) */
function errorOf (text: string, file = 'policy.yaml'): string {
  try {
    return `accepted ${new PolicyEngine(parsePolicy(text, { file, format: file.endsWith('.json') ? 'json' : 'yaml' })).size} rules`
  } catch (err: any) {
    assert.equal(err.name, 'PolicyError', String(err))
    return err.message
  }
}

function btc (confirmed: bigint, age: number, address = ADDR): BitcoinCredentialState {
  return { address, confirmed, unconfirmed: 0n, age, heldSince: age > 0 ? 1000 - age + 1 : undefined }
}

function ctx (fields: Partial<PolicyContext> = {}): PolicyContext {
  return { peer: A, credentials: [`oc:${A}`], service: 'storage', method: 'put', ...fields }
}

/** Reload results in order; `next()` waits (bounded) for the next one */
function events (): { next(): Promise<ReloadResult>, init: { onReload(e: PolicyEngine): void, onError(e: Error): void } } {
  const queue: ReloadResult[] = []
  const waiting: Array<(r: ReloadResult) => void> = []
  const push = (r: ReloadResult): void => {
    const w = waiting.shift()
    if (w != null) { w(r) } else { queue.push(r) }
  }
  return {
    init: { onReload: (engine) => { push({ ok: true, engine, changed: true }) }, onError: (error) => { push({ ok: false, error }) } },
    async next () {
      const ready = queue.shift()
      if (ready != null) { return ready }
      return new Promise<ReloadResult>((resolve, reject) => {
        const timer = setTimeout(() => { reject(new Error('no reload event within 20 s')) }, 20_000)
        waiting.push((r) => { clearTimeout(timer); resolve(r) })
      })
    }
  }
}

describe('policy', function () {
  after(async () => { await killAll() })

  describe('parse', () => {
    it('reads the example, the default and the bar fixtures', async () => {
      const example = await loadPolicyFile(EXAMPLE)
      assert.equal(example.rules.length, 11)
      assert.equal(example.file, 'policy.example.yaml')
      // positions are kept for explain
      assert.deepEqual(example.rules[0].source, { file: 'policy.example.yaml', line: 39, column: 5 })
      assert.deepEqual(example.rules[0].rateLimit, { requests: 200, requestBurst: 400, bytes: 32 * 1024 * 1024, byteBurst: 64 * 1024 * 1024 })
      assert.equal(defaultPolicy().rules.length, 8)
      const exclusive = await loadPolicyFile(join(FIXTURES, 'exclusive-bar.yaml'))
      assert.deepEqual(exclusive.rules[2].scope, { bitcoin: { minBalance: 10_000_000n, minAge: 6 } })
      assert.equal(exclusive.rules[2].maxTab, 1_000_000n)
      const open = await loadPolicyFile(join(FIXTURES, 'open-bar.yaml'))
      assert.equal(open.rules[0].maxTab, 100_000n)
      assert.equal(open.rules[0].defer, 'allow')
    })

    it('reads every scope and command into the typed form', () => {
      const p = policy(`version: 1
rules:
  - name: all
    scope: { method: storage.put, bitcoin: { min-balance: 1_000, min-age: 3 }, trust: { min: 0.25, max: 0.75 } }
    allow: true
    min-payment: { base: 1, rate: 3, per: 1000 }
    rate-limit: { requests: 0.5, bytes: 4KiB, request-burst: 2, byte-burst: 8192 }
    max-tab: 18446744073709551615
    defer: allow
    min-balance: 5
    min-age: 2
    require-credential: btc
    max-concurrent: 4
  - scope: { service: sha256, id: oc:${A} }
    deny: true
  - scope: { address: btc:${ADDR} }
    min-payment: 7
`)
      assert.deepEqual(p.rules[0], {
        name: 'all',
        scope: { method: 'storage.put', bitcoin: { minBalance: 1000n, minAge: 3 }, trust: { min: 0.25, max: 0.75 } },
        allow: true,
        minPayment: { base: 1n, rate: 3n, per: 1000n },
        rateLimit: { requests: 0.5, bytes: 4096, requestBurst: 2, byteBurst: 8192 },
        // the largest uint64, exact: integers are read as bigints
        maxTab: 18446744073709551615n,
        defer: 'allow',
        minBalance: 5n,
        minAge: 2,
        requireCredential: 'btc',
        maxConcurrent: 4,
        source: { file: 'policy.yaml', line: 3, column: 5 }
      })
      assert.deepEqual(p.rules[1].scope, { service: 'sha256', id: `oc:${A}` })
      assert.equal(p.rules[2].minPayment, 7n)
    })

    it('reads JSON files, bigint-exact', () => {
      const p = parsePolicy('{"version": 1, "rules": [{"scope": {"service": "storage"}, "max-tab": 12345678901234567890}]}', { file: 'p.json', format: 'json' })
      assert.equal(p.rules[0].maxTab, 12345678901234567890n)
      assert.match(errorOf('{"rules": [{"scope": "global", "max-tab": 1.0}]}', 'p.json'), /^p\.json:1:43: max-tab must be a whole number of sats, not 1\.0/)
    })

    // [what, text, expected message] — each error names the right line and column
    const errors: Array<[string, string, RegExp]> = [
      ['a misspelt command, with a suggestion', 'version: 1\nrules:\n  - scope: global\n    allow: true\n  - scope: global\n    rate-limt: { requests: 5 }\n',
        /^policy\.yaml:6:5: unknown command "rate-limt" \(did you mean rate-limit\?\)$/],
      ['a misspelt scope key', 'rules:\n  - scope: { servce: storage }\n    allow: true\n', /^policy\.yaml:2:14: unknown scope key "servce" \(did you mean service\?\)$/],
      ['a scope key written as a command', 'rules:\n  - service: storage\n    allow: true\n', /^policy\.yaml:2:5: unknown command "service" \(service is part of the scope/],
      ['a command written in the scope', 'rules:\n  - scope: { service: storage, deny: true }\n', /^policy\.yaml:2:32: unknown scope key "deny" \(deny is a command/],
      ['a fraction of a satoshi', 'rules:\n  - scope: global\n    max-tab: 1.5\n', /^policy\.yaml:3:14: max-tab must be a whole number of sats, not 1\.5: amounts are integers$/],
      ['a float written as an exponent', 'rules:\n  - scope: global\n    min-balance: 1e5\n', /^policy\.yaml:3:18: min-balance must be a whole number of sats, not 1e5/],
      ['a negative amount', 'rules:\n  - scope: global\n    max-tab: -5\n', /^policy\.yaml:3:14: max-tab must not be negative$/],
      ['an amount over uint64', 'rules:\n  - scope: global\n    max-tab: 18446744073709551616\n', /^policy\.yaml:3:14: max-tab exceeds the largest amount/],
      ['a float in min-payment', 'rules:\n  - scope: global\n    min-payment: { rate: 0.1 }\n', /^policy\.yaml:3:26: min-payment rate must be a whole number of sats/],
      ['an unknown min-payment key', 'rules:\n  - scope: global\n    min-payment: { rat: 1 }\n', /^policy\.yaml:3:20: unknown key "rat" in min-payment \(did you mean rate\?\)$/],
      ['a bad defer value', 'rules:\n  - scope: global\n    defer: maybe\n', /^policy\.yaml:3:12: defer must be allow or deny, not "maybe"$/],
      ['a bad credential kind', 'rules:\n  - scope: global\n    require-credential: ssh\n', /^policy\.yaml:3:25: require-credential must be oc, btc or any/],
      ['allow: false', 'rules:\n  - scope: global\n    allow: false\n', /^policy\.yaml:3:12: allow takes true/],
      ['service and method together', 'rules:\n  - scope: { service: storage, method: storage.put }\n    allow: true\n', /^policy\.yaml:2:12: a scope names either a service or a method/],
      ['two credentials in a scope', `rules:\n  - scope: { id: oc:${A}, bitcoin: { min-balance: 1 } }\n    allow: true\n`, /^policy\.yaml:2:12: a scope has at most one of id, address and bitcoin/],
      ['an id without oc:', `rules:\n  - scope: { id: ${A} }\n    allow: true\n`, /^policy\.yaml:2:18: id must be an OpenCloud ID oc:<peer id>/],
      ['an address without btc:', `rules:\n  - scope: { address: ${ADDR} }\n    allow: true\n`, /^policy\.yaml:2:23: address must be a bitcoin address credential btc:<address>/],
      ['a method without its service', 'rules:\n  - scope: { method: put }\n    allow: true\n', /^policy\.yaml:2:22: method must be service\.method/],
      ['a trust out of range', 'rules:\n  - scope: { trust: { min: 2 } }\n    allow: true\n', /^policy\.yaml:2:28: trust min must be a number between 0 and 1$/],
      ['a bitcoin class without balance', 'rules:\n  - scope: { bitcoin: { min-age: 6 } }\n    allow: true\n', /^policy\.yaml:2:23: scope bitcoin needs min-balance/],
      ['an empty rate limit', 'rules:\n  - scope: global\n    rate-limit: {}\n', /^policy\.yaml:3:5: rate-limit needs requests or bytes/],
      ['a bad size', 'rules:\n  - scope: global\n    rate-limit: { bytes: 32MB }\n', /^policy\.yaml:3:26: rate-limit bytes must be a number of bytes or a size like 64KiB/],
      ['max-concurrent 0', 'rules:\n  - scope: global\n    max-concurrent: 0\n', /^policy\.yaml:3:21: max-concurrent must be a whole number between 1/],
      ['a rule without scope', 'rules:\n  - allow: true\n', /^policy\.yaml:2:5: rule has no scope/],
      ['a rule without command', 'rules:\n  - scope: global\n', /^policy\.yaml:2:5: a rule needs at least one command/],
      ['allow and deny in one rule', 'rules:\n  - scope: global\n    allow: true\n    deny: true\n', /^policy\.yaml:4:5: a rule cannot both allow and deny$/],
      ['deny with a requirement', 'rules:\n  - scope: global\n    deny: true\n    min-balance: 5\n', /^policy\.yaml:4:5: deny with min-balance says nothing/],
      ['the same command twice for one scope', 'rules:\n  - scope: { service: storage }\n    max-tab: 5\n\n  - scope: { service: storage }\n    max-tab: 6\n',
        /^policy\.yaml:6:5: max-tab for scope service storage is already set at line 3; merge the two rules$/],
      ['a key twice in a rule', 'rules:\n  - scope: global\n    allow: true\n    allow: true\n', /^policy\.yaml:4:5: Map keys must be unique$/],
      ['broken YAML', 'rules:\n  - scope: global\n    allow: [true\n', /^policy\.yaml:4:1: /],
      ['an unknown top-level key', 'version: 1\nrule:\n  - scope: global\n', /^policy\.yaml:2:1: unknown key "rule" \(did you mean rules\?\)$/],
      ['a wrong version', 'version: 2\nrules: []\n', /^policy\.yaml:1:10: version must be 1, not 2$/],
      ['rules that are not a list', 'rules:\n  scope: global\n', /^policy\.yaml:2:3: rules must be a list/],
      ['no rules at all', 'version: 1\n', /^policy\.yaml:1:1: no rules/],
      ['an empty file', '', /^policy\.yaml:1:1: the file is empty/],
      ['anchors and aliases', 'rules:\n  - scope: &s global\n    allow: true\n  - scope: *s\n    deny: true\n', /^policy\.yaml:4:12: anchors and aliases are not supported/]
    ]
    for (const [what, text, expected] of errors) {
      it(`refuses ${what}, naming the line`, () => {
        assert.match(errorOf(text), expected)
      })
    }

    it('names the file that cannot be read', async () => {
      await assert.rejects(loadPolicyFile('/nonexistent/policy.yaml'), (err: any) => err.name === 'PolicyError' && /^policy\.yaml: cannot read the file \(ENOENT\)$/.test(err.message))
    })

    it('checks typed rules from embedders, naming the rule', () => {
      const bad = (rules: unknown[]): string => {
        try {
          validatePolicy({ version: 1, rules: rules as Rule[] })
        } catch (err: any) {
          assert.equal(err.name, 'PolicyError')
          return err.message
        }
        return 'accepted'
      }
      assert.equal(bad([{ scope: {}, allow: true }, { scope: { service: 'storage' }, maxTab: 5n }]), 'accepted')
      assert.match(bad([{ scope: {}, allow: true }, { scope: {}, maxTab: 5.5 }]), /^policy rule #2: max-tab must be a whole number of sats \(not 5\.5/)
      assert.match(bad([{ scope: { sevice: 'x' }, allow: true }]), /^policy rule #1: unknown scope key "sevice"/)
      assert.match(bad([{ scope: {}, rateLimt: {} }]), /^policy rule #1: unknown command "rateLimt"/)
      assert.match(bad([{ scope: {}, maxTab: 1n }, { scope: {}, maxTab: 2n }]), /^policy rule #2: max-tab for scope global is already set at rule #1/)
      assert.throws(() => new PolicyEngine({ version: 1, rules: [{ scope: { id: 'oc:short' }, allow: true }] }), { name: 'PolicyError' })
    })
  })

  /**
   * One test per row of the precedence table in docs/policy.md, in the same
   * order and with the same row numbers.
   */
  describe('engine precedence (docs/policy.md)', () => {
    it('row 1: nothing matches: allowed, no limits, no minimum, defer denied, max-tab 0', () => {
      const d = engineOf('rules:\n  - scope: { service: other }\n    deny: true\n').decide(ctx())
      assert.equal(d.action, 'allow')
      assert.equal(d.rule, undefined)
      assert.deepEqual(d.rateLimits, [])
      assert.equal(d.minPayment, undefined)
      assert.equal(d.maxConcurrent, undefined)
      assert.equal(d.defer.allowed, false)
      assert.equal(d.maxTab.amount, 0n)
    })

    it('row 2: service beats global', () => {
      const e = engineOf('rules:\n  - scope: global\n    allow: true\n  - scope: { service: storage }\n    deny: true\n')
      assert.equal(e.decide(ctx()).action, 'deny')
      assert.equal(e.decide(ctx({ service: 'sha256', method: 'hash' })).action, 'allow')
    })

    it('row 3: method beats service', () => {
      const e = engineOf('rules:\n  - scope: { service: storage }\n    deny: true\n  - scope: { method: storage.get }\n    allow: true\n')
      assert.equal(e.decide(ctx({ method: 'get' })).action, 'allow')
      assert.equal(e.decide(ctx({ method: 'put' })).action, 'deny')
    })

    it('row 4: a trust band beats a method rule', () => {
      const e = engineOf('rules:\n  - scope: { method: storage.put }\n    deny: true\n  - scope: { trust: { min: 0.5 } }\n    allow: true\n')
      assert.equal(e.decide(ctx({ trust: 0.7 })).action, 'allow')
      const low = e.decide(ctx({ trust: 0.3 }))
      assert.equal(low.action, 'deny')
      // the refusal says what would be accepted
      assert.equal(low.detail, 'storage.put needs trust ≥ 0.5')
      assert.equal(e.decide(ctx()).action, 'deny', 'unknown trust matches no band')
    })

    it('row 5: a bitcoin class beats a trust band', () => {
      const e = engineOf('rules:\n  - scope: { trust: { min: 0.5 } }\n    max-tab: 1000\n  - scope: { bitcoin: { min-balance: 100 } }\n    max-tab: 5000\n')
      assert.equal(e.decide(ctx({ trust: 0.9, bitcoin: [btc(100n, 1)] })).maxTab.amount, 5000n)
      assert.equal(e.decide(ctx({ trust: 0.9 })).maxTab.amount, 1000n)
    })

    it('row 6: a specific credential beats a bitcoin class', () => {
      const e = engineOf(`rules:\n  - scope: { bitcoin: { min-balance: 100 } }\n    allow: true\n  - scope: { address: btc:${ADDR} }\n    deny: true\n`)
      assert.equal(e.decide(ctx({ credentials: [`oc:${A}`, `btc:${ADDR}`], bitcoin: [btc(1000n, 10)] })).action, 'deny')
      assert.equal(e.decide(ctx({ credentials: [`oc:${A}`, `btc:${ADDR2}`], bitcoin: [btc(1000n, 10, ADDR2)] })).action, 'allow')
      // an id matches the signed credential and the connection's peer alike
      const byId = engineOf(`rules:\n  - scope: { bitcoin: { min-balance: 100 } }\n    allow: true\n  - scope: { id: oc:${B} }\n    deny: true\n`)
      assert.equal(byId.decide(ctx({ peer: B, credentials: [], bitcoin: [btc(1000n, 10)] })).action, 'deny')
      assert.equal(byId.decide(ctx({ peer: A, credentials: [`oc:${B}`], bitcoin: [btc(1000n, 10)] })).action, 'deny')
    })

    it('row 7: credential + service beats the credential alone', () => {
      const e = engineOf(`rules:\n  - scope: { id: oc:${A} }\n    allow: true\n  - scope: { id: oc:${A}, service: storage }\n    deny: true\n`)
      assert.equal(e.decide(ctx()).action, 'deny')
      assert.equal(e.decide(ctx({ service: 'sha256', method: 'hash' })).action, 'allow')
    })

    it('row 8: of two bitcoin classes, the higher min-balance wins, then the higher min-age', () => {
      const e = engineOf(`rules:
  - scope: { bitcoin: { min-balance: 1000 } }
    max-tab: 100
  - scope: { bitcoin: { min-balance: 100000 } }
    max-tab: 5000
  - scope: { bitcoin: { min-balance: 100000, min-age: 144 } }
    max-tab: 9000
`)
      assert.equal(e.decide(ctx({ bitcoin: [btc(200_000n, 10)] })).maxTab.amount, 5000n)
      assert.equal(e.decide(ctx({ bitcoin: [btc(200_000n, 200)] })).maxTab.amount, 9000n)
      assert.equal(e.decide(ctx({ bitcoin: [btc(5000n, 200)] })).maxTab.amount, 100n)
      assert.equal(e.decide(ctx({ bitcoin: [btc(500n, 200)] })).maxTab.amount, 0n)
    })

    it('row 9: of two trust bands, the higher min wins, then the lower max', () => {
      const e = engineOf(`rules:
  - scope: { trust: { min: 0.2 } }
    max-tab: 10
  - scope: { trust: { min: 0.8 } }
    max-tab: 100
  - scope: { trust: { min: 0.8, max: 0.9 } }
    max-tab: 50
`)
      assert.equal(e.decide(ctx({ trust: 0.5 })).maxTab.amount, 10n)
      assert.equal(e.decide(ctx({ trust: 0.85 })).maxTab.amount, 50n)
      // max is exclusive: 0.9 is above the narrow band
      assert.equal(e.decide(ctx({ trust: 0.9 })).maxTab.amount, 100n)
    })

    it('row 10: the whole order: credential > trust band > method > service > global', () => {
      const e = engineOf(`rules:
  - scope: global
    max-tab: 1
  - scope: { service: storage }
    max-tab: 2
  - scope: { method: storage.put }
    max-tab: 3
  - scope: { trust: { min: 0.5 } }
    max-tab: 4
  - scope: { bitcoin: { min-balance: 1 } }
    max-tab: 5
  - scope: { id: oc:${A} }
    max-tab: 6
`)
      const tab = (c: Partial<PolicyContext>): bigint => e.decide(ctx(c)).maxTab.amount
      assert.equal(tab({ peer: B, credentials: [], service: 'sha256', method: 'hash' }), 1n)
      assert.equal(tab({ peer: B, credentials: [], method: 'get' }), 2n)
      assert.equal(tab({ peer: B, credentials: [] }), 3n)
      assert.equal(tab({ peer: B, credentials: [], trust: 0.6 }), 4n)
      assert.equal(tab({ peer: B, credentials: [], trust: 0.6, bitcoin: [btc(10n, 1)] }), 5n)
      assert.equal(tab({ trust: 0.6, bitcoin: [btc(10n, 1)] }), 6n)
    })

    it('row 11: deny beats allow in the same scope', () => {
      const d = engineOf('rules:\n  - scope: { service: storage }\n    allow: true\n  - scope: { service: storage }\n    deny: true\n').decide(ctx())
      assert.equal(d.action, 'deny')
      assert.equal(d.rule?.index, 1)
      assert.match(d.reason, /deny beats allow at the same specificity/)
    })

    it('row 12: equal specificity, different scopes: the stricter command applies', () => {
      const e = engineOf(`rules:
  - scope: { id: oc:${A} }
    allow: true
    max-tab: 500
    min-payment: 2
    defer: allow
    max-concurrent: 8
    rate-limit: { requests: 100 }
  - scope: { address: btc:${ADDR} }
    max-tab: 300
    min-payment: 5
    defer: deny
    max-concurrent: 4
    rate-limit: { bytes: 1000 }
  - scope: { address: btc:${ADDR2} }
    deny: true
`)
      const both = e.decide(ctx({ credentials: [`oc:${A}`, `btc:${ADDR}`], usage: [10n] }))
      assert.equal(both.action, 'allow')
      assert.equal(both.maxTab.amount, 300n)
      assert.equal(both.minPayment?.amount, 50n)
      assert.equal(both.defer.allowed, false)
      assert.equal(both.maxConcurrent?.limit, 4)
      assert.deepEqual(both.rateLimits.map(r => r.rule.index), [0, 1], 'every tied rate limit applies')
      assert.equal(e.decide(ctx({ credentials: [`oc:${A}`, `btc:${ADDR2}`] })).action, 'deny')
      // bech32 addresses match whatever their case
      assert.equal(e.decide(ctx({ credentials: [`oc:${A}`, `btc:${ADDR2.toUpperCase()}`] })).action, 'deny')
    })

    it('row 13: the same valued command twice in one scope is refused at load, naming both lines', () => {
      assert.match(errorOf('rules:\n  - scope: { method: storage.put }\n    min-payment: 1\n  - scope: { method: storage.put }\n    min-payment: 2\n'),
        /^policy\.yaml:5:5: min-payment for scope method storage\.put is already set at line 3/)
    })

    it('row 14: a rule with requirements only is an allow on condition', () => {
      const e = engineOf('rules:\n  - scope: global\n    deny: true\n  - scope: { method: storage.put }\n    require-credential: btc\n    min-balance: 100000\n    min-age: 6\n')
      const rich = e.decide(ctx({ credentials: [`oc:${A}`, `btc:${ADDR}`], bitcoin: [btc(150_000n, 10)] }))
      assert.equal(rich.action, 'allow')
      assert.equal(rich.rule?.index, 1)
      const young = e.decide(ctx({ credentials: [`oc:${A}`, `btc:${ADDR}`], bitcoin: [btc(150_000n, 2)] }))
      assert.equal(young.action, 'deny')
      assert.equal(young.detail, `storage.put needs a btc: credential with ≥ 100000 sat held ≥ 6 blocks (btc:${ADDR} holds 150000 sat for 2 blocks)`)
      const none = e.decide(ctx())
      assert.equal(none.detail, 'storage.put needs a signed btc: credential')
      assert.equal(e.decide(ctx({ method: 'get' })).action, 'deny')
    })

    it('row 15: each command is decided on its own', () => {
      const e = engineOf(`rules:\n  - scope: { service: storage }\n    deny: true\n  - scope: { id: oc:${A} }\n    max-tab: 900\n    defer: allow\n`)
      const d = e.decide(ctx())
      assert.equal(d.action, 'deny', 'a credential rule without access commands leaves access to the service rule')
      assert.equal(d.maxTab.amount, 900n)
      assert.equal(d.defer.allowed, true)
    })

    it('row 16: a more specific allow lifts a less specific requirement', () => {
      const e = engineOf(`rules:\n  - scope: { method: storage.put }\n    min-balance: 100000\n  - scope: { id: oc:${A} }\n    allow: true\n`)
      assert.equal(e.decide(ctx()).action, 'allow')
      assert.equal(e.decide(ctx({ peer: B, credentials: [`oc:${B}`] })).action, 'deny')
    })

    it('tells a caller refused deferred payment which credential would earn a tab', () => {
      const e = new PolicyEngine(defaultPolicy())
      const anon = e.decide(ctx())
      assert.equal(anon.defer.allowed, false)
      assert.match(anon.defer.reason, /pay attached; present trust ≥ 0\.5 \(tab up to 50000 sat\), or a btc: credential with ≥ 100000 sat held ≥ 6 blocks \(tab up to 50000 sat\) to pay later/)
      const rich = e.decide(ctx({ bitcoin: [btc(100_000n, 6)] }))
      assert.equal(rich.defer.allowed, true)
      assert.equal(rich.maxTab.amount, 50_000n)
      const trusted = e.decide(ctx({ trust: 0.6 }))
      assert.equal(trusted.maxTab.amount, 50_000n)
      // free services, per-peer rate limit
      const hash = e.decide(ctx({ service: 'sha256', method: 'hash' }))
      assert.equal(hash.action, 'allow')
      assert.deepEqual(hash.rateLimits[0].limit, { requests: 200, requestBurst: 400, bytes: 32 * 1024 * 1024, byteBurst: 64 * 1024 * 1024 })
    })

    it('the bar policies: the exclusive bar admits the rich with a large tab; the open bar gives everyone a small one', async () => {
      const exclusive = new PolicyEngine(await loadPolicyFile(join(FIXTURES, 'exclusive-bar.yaml')))
      const rich = exclusive.decide(ctx({ credentials: [`oc:${A}`, `btc:${ADDR}`], bitcoin: [btc(50_0000_0000n, 100)] }))
      assert.equal(rich.action, 'allow')
      assert.equal(rich.defer.allowed, true)
      assert.equal(rich.maxTab.amount, 1_000_000n)
      const anon = exclusive.decide(ctx())
      assert.equal(anon.action, 'deny')
      assert.equal(anon.detail, 'storage.put needs a btc: credential with ≥ 10000000 sat held ≥ 6 blocks')
      assert.equal(exclusive.decide(ctx({ service: 'info', method: 'info' })).action, 'allow')
      const open = new PolicyEngine(await loadPolicyFile(join(FIXTURES, 'open-bar.yaml')))
      for (const c of [ctx(), ctx({ bitcoin: [btc(50_0000_0000n, 100)] })]) {
        const d = open.decide(c)
        assert.equal(d.action, 'allow')
        assert.equal(d.defer.allowed, true)
        assert.equal(d.maxTab.amount, 100_000n)
      }
    })

    it('min-payment is computed from the units of service, the stricter of ties', () => {
      assert.equal(minimumPayment([{ base: 2n, rate: 3n, per: 1000n }], [1500n]), 7n)
      assert.equal(minimumPayment([{ rate: 1n, per: 1n }, { base: 10n }], [4n]), 10n)
      assert.equal(minimumPayment([{ rate: 5n, per: 1n }], []), 5n, 'a method without units is one unit per call')
      assert.equal(minimumPayment([{ rate: 2n ** 63n, per: 1n }], [4n]), 2n ** 64n - 1n, 'an overflow asks for the most, never wraps')
    })

    it('looks only at the rules of the call\'s targets and credentials, with 1,000 rules', () => {
      const lines = ['rules:']
      for (let i = 0; i < 1000; i++) {
        if (i % 4 === 0) { lines.push(`  - scope: { service: svc${i} }\n    deny: true`) }
        if (i % 4 === 1) { lines.push(`  - scope: { method: svc${i}.m }\n    max-tab: ${i}`) }
        if (i % 4 === 2) { lines.push(`  - scope: { bitcoin: { min-balance: ${i} }, service: svc${i} }\n    max-tab: ${i}`) }
        if (i % 4 === 3) { lines.push(`  - scope: { id: oc:${A}, service: svc${i} }\n    deny: true`) }
      }
      const e = engineOf(lines.join('\n') + '\n')
      assert.equal(e.size, 1000)
      assert.equal(e.decide(ctx({ service: 'svc4', method: 'x' })).action, 'deny')
      assert.equal(e.decide(ctx({ service: 'svc5', method: 'm' })).maxTab.amount, 5n)
      assert.equal(e.decide(ctx({ service: 'svc6', method: 'm', bitcoin: [btc(6n, 0)] })).maxTab.amount, 6n)
      assert.equal(e.decide(ctx({ service: 'svc6', method: 'm', bitcoin: [btc(5n, 0)] })).maxTab.amount, 0n)
      assert.equal(e.decide(ctx({ service: 'svc7', method: 'm' })).action, 'deny')
      assert.equal(e.decide(ctx({ peer: B, credentials: [], service: 'svc7', method: 'm' })).action, 'allow')
    })

    it('explain shows the matching rules most specific first, what each decides, and the outcome', () => {
      const e = engineOf(`rules:
  - name: everyone
    scope: global
    rate-limit: { requests: 10 }
    allow: true
  - name: storage-closed
    scope: { service: storage }
    deny: true
  - name: friend
    scope: { id: oc:${A} }
    allow: true
  - scope: { service: other }
    deny: true
`)
      const text = e.explain(ctx())
      const lines = text.split('\n')
      const friend = lines.findIndex(l => l.includes('rule 3 "friend" (policy.yaml:9:5): scope id oc:'))
      const closed = lines.findIndex(l => l.includes('rule 2 "storage-closed" (policy.yaml:6:5): scope service storage: deny'))
      const everyone = lines.findIndex(l => l.includes('rule 1 "everyone" (policy.yaml:2:5): scope global'))
      assert.ok(friend > 0 && friend < closed && closed < everyone, text)
      assert.equal(lines[friend + 1], '    access: decides')
      assert.equal(lines[closed + 1], '    access: overridden by rule 3 "friend" (policy.yaml:9:5) (more specific)')
      assert.ok(!text.includes('rule 4'), 'rules that do not match are not listed')
      assert.match(text, /^access: ALLOW: allowed by rule 3 "friend" \(policy\.yaml:9:5\), scope id oc:/m)
      assert.match(text, /^rate-limit: 10 requests\/s \(burst 10\) per peer \(rule 1 "everyone"/m)
    })
  })

  describe('rate limiter', () => {
    it('lets a burst through, then refuses with the wait, then refills', () => {
      let now = 0
      const rl = new RateLimiter({ now: () => now })
      const item = [{ key: 'global\u0000p', limit: { requests: 10, requestBurst: 3 } }]
      assert.deepEqual([rl.take(item, 0).ok, rl.take(item, 0).ok, rl.take(item, 0).ok], [true, true, true])
      const refused = rl.take(item, 0)
      assert.deepEqual(refused, { ok: false, index: 0, dimension: 'requests', retryAfterMs: 100 })
      now = 50
      assert.equal(rl.take(item, 0).ok, false)
      now = 100
      assert.equal(rl.take(item, 0).ok, true)
      assert.equal(rl.take(item, 0).ok, false)
    })

    it('counts bytes; a request larger than the burst passes on a full bucket and leaves a debt', () => {
      let now = 0
      const rl = new RateLimiter({ now: () => now })
      const item = [{ key: 'k', limit: { bytes: 1000 } }]
      assert.equal(rl.take(item, 600).ok, true)
      assert.deepEqual(rl.take(item, 600), { ok: false, index: 0, dimension: 'bytes', retryAfterMs: 200 })
      now = 1000
      // full again (1000): a 3000-byte request passes and leaves 2000 of debt
      assert.equal(rl.take(item, 3000).ok, true)
      assert.deepEqual(rl.take(item, 1), { ok: false, index: 0, dimension: 'bytes', retryAfterMs: 2001 })
      now = 3001
      assert.equal(rl.take(item, 1).ok, true)
    })

    it('takes from several buckets or from none', () => {
      const rl = new RateLimiter({ now: () => 0 })
      const a = { key: 'a', limit: { requests: 1, requestBurst: 5 } }
      const b = { key: 'b', limit: { requests: 1, requestBurst: 1 } }
      assert.equal(rl.take([a, b], 0).ok, true)
      const r = rl.take([a, b], 0)
      assert.equal(r.ok, false)
      assert.equal(!r.ok && r.index, 1)
      // a was not charged for the refused request: 4 left
      for (let i = 0; i < 4; i++) { assert.equal(rl.take([a], 0).ok, true) }
      assert.equal(rl.take([a], 0).ok, false)
    })

    it('keys are independent: one peer\'s flood does not touch another\'s bucket', () => {
      const rl = new RateLimiter({ now: () => 0 })
      const limit = { requests: 1, requestBurst: 2 }
      rl.take([{ key: 's\u0000p1', limit }], 0)
      rl.take([{ key: 's\u0000p1', limit }], 0)
      assert.equal(rl.take([{ key: 's\u0000p1', limit }], 0).ok, false)
      assert.equal(rl.take([{ key: 's\u0000p2', limit }], 0).ok, true)
    })

    it('bounds memory: drops buckets that are full again, then the least recently used', () => {
      let now = 0
      const rl = new RateLimiter({ now: () => now, maxEntries: 100 })
      const limit = { requests: 10, requestBurst: 10 }
      for (let i = 0; i < 100; i++) { rl.take([{ key: `p${i}`, limit }], 0) }
      assert.equal(rl.size, 100)
      // 0.1 s later every bucket is full again: new traffic sweeps them out a few at a time
      now = 100
      for (let i = 0; i < 30; i++) { rl.take([{ key: `q${i}`, limit }], 0) }
      assert.ok(rl.size <= 100 && rl.size < 130)
      assert.equal(rl.evicted, 0, 'only full buckets were dropped')
      // a flood of new keys at one instant: the table stays at its cap
      for (let i = 0; i < 1000; i++) { rl.take([{ key: `r${i}`, limit }], 0) }
      assert.equal(rl.size, 100)
      assert.ok(rl.evicted > 0)
    })

    it('follows a limit changed by a reload, keeping the tokens', () => {
      const rl = new RateLimiter({ now: () => 0 })
      const key = 'global\u0000p'
      for (let i = 0; i < 5; i++) { assert.equal(rl.take([{ key, limit: { requests: 1, requestBurst: 5 } }], 0).ok, true) }
      assert.equal(rl.take([{ key, limit: { requests: 1, requestBurst: 50 } }], 0).ok, false, 'a raised burst does not refill by itself')
    })

    it('max-concurrent: a slot per call, released once', () => {
      const c = new ConcurrencyLimiter()
      const r1 = c.acquire('k', 2)
      const r2 = c.acquire('k', 2)
      assert.ok(r1 != null && r2 != null)
      assert.equal(c.acquire('k', 2), undefined)
      r1()
      r1()
      assert.equal(c.count('k'), 1)
      assert.ok(c.acquire('k', 2) != null)
      assert.equal(c.acquire('other', 1) != null, true)
    })
  })

  describe('pipeline stages', () => {
    let key: PrivateKey
    let peer: PeerId
    const echo: ServiceDefinition = {
      name: 'echo',
      version: '1.0.0',
      description: 'test service',
      methods: {
        say: { description: 'returns the body', units: ['byte'], usage: (c) => [BigInt(c.body.byteLength)], handler: (c) => ({ body: c.body }) },
        read: { description: 'reads args[0] bytes', units: ['byte'], usage: (c) => [BigInt(c.args[0] ?? '0')], handler: () => ({}) },
        wait: { description: 'answers when the test opens the gate', handler: async () => { await gate; return {} } }
      }
    }
    let gate: Promise<void> = Promise.resolve()
    let open: () => void = () => {}

    before(async () => {
      key = await generateKeyPair('Ed25519')
      peer = peerIdFromPrivateKey(key)
    })

    /** Runs a signed request through the real pipeline with these stages */
    async function run (stages: { access?: Stage, payment?: Stage }, fields: { method?: string, body?: Uint8Array, args?: string[], paymentType?: PaymentType }, extra: Partial<CallState> = {}): Promise<{ status: Status, reason?: Reason, detail?: string, amount?: bigint, type?: PaymentType, state: CallState }> {
      const nonces = new NonceStore()
      const pipeline = createPipeline({ self: 'oc:server', services: new Map([['echo', echo]]), nonces, verifiers: [openCloudVerifier], maxBodySize: 1 << 20, requireCredentials: true, ...stages })
      const request = await signedRequest(key, { audience: 'oc:server', service: 'echo', method: fields.method ?? 'say', body: fields.body, args: fields.args, nonce: nonces.issue(peer.toString()), paymentType: fields.paymentType })
      const state: CallState = { peer, request, digest: requestDigest(request), credentials: [], signal: new AbortController().signal, ...extra }
      const reply = await runPipeline(pipeline, state)
      return { status: reply.status, reason: reply.reason, detail: reply.detail, amount: reply.acceptablePayment?.amount, type: reply.acceptablePayment?.paymentType, state }
    }

    it('access-denied says what would be accepted', async () => {
      const p = policyStages(engineOf('rules:\n  - scope: global\n    deny: true\n  - scope: { service: echo, bitcoin: { min-balance: 5000, min-age: 3 } }\n    allow: true\n'))
      const r = await run({ access: p.access }, {})
      assert.equal(r.status, Status.ACCESS_DENIED)
      assert.equal(r.reason, Reason.REASON_POLICY_DENIED)
      assert.equal(r.detail, 'echo.say needs a btc: credential with ≥ 5000 sat held ≥ 3 blocks')
      // the chain state comes from the bitcoin credential stage that runs first
      const withCoins: Stage = (s) => { s.bitcoin = [btc(5000n, 3)]; return undefined }
      assert.equal((await run({ access: chainStages(withCoins, p.access) }, {})).status, Status.OK)
    })

    it('rate-limited carries the wait; bytes count the body or the bytes a read asks for', async () => {
      const p = policyStages(engineOf('rules:\n  - scope: { service: echo }\n    rate-limit: { requests: 1, request-burst: 2, bytes: 1000 }\n'))
      assert.equal((await run({ access: p.access }, { body: enc.encode('hi') })).status, Status.OK)
      assert.equal((await run({ access: p.access }, { body: enc.encode('hi') })).status, Status.OK)
      const third = await run({ access: p.access }, {})
      assert.equal(third.status, Status.RATE_LIMITED)
      assert.equal(third.reason, Reason.REASON_RATE_LIMIT)
      assert.match(third.detail ?? '', /^rate limit of 1 requests\/s \(burst 2\) per peer for service echo reached; retry after \d+ ms \(retry-after-ms=\d+\)$/)
      const q = policyStages(engineOf('rules:\n  - scope: global\n    rate-limit: { bytes: 1000 }\n'))
      assert.equal((await run({ access: q.access }, { method: 'read', args: ['900'] })).status, Status.OK)
      const read = await run({ access: q.access }, { method: 'read', args: ['900'] })
      assert.equal(read.status, Status.RATE_LIMITED)
      assert.match(read.detail ?? '', /1000 bytes\/s \(burst 1000\)/)
    })

    it('max-concurrent holds a slot while a call is in progress and releases it when the call is over', async () => {
      gate = new Promise(resolve => { open = resolve })
      const p = policyStages(engineOf('rules:\n  - scope: { service: echo }\n    max-concurrent: 1\n  - scope: { method: echo.say }\n    min-payment: { rate: 1 }\n'))
      const payment = chainStages(p.payment, defaultPaymentGate)
      const first = run({ access: p.access, payment }, { method: 'wait' })
      const deadline = AbortSignal.timeout(20_000)
      while (p.concurrency.size === 0 && !deadline.aborted) { await new Promise(resolve => setTimeout(resolve, 5)) }
      assert.equal(p.concurrency.size, 1, 'the first call holds its slot')
      const busy = await run({ access: p.access, payment }, { method: 'wait' })
      assert.equal(busy.status, Status.RATE_LIMITED)
      assert.equal(busy.reason, Reason.REASON_MAX_CONCURRENT)
      assert.match(busy.detail ?? '', /^too many calls at once: at most 1 in progress per peer for service echo; retry when one finishes$/)
      open()
      assert.equal((await first).status, Status.OK)
      assert.equal(p.concurrency.size, 0, 'released when the call ended')
      // a call refused by a later stage (here too-low) gives its slot back as well
      assert.equal((await run({ access: p.access, payment }, { body: new Uint8Array(5) })).status, Status.TOO_LOW)
      assert.equal(p.concurrency.size, 0)
      assert.equal((await run({ access: p.access, payment }, { method: 'wait' })).status, Status.OK)
    })

    it('min-payment answers too-low with an acceptable payment from the units of service', async () => {
      const p = policyStages(engineOf('rules:\n  - scope: { method: echo.say }\n    min-payment: { base: 1, rate: 1, per: 10 }\n    defer: allow\n    max-tab: 1000\n'))
      const payment = chainStages(p.payment, defaultPaymentGate)
      const r = await run({ access: p.access, payment }, { body: new Uint8Array(95) })
      assert.equal(r.status, Status.TOO_LOW)
      assert.equal(r.reason, Reason.REASON_MIN_PAYMENT)
      assert.equal(r.amount, 11n)
      // a signed caller the policy lets run a tab is offered a promise: no transaction, no fee
      assert.equal(r.type, PaymentType.PAYMENT_DEFER)
      assert.match(r.detail ?? '', /^echo\.say needs at least 11 sat for this call \(this node's minimum: 1 sat per call \+ 1 sat per 10 units\); offered 0 sat$/)
      // one that pays attached is told the attached amount
      const a = await run({ access: p.access, payment }, { body: new Uint8Array(95), paymentType: PaymentType.PAYMENT_ATTACHED })
      assert.equal(a.status, Status.TOO_LOW)
      assert.equal(a.type, PaymentType.PAYMENT_ATTACHED)
      // where the policy allows no tab, attached
      const q = policyStages(engineOf('rules:\n  - scope: { method: echo.say }\n    min-payment: { base: 1, rate: 1, per: 10 }\n'))
      const n = await run({ access: q.access, payment: chainStages(q.payment, defaultPaymentGate) }, { body: new Uint8Array(95) })
      assert.equal(n.type, PaymentType.PAYMENT_ATTACHED)
      // a deferred offer that is too low is told to defer the right amount
      const d = await run({ access: p.access, payment }, { body: new Uint8Array(95), paymentType: PaymentType.PAYMENT_DEFER })
      assert.equal(d.status, Status.TOO_LOW)
      assert.equal(d.type, PaymentType.PAYMENT_DEFER)
      // the terms the payment gate reads, in the call state
      assert.equal(r.state.policy?.minPayment, 11n)
      assert.equal(r.state.policy?.defer, true)
      assert.equal(r.state.policy?.maxTab, 1000n)
      // template methods stay free
      assert.equal((await run({ access: p.access, payment }, { method: 'methods' })).status, Status.OK)
    })

    it('the access stage writes the terms: why defer is refused, and a tab limit of 0 then', async () => {
      const p = policyStages(engineOf('rules:\n  - scope: { service: echo }\n    defer: deny\n  - scope: { service: echo, bitcoin: { min-balance: 100000, min-age: 6 } }\n    defer: allow\n    max-tab: 50000\n'))
      const poor = (await run({ access: p.access }, {})).state.policy
      assert.match(String(poor?.defer), /^deferred payment for echo\.say is not accepted: pay attached/)
      assert.equal(poor?.maxTab, 0n)
      const rich = (await run({ access: p.access }, {}, { bitcoin: [btc(100_000n, 6)] })).state.policy
      assert.equal(rich?.defer, true)
      assert.equal(rich?.maxTab, 50_000n)
      const zero = policyStages(engineOf('rules:\n  - scope: global\n    defer: allow\n'))
      assert.match(String((await run({ access: zero.access }, {})).state.policy?.defer), /no tab is allowed \(max-tab 0\)/)
    })

    it('reads the current engine for each call, and a call keeps the decision it started with', async () => {
      let engine = engineOf('rules:\n  - scope: global\n    allow: true\n')
      const p = policyStages(() => engine)
      assert.equal((await run({ access: p.access }, {})).status, Status.OK)
      const before = await run({ access: p.access }, {})
      engine = engineOf('rules:\n  - scope: global\n    deny: true\n')
      assert.equal((await run({ access: p.access }, {})).status, Status.ACCESS_DENIED)
      assert.equal(before.state.policy?.minPayment, 0n)
      // a reload between the access and payment stages of one call: the call keeps its terms
      engine = engineOf('rules:\n  - scope: global\n    allow: true\n')
      const reload: Stage = () => { engine = engineOf('rules:\n  - scope: global\n    min-payment: { base: 5 }\n'); return undefined }
      const kept = await run({ access: chainStages(p.access, reload), payment: chainStages(p.payment, defaultPaymentGate) }, {})
      assert.equal(kept.status, Status.OK)
      assert.equal((await run({ access: p.access, payment: chainStages(p.payment, defaultPaymentGate) }, {})).status, Status.TOO_LOW)
    })

    it('asks the trust provider only when the policy has trust bands; a failing provider counts as unknown', async () => {
      let asked = 0
      const p = policyStages(engineOf('rules:\n  - scope: global\n    deny: true\n  - scope: { trust: { min: 0.5 } }\n    allow: true\n'), { trust: (id) => { asked++; return id === peer.toString() ? 0.9 : undefined } })
      assert.equal((await run({ access: p.access }, {})).status, Status.OK)
      assert.equal(asked, 1)
      const q = policyStages(engineOf('rules:\n  - scope: global\n    allow: true\n'), { trust: () => { asked++; return 1 } })
      await run({ access: q.access }, {})
      assert.equal(asked, 1)
      const broken = policyStages(engineOf('rules:\n  - scope: global\n    deny: true\n  - scope: { trust: { min: 0.5 } }\n    allow: true\n'), { trust: () => { throw new Error('down') } })
      assert.equal((await run({ access: broken.access }, {})).status, Status.ACCESS_DENIED)
    })
  })

  describe('reload', () => {
    let dir: string
    let reloader: PolicyReloader | undefined

    beforeEach(async () => { dir = await tempDir('decloud-policy-') })
    afterEach(async () => {
      reloader?.stop()
      reloader = undefined
      await rm(dir, { recursive: true, force: true })
    })

    /** Writes a file the way editors do: a new file renamed over the old one */
    async function replace (path: string, text: string): Promise<void> {
      await writeFile(path + '.tmp', text)
      await rename(path + '.tmp', path)
    }

    it('a bad edit keeps the old policy; a good edit applies without restart', async () => {
      const file = join(dir, 'policy.yaml')
      await writeFile(file, 'rules:\n  - scope: global\n    allow: true\n')
      const ev = events()
      reloader = new PolicyReloader({ file, debounce: 20, sighup: false, ...ev.init })
      await reloader.start()
      const first = reloader.engine
      assert.equal(first.decide(ctx()).action, 'allow')

      await replace(file, 'rules:\n  - scope: global\n    deny: true\n    rate-limt: 4\n')
      const bad = await ev.next()
      assert.equal(bad.ok, false)
      assert.match(!bad.ok ? bad.error.message : '', /^policy\.yaml:4:5: unknown command "rate-limt"/)
      assert.equal(reloader.engine, first, 'the previous policy stays in force')
      assert.equal(reloader.lastError?.name, 'PolicyError')

      await replace(file, 'rules:\n  - scope: global\n    deny: true\n')
      const good = await ev.next()
      assert.equal(good.ok, true)
      assert.notEqual(reloader.engine, first)
      assert.equal(reloader.engine.decide(ctx()).action, 'deny')
      assert.equal(reloader.lastError, undefined)
    })

    it('a reload asked for while one runs reads the file as it is then, and answers with that', async () => {
      const file = join(dir, 'policy.yaml')
      await writeFile(file, 'rules:\n  - scope: global\n    allow: true\n')
      let during: Promise<ReloadResult> | undefined
      reloader = new PolicyReloader({
        file,
        watch: false,
        sighup: false,
        onReload: () => {
          if (during != null) { return }
          // the file changes after the running reload read it
          writeFileSync(file, 'rules:\n  - scope: global\n    max-tab: 77\n')
          during = reloader?.reload()
        }
      })
      await reloader.start()
      const first = await reloader.reload()
      assert.equal(first.ok && first.engine.decide(ctx()).maxTab.amount, 0n)
      assert.ok(during != null)
      const second = await during
      assert.equal(second.ok && second.engine.decide(ctx()).maxTab.amount, 77n, 'not the result of the reload already running')
      assert.equal(reloader.engine.decide(ctx()).maxTab.amount, 77n)
      assert.equal(reloader.reloads, 2)
    })

    it('reloads on SIGHUP', async () => {
      const file = join(dir, 'policy.yaml')
      await writeFile(file, 'rules:\n  - scope: global\n    allow: true\n')
      const ev = events()
      const listeners = process.listenerCount('SIGHUP')
      reloader = new PolicyReloader({ file, watch: false, ...ev.init })
      await reloader.start()
      assert.equal(process.listenerCount('SIGHUP'), listeners + 1)
      await writeFile(file, 'rules:\n  - scope: global\n    max-tab: 77\n')
      process.kill(process.pid, 'SIGHUP')
      const r = await ev.next()
      assert.equal(r.ok, true)
      assert.equal(reloader.engine.decide(ctx()).maxTab.amount, 77n)
      reloader.stop()
      assert.equal(process.listenerCount('SIGHUP'), listeners, 'stop removes the signal handler')
    })

    it('the data dir\'s policy.yaml may come later: missing is the default policy, created it takes effect, removed the default is back', async () => {
      const reports: PolicyReloadEvent[] = []
      const np = await openNodePolicy({ dataDir: dir, sighup: false, onReload: (e) => { reports.push(e) } })
      try {
        assert.equal(np.file, undefined)
        assert.equal(np.current().size, defaultPolicy().rules.length)
        assert.ok(np.reloader != null, 'watched even without a file')
        const file = join(dir, 'policy.yaml')
        await writeFile(file, 'rules:\n  - scope: global\n    deny: true\n')
        assert.ok(await eventually(() => np.file === file, 20_000, 20), 'the new file is picked up by the watcher')
        assert.equal(np.current().decide(ctx()).action, 'deny')
        assert.deepEqual(reports.at(-1), { ok: true, file, rules: 1 })
        await writeFile(file, 'rules:\n  - scope: global\n    deny: maybe\n')
        assert.ok(await eventually(() => reports.at(-1)?.ok === false, 20_000, 20))
        const bad = reports.at(-1)
        assert.match(bad != null && !bad.ok ? bad.error.message : '', /^policy\.yaml:3:11: deny takes true/)
        assert.equal(np.current().decide(ctx()).action, 'deny', 'kept')
        await rm(file)
        const r = await np.reloader.reload()
        assert.equal(r.ok, true)
        assert.equal(np.file, undefined)
        assert.equal(np.current().size, defaultPolicy().rules.length)
        assert.deepEqual(reports.at(-1), { ok: true, file: undefined, rules: defaultPolicy().rules.length })
      } finally {
        np.stop()
      }
    })

    it('--policy FILE is not optional: a missing file on reload keeps the policy in force', async () => {
      const file = join(dir, 'mine.yaml')
      await writeFile(file, 'rules:\n  - scope: global\n    deny: true\n')
      const np = await openNodePolicy({ file, dataDir: dir, sighup: false, watch: false })
      try {
        await rm(file)
        const r = await np.reloader?.reload()
        assert.equal(r?.ok, false)
        assert.equal(np.file, file)
        assert.equal(np.current().decide(ctx()).action, 'deny')
      } finally {
        np.stop()
      }
    })

    it('a node does not start on a malformed policy: the error names the line', async () => {
      await writeFile(join(dir, 'policy.yaml'), 'version: 1\nrules:\n  - scope: { service: storage }\n    max-tab: 0.5\n')
      await assert.rejects(openNodePolicy({ dataDir: dir, sighup: false }), (err: any) => err.name === 'PolicyError' && err.message.startsWith('policy.yaml:4:14: max-tab must be a whole number of sats'))
      // no file: the default policy
      const empty = await tempDir('decloud-policy-')
      const np = await openNodePolicy({ dataDir: empty })
      assert.equal(np.file, undefined)
      assert.equal(np.current().size, defaultPolicy().rules.length)
      np.stop()
      await rm(empty, { recursive: true, force: true })
    })
  })

  describe('CLI', () => {
    let dir: string
    before(async () => { dir = await tempDir('decloud-policy-cli-') })
    after(async () => { await rm(dir, { recursive: true, force: true }) })

    it('policy check: ok with the rule count, or the error with its line and exit 2', async () => {
      const good = await runCli(['policy', 'check', EXAMPLE])
      assert.equal(good.code, 0, good.stderr)
      assert.equal(good.stdout.toString(), 'ok: 11 rules\n')
      const bad = join(dir, 'bad.yaml')
      await writeFile(bad, 'rules:\n  - scope: global\n    allow: true\n  - scope: { service: storage }\n    rate-limt: { requests: 5 }\n')
      const r = await runCli(['policy', 'check', bad])
      assert.equal(r.code, 2)
      assert.equal(r.stderr, 'decloud: bad.yaml:5:5: unknown command "rate-limt" (did you mean rate-limit?)\n')
      assert.equal((await runCli(['policy', 'check'])).code, 2)
    })

    it('policy explain: which rule decides and why', async () => {
      const file = join(FIXTURES, 'exclusive-bar.yaml')
      const anon = await runCli(['policy', 'explain', A, 'storage.put', '--policy', file])
      assert.equal(anon.code, 0, anon.stderr)
      const text = anon.stdout.toString()
      assert.match(text, /^access: DENY: denied by rule 1 "members-only" \(exclusive-bar\.yaml:13:5\), scope global$/m)
      assert.match(text, /the caller is told: storage\.put needs a btc: credential with ≥ 10000000 sat held ≥ 6 blocks/)
      const rich = await runCli(['policy', 'explain', `oc:${A},btc:${ADDR}`, 'storage.put', '--policy', file, '--balance', '20000000', '--age', '10'])
      const out = rich.stdout.toString()
      assert.match(out, /^access: ALLOW: allowed by rule 3 "rich-clients"/m)
      assert.match(out, /^max-tab: 1000000 sat \(rule 3 "rich-clients"/m)
      // the data dir's policy.yaml is used when there is no --policy; else the default policy
      await writeFile(join(dir, 'policy.yaml'), await readFile(join(FIXTURES, 'open-bar.yaml')))
      const dd = await runCli(['policy', 'explain', A, 'storage.put', '--data-dir', dir])
      assert.match(dd.stdout.toString(), /^max-tab: 100000 sat \(rule 1 "everyone-welcome" \(policy\.yaml:/m)
      const def = await runCli(['policy', 'explain', A, 'sha256.hash', '--data-dir', join(dir, 'none')])
      assert.match(def.stdout.toString(), /^access: ALLOW: allowed by rule 3 "free-sha256" \(<default policy>/m)
      assert.equal((await runCli(['policy', 'explain', A, 'storage'])).code, 2)
      assert.equal((await runCli(['policy', 'explain', A, 'storage.put', '--balance', '5'])).code, 2, '--balance needs a btc: credential')
    })

    it('decloud node refuses to start on a malformed policy.yaml, naming the line', async () => {
      const dataDir = await tempDir('decloud-policy-node-')
      try {
        await writeFile(join(dataDir, 'policy.yaml'), 'version: 1\nrules:\n  - scope: { service: storage }\n    max-tab: 0.5\n')
        const r = await runCli(['node', '--dev', '--data-dir', dataDir, '--listen', '/ip4/127.0.0.1/tcp/0', '--no-payments'])
        assert.equal(r.code, 1)
        assert.equal(r.stderr, 'decloud: policy.yaml:4:14: max-tab must be a whole number of sats, not 0.5: amounts are integers\n')
        const bad = join(dataDir, 'other.yaml')
        await writeFile(bad, 'rules:\n  - scope: global\n    defer: later\n')
        const r2 = await runCli(['node', '--dev', '--data-dir', dataDir, '--listen', '/ip4/127.0.0.1/tcp/0', '--no-payments', '--policy', bad])
        assert.equal(r2.code, 1)
        assert.equal(r2.stderr, 'decloud: other.yaml:3:12: defer must be allow or deny, not "later"\n')
      } finally {
        await rm(dataDir, { recursive: true, force: true })
      }
    })

    it('policy default prints a policy that checks', async () => {
      const r = await runCli(['policy', 'default'])
      assert.equal(r.stdout.toString(), DEFAULT_POLICY_YAML)
      const file = join(dir, 'default.yaml')
      await writeFile(file, r.stdout)
      assert.equal((await runCli(['policy', 'check', file])).stdout.toString(), 'ok: 8 rules\n')
    })
  })

  describe('end to end, real nodes over loopback', function () {
    const nodes: BareNode[] = []
    let dir: string
    before(async () => { dir = await tempDir('decloud-policy-e2e-') })
    afterEach(async () => { await Promise.all(nodes.splice(0).map(async n => n.destroy())) })
    after(async () => { await rm(dir, { recursive: true, force: true }) })

    /** A server selling sha256 (and `services`) under `source`, and two clients */
    async function setup (source: PolicyEngine | (() => PolicyEngine), services: ServiceDefinition[] = []): Promise<{ server: BareNode, a: BareNode, b: BareNode, p: PolicyStages }> {
      const p = policyStages(source)
      const server = await startBareNode({ services: [sha256Service(), ...services], access: p.access, payment: chainStages(p.payment, defaultPaymentGate) })
      const a = await startBareNode()
      const b = await startBareNode()
      nodes.push(server, a, b)
      return { server, a, b, p }
    }

    const hash = async (client: BareNode, server: BareNode, body = enc.encode('hello')): Promise<{ status: Status, detail: string, amount?: bigint }> => {
      const r = await client.opencloud.call(server.addr, { service: 'sha256', method: 'hash', body })
      return { status: r.status, detail: r.detail, amount: r.acceptablePayment?.amount }
    }

    it('a flood from one peer is rate-limited while a second peer keeps being served', async () => {
      // a burst of 20 and a refill too slow to matter during the test
      const { server, a, b } = await setup(engineOf('rules:\n  - scope: global\n    rate-limit: { requests: 0.001, request-burst: 20 }\n'))
      const [flood, other] = await Promise.all([
        Promise.all(Array.from({ length: 60 }, async () => hash(a, server))),
        Promise.all(Array.from({ length: 20 }, async () => hash(b, server)))
      ])
      assert.equal(flood.filter(r => r.status === Status.OK).length, 20)
      const limited = flood.filter(r => r.status === Status.RATE_LIMITED)
      assert.equal(limited.length, 40)
      assert.match(limited[0].detail, /retry after \d+ s \(retry-after-ms=\d+\)$/)
      assert.deepEqual(other.map(r => r.status), new Array(20).fill(Status.OK), 'the second peer is served in full')
    })

    it('deny beats allow in the same scope', async () => {
      const { server, a } = await setup(engineOf('rules:\n  - scope: { service: sha256 }\n    allow: true\n  - scope: { service: sha256 }\n    deny: true\n'))
      const r = await hash(a, server)
      assert.equal(r.status, Status.ACCESS_DENIED)
      assert.equal(r.detail, 'access to sha256.hash is denied by this node\'s policy')
      assert.equal((await a.opencloud.call(server.addr, { service: 'info', method: 'info' })).status, Status.OK)
    })

    it('a credential rule overrides a service rule', async () => {
      const a = await startBareNode()
      nodes.push(a)
      const { server, b } = await setup(engineOf(`rules:\n  - scope: { service: sha256 }\n    deny: true\n  - scope: { id: ${a.openCloudId} }\n    allow: true\n`))
      assert.equal((await hash(a, server)).status, Status.OK)
      assert.equal((await hash(b, server)).status, Status.ACCESS_DENIED)
    })

    it('the exclusive bar turns a stranger away, saying what would let it in', async () => {
      const { server, a } = await setup(new PolicyEngine(await loadPolicyFile(join(FIXTURES, 'exclusive-bar.yaml'))))
      const r = await hash(a, server)
      assert.equal(r.status, Status.ACCESS_DENIED)
      assert.equal(r.detail, 'sha256.hash needs a btc: credential with ≥ 10000000 sat held ≥ 6 blocks')
      assert.equal((await a.opencloud.call(server.addr, { service: 'info', method: 'info' })).status, Status.OK)
    })

    it('max-concurrent: a second call while one is in progress is rate-limited; the slot comes back when the call ends', async () => {
      let open: () => void = () => {}
      const gate = new Promise<void>(resolve => { open = resolve })
      const slow: ServiceDefinition = {
        name: 'slow',
        version: '1.0.0',
        description: 'answers when the test says so',
        methods: { wait: { description: 'waits', handler: async () => { await gate; return { body: enc.encode('done') } } } }
      }
      const { server, a, b, p } = await setup(engineOf('rules:\n  - scope: { service: slow }\n    max-concurrent: 1\n'), [slow])
      const first = a.opencloud.call(server.addr, { service: 'slow', method: 'wait' })
      const deadline = AbortSignal.timeout(20_000)
      while (p.concurrency.size === 0 && !deadline.aborted) { await new Promise(resolve => setTimeout(resolve, 10)) }
      assert.equal(p.concurrency.size, 1, 'the first call holds its slot')
      const busy = await a.opencloud.call(server.addr, { service: 'slow', method: 'wait' })
      assert.equal(busy.status, Status.RATE_LIMITED)
      assert.match(busy.detail, /at most 1 in progress per peer/)
      // per peer: another peer has its own slot
      const other = b.opencloud.call(server.addr, { service: 'slow', method: 'wait' })
      open()
      assert.equal((await first).status, Status.OK)
      assert.equal((await other).status, Status.OK)
      assert.equal(p.concurrency.size, 0)
      assert.equal((await a.opencloud.call(server.addr, { service: 'slow', method: 'wait' })).status, Status.OK)
    })

    it('min-payment: too-low with the acceptable payment for the call\'s bytes', async () => {
      const { server, a } = await setup(engineOf('rules:\n  - scope: { method: sha256.hash }\n    min-payment: { rate: 1, per: 100 }\n'))
      const r = await hash(a, server, new Uint8Array(1050))
      assert.equal(r.status, Status.TOO_LOW)
      assert.equal(r.amount, 11n)
    })

    it('hot reload applies a new policy on the live connection; a bad edit keeps the old one', async () => {
      const file = join(dir, 'policy.yaml')
      await writeFile(file, 'rules:\n  - scope: global\n    allow: true\n')
      const ev = events()
      const reloader = new PolicyReloader({ file, debounce: 20, sighup: false, ...ev.init })
      await reloader.start()
      try {
        const { server, a } = await setup(() => reloader.engine)
        assert.equal((await hash(a, server)).status, Status.OK)
        const connections = server.libp2p.getConnections(a.peerId).map(c => c.id)
        assert.equal(connections.length, 1)

        await writeFile(file + '.tmp', 'rules:\n  - scope: { service: sha256 }\n    deny: true\n')
        await rename(file + '.tmp', file)
        assert.equal((await ev.next()).ok, true)
        assert.equal((await hash(a, server)).status, Status.ACCESS_DENIED)

        await writeFile(file + '.tmp', 'rules:\n  - scope: global\n    allow: yes please\n')
        await rename(file + '.tmp', file)
        assert.equal((await ev.next()).ok, false)
        assert.match(reloader.lastError?.message ?? '', /^policy\.yaml:3:12: allow takes true/)
        assert.equal((await hash(a, server)).status, Status.ACCESS_DENIED, 'the previous policy stays in force')
        assert.deepEqual(server.libp2p.getConnections(a.peerId).map(c => c.id), connections, 'no connection was dropped')
      } finally {
        reloader.stop()
      }
    })
  })
})
