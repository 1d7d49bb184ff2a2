// A Data Integrity verifier that knows nothing of certibloc: @digitalbazaar/vc with the
// eddsa-rdfc-2022 cryptosuite (@digitalbazaar/data-integrity) checks the embedded proof, that
// its verificationMethod is an assertionMethod of the issuer's DID document (did:web, resolved
// over https) and, through @digitalbazaar/vc-bitstring-status-list, the credential's status:
// the status list credential is fetched (as JSON-LD) and its own proof verified the same way.
//
//   node verify-di.mjs < credential.jsonld
//
// Prints one JSON line: {"verified": true, "revoked": false, "verificationMethod", "id"} or
// {"verified": false, "error", "message"} (exit 1). JSON-LD contexts come from the service's
// vendored copies only (nothing else is fetched but the DID document and the status list);
// the https certificate is checked as usual: a test's private CA comes in NODE_EXTRA_CA_CERTS.
import { readFileSync } from "node:fs";
import { get } from "node:https";
import * as vc from "@digitalbazaar/vc";
import { DataIntegrityProof } from "@digitalbazaar/data-integrity";
import { cryptosuite as eddsaRdfc2022 } from "@digitalbazaar/eddsa-rdfc-2022-cryptosuite";
import { checkStatus } from "@digitalbazaar/vc-bitstring-status-list";

const CONTEXTS_DIR = new URL("../../services/attestations/contexts/", import.meta.url);
const CONTEXTS = {
  "https://www.w3.org/ns/credentials/v2": "credentials-v2.jsonld",
  "https://purl.imsglobal.org/spec/ob/v3p0/context-3.0.3.json": "ob-v3p0-context-3.0.3.json",
};

function fail(error, message) {
  console.log(JSON.stringify({ verified: false, error, message }));
  process.exit(1);
}

function fetchJson(url, accept) {
  return new Promise((resolve, reject) => {
    const request = get(url, { headers: { accept } }, (response) => {
      const chunks = [];
      response.on("data", (chunk) => chunks.push(chunk));
      response.on("end", () => {
        if (response.statusCode !== 200) {
          reject(new Error(`GET ${url}: HTTP ${response.statusCode}`));
          return;
        }
        try {
          resolve(JSON.parse(Buffer.concat(chunks).toString("utf8")));
        } catch (e) {
          reject(new Error(`GET ${url}: not JSON (${e.message})`));
        }
      });
    });
    request.on("error", reject);
  });
}

// did:web:host%3Aport[:path] -> https://host:port/.well-known/did.json (did:web, "Read")
function didWebUrl(did) {
  const [host, ...path] = did.slice("did:web:".length).split(":");
  const where = path.length ? path.map(decodeURIComponent).join("/") : ".well-known";
  return `https://${decodeURIComponent(host)}/${where}/did.json`;
}

async function documentLoader(url) {
  if (CONTEXTS[url]) {
    const document = JSON.parse(readFileSync(new URL(CONTEXTS[url], CONTEXTS_DIR), "utf8"));
    return { contextUrl: null, documentUrl: url, document };
  }
  if (url.startsWith("did:web:")) {
    const [did, fragment] = url.split("#");
    const didDocument = await fetchJson(didWebUrl(did), "application/did+json");
    if (didDocument.id !== did) throw new Error(`DID document ${didDocument.id} is not ${did}`);
    if (fragment === undefined) return { contextUrl: null, documentUrl: url, document: didDocument };
    const method = (didDocument.verificationMethod || []).find(
      (m) => m.id === url || m.id === `#${fragment}`,
    );
    if (!method) throw new Error(`no verification method ${url} in ${did}`);
    return { contextUrl: null, documentUrl: url, document: method };
  }
  if (url.startsWith("https://")) {
    // A status list credential: its Data Integrity form, by content negotiation.
    const document = await fetchJson(url, "application/vc+ld+json");
    return { contextUrl: null, documentUrl: url, document };
  }
  throw new Error(`document loader: refusing ${url}`);
}

let credential;
try {
  credential = JSON.parse(readFileSync(0, "utf8"));
} catch (e) {
  fail("format", String(e));
}
const suite = new DataIntegrityProof({ cryptosuite: eddsaRdfc2022 });
let result;
try {
  result = await vc.verifyCredential({ credential, suite, documentLoader, checkStatus });
} catch (e) {
  fail(e.name || "error", String(e));
}
if (!result.verified) {
  const errors = [result.error, ...(result.results || []).map((r) => r.error)].filter(Boolean);
  const status = result.statusResult?.error;
  const first = status || errors[0] || {};
  const nested = first.errors ? first.errors[0] : first;
  fail(nested?.name || "notVerified", String(nested?.message || JSON.stringify(result)));
}
const proof = Array.isArray(credential.proof) ? credential.proof[0] : credential.proof;
const statuses = result.statusResult?.results || [result.statusResult];
console.log(
  JSON.stringify({
    verified: true,
    revoked: statuses.some((s) => s && s.status === true),
    statusVerified: Boolean(result.statusResult?.verified),
    verificationMethod: proof.verificationMethod,
    id: credential.id,
  }),
);
