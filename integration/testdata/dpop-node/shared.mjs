// shared.mjs holds what the client scripts of this folder have in common.
import * as oauth from "oauth4webapi";
import { createHash, webcrypto } from "node:crypto";

// withNonceRetry sends a request and, on use_dpop_nonce, once more (the
// DPoP handle has kept the server's DPoP-Nonce by then), counting the
// retries in out[counter].
export const withNonceRetry = async (out, counter, send, process) => {
	try {
		return await process(await send());
	} catch (err) {
		if (!oauth.isDPoPNonceError(err)) throw err;
		out[counter]++;
		return await process(await send());
	}
};

// thumbprint is the RFC 7638 thumbprint of an EC key pair's public key,
// for the tests to compare with cnf.jkt.
export const thumbprint = async (keyPair) => {
	const jwk = await webcrypto.subtle.exportKey("jwk", keyPair.publicKey);
	return createHash("sha256").update(JSON.stringify({ crv: jwk.crv, kty: jwk.kty, x: jwk.x, y: jwk.y })).digest("base64url");
};
