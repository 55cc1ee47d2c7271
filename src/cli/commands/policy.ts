import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { defaultPolicy, DEFAULT_POLICY_YAML } from '../../policy/defaults.js'
import { PolicyEngine } from '../../policy/engine.js'
import { loadPolicyFile } from '../../policy/parse.js'
import { POLICY_FILE } from '../../policy/reload.js'
import { NAME, PolicyError } from '../../policy/schema.js'
import { CliError, EXIT, UsageError, out, parse, parseUnits, resolveDataDir, commonOptions } from '../command.js'
import type { PolicyContext } from '../../policy/engine.js'
import type { Command } from '../command.js'

const usage = `usage: decloud policy check FILE
       decloud policy explain WHO SERVICE.METHOD [--policy FILE] [--data-dir DIR]
                              [--balance SATS --age BLOCKS] [--trust T] [--units N]
       decloud policy default

Policies decide who may call what, at what price, how often and on what tab
(docs/policy.md). A node reads --policy FILE, else <data dir>/${POLICY_FILE},
else its default policy.

  check FILE    validates a policy file (YAML or .json): prints "ok: N rules",
                or the first problem with its line and column (exit 2)
  explain       prints the rules that match a call, most specific first, which
                rule decides each command and why, and the outcome
  default       prints the default policy as YAML (a starting point for a file)

explain:
  WHO                a peer id, oc:<peer id>, btc:<address>, or several joined
                     by commas (oc:…,btc:…)
  SERVICE.METHOD     e.g. storage.put
  --policy FILE      the policy to explain (default: the data dir's, else the
                     default policy)
  --data-dir DIR     data dir (default $DECLOUD_DATA_DIR or ~/.decloud)
  --balance SATS     confirmed balance of the btc: credential
  --age BLOCKS       blocks it has been held
  --trust T          the caller's trust, 0–1
  --units N          units of service of the call (for min-payment)

exit codes: 0 ok · 2 bad command line, or the policy file is invalid

examples:
  decloud policy check ~/.decloud/policy.yaml
  decloud policy explain oc:12D3KooW… storage.put --policy policy.yaml
  decloud policy explain btc:bc1q… storage.put --balance 150000 --age 10
`

const INT = /^[0-9]{1,20}$/

async function check (file: string): Promise<number> {
  try {
    const engine = new PolicyEngine(await loadPolicyFile(file))
    await out(`ok: ${engine.size} rule${engine.size === 1 ? '' : 's'}\n`)
    return EXIT.OK
  } catch (err: any) {
    if (err instanceof PolicyError) { throw new CliError(err.message, EXIT.USAGE) }
    throw err
  }
}

/** The context `explain` looks at, from the command line */
function context (who: string, call: string, values: Record<string, string | undefined>): PolicyContext {
  const credentials = who.split(',').map(s => s.trim()).filter(s => s !== '')
  if (credentials.length === 0) { throw new UsageError('WHO is empty') }
  const creds = credentials.map(c => c.startsWith('oc:') || c.startsWith('btc:') ? c : `oc:${c}`)
  const oc = creds.find(c => c.startsWith('oc:'))
  const btc = creds.find(c => c.startsWith('btc:'))
  const dot = call.indexOf('.')
  const service = call.slice(0, dot)
  const method = call.slice(dot + 1)
  if (dot < 0 || !NAME.test(service) || !NAME.test(method)) { throw new UsageError(`"${call}" is not SERVICE.METHOD (e.g. storage.put)`) }
  const ctx: PolicyContext = { peer: oc != null ? oc.slice(3) : 'unknown', credentials: creds, service, method }
  const { balance, age, trust } = values
  if (balance != null || age != null) {
    if (btc == null) { throw new UsageError('--balance and --age describe a btc: credential: name one in WHO') }
    if (balance != null && !INT.test(balance)) { throw new UsageError('--balance must be a whole number of sats') }
    if (age != null && (!INT.test(age) || !Number.isSafeInteger(Number(age)))) { throw new UsageError('--age must be a whole number of blocks') }
    ctx.bitcoin = [{ address: btc, confirmed: BigInt(balance ?? '0'), unconfirmed: 0n, age: Number(age ?? '0') }]
  }
  if (trust != null) {
    const t = Number(trust)
    if (trust.trim() === '' || !Number.isFinite(t) || t < 0 || t > 1) { throw new UsageError('--trust must be a number between 0 and 1') }
    ctx.trust = t
  }
  const units = parseUnits(values.units)
  if (units != null) { ctx.usage = [units] }
  return ctx
}

async function explain (positionals: string[], values: Record<string, string | undefined>): Promise<number> {
  if (positionals.length !== 2) { throw new UsageError('usage: decloud policy explain WHO SERVICE.METHOD [options]') }
  const ctx = context(positionals[0], positionals[1], values)
  let file = values.policy
  if (file == null) {
    const inDataDir = join(resolveDataDir(values['data-dir']), POLICY_FILE)
    if (existsSync(inDataDir)) { file = inDataDir }
  }
  let engine: PolicyEngine
  try {
    engine = new PolicyEngine(file != null ? await loadPolicyFile(file) : defaultPolicy())
  } catch (err: any) {
    if (err instanceof PolicyError) { throw new CliError(err.message, EXIT.USAGE) }
    throw err
  }
  await out(engine.explain(ctx))
  return EXIT.OK
}

export const command: Command = {
  name: 'policy',
  summary: 'check a policy file, or explain which rule decides a call',
  usage,
  async run (argv) {
    const { values, positionals } = parse(argv, {
      policy: { type: 'string' },
      ...commonOptions('data-dir'),
      balance: { type: 'string' },
      age: { type: 'string' },
      trust: { type: 'string' },
      units: { type: 'string' }
    })
    const [sub, ...rest] = positionals
    switch (sub) {
      case 'check':
        if (rest.length !== 1) { throw new UsageError('usage: decloud policy check FILE') }
        return check(rest[0])
      case 'explain':
        return explain(rest, values)
      case 'default':
        if (rest.length !== 0) { throw new UsageError(`unexpected argument "${rest[0]}"`) }
        await out(DEFAULT_POLICY_YAML)
        return EXIT.OK
      case undefined:
        throw new UsageError('usage: decloud policy check|explain|default (see decloud policy --help)')
      default:
        throw new UsageError(`unknown subcommand "${sub}" (check, explain or default)`)
    }
  }
}
