/**
 * The one definition of a service or method name, as OpenCloud, price
 * announcements, policies, the control API and the CLI accept it.
 */

/** 1 to 64 characters a-z, 0-9, `_` or `-`, starting with a letter or digit */
export const NAME = /^[a-z0-9][a-z0-9_-]{0,63}$/

/** The same rule as a regex fragment without anchors, to build larger patterns (`service.method`) */
export const NAME_PATTERN = NAME.source.slice(1, -1)

/** True when `x` is a service or method name */
export function isName (x: unknown): x is string {
  return typeof x === 'string' && NAME.test(x)
}
