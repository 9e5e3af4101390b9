// The client of the experiment from the story: POSTs a JSON.stringify'd
// body RATE times a second and destroys every request when it gets its
// response, an error, or after a 60 s timeout. Every REPORT seconds it
// prints process.memoryUsage() and how many requests are pending.
//
//   node client.js [--port 8123] [--rate 400] [--duration 60] [--report 5]
'use strict';
const http = require('http');

const opt = { port: 8123, rate: 400, duration: 60, report: 5 };
for (let i = 2; i < process.argv.length; i += 2) {
  opt[process.argv[i].replace(/^--/, '')] = Number(process.argv[i + 1]);
}

const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });
let pending = 0;
let done = 0;
let failed = 0;

function postOne(seq) {
  const body = JSON.stringify({ seq, when: Date.now(), payload: 'x'.repeat(512), tags: ['a', 'b', 'c'] });
  pending++;
  let finished = false;
  const finish = (ok) => {
    if (finished) return;
    finished = true;
    pending--;
    if (ok) done++; else failed++;
    req.destroy();
  };
  const req = http.request({
    host: '127.0.0.1', port: opt.port, method: 'POST', path: '/', agent,
    headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) },
  }, (res) => {
    res.resume();
    finish(res.statusCode === 200);
  });
  req.setTimeout(60000, () => finish(false));
  req.on('error', () => finish(false));
  req.end(body);
}

const start = Date.now();
let seq = 0;
const ticker = setInterval(() => {
  // Every 10 ms, catch up with RATE requests per second since the start.
  const elapsed = Math.min(Date.now() - start, opt.duration * 1000);
  const due = Math.floor((opt.rate * elapsed) / 1000);
  while (seq < due) postOne(seq++);
  if (Date.now() - start >= opt.duration * 1000) {
    clearInterval(ticker);
    clearInterval(reporter);
    const wait = setInterval(() => {
      if (pending === 0) {
        clearInterval(wait);
        report();
        agent.destroy();
      }
    }, 50);
  }
}, 10);

function report() {
  const m = process.memoryUsage();
  const mb = (b) => (b / 1048576).toFixed(1);
  const secs = ((Date.now() - start) / 1000).toFixed(0);
  console.log(`t=${secs}s sent=${seq} done=${done} failed=${failed} pending=${pending} ` +
    `rss=${mb(m.rss)}MB heapUsed=${mb(m.heapUsed)}MB external=${mb(m.external)}MB arrayBuffers=${mb(m.arrayBuffers)}MB`);
}
const reporter = setInterval(report, opt.report * 1000);
