// client.mjs is a real third-party DPoP client: oauth4webapi (by the
// author of openid-client v6) discovers the server, gets a DPoP-bound
// token with client_credentials (retrying once on use_dpop_nonce, as
// the library documents), and introspects it. It prints one JSON object
// for integration/dpop_node_test.go to check.
//
//   node client.mjs <issuer> <client_id> <client_secret>
import * as oauth from "oauth4webapi";
import { thumbprint, withNonceRetry } from "./shared.mjs";

const [issuer, clientId, secret] = process.argv.slice(2);
const iss = new URL(issuer);
// The test server speaks plain HTTP on loopback.
const insecure = { [oauth.allowInsecureRequests]: true };

const as = await oauth.processDiscoveryResponse(iss, await oauth.discoveryRequest(iss, { ...insecure, algorithm: "oauth2" }));
const client = { client_id: clientId };
const auth = oauth.ClientSecretBasic(secret);
const keyPair = await oauth.generateKeyPair("ES256");
const DPoP = oauth.DPoP(client, keyPair);

const out = { nonceRetries: 0, dpopAlgs: as.dpop_signing_alg_values_supported };
const request = () => oauth.clientCredentialsGrantRequest(as, client, auth, { scope: "read" }, { ...insecure, DPoP });
const token = await withNonceRetry(out, "nonceRetries", request, (r) => oauth.processClientCredentialsResponse(as, client, r));
out.tokenType = token.token_type;
out.accessToken = token.access_token;

const intro = await oauth.processIntrospectionResponse(as, client,
	await oauth.introspectionRequest(as, client, auth, token.access_token, insecure));
out.introspection = intro;

out.jkt = await thumbprint(keyPair);
process.stdout.write(JSON.stringify(out) + "\n");
