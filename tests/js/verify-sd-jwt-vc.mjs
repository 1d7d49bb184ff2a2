// An SD-JWT VC verifier and holder that knows nothing of certibloc: @sd-jwt/sd-jwt-vc (the
// OpenWallet Foundation's implementation) with node:crypto. The issuer's key is found from the
// kid of the JWS it is asked to check, resolved as a DID URL (did-resolver + web-did-resolver:
// did:web:host%3Aport -> https://host:port/.well-known/did.json), and `iss` must be that DID;
// the same for the Token Status List token the library fetches from status.status_list.uri
// (it refuses a status other than 0); the type metadata is fetched from the vct URL.
//
//   node verify-sd-jwt-vc.mjs < request.json
//
// request: {"credential": "<JWT>~<D>~…~", "mode": "verify" | "present",
//           "disclose": {"bloc": true}   (present: the presentation frame),
//           "holder_key": <private JWK>  (present: sign a KB-JWT with it),
//           "aud", "nonce"               (the KB-JWT's, checked when verifying it)}
// Prints one JSON line: {"verified": true, "claims", "kb", "type_metadata", "presentation"?}
// or {"verified": false, "error"} (exit 1). A test's private CA comes in through
// NODE_EXTRA_CA_CERTS.
import { createPrivateKey, createPublicKey, sign, verify } from "node:crypto";
import { readFileSync } from "node:fs";
import { SDJwtVcInstance } from "@sd-jwt/sd-jwt-vc";
import { digest, generateSalt } from "@sd-jwt/crypto-nodejs";
import { Resolver, parse } from "did-resolver";
import { getResolver } from "web-did-resolver";

const request = JSON.parse(readFileSync(0, "utf8"));
const resolver = new Resolver(getResolver());
const part = (jws, i) => JSON.parse(Buffer.from(jws.split(".")[i], "base64url").toString("utf8"));

// Verifier callback: (signing input, signature) of the issuer-signed JWT or of the status list.
async function issuerVerifier(data, signature) {
  const header = part(data, 0);
  const payload = part(data, 1);
  const parsed = typeof header.kid === "string" ? parse(header.kid) : null;
  if (!parsed || !parsed.fragment) throw new Error(`kid ${header.kid} is not a DID URL`);
  if (payload.iss !== parsed.did) throw new Error(`iss ${payload.iss} is not ${parsed.did}`);
  const { didDocument, didResolutionMetadata } = await resolver.resolve(header.kid);
  if (!didDocument) throw new Error(`DID resolution: ${didResolutionMetadata.error}`);
  const same = (m) => (typeof m === "string" ? m : m.id) === header.kid;
  const method = (didDocument.verificationMethod || []).find(same);
  if (!method?.publicKeyJwk || !(didDocument.assertionMethod || []).some(same)) {
    throw new Error(`${header.kid} is not an assertion method of ${parsed.did}`);
  }
  if (header.alg !== "EdDSA" && header.alg !== "Ed25519") throw new Error(`alg ${header.alg}`);
  const key = createPublicKey({ key: method.publicKeyJwk, format: "jwk" });
  return verify(null, Buffer.from(data), key, Buffer.from(signature, "base64url"));
}

// The holder key the issuer bound the credential to (cnf.jwk) verifies the KB-JWT.
function kbVerifier(data, signature, payload) {
  if (!payload.cnf?.jwk) throw new Error("no cnf.jwk in the credential");
  const key = createPublicKey({ key: payload.cnf.jwk, format: "jwk" });
  return verify(null, Buffer.from(data), key, Buffer.from(signature, "base64url"));
}

const holderKey = request.holder_key ? createPrivateKey({ key: request.holder_key, format: "jwk" }) : null;
const sdjwt = new SDJwtVcInstance({
  hasher: digest,
  saltGenerator: generateSalt,
  verifier: issuerVerifier,
  statusVerifier: issuerVerifier,
  kbVerifier,
  kbSigner: (data) => sign(null, Buffer.from(data), holderKey).toString("base64url"),
  kbSignAlg: "EdDSA",
  loadTypeMetadataFormat: true,
});

function summary(result) {
  const metadata = result.typeMetadata?.mergedTypeMetadata;
  return {
    claims: result.payload,
    kb: result.kb?.payload ?? null,
    type_metadata: metadata
      ? { vct: metadata.vct, display: metadata.display, claims: metadata.claims?.length ?? 0 }
      : null,
  };
}

try {
  const options = request.nonce ? { keyBindingNonce: request.nonce } : undefined;
  if (request.mode === "present") {
    const issued = await sdjwt.verify(request.credential); // as the holder receives it
    const kb = holderKey
      ? { kb: { payload: { iat: Math.floor(Date.now() / 1000), aud: request.aud, nonce: request.nonce } } }
      : undefined;
    const presentation = await sdjwt.present(request.credential, request.disclose, kb);
    const shown = await sdjwt.verify(presentation, options); // as a verifier receives it
    console.log(JSON.stringify({ verified: true, issued_claims: Object.keys(issued.payload), presentation, ...summary(shown) }));
  } else {
    console.log(JSON.stringify({ verified: true, ...summary(await sdjwt.verify(request.credential, options)) }));
  }
} catch (e) {
  console.log(JSON.stringify({ verified: false, error: String(e?.message ?? e) }));
  process.exit(1);
}
