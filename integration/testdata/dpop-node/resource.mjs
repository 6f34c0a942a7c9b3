// resource.mjs calls a resource behind oauth_protect with a DPoP-bound
// token, as a real third-party client does it: oauth4webapi gets the
// token with client_credentials (one use_dpop_nonce retry at the token
// endpoint), then calls the resource with protectedResourceRequest and
// the same DPoP handle, retrying once when the gate answers 401 with a
// DPoP challenge error="use_dpop_nonce" (the handle keeps the nonce per
// origin, and the gate is another origin). It prints one JSON object for
// integration/dpop_node_test.go, with the token so that the test can try
// it without the key.
//
//   node resource.mjs <issuer> <client_id> <client_secret> <resource URL>
import * as oauth from "oauth4webapi";
import { withNonceRetry as retry } from "./shared.mjs";

const [issuer, clientId, secret, resource] = process.argv.slice(2);
const iss = new URL(issuer);
const insecure = { [oauth.allowInsecureRequests]: true };
const as = await oauth.processDiscoveryResponse(iss, await oauth.discoveryRequest(iss, { ...insecure, algorithm: "oauth2" }));
const client = { client_id: clientId };
const auth = oauth.ClientSecretBasic(secret);
const DPoP = oauth.DPoP(client, await oauth.generateKeyPair("ES256"));

const out = { tokenNonceRetries: 0, resourceNonceRetries: 0 };
const withNonceRetry = (counter, send, process) => retry(out, counter, send, process);
const token = await withNonceRetry("tokenNonceRetries",
	() => oauth.clientCredentialsGrantRequest(as, client, auth, { scope: "read" }, { ...insecure, DPoP }),
	(r) => oauth.processClientCredentialsResponse(as, client, r));
out.tokenType = token.token_type;
out.accessToken = token.access_token;

const call = () => oauth.protectedResourceRequest(token.access_token, "GET", new URL(resource), new Headers(), null, { ...insecure, DPoP });
const res = await withNonceRetry("resourceNonceRetries", call, (r) => r);
out.status = res.status;
out.body = await res.text();
// A second call: the handle has the gate's nonce now, so no retry.
const again = await withNonceRetry("resourceNonceRetries", call, (r) => r);
out.againStatus = again.status;
process.stdout.write(JSON.stringify(out) + "\n");
