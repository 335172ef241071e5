// The Node contender of bench/run.sh: the gateway a team would write with `jose` and
// `http-proxy`. One process (one event loop): verifies the bearer token against the JWKS
// it fetched at start, removes client-sent identity headers, sets X-User-Id, forwards.
//
//   node gateway.mjs LISTEN_PORT UPSTREAM_URL JWKS_URL ISSUER AUDIENCE
import http from "node:http";
import httpProxy from "http-proxy";
import { createLocalJWKSet, jwtVerify } from "jose";

const [port, upstream, jwksUrl, issuer, audience] = process.argv.slice(2);
const jwks = createLocalJWKSet(await (await fetch(jwksUrl)).json());
const options = { issuer, audience, algorithms: ["EdDSA", "ES256", "RS256"] };

const agent = new http.Agent({ keepAlive: true, maxSockets: Infinity, maxFreeSockets: 1024 });
const proxy = httpProxy.createProxyServer({ target: upstream, agent, xfwd: true });
proxy.on("error", (_err, _req, res) => {
  if (!res.headersSent) res.writeHead(502, { "content-type": "application/json" });
  res.end('{"error":"bad_gateway"}');
});

function refuse(res) {
  res.writeHead(401, { "content-type": "application/json", "www-authenticate": "Bearer" });
  res.end('{"error":"invalid_token"}');
}

const server = http.createServer(async (req, res) => {
  delete req.headers["x-user-id"];
  if (!req.url.startsWith("/public/")) {
    const auth = req.headers.authorization || "";
    if (!auth.startsWith("Bearer ")) return refuse(res);
    try {
      const { payload } = await jwtVerify(auth.slice(7), jwks, options);
      req.headers["x-user-id"] = String(payload.sub);
    } catch {
      return refuse(res);
    }
  }
  proxy.web(req, res);
});
server.keepAliveTimeout = 120_000;
server.headersTimeout = 121_000;
server.requestTimeout = 0;
server.maxRequestsPerSocket = 0;
server.listen(Number(port), "127.0.0.1", 16384, () => console.log(`node gateway on ${port}`));
