/**
 * Field checks, shared by the file parser and typed rules: each returns the
 * problem as a sentence, or undefined when the value is fine.
 */
import { NAME, NAME_PATTERN } from '../util/names.js'
import { MAX_BLOCKS, MAX_CONCURRENT, MAX_RATE, MAX_SATS } from './types.js'

/** Services and methods: the wire's name rule */
export { NAME }
const METHOD = new RegExp(`^(${NAME_PATTERN})\\.(${NAME_PATTERN})$`)
/** base58btc peer ids (Ed25519 `12D3Koo…`, RSA `Qm…`) and base32 CIDs */
const PEER_ID = /^[1-9A-HJ-NP-Za-km-z]{40,100}$|^b[a-z2-7]{50,120}$/
/** base58 or bech32 characters; the chain backend knows the network */
const ADDRESS = /^[0-9A-Za-z]{14,100}$/
const RULE_NAME = /^[\w .:/@+-]{1,64}$/

export function checkName (v: unknown): string | undefined {
  if (typeof v !== 'string' || !RULE_NAME.test(v)) { return 'a rule name is 1–64 letters, digits, spaces or . : / @ + - _' }
  return undefined
}

export function checkService (v: unknown): string | undefined {
  if (typeof v !== 'string' || !NAME.test(v)) { return `service must be a service name (lower case letters, digits, - and _), not ${show(v)}` }
  return undefined
}

export function checkMethod (v: unknown): string | undefined {
  if (typeof v !== 'string' || !METHOD.test(v)) { return `method must be service.method (e.g. storage.put), not ${show(v)}` }
  return undefined
}

export function checkId (v: unknown): string | undefined {
  if (typeof v !== 'string' || !v.startsWith('oc:')) { return `id must be an OpenCloud ID oc:<peer id>, not ${show(v)}` }
  if (!PEER_ID.test(v.slice(3))) { return `id ${show(v)} does not hold a peer id` }
  return undefined
}

export function checkAddress (v: unknown): string | undefined {
  if (typeof v !== 'string' || !v.startsWith('btc:')) { return `address must be a bitcoin address credential btc:<address>, not ${show(v)}` }
  if (!ADDRESS.test(v.slice(4))) { return `address ${show(v)} is not a bitcoin address` }
  return undefined
}

export function checkSats (what: string, v: unknown): string | undefined {
  if (typeof v !== 'bigint') { return `${what} must be a whole number of sats${typeof v === 'number' ? ` (not ${v}: amounts are integers)` : ''}` }
  if (v < 0n) { return `${what} must not be negative` }
  if (v > MAX_SATS) { return `${what} exceeds the largest amount (${MAX_SATS} sat)` }
  return undefined
}

export function checkBlocks (what: string, v: unknown): string | undefined {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > MAX_BLOCKS) { return `${what} must be a whole number of blocks between 0 and ${MAX_BLOCKS}` }
  return undefined
}

export function checkTrust (what: string, v: unknown): string | undefined {
  if (typeof v !== 'number' || !Number.isFinite(v) || v < 0 || v > 1) { return `${what} must be a number between 0 and 1` }
  return undefined
}

export function checkRate (what: string, v: unknown, integer: boolean): string | undefined {
  if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0 || v > MAX_RATE || (integer && !Number.isInteger(v))) {
    return `${what} must be a positive ${integer ? 'whole ' : ''}number`
  }
  return undefined
}

export function checkConcurrent (v: unknown): string | undefined {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > MAX_CONCURRENT) { return `max-concurrent must be a whole number between 1 and ${MAX_CONCURRENT}` }
  return undefined
}

export function checkDefer (v: unknown): string | undefined {
  if (v !== 'allow' && v !== 'deny') { return `defer must be allow or deny, not ${show(v)}` }
  return undefined
}

export function checkCredentialKind (v: unknown): string | undefined {
  if (v !== 'oc' && v !== 'btc' && v !== 'any') { return `require-credential must be oc, btc or any, not ${show(v)}` }
  return undefined
}

export function checkFlag (what: string, v: unknown): string | undefined {
  if (v !== true) { return `${what} takes true (write "${what}: true"; to refuse, use ${what === 'allow' ? 'deny' : 'allow'} or remove the rule)` }
  return undefined
}

export function show (v: unknown): string {
  if (typeof v === 'string') { return JSON.stringify(v.length > 60 ? v.slice(0, 60) + '…' : v) }
  if (typeof v === 'bigint') { return v.toString() }
  if (v === null || v === undefined) { return 'nothing' }
  if (typeof v === 'object') { return Array.isArray(v) ? 'a list' : 'a map' }
  return String(v)
}
