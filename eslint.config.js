import aegir from 'aegir/eslint.config.js'

export default [
  ...aegir,
  {
    // sources are compiled by tsc (node16 resolution), which needs `.js` import extensions
    rules: { 'aegir-n/file-extension-in-import': 'off' }
  }
]
