import { sha256 } from '../protocols/opencloud/api/signing.js'
import type { Pricing } from '../protocols/opencloud/api/pricing.js'
import type { ServiceDefinition } from '../protocols/opencloud/api/template.js'

export interface Sha256ServiceInit {
  /** @default free */
  pricing?: Pricing
}

/** `sha256.hash`: the body's SHA-256 digest (32 raw bytes). Priced per byte hashed. */
export function sha256Service (init: Sha256ServiceInit = {}): ServiceDefinition {
  return {
    name: 'sha256',
    version: '1.0.0',
    description: 'SHA-256 of the request body',
    methods: {
      hash: {
        description: 'returns the SHA-256 digest (32 bytes) of the body',
        units: ['byte'],
        pricing: init.pricing,
        usage: (call) => [BigInt(call.body.byteLength)],
        handler: (call) => ({ body: sha256(call.body) })
      }
    }
  }
}
