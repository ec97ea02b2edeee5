// The public Node verification sample, as an integrator copies it: the body is parsed first and
// the signature is checked over JSON.stringify(parsed), not over the bytes received. It only
// accepts our deliveries if the sender's bytes are exactly what JSON.stringify writes.
//
// Env: WEBHOOK_SECRET (the whole whsec_ text), RECEIVER_LOG (a file: one JSON line per request).
// Prints the port it listens on (127.0.0.1, chosen by the OS) as the first line on stdout.
"use strict";

const crypto = require("crypto");
const fs = require("fs");
const http = require("http");

const SECRET = process.env.WEBHOOK_SECRET;
const LOG = process.env.RECEIVER_LOG;
if (!SECRET || !LOG) {
  console.error("WEBHOOK_SECRET and RECEIVER_LOG are required");
  process.exit(2);
}

function log(entry) {
  fs.appendFileSync(LOG, JSON.stringify(entry) + "\n");
}

const server = http.createServer((req, res) => {
  const chunks = [];
  req.on("data", (chunk) => chunks.push(chunk));
  req.on("end", () => {
    const raw = Buffer.concat(chunks).toString("utf8");
    const entry = {
      id: req.headers["x-bitbybit-webhook-id"] || null,
      type: req.headers["x-bitbybit-webhook-event"] || null,
      verified: false,
    };
    try {
      // --- the sample, as published ---
      const parsed = JSON.parse(raw);
      const header = req.headers["x-bitbybit-webhook-signature"] || "";
      const timestamp = req.headers["x-bitbybit-webhook-timestamp"] || "";
      let t = null;
      let v1 = null;
      for (const part of header.split(",")) {
        if (part.startsWith("t=")) t = part.slice(2);
        if (part.startsWith("v1=")) v1 = part.slice(3);
      }
      const expected = crypto
        .createHmac("sha256", SECRET)
        .update(`${t}.${JSON.stringify(parsed)}`)
        .digest("hex");
      entry.verified = t !== null && t === timestamp && v1 === expected;
      // --- diagnostics for the test, not part of the sample ---
      entry.reason = entry.verified ? null : t !== timestamp ? "timestamp" : "signature";
      entry.roundTrips = JSON.stringify(parsed) === raw;
      if (!entry.roundTrips) entry.raw = raw;
    } catch (error) {
      entry.reason = `exception: ${error.message}`;
    }
    log(entry);
    res.writeHead(entry.verified ? 200 : 401, { "Content-Type": "text/plain" });
    res.end(entry.verified ? "ok" : `rejected: ${entry.reason}`);
  });
});

server.listen(0, "127.0.0.1", () => {
  process.stdout.write(`${server.address().port}\n`);
});

process.on("SIGTERM", () => process.exit(0));
