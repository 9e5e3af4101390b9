// The server of the experiment: reads (resumes) every request body to the
// end, then answers "ok".
//
//   node server.js [PORT]
'use strict';
const http = require('http');
const port = Number(process.argv[2] || 8123);

const server = http.createServer((req, res) => {
  req.resume();
  req.on('end', () => res.end('ok'));
});
server.listen(port, '127.0.0.1', () => console.log(`listening on ${port}`));
