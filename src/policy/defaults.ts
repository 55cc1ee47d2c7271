/**
 * The policy `decloud node` uses out of the box, when the data dir has no
 * `policy.yaml` and no `--policy FILE` is given (docs/policy.md "Defaults").
 *
 * It is kept as YAML, the very text `decloud policy default` prints, so the
 * default is also a working example of the file format.
 */
import { parsePolicy } from './parse.js'
import type { Policy } from './schema.js'

/** Per-peer requests/s of the default policy */
export const DEFAULT_REQUESTS_PER_SECOND = 200
/** Per-peer bytes/s of the default policy (32 MiB/s) */
export const DEFAULT_BYTES_PER_SECOND = 32 * 1024 * 1024
/** Balance (sats) and age (blocks) of a bitcoin credential that earns a tab by default */
export const DEFAULT_TAB_BALANCE = 100_000n
export const DEFAULT_TAB_AGE = 6
/** Trust (0–1) that earns a tab by default */
export const DEFAULT_TAB_TRUST = 0.5
/** The tab (sats) coins or reputation earn by default */
export const DEFAULT_MAX_TAB = 50_000n

export const DEFAULT_POLICY_YAML = `# decloud's default policy (decloud policy default prints it).
# Copy it to <data dir>/policy.yaml to change it; see policy.example.yaml
# and docs/policy.md for every command.
version: 1
rules:
  # every peer: ${DEFAULT_REQUESTS_PER_SECOND} requests/s and 32 MiB/s, bursts of twice that
  - name: per-peer-rate
    scope: global
    rate-limit: { requests: ${DEFAULT_REQUESTS_PER_SECOND}, request-burst: ${DEFAULT_REQUESTS_PER_SECOND * 2}, bytes: 32MiB, byte-burst: 64MiB }

  # free for everyone: node information, hashing and the core services
  - name: free-info
    scope: { service: info }
    allow: true
  - name: free-sha256
    scope: { service: sha256 }
    allow: true
  - name: free-peers
    scope: { service: peers }
    allow: true
  - name: free-market
    scope: { service: market }
    allow: true

  # storage is paid at its price. Strangers pay as they go (attached) ...
  - name: storage-pay-now
    scope: { service: storage }
    allow: true
    defer: deny
    max-concurrent: 32

  # ... identities with coins or reputation may run up a small tab
  - name: storage-tab-coins
    scope: { service: storage, bitcoin: { min-balance: ${DEFAULT_TAB_BALANCE}, min-age: ${DEFAULT_TAB_AGE} } }
    defer: allow
    max-tab: ${DEFAULT_MAX_TAB}
  - name: storage-tab-trust
    scope: { service: storage, trust: { min: ${DEFAULT_TAB_TRUST} } }
    defer: allow
    max-tab: ${DEFAULT_MAX_TAB}
`

/** The default policy, parsed (a new object each call) */
export function defaultPolicy (): Policy {
  return parsePolicy(DEFAULT_POLICY_YAML, { file: '<default policy>' })
}
