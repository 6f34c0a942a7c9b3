#!/usr/bin/env node
// dpop-proof.mjs makes a DPoP proof (RFC 9449 §4.2) for curl, with
// Node's built-in WebCrypto only (no npm packages).
//
//   node dpop-proof.mjs <METHOD> <URL> [--nonce N] [--token ACCESS_TOKEN]
//
// The ES256 key is kept in ./dpop-key.json (made on first use), so that
// every proof is signed with the same key, as a client's are. The proof
// is printed on stdout; the key's RFC 7638 thumbprint (the token's
// cnf.jkt, and what dpop_jkt names) on stderr.
import { webcrypto as crypto } from "node:crypto";
import { createHash } from "node:crypto";
import { existsSync, readFileSync, writeFileSync } from "node:fs";

const args = process.argv.slice(2);
const [htm, htu] = args;
if (!htm || !htu) {
	console.error("usage: node dpop-proof.mjs <METHOD> <URL> [--nonce N] [--token ACCESS_TOKEN]");
	process.exit(2);
}
const opt = (name) => {
	const i = args.indexOf(name);
	return i >= 0 ? args[i + 1] : undefined;
};
const b64u = (buf) => Buffer.from(buf).toString("base64url");
const keyFile = process.env.DPOP_KEY_FILE || "dpop-key.json";

let priv;
if (existsSync(keyFile)) {
	priv = JSON.parse(readFileSync(keyFile, "utf8"));
} else {
	const kp = await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: "P-256" }, true, ["sign", "verify"]);
	priv = await crypto.subtle.exportKey("jwk", kp.privateKey);
	writeFileSync(keyFile, JSON.stringify(priv), { mode: 0o600 });
}
// The header carries the public members only.
const jwk = { kty: priv.kty, crv: priv.crv, x: priv.x, y: priv.y };
const key = await crypto.subtle.importKey("jwk", priv, { name: "ECDSA", namedCurve: "P-256" }, false, ["sign"]);

const claims = { jti: b64u(crypto.getRandomValues(new Uint8Array(16))), htm, htu, iat: Math.floor(Date.now() / 1000) };
if (opt("--nonce")) claims.nonce = opt("--nonce");
if (opt("--token")) claims.ath = b64u(createHash("sha256").update(opt("--token")).digest());

const input = b64u(JSON.stringify({ typ: "dpop+jwt", alg: "ES256", jwk })) + "." + b64u(JSON.stringify(claims));
const sig = await crypto.subtle.sign({ name: "ECDSA", hash: "SHA-256" }, key, Buffer.from(input));
process.stdout.write(input + "." + b64u(sig) + "\n");

// RFC 7638: the required members in lexicographic order, no spaces.
const thumb = createHash("sha256").update(JSON.stringify({ crv: jwk.crv, kty: jwk.kty, x: jwk.x, y: jwk.y })).digest();
process.stderr.write("jkt: " + b64u(thumb) + "\n");
