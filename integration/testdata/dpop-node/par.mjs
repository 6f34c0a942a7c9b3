// par.mjs is a client using oauth4webapi's pushed authorization requests
// (RFC 9126): it pushes its authorization request (with a DPoP proof when
// asked, retrying once on use_dpop_nonce), prints the request_uri, its
// expires_in, the state and the DPoP key's thumbprint as one JSON line,
// reads the redirect URL (with the code) from stdin, redeems the code
// (with a proof of the same key when asked) and prints the result as a
// second JSON line, for integration/par_test.go.
//
//   node par.mjs <issuer> <client_id> <client_secret|-> <redirect_uri> [dpop]
import * as oauth from "oauth4webapi";
import { createInterface } from "node:readline";
import { thumbprint, withNonceRetry as retry } from "./shared.mjs";

const [issuer, clientId, secret, redirectUri, mode] = process.argv.slice(2);
const iss = new URL(issuer);
const insecure = { [oauth.allowInsecureRequests]: true };
const as = await oauth.processDiscoveryResponse(iss, await oauth.discoveryRequest(iss, { ...insecure, algorithm: "oauth2" }));
const client = { client_id: clientId };
const auth = secret === "-" ? oauth.None() : oauth.ClientSecretBasic(secret);

const out = { nonceRetries: 0, requirePAR: as.require_pushed_authorization_requests === true };
let DPoP;
if (mode === "dpop") {
	const keyPair = await oauth.generateKeyPair("ES256");
	DPoP = oauth.DPoP(client, keyPair);
	out.jkt = await thumbprint(keyPair);
}
const withNonceRetry = (send, process) => retry(out, "nonceRetries", send, process);

const verifier = oauth.generateRandomCodeVerifier();
const state = oauth.generateRandomState();
const params = new URLSearchParams({
	response_type: "code",
	redirect_uri: redirectUri,
	scope: "openid read",
	state,
	code_challenge: await oauth.calculatePKCECodeChallenge(verifier),
	code_challenge_method: "S256",
});
const pushed = await withNonceRetry(
	() => oauth.pushedAuthorizationRequest(as, client, auth, params, { ...insecure, DPoP }),
	(r) => oauth.processPushedAuthorizationResponse(as, client, r));
process.stdout.write(JSON.stringify({ requestUri: pushed.request_uri, expiresIn: pushed.expires_in, state, jkt: out.jkt,
	authorizationEndpoint: as.authorization_endpoint, requirePAR: out.requirePAR }) + "\n");

const rl = createInterface({ input: process.stdin });
const location = await new Promise((resolve) => rl.once("line", resolve));
rl.close();

const cb = oauth.validateAuthResponse(as, client, new URL(location), state);
const tok = await withNonceRetry(
	() => oauth.authorizationCodeGrantRequest(as, client, auth, cb, redirectUri, verifier, { ...insecure, DPoP }),
	(r) => oauth.processAuthorizationCodeResponse(as, client, r));
out.tokenType = tok.token_type;
out.accessToken = tok.access_token;
out.scope = tok.scope;
out.idToken = tok.id_token !== undefined;
process.stdout.write(JSON.stringify(out) + "\n");
