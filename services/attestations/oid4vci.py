"""OpenID4VCI 1.0, pre-authorized code flow: the service as credential issuer and as its own
authorization server, over the offers of domain/offers.py.

1. The candidate asks for an offer in their personal space (``Offers.create``): a
   ``CredentialOffer`` for one valid attestation, a pre-authorized code (256 bits) carried by
   the offer (QR code, ``openid-credential-offer://`` link) and a six-digit transaction code
   shown apart from it (README, "Put an attestation in a wallet").
2. The wallet trades the code and the transaction code for an access token (``Offers.token``):
   once, within ``OFFER_LIFETIME``, at most ``MAX_TX_CODE_FAILURES`` wrong transaction codes.
3. It gets a ``c_nonce`` (``Nonces``: stateless, an HMAC of its expiry, so an anonymous caller
   writes nothing), signs a key proof with it, and asks for the credential (``Offers.credential``)
   with the access token: the proof is checked (type, algorithm, signature by the ``jwk`` of its
   header, ``aud`` the issuer, ``iat`` recent, ``nonce`` ours, unexpired and unused by this
   offer) and the SD-JWT VC bound to that key (``cnf.jwk``).

``jwt_vc_json`` gives the attestation's stored ``vc+jwt`` (VC 2.0, VC-JOSE-COSE: what the
service signed at issuance) and ``ldp_vc`` its Data Integrity form; neither is bound to the
wallet's key (their credential subject is the candidate, named; a key proof, if sent, is
checked all the same). Errors are OAuth's (RFC 6749 §5.2, OpenID4VCI §6.3 and §8.3.1): JSON
``{"error", "error_description"}``, which these endpoints' clients expect, not problem+json.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any
from urllib.parse import quote
from uuid import UUID

from eventsourcing.persistence import IntegrityError
from joserfc import jws
from joserfc.errors import BadSignatureError, JoseError

from contracts.referential import load_all, load_certification
from services.attestations.application import AttestationsApp
from services.attestations.domain import sd_jwt
from services.attestations.domain.aggregates import Attestation, Holder
from services.attestations.domain.credential import CREDENTIAL_CONTEXT
from services.attestations.domain.jose import _public_key, _Registry
from services.attestations.domain.offers import (
    ACCESS_TOKEN_LIFETIME,
    MAX_TX_CODE_FAILURES,
    OFFER_LIFETIME,
    TX_CODE_DIGITS,
    CredentialOffer,
    digest,
    new_code,
    new_tx_code,
    tx_code_mac,
)
from services.attestations.sd_jwt_vc import FORMAT as SD_JWT_FORMAT
from services.attestations.sd_jwt_vc import KINDS, NotIssuable, issue_sd_jwt_vc, vct_url

PRE_AUTHORIZED_GRANT = "urn:ietf:params:oauth:grant-type:pre-authorized_code"
OFFER_SCHEME = "openid-credential-offer://"
PROOF_TYP = "openid4vci-proof+jwt"
PROOF_ALGS = ("EdDSA", "Ed25519", "ES256")
NONCE_LIFETIME_SECONDS = 300
PROOF_MAX_AGE_SECONDS = 300  # a proof's iat: at most this old…
PROOF_MAX_SKEW_SECONDS = 60  # …and at most this far in the future (clocks differ)
MAX_PROOF_CHARS = 4096
JWT_VC_JSON = "open_badge_jwt_vc_json"
LDP_VC = "open_badge_ldp_vc"
OB_TYPES = ["VerifiableCredential", "OpenBadgeCredential"]


class OAuthError(Exception):
    """An error of these endpoints, as OAuth words it."""

    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.error = error
        self.description = description

    def body(self) -> dict[str, str]:
        return {"error": self.error, "error_description": self.description}


def sd_jwt_configuration_id(certification: str, kind: str) -> str:
    return f"{certification}_{kind}_sd_jwt"


def _display(fr: str, en: str) -> list[dict[str, str]]:
    return [{"name": fr, "locale": "fr-FR"}, {"name": en, "locale": "en-GB"}]


@lru_cache(maxsize=4)
def issuer_metadata(base_url: str) -> dict[str, Any]:
    """``/.well-known/openid-credential-issuer``: every configuration the service offers."""
    configurations: dict[str, Any] = {}
    for cert in load_all():
        for kind in KINDS:
            what = ("Bloc de compétences", "Block of competences")
            if kind == "certification":
                what = ("Certification professionnelle", "Professional certification")
            configurations[sd_jwt_configuration_id(cert.code, kind)] = {
                "format": SD_JWT_FORMAT,
                "vct": vct_url(base_url, cert.code, kind),
                "cryptographic_binding_methods_supported": ["jwk"],
                "credential_signing_alg_values_supported": ["EdDSA"],
                "proof_types_supported": {
                    "jwt": {"proof_signing_alg_values_supported": list(PROOF_ALGS)}
                },
                "credential_metadata": {
                    "display": _display(
                        f"{what[0]} — {cert.title} ({cert.code})",
                        f"{what[1]} — {cert.title} ({cert.code})",
                    )
                },
            }
    configurations[JWT_VC_JSON] = {
        "format": "jwt_vc_json",
        "credential_definition": {"type": OB_TYPES},
        "credential_signing_alg_values_supported": ["EdDSA"],
        "credential_metadata": {
            "display": _display("Open Badge (vc+jwt, non lié)", "Open Badge (vc+jwt, unbound)")
        },
    }
    configurations[LDP_VC] = {
        "format": "ldp_vc",
        "credential_definition": {"@context": list(CREDENTIAL_CONTEXT), "type": OB_TYPES},
        "credential_signing_alg_values_supported": ["eddsa-rdfc-2022"],
        "credential_metadata": {
            "display": _display(
                "Open Badge (Data Integrity, non lié)", "Open Badge (Data Integrity, unbound)"
            )
        },
    }
    return {
        "credential_issuer": base_url,
        "credential_endpoint": f"{base_url}/oid4vci/credential",
        "nonce_endpoint": f"{base_url}/oid4vci/nonce",
        "display": [
            {"name": "certibloc — attestations", "locale": "fr-FR"},
            {"name": "certibloc — attestations", "locale": "en-GB"},
        ],
        "credential_configurations_supported": configurations,
    }


def authorization_server_metadata(base_url: str) -> dict[str, Any]:
    """``/.well-known/oauth-authorization-server`` (RFC 8414): the issuer is its own AS."""
    return {
        "issuer": base_url,
        "token_endpoint": f"{base_url}/oid4vci/token",
        "grant_types_supported": [PRE_AUTHORIZED_GRANT],
        "response_types_supported": [],
        "token_endpoint_auth_methods_supported": ["none"],
        "pre-authorized_grant_anonymous_access_supported": True,
    }


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class Nonces:
    """c_nonces without storage: ``<expiry>.<random>.<HMAC>``. Unforgeable and short-lived;
    single use is enforced by the offer that accepts a proof carrying it."""

    def __init__(self, key: bytes, clock: Callable[[], float] = time.time) -> None:
        self.key = key
        self.clock = clock

    def _mac(self, body: str) -> str:
        return _b64url(hmac.new(self.key, f"c_nonce:{body}".encode(), hashlib.sha256).digest())

    def new(self) -> str:
        body = f"{int(self.clock()) + NONCE_LIFETIME_SECONDS}.{secrets.token_urlsafe(16)}"
        return f"{body}.{self._mac(body)}"

    def valid(self, nonce: str) -> bool:
        expiry, _, rest = nonce.partition(".")
        random_part, _, mac = rest.partition(".")
        # compare_digest refuses non-ASCII text (TypeError): such a nonce is simply not ours.
        if not nonce.isascii() or not expiry.isdigit() or not random_part or len(nonce) > 128:
            return False
        if not hmac.compare_digest(mac, self._mac(f"{expiry}.{random_part}")):
            return False
        return self.clock() < int(expiry)


@dataclass(frozen=True)
class NewOffer:
    """What the candidate's page shows once: the offer (in the QR code and link) and, apart,
    its transaction code. Neither is stored in clear."""

    offer: CredentialOffer
    url: str
    tx_code: str


@dataclass(frozen=True)
class VerifiedProof:
    jwk: dict[str, str]
    nonce: str


def _now() -> datetime:
    return datetime.now(UTC)


class Offers:
    """The issuer's side of the exchange, over the attestations store (HTTP threads)."""

    def __init__(
        self,
        app: AttestationsApp,
        secret: bytes,
        data_integrity: Callable[[str], bytes],
        clock: Callable[[], datetime] = _now,
    ) -> None:
        self.app = app
        self.data_integrity = data_integrity  # the ldp_vc form of a stored vc+jwt
        # Keys derived from the service's token secret, one per use.
        self.tx_key = hmac.new(secret, b"oid4vci:tx_code", hashlib.sha256).digest()
        self.nonces = Nonces(
            hmac.new(secret, b"oid4vci:c_nonce", hashlib.sha256).digest(),
            lambda: clock().timestamp(),
        )
        self.clock = clock

    @property
    def issuer(self) -> str:
        return self.app.links.base_url

    # --- 1. the offer ------------------------------------------------------------------------

    def create(self, holder: Holder, attestation: Attestation) -> NewOffer:
        """An offer of one of the holder's valid attestations (the caller checked both)."""
        code, tx_code = new_code(), new_tx_code()
        now = self.clock()
        code_digest = digest(code)
        configurations = [
            sd_jwt_configuration_id(attestation.certification, attestation.kind),
            JWT_VC_JSON,
            LDP_VC,
        ]
        offer = CredentialOffer(
            code_digest=code_digest,
            tx_code_mac=tx_code_mac(self.tx_key, CredentialOffer.create_id(code_digest), tx_code),
            exam_center=holder.exam_center,
            candidate_number=holder.candidate_number,
            attestation_id=attestation.public_id,
            configuration_ids=configurations,
            created_at=now.isoformat(),
            expires_at=(now + OFFER_LIFETIME).isoformat(),
            links_epoch=holder.links_epoch,
        )
        self.app.save(offer)
        document = {
            "credential_issuer": self.issuer,
            "credential_configuration_ids": configurations,
            "grants": {
                PRE_AUTHORIZED_GRANT: {
                    "pre-authorized_code": code,
                    "tx_code": {
                        "input_mode": "numeric",
                        "length": TX_CODE_DIGITS,
                        "description": "Code à 6 chiffres affiché dans votre espace "
                        "(6-digit code shown in your space)",
                    },
                }
            },
        }
        compact = json.dumps(document, separators=(",", ":"), ensure_ascii=False)
        url = f"{OFFER_SCHEME}?credential_offer={quote(compact, safe='')}"
        return NewOffer(offer, url, tx_code)

    # --- 2. the token ------------------------------------------------------------------------

    def token(self, form: Mapping[str, str]) -> dict[str, Any]:
        grant_type = form.get("grant_type")
        if not grant_type:
            raise OAuthError(400, "invalid_request", "grant_type is required")
        if grant_type != PRE_AUTHORIZED_GRANT:
            raise OAuthError(
                400, "unsupported_grant_type", f"only {PRE_AUTHORIZED_GRANT} is supported"
            )
        code = form.get("pre-authorized_code")
        if not code:
            raise OAuthError(400, "invalid_request", "pre-authorized_code is required")
        tx_code = form.get("tx_code")
        if not tx_code:
            # OpenID4VCI §6.3: a missing tx_code when the offer asked for one.
            raise OAuthError(400, "invalid_request", "tx_code is required for this offer")
        offer = self._offer(code)
        if offer is None:
            raise OAuthError(400, "invalid_grant", "unknown pre-authorized code")
        holder = self.app.holder(offer.exam_center, offer.candidate_number)
        now = self.clock()
        why = offer.redeemable(now, holder.links_epoch if holder else -1)
        if why is not None:
            raise OAuthError(400, "invalid_grant", why)
        # The try is recorded (and must win its save) before the code is compared: a batch
        # of concurrent guesses gets one comparison, the others "try again" (uncounted, but
        # uncompared too).
        offer.try_tx_code(at=now.isoformat())
        self._save(offer, "invalid_grant")
        if len(tx_code) > 64 or not offer.tx_code_matches(self.tx_key, tx_code):
            left = MAX_TX_CODE_FAILURES - offer.tx_code_failures
            raise OAuthError(
                400,
                "invalid_grant",
                f"wrong transaction code ({left} attempt(s) left)"
                if left
                else "wrong transaction code: this offer is now void",
            )
        access_token = f"{offer.id.hex}.{new_code()}"
        expires = now + ACCESS_TOKEN_LIFETIME
        offer.redeem(
            at=now.isoformat(),
            token_digest=digest(access_token),
            token_expires_at=expires.isoformat(),
        )
        self._save(offer, "invalid_grant")  # two redemptions at once: one wins
        return {
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": int(ACCESS_TOKEN_LIFETIME.total_seconds()),
        }

    def _save(self, offer: CredentialOffer, error: str) -> None:
        """Saved, or refused when another request changed the offer meanwhile (a second
        redemption, a second issuance racing this one): nothing of this one is recorded."""
        try:
            self.app.save(offer)
        except IntegrityError:
            raise OAuthError(400, error, "this offer changed meanwhile: try again") from None

    def _offer(self, code: str) -> CredentialOffer | None:
        if len(code) > 128:
            return None
        return self.app.get_optional(CredentialOffer.create_id(digest(code)), CredentialOffer)

    # --- 3. the credential -------------------------------------------------------------------

    def nonce(self) -> dict[str, Any]:
        return {"c_nonce": self.nonces.new()}

    def authorized(self, authorization: str | None) -> CredentialOffer:
        """The offer a ``Bearer`` access token opens; OAuthError 401 invalid_token otherwise."""
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise OAuthError(401, "invalid_token", "a Bearer access token is required")
        token = token.strip()
        offer_hex, _, _ = token.partition(".")
        try:
            offer_uuid = UUID(hex=offer_hex) if len(offer_hex) == 32 else None
        except ValueError:
            offer_uuid = None
        offer = self.app.get_optional(offer_uuid, CredentialOffer) if offer_uuid else None
        if offer is None or not offer.authorizes(token, self.clock()):
            raise OAuthError(401, "invalid_token", "unknown or expired access token")
        # Revoking the candidate's personal links (a mailbox taken over) ends the access
        # tokens of the offers made with them at once, not when they expire.
        holder = self.app.holder(offer.exam_center, offer.candidate_number)
        if holder is None or holder.links_epoch != offer.links_epoch:
            raise OAuthError(401, "invalid_token", "this access token was withdrawn")
        return offer

    def credential(self, offer: CredentialOffer, request: Any) -> dict[str, Any]:
        if not isinstance(request, dict):
            raise OAuthError(400, "invalid_credential_request", "the body is a JSON object")
        configuration_id = request.get("credential_configuration_id")
        if not isinstance(configuration_id, str):
            what = "credential_identifier" if "credential_identifier" in request else None
            raise OAuthError(
                400,
                "invalid_credential_request" if what is None else "unknown_credential_identifier",
                "credential_configuration_id is required"
                if what is None
                else "this issuer gives no credential identifiers",
            )
        if configuration_id not in offer.configuration_ids:
            raise OAuthError(
                400,
                "unknown_credential_configuration",
                f"{configuration_id!r} is not among this offer's configurations",
            )
        if configuration_id in offer.issued:
            raise OAuthError(400, "credential_request_denied", "this credential was already issued")
        proofs = request.get("proofs")
        if "proof" in request:
            raise OAuthError(400, "invalid_credential_request", "use proofs, not proof")
        bound = configuration_id not in (JWT_VC_JSON, LDP_VC)
        verified: VerifiedProof | None = None
        if proofs is not None or bound:
            verified = self._proof(offer, proofs)
        attestation = self.app.attestation(offer.attestation_id)
        if attestation is None or attestation.status != "valid":
            raise OAuthError(
                400, "credential_request_denied", "this attestation is no longer in force"
            )
        issued: Any
        if configuration_id == JWT_VC_JSON:
            issued = attestation.credential
        elif configuration_id == LDP_VC:
            issued = json.loads(self.data_integrity(attestation.credential))
        else:
            assert verified is not None
            try:
                issued = issue_sd_jwt_vc(self.app, attestation, holder_jwk=verified.jwk)
            except NotIssuable:
                raise OAuthError(
                    400, "credential_request_denied", "this attestation is no longer in force"
                ) from None
        offer.record_issuance(
            at=self.clock().isoformat(),
            configuration_id=configuration_id,
            nonce_digest=digest(verified.nonce) if verified else None,
        )
        self._save(offer, "credential_request_denied")
        return {"credentials": [{"credential": issued}]}

    def _proof(self, offer: CredentialOffer, proofs: Any) -> VerifiedProof:
        if not isinstance(proofs, dict) or set(proofs) != {"jwt"}:
            raise OAuthError(400, "invalid_proof", 'proofs must be {"jwt": [<key proof>]}')
        jwts = proofs["jwt"]
        if not isinstance(jwts, list) or len(jwts) != 1 or not isinstance(jwts[0], str):
            raise OAuthError(400, "invalid_proof", "one key proof JWT (no batch issuance)")
        proof = verify_key_proof(jwts[0], audience=self.issuer, now=self.clock().timestamp())
        if not self.nonces.valid(proof.nonce):
            raise OAuthError(400, "invalid_nonce", "the proof's nonce is not a valid c_nonce")
        if digest(proof.nonce) in offer.used_nonces:
            raise OAuthError(400, "invalid_nonce", "this c_nonce was already used")
        return proof


