/**
 * Node 20 lacks `Promise.withResolvers` (added in Node 22) and the libp2p 3
 * stack calls it unguarded. Installing it here, once, at every entry point
 * (library index, CLI, tests) keeps Node 20 supported; where the runtime
 * already has it this does nothing.
 */
interface Resolvers<T> {
  promise: Promise<T>
  resolve(value: T | PromiseLike<T>): void
  reject(reason?: unknown): void
}

const P = Promise as unknown as { withResolvers?<T>(): Resolvers<T> }

if (typeof P.withResolvers !== 'function') {
  Object.defineProperty(Promise, 'withResolvers', {
    configurable: true,
    writable: true,
    enumerable: false,
    value: function withResolvers<T> (): Resolvers<T> {
      let res!: (value: T | PromiseLike<T>) => void
      let rej!: (reason?: unknown) => void
      const promise = new Promise<T>((resolve, reject) => {
        res = resolve
        rej = reject
      })
      return { promise, resolve: res, reject: rej }
    }
  })
}

export {}
