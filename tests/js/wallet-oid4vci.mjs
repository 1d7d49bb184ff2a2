// A wallet that knows nothing of certibloc: @openid4vc/openid4vci (the OpenWallet Foundation's
// oid4vc-ts) plays the holder through OpenID4VCI 1.0's pre-authorized code flow, with
// node:crypto for its keys and hashes.
//
//   node wallet-oid4vci.mjs < request.json
//
// request: {"offer": "openid-credential-offer://?credential_offer=…", "tx_code": "123456",
//           "configuration": "<credential_configuration_id>"  (default: the offer's first)}
// It resolves the offer, fetches the credential issuer's and the authorization server's
// metadata, trades the pre-authorized code and the transaction code for an access token, asks
// the nonce endpoint for a c_nonce, signs a key proof (openid4vci-proof+jwt) with a fresh
// Ed25519 key, and requests the credential. Prints one JSON line: {"ok": true, "credentials",
// "holder_key" (the private JWK, for the presentation that follows), "holder_public_key",
// "token_type", "authorization_servers"} or {"ok": false, "error"} (exit 1). The library refuses http issuers: the test
// serves https with a private CA, which Node trusts through NODE_EXTRA_CA_CERTS.
import { createHash, generateKeyPairSync, randomBytes, sign } from "node:crypto";
import { readFileSync } from "node:fs";
import { Openid4vciClient } from "@openid4vc/openid4vci";
import { clientAuthenticationAnonymous } from "@openid4vc/oauth2";

const request = JSON.parse(readFileSync(0, "utf8"));
const { publicKey, privateKey } = generateKeyPairSync("ed25519");
const publicJwk = publicKey.export({ format: "jwk" });
const b64url = (value) => Buffer.from(JSON.stringify(value)).toString("base64url");

const client = new Openid4vciClient({
  callbacks: {
    hash: (data, alg) => {
      if (alg !== "sha-256") throw new Error(`hash ${alg}`);
      return new Uint8Array(createHash("sha256").update(data).digest());
    },
    generateRandom: (n) => new Uint8Array(randomBytes(n)),
    clientAuthentication: clientAuthenticationAnonymous(),
    signJwt: async (signer, { header, payload }) => {
      if (signer.method !== "jwk") throw new Error(`signer ${signer.method}`);
      const input = `${b64url(header)}.${b64url(payload)}`;
      const signature = sign(null, Buffer.from(input), privateKey).toString("base64url");
      return { jwt: `${input}.${signature}`, signerJwk: signer.publicJwk };
    },
  },
});

try {
  const offer = await client.resolveCredentialOffer(request.offer);
  const issuerMetadata = await client.resolveIssuerMetadata(offer.credential_issuer);
  const configuration = request.configuration ?? offer.credential_configuration_ids[0];
  const { accessTokenResponse } = await client.retrievePreAuthorizedCodeAccessTokenFromOffer({
    credentialOffer: offer,
    issuerMetadata,
    txCode: request.tx_code,
  });
  const { c_nonce } = await client.requestNonce({ issuerMetadata });
  const { jwt } = await client.createCredentialRequestJwtProof({
    issuerMetadata,
    credentialConfigurationId: configuration,
    nonce: c_nonce,
    signer: { method: "jwk", alg: "EdDSA", publicJwk },
  });
  const { credentialResponse } = await client.retrieveCredentials({
    issuerMetadata,
    accessToken: accessTokenResponse.access_token,
    credentialConfigurationId: configuration,
    proofs: { jwt: [jwt] },
  });
  console.log(
    JSON.stringify({
      ok: true,
      configuration,
      token_type: accessTokenResponse.token_type,
      authorization_servers: issuerMetadata.authorizationServers.map((s) => s.issuer),
      credentials: credentialResponse.credentials.map((c) => c.credential),
      holder_key: privateKey.export({ format: "jwk" }),
      holder_public_key: publicJwk,
    }),
  );
} catch (e) {
  const detail = e?.errorResponse ?? e?.credentialErrorResponseResult ?? e?.response?.status;
  console.log(JSON.stringify({ ok: false, error: String(e?.message ?? e), detail: detail ?? null }));
  process.exit(1);
}