def _json_segment(segment: str) -> Any:
    try:
        return json.loads(sd_jwt.b64url_decode(segment))
    except (ValueError, RecursionError):
        raise OAuthError(400, "invalid_proof", "the key proof is not a JWT") from None


def verify_key_proof(token: str, *, audience: str, now: float) -> VerifiedProof:
    """A key proof JWT (OpenID4VCI §8.2.1.1, Appendix F.1) signed by the key in its header's
    ``jwk``; OAuthError invalid_proof naming what fails."""
    if len(token) > MAX_PROOF_CHARS or token.count(".") != 2:
        raise OAuthError(400, "invalid_proof", "the key proof is not a compact JWS")
    head, body, _ = token.split(".")
    header, payload = _json_segment(head), _json_segment(body)
    if not isinstance(header, dict) or not isinstance(payload, dict):
        raise OAuthError(400, "invalid_proof", "the key proof is not a JWT")
    if header.get("typ") != PROOF_TYP:
        raise OAuthError(400, "invalid_proof", f"typ must be {PROOF_TYP}")
    alg = header.get("alg")
    if alg not in PROOF_ALGS:
        raise OAuthError(400, "invalid_proof", f"alg must be one of {', '.join(PROOF_ALGS)}")
    if "kid" in header or "x5c" in header:
        raise OAuthError(400, "invalid_proof", "the holder key is given as a jwk (no kid, x5c)")
    jwk = header.get("jwk")
    if not isinstance(jwk, dict):
        raise OAuthError(400, "invalid_proof", "the header carries the holder's public jwk")
    try:
        public = sd_jwt.holder_public_jwk(jwk)
    except ValueError as error:
        raise OAuthError(400, "invalid_proof", str(error)) from None
    expected = {"OKP": ("EdDSA", "Ed25519"), "EC": ("ES256",)}[public["kty"]]
    if alg not in expected:
        raise OAuthError(400, "invalid_proof", f"alg {alg} does not fit a {public['crv']} key")
    key = _public_key(public["kty"], public["crv"], public["x"], public.get("y"))
    try:
        jws.deserialize_compact(
            token, key, registry=_Registry(algorithms=[str(alg)], strict_check_header=False)
        )
    except BadSignatureError:
        raise OAuthError(400, "invalid_proof", "the proof's signature does not verify") from None
    except (JoseError, ValueError):
        raise OAuthError(400, "invalid_proof", "malformed key proof") from None
    aud = payload.get("aud")
    if aud != audience and not (isinstance(aud, list) and audience in aud):
        raise OAuthError(400, "invalid_proof", "aud must be the credential issuer")
    iat = payload.get("iat")
    if not isinstance(iat, int | float) or isinstance(iat, bool):
        raise OAuthError(400, "invalid_proof", "iat is required")
    if iat < now - PROOF_MAX_AGE_SECONDS or iat > now + PROOF_MAX_SKEW_SECONDS:
        raise OAuthError(400, "invalid_proof", "iat is not recent")
    nonce = payload.get("nonce")
    if not isinstance(nonce, str) or not nonce:
        raise OAuthError(400, "invalid_nonce", "the key proof carries no c_nonce")
    return VerifiedProof(public, nonce)


def offerable(attestation: Attestation) -> bool:
    """Whether a wallet can be offered this attestation now."""
    if attestation.status != "valid":
        return False
    try:
        load_certification(attestation.certification)
    except KeyError:
        return False
    return True
