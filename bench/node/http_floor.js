// Node.js's own HTTP server answering every request as a long-polling response of
// one small packet: the runtime's floor beside gunicorn's.  node http_floor.js PORT
const http = require("http");

const body = Buffer.from(process.argv[3] || "");
http
  .createServer((request, response) => {
    response.writeHead(200, {
      "Content-Type": "text/plain; charset=UTF-8",
      "Content-Length": body.length,
    });
    response.end(body);
  })
  .listen(Number(process.argv[2]), "127.0.0.1", () => console.log("listening"));
