// Keep-alive HTTP clients asking one URL again as soon as each answer ends, for a
// while: as many requests as one server process answers.  Prints {"done": N}.
//   node http_load.js URL CONCURRENCY SECONDS [COOKIE]
const http = require("http");

const [url, concurrency, seconds, cookie] = process.argv.slice(2);
const agent = new http.Agent({ keepAlive: true, maxSockets: Number(concurrency) });
const headers = { Accept: "*/*", ...(cookie ? { Cookie: cookie } : {}) };
let done = 0;
let errors = 0;
let stopping = false;

function ask() {
  if (stopping) return;
  http
    .get(url, { agent, headers }, (response) => {
      response.resume();
      response.on("end", () => {
        if (response.statusCode === 200) done += 1;
        else errors += 1;
        ask();
      });
    })
    .on("error", () => {
      errors += 1;
      setTimeout(ask, 10);
    });
}

for (let i = 0; i < Number(concurrency); i += 1) ask();
setTimeout(() => {
  stopping = true;
  console.log(JSON.stringify({ done, errors }));
  agent.destroy();
  process.exit(0);
}, Number(seconds) * 1000);
