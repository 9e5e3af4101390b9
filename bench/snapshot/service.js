// A Node.js service for the snapshot benchmark (bench/snapshot/hourly_node.py):
// about MIB MiB resident, most of it a session cache of JS objects and
// strings on V8's heap, the rest Buffers (outside it), and a request loop
// that keeps going: every request reads a session and builds a JSON answer
// (young garbage for the scavenger), one in ten updates its session (old
// space written, and compacted now and then), one in a hundred rewrites
// 4 KiB of a Buffer.
//
// Usage: node --max-old-space-size=4096 service.js [MIB [REQUESTS_PER_S]]
// stdout: "ready PID RSS_MIB" once built; then one line per minute:
// "served N rss RSS_MIB". On stdin: 'r' resets the event loop's longest
// gap (answers "reset"), 'g' answers "gap NS", 'q' exits.
//
// The gap is the pause as the service lived it: a 1 ms timer notes how
// late each of its turns came (the time since the one before, minus the
// millisecond); a snapshot that stops every thread delays it by the stop.
// GC pauses and the request loop count too: the benchmark measures the
// same window without a snapshot as the baseline.
'use strict';
const mib = Number(process.argv[2] || 1024);
const rate = Number(process.argv[3] || 200);

const sessions = [];
const blobs = [];
function session(k) {
  return {
    id: k,
    user: 'user-' + k,
    tags: [k % 7, k % 11, k % 13],
    history: Array.from({ length: 12 }, (_, j) => ({ at: j, path: '/item/' + ((k * 31 + j) % 5000) })),
    note: 'n'.repeat(120) + k,
  };
}
const rss = () => process.memoryUsage().rss / 2 ** 20;
// 60% in sessions, 40% in Buffers, grown until the target is resident.
while (rss() < mib * 0.6) {
  for (let i = 0; i < 10000; i++) sessions.push(session(sessions.length));
}
while (rss() < mib) {
  const b = Buffer.alloc(1 << 20);
  for (let o = 0; o < b.length; o += 4096) b[o] = (blobs.length + o) & 0xff;
  blobs.push(b);
}
console.log(`ready ${process.pid} ${Math.round(rss())}`);

let served = 0;
let seed = 12345;
const rand = (n) => {
  seed = (seed * 1103515245 + 12345) & 0x7fffffff;
  return seed % n;
};
function request() {
  const k = rand(sessions.length);
  const s = sessions[k];
  const answer = JSON.stringify({ user: s.user, last: s.history[s.history.length - 1], n: served });
  if (rand(10) === 0) {
    s.history.shift();
    s.history.push({ at: served, path: '/item/' + rand(5000) + '?' + answer.length });
  }
  if (rand(100) === 0) {
    const b = blobs[rand(blobs.length)];
    b.fill(served & 0xff, rand(b.length / 4096) * 4096, 4096);
  }
  served++;
}
const tick = 10; // ms
setInterval(() => {
  for (let i = 0; i < (rate * tick) / 1000; i++) request();
}, tick);
setInterval(() => console.log(`served ${served} rss ${Math.round(rss())}`), 60000);

const now = () => process.hrtime.bigint();
let last = now();
let longest = 0n;
setInterval(() => {
  const t = now();
  const gap = t - last - 1000000n;
  if (gap > longest) longest = gap;
  last = t;
}, 1);
process.stdin.on('data', (d) => {
  for (const c of d.toString()) {
    if (c === 'q') process.exit(0);
    if (c === 'r') {
      longest = 0n;
      last = now();
      console.log('reset');
    }
    if (c === 'g') console.log(`gap ${longest}`);
  }
});
