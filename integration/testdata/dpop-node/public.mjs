// public.mjs is a public client (a single-page or native app) using
// oauth4webapi with DPoP: it binds its authorization code to its key
// (dpop_jkt), redeems the code and refreshes with proofs of that key
// (retrying once on use_dpop_nonce each time), and then shows that its
// refresh token is useless with another key. It prints the PKCE
// challenge, the state and the key's thumbprint as one JSON line, reads
// the redirect URL (with the code) from stdin, and prints the results
// as a second JSON line, for integration/dpop_node_test.go.
//
//   node public.mjs <issuer> <client_id> <redirect_uri>
import * as oauth from "oauth4webapi";
import { createInterface } from "node:readline";
import { thumbprint, withNonceRetry as retry } from "./shared.mjs";

const [issuer, clientId, redirectUri] = process.argv.slice(2);
const iss = new URL(issuer);
const insecure = { [oauth.allowInsecureRequests]: true };
const as = await oauth.processDiscoveryResponse(iss, await oauth.discoveryRequest(iss, { ...insecure, algorithm: "oauth2" }));
const client = { client_id: clientId };
const auth = oauth.None();

const keyPair = await oauth.generateKeyPair("ES256");
const DPoP = oauth.DPoP(client, keyPair);
const verifier = oauth.generateRandomCodeVerifier();
const state = oauth.generateRandomState();
const jkt = await thumbprint(keyPair);
process.stdout.write(JSON.stringify({ challenge: await oauth.calculatePKCECodeChallenge(verifier), state, jkt }) + "\n");

const rl = createInterface({ input: process.stdin });
const location = await new Promise((resolve) => rl.once("line", resolve));
rl.close();

const out = { jkt, nonceRetries: 0 };
const withNonceRetry = (send, process) => retry(out, "nonceRetries", send, process);
const params = oauth.validateAuthResponse(as, client, new URL(location), state);
const first = await withNonceRetry(
	() => oauth.authorizationCodeGrantRequest(as, client, auth, params, redirectUri, verifier, { ...insecure, DPoP }),
	(r) => oauth.processAuthorizationCodeResponse(as, client, r));
out.codeTokenType = first.token_type;
out.codeAccessToken = first.access_token;

const second = await withNonceRetry(
	() => oauth.refreshTokenGrantRequest(as, client, auth, first.refresh_token, { ...insecure, DPoP }),
	(r) => oauth.processRefreshTokenResponse(as, client, r));
out.refreshTokenType = second.token_type;
out.refreshAccessToken = second.access_token;

// The rotated refresh token with another key: refused.
const thief = oauth.DPoP(client, await oauth.generateKeyPair("ES256"));
try {
	await withNonceRetry(
		() => oauth.refreshTokenGrantRequest(as, client, auth, second.refresh_token, { ...insecure, DPoP: thief }),
		(r) => oauth.processRefreshTokenResponse(as, client, r));
	out.otherKeyError = "none: the refresh succeeded";
} catch (err) {
	out.otherKeyError = err.error ?? String(err);
}
process.stdout.write(JSON.stringify(out) + "\n");
