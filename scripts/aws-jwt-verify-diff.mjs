// Differential run: the gateway's several-pool authorizer (`cognito-gate verify-token`) against
// aws-jwt-verify's multi-pool CognitoJwtVerifier, on every single and pairwise mutation of ID
// and access tokens of two pools that publish the same kid. Prints each disagreement.
//
//   cargo build --release
//   cd "$(mktemp -d)" && npm install aws-jwt-verify@5.2.1 && node /path/to/repo/scripts/aws-jwt-verify-diff.mjs
//
// (aws-jwt-verify is loaded from the current folder's node_modules.)
//
// Known, deliberate difference: a token without `exp` is refused by the gateway (Cognito never
// issues one) and accepted by aws-jwt-verify, which checks `exp` only when present.
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createSign } from "node:crypto";
import { execFileSync } from "node:child_process";
import { createRequire } from "node:module";
const { CognitoJwtVerifier } = createRequire(join(process.cwd(), "x.js"))("aws-jwt-verify");
const WORK = mkdtempSync(join(tmpdir(), "cg-diff-"));

const F = new URL("../tests/fixtures", import.meta.url).pathname;
const R = "ap-northeast-1";
const pools = {
  A: { id: `${R}_AAAAAAAAA`, client: "clientaaaaaaaaaaaaaaaaaaaa", pem: readFileSync(`${F}/rsa-k1.pem`), jwk: JSON.parse(readFileSync(`${F}/rsa-k1.jwk.json`)) },
  B: { id: `${R}_BBBBBBBBB`, client: "clientbbbbbbbbbbbbbbbbbbbb", pem: readFileSync(`${F}/rsa-k2.pem`), jwk: JSON.parse(readFileSync(`${F}/rsa-k2.jwk.json`)) },
};
for (const p of Object.values(pools)) p.jwk.kid = "shared";
const iss = (id, updated) => `https://${updated ? "issuer-" : ""}cognito-idp.${R}.amazonaws.com/${id}`;
const b64 = (o) => Buffer.from(typeof o === "string" ? o : JSON.stringify(o)).toString("base64url");
function sign(header, payload, pem) {
  const input = `${b64(header)}.${b64(payload)}`;
  const s = createSign("RSA-SHA256"); s.update(input);
  return `${input}.${s.sign(pem).toString("base64url")}`;
}
const now = Math.floor(Date.now() / 1000);
function base(p, use) {
  const c = { sub: "s", iss: iss(p.id), token_use: use, exp: now + 3600, iat: now - 10, auth_time: now - 10 };
  if (use === "id") c.aud = p.client; else { c.client_id = p.client; c.scope = "aws.cognito.signin.user.admin"; }
  return c;
}
const mutations = {
  valid: () => {},
  issOther: (c, h, k, p, o) => { c.iss = iss(o.id); },
  issUnknown: (c) => { c.iss = iss(`${R}_ZZZZZZZZZ`); },
  issUpdated: (c, h, k, p) => { c.iss = iss(p.id, true); },
  issSlash: (c) => { c.iss += "/"; },
  otherKey: (c, h, k, p, o) => { k.pem = o.pem; },
  kidUnknown: (c, h) => { h.kid = "nope"; },
  clientOther: (c, h, k, p, o) => { if (c.aud) c.aud = o.client; else c.client_id = o.client; },
  clientMissing: (c) => { delete c.aud; delete c.client_id; },
  useRefresh: (c) => { c.token_use = "refresh"; },
  useMissing: (c) => { delete c.token_use; },
  useSwap: (c) => { c.token_use = c.token_use === "id" ? "access" : "id"; },
  expired: (c) => { c.exp = now - 10; },
  expString: (c) => { c.exp = String(c.exp); },
  expMissing: (c) => { delete c.exp; },
  nbfFuture: (c) => { c.nbf = now + 600; },
  issNumber: (c) => { c.iss = 42; },
  algHS256: (c, h) => { h.alg = "HS256"; },
  audArray: (c, h, k, p) => { if (c.aud) c.aud = [p.client]; },
};
const cases = [];
const names = Object.keys(mutations);
for (const [pn, p] of Object.entries(pools)) {
  const o = pn === "A" ? pools.B : pools.A;
  for (const use of ["id", "access"]) {
    for (let i = 0; i < names.length; i++) for (let j = i; j < names.length; j++) {
      if (i !== j && (names[i] === "valid" || names[j] === "valid")) continue;
      const c = base(p, use), h = { alg: "RS256", kid: "shared" }, k = { pem: p.pem };
      mutations[names[i]](c, h, k, p, o); if (i !== j) mutations[names[j]](c, h, k, p, o);
      let t = sign(h, c, k.pem);
      cases.push({ name: `${pn}/${use}/${names[i]}${i !== j ? "+" + names[j] : ""}`, token: t });
    }
  }
}
// Tampered signatures.
for (const c of cases.slice(0, 8)) cases.push({ name: c.name + "+tampered", token: c.token.slice(0, -4) + (c.token.endsWith("AAAA") ? "BBBB" : "AAAA") });

const verifier = CognitoJwtVerifier.create(Object.values(pools).map((p) => ({ userPoolId: p.id, tokenUse: null, clientId: p.client })));
for (const p of Object.values(pools)) verifier.cacheJwks({ keys: [p.jwk] }, p.id);
for (const p of Object.values(pools)) writeFileSync(`${WORK}/${p.id}.json`, JSON.stringify({ keys: [p.jwk] }));
let toml = '[server]\nlisten = "127.0.0.1:0"\n[cognito]\n';
for (const [pn, p] of Object.entries(pools)) {
  toml += `[[cognito.pools]]\nname = "${pn}"\nregion = "${R}"\nuser_pool_id = "${p.id}"\napp_clients = ["${p.client}"]\n[cognito.pools.jwks]\nfile = "${WORK}/${p.id}.json"\n`;
}
toml += '[[routes]]\nname = "r"\npath_prefix = "/r"\nupstream = "builtin:echo"\nauth = ["jwt"]\ntoken_use = "any"\n';
writeFileSync(`${WORK}/gate.toml`, toml);

let disagreements = 0, allowed = 0;
for (const c of cases) {
  let lib;
  try { await verifier.verify(c.token); lib = true; } catch (e) { lib = false; c.libError = e.constructor.name; }
  let gate;
  try { execFileSync(new URL("../target/release/cognito-gate", import.meta.url).pathname, ["verify-token", "--config", `${WORK}/gate.toml`, "--route", "r", c.token], { stdio: "pipe" }); gate = true; }
  catch (e) { gate = e.status === 2 ? false : `error ${e.status}: ${e.stderr}`; }
  if (lib) allowed++;
  if (lib !== gate) { disagreements++; console.log(`DISAGREE ${c.name}: aws-jwt-verify ${lib} (${c.libError ?? ""}), gateway ${gate}`); }
}
console.log(`${cases.length} tokens, ${allowed} allowed by aws-jwt-verify, ${disagreements} disagreements`);
