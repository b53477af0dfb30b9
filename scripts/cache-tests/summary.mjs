// Classifies a cache-tests results file the way the suite's own display does
// (required / optimal / check, dependencies, setup failures), prints the counts and
// every failure, and exits 1 if a required test failed that is not listed in
// known-failures.txt. Run by scripts/cache-tests.sh from the suite's directory.
import fs from 'fs'
import path from 'path'
import tests from './tests/index.mjs'
import surrogate from './tests/surrogate-control.mjs'

tests.push(surrogate)
const results = JSON.parse(fs.readFileSync(process.argv[2]))
const known = new Set(fs.readFileSync(process.argv[3], 'utf8').split('\n')
  .map(l => l.replace(/#.*/, '').trim()).filter(Boolean))
const byId = {}
for (const s of tests) for (const t of s.tests) byId[t.id] = t
const passTypes = ['pass', 'yes']
function kind (id) {
  const t = byId[id]; const r = results[id]
  if (r === undefined) return 'untested'
  if (t.depends_on) for (const d of t.depends_on) if (!passTypes.includes(kind(d))) return 'dependency_fail'
  if (r[0] === 'Setup') return r[1] === 'retry' ? 'retry' : 'setup_fail'
  if (r === false && r[0] !== 'Assertion') return 'harness_fail'
  if (t.kind === 'required' || t.kind === undefined) return r === true ? 'pass' : 'fail'
  if (t.kind === 'optimal') return r === true ? 'pass' : 'optional_fail'
  return r === true ? 'yes' : 'no'
}
const counts = {}
let unexpected = 0
for (const id of Object.keys(byId)) {
  const k = kind(id)
  counts[k] = (counts[k] || 0) + 1
  if (['fail', 'harness_fail', 'setup_fail', 'optional_fail'].includes(k)) {
    const mark = k === 'fail' && !known.has(id) ? '  <-- unexpected' : ''
    if (mark) unexpected++
    console.log(`${k.padEnd(14)} ${id}  ${JSON.stringify(results[id]).slice(0, 140)}${mark}`)
  }
}
console.log(JSON.stringify(counts))
process.exit(unexpected ? 1 : 0)
