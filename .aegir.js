/** @type {import('aegir').PartialOptions} */
export default {
  build: {
    // plain tsc is the build (npm run build); aegir supplies the lint rules (eslint.config.js)
    bundle: false
  },
  test: {
    // Node 20 refuses --experimental-strip-types in NODE_OPTIONS: tests run
    // compiled (dist/test/**/*.spec.js) through mocha, see .mocharc.json
    before: async () => ({ env: { NODE_OPTIONS: '' } })
  },
  dependencyCheck: {
    ignore: ['protons', 'typescript', 'mocha', '@types/mocha', '@types/node', 'aegir']
  }
}
