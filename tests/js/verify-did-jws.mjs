// A verifier that knows nothing of certibloc: it resolves the JWS's kid as a DID URL
// (did-resolver + web-did-resolver: did:web:host%3Aport -> https://host:port/.well-known/did.json),
// takes the verification method it names from the DID document, and checks the signature with
// npm jose (compactVerify), then iss and jti as a JWT verifier would (jwtVerify).
//
//   node verify-did-jws.mjs < token.vc.jwt
//
// Prints one JSON line: {"verified": true, kid, did, iss, jti, id} or {"verified": false,
// "error", "message"} (exit 1). The https certificate is checked as usual: a test's private CA
// comes in through NODE_EXTRA_CA_CERTS.
import { readFileSync } from "node:fs";
import { Resolver, parse } from "did-resolver";
import { getResolver } from "web-did-resolver";
import { compactVerify, decodeProtectedHeader, importJWK, jwtVerify } from "jose";

function fail(error, message) {
  console.log(JSON.stringify({ verified: false, error, message }));
  process.exit(1);
}

const token = readFileSync(0, "utf8").trim();
let header;
try {
  header = decodeProtectedHeader(token);
} catch (e) {
  fail("format", String(e));
}
const kid = header.kid;
// VC-JOSE-COSE: without iss and with a URL issuer, the kid MUST be an absolute URL to a
// verification method: here a DID URL with a fragment.
const parsed = typeof kid === "string" ? parse(kid) : null;
if (!parsed || !parsed.fragment) fail("invalidDid", `kid ${JSON.stringify(kid)} is not a resolvable DID URL`);

const resolver = new Resolver(getResolver());
const resolution = await resolver.resolve(kid);
if (resolution.didResolutionMetadata.error || !resolution.didDocument) {
  fail("notFound", `${resolution.didResolutionMetadata.error}: ${resolution.didResolutionMetadata.message}`);
}
const document = resolution.didDocument;
if (document.id !== parsed.did) fail("invalidDid", `DID document ${document.id} is not ${parsed.did}`);
const sameMethod = (m) => m === kid || m === `#${parsed.fragment}`;
const method = (document.verificationMethod || []).find((m) => sameMethod(m.id));
if (!method || !method.publicKeyJwk) fail("notFound", `no verification method ${kid} with a publicKeyJwk`);
const assertion = (document.assertionMethod || []).some((m) => sameMethod(typeof m === "string" ? m : m.id));
if (!assertion) fail("notAssertionMethod", `${kid} is not an assertionMethod of ${parsed.did}`);

let key;
try {
  key = await importJWK(method.publicKeyJwk, header.alg);
} catch (e) {
  fail("invalidKey", String(e));
}
let payload;
try {
  const verified = await compactVerify(token, key);
  payload = JSON.parse(new TextDecoder().decode(verified.payload));
} catch (e) {
  fail(e.code || "signature", String(e));
}
try {
  // What did-jwt and JWT-based Open Badges verifiers check next: the typ and the issuer.
  await jwtVerify(token, key, { issuer: parsed.did, typ: "vc+jwt" });
} catch (e) {
  fail(e.code || "claims", String(e));
}
const issuer = typeof payload.issuer === "string" ? payload.issuer : payload.issuer?.id;
if (payload.iss !== issuer) fail("claims", `iss ${payload.iss} is not the issuer ${issuer}`);
if (payload.jti !== payload.id) fail("claims", `jti ${payload.jti} is not the credential id ${payload.id}`);
console.log(JSON.stringify({ verified: true, kid, did: parsed.did, iss: payload.iss, jti: payload.jti, id: payload.id }));
