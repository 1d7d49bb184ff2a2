"""OpenID4VCI routes (services/attestations/oid4vci.py): the issuer's and authorization server's
metadata, /oid4vci/token, /oid4vci/nonce, /oid4vci/credential, and the personal space's form
that makes an offer (``POST /space/wallet-offers``: a page with its QR code, its link and,
apart, its transaction code).

The three OpenID4VCI endpoints answer their errors as OAuth does (``application/json``
``{"error", "error_description"}``, 400, or 401 with ``WWW-Authenticate: Bearer
error="invalid_token"``): that is what the wallets read (RFC 6749 §5.2, RFC 6750 §3,
OpenID4VCI §6.3, §8.3.1), so not the problem+json of the rest of the API. Their bodies are read
here, not by FastAPI's validation, so that a malformed request gets an OAuth error too.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import parse_qsl, urlencode

from fastapi import APIRouter, Form, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, RedirectResponse, Response

from services.attestations.api.data_integrity import data_integrity_forms
from services.attestations.api.routes import PRIVATE, Context, Ctx, Lang
from services.attestations.api.space import (
    PAGE_TZ,
    FormToken,
    PublicId,
    SpaceToken,
    _holder_of,
    _lang_param,
    qr_svg,
)
from services.attestations.oid4vci import (
    OAuthError,
    Offers,
    authorization_server_metadata,
    issuer_metadata,
    offerable,
)
from services.runtime import i18n
from services.runtime.http import read_capped
from services.runtime.problems import Forbidden

router = APIRouter()

NO_STORE = {"Cache-Control": "no-store"}
MAX_REQUEST_BYTES = 16 * 1024  # a token or credential request is a few hundred bytes


def offers(request: Request, c: Context) -> Offers:
    return Offers(c.app, c.download_secret, data_integrity_forms(request).of)


def _oauth_error(error: OAuthError) -> JSONResponse:
    headers = dict(NO_STORE)
    if error.status == 401:
        headers["WWW-Authenticate"] = f'Bearer error="{error.error}"'
    return JSONResponse(error.body(), status_code=error.status, headers=headers)


@router.get(
    "/.well-known/openid-credential-issuer",
    tags=["OpenID4VCI"],
    summary="Métadonnées de l'émetteur OpenID4VCI (configurations dc+sd-jwt, jwt_vc_json, ldp_vc)",
)
def credential_issuer_metadata(c: Ctx) -> JSONResponse:
    document = issuer_metadata(c.app.links.base_url)
    return JSONResponse(document, headers={"Cache-Control": "public, max-age=300"})


@router.get(
    "/.well-known/oauth-authorization-server",
    tags=["OpenID4VCI"],
    summary="Métadonnées du serveur d'autorisation (RFC 8414) : le code pré-autorisé",
)
def oauth_metadata(c: Ctx) -> JSONResponse:
    document = authorization_server_metadata(c.app.links.base_url)
    return JSONResponse(document, headers={"Cache-Control": "public, max-age=300"})


async def _body(request: Request) -> bytes:
    too_large = OAuthError(400, "invalid_request", "request too large")
    return await read_capped(request, MAX_REQUEST_BYTES, too_large)


@router.post(
    "/oid4vci/token",
    tags=["OpenID4VCI"],
    summary="Jeton d'accès contre le code pré-autorisé et le code de transaction (formulaire)",
    response_class=Response,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/x-www-form-urlencoded": {
                    "schema": {
                        "type": "object",
                        "required": ["grant_type", "pre-authorized_code", "tx_code"],
                        "properties": {
                            "grant_type": {"type": "string"},
                            "pre-authorized_code": {"type": "string"},
                            "tx_code": {"type": "string"},
                        },
                    }
                }
            },
        }
    },
)
async def token(request: Request, c: Ctx) -> Response:
    try:
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type != "application/x-www-form-urlencoded":
            raise OAuthError(400, "invalid_request", "a form body (x-www-form-urlencoded)")
        try:
            pairs = parse_qsl((await _body(request)).decode(), keep_blank_values=True)
        except UnicodeDecodeError:
            raise OAuthError(400, "invalid_request", "the form is not UTF-8") from None
        fields = dict(pairs)
        if len(fields) != len(pairs):  # RFC 6749 §3.1: no parameter twice
            raise OAuthError(400, "invalid_request", "a parameter is repeated")
        answer = await run_in_threadpool(offers(request, c).token, fields)
    except OAuthError as error:
        return _oauth_error(error)
    return JSONResponse(answer, headers={**NO_STORE, "Pragma": "no-cache"})


@router.post(
    "/oid4vci/nonce",
    tags=["OpenID4VCI"],
    summary="Un c_nonce neuf pour la preuve de possession de clé (5 minutes)",
)
def nonce(request: Request, c: Ctx) -> JSONResponse:
    return JSONResponse(offers(request, c).nonce(), headers=NO_STORE)


@router.post(
    "/oid4vci/credential",
    tags=["OpenID4VCI"],
    summary="Le justificatif (jeton d'accès Bearer ; preuve de possession de clé jwt)",
    response_class=Response,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "required": ["credential_configuration_id"],
                        "properties": {
                            "credential_configuration_id": {"type": "string"},
                            "proofs": {
                                "type": "object",
                                "properties": {
                                    "jwt": {"type": "array", "items": {"type": "string"}}
                                },
                            },
                        },
                    }
                }
            },
        }
    },
)
async def credential(request: Request, c: Ctx) -> Response:
    issuer = offers(request, c)
    try:
        offer = await run_in_threadpool(issuer.authorized, request.headers.get("authorization"))
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type != "application/json":
            raise OAuthError(400, "invalid_credential_request", "the body is application/json")
        try:
            body: Any = json.loads(await _body(request))
        except (ValueError, RecursionError):
            raise OAuthError(400, "invalid_credential_request", "the body is not JSON") from None
        answer = await run_in_threadpool(issuer.credential, offer, body)
    except OAuthError as error:
        return _oauth_error(error)
    return JSONResponse(answer, headers=NO_STORE)


@router.post(
    "/space/wallet-offers",
    tags=["espace personnel"],
    summary="Mettre une attestation dans un portefeuille numérique : une offre OpenID4VCI "
    "(QR code, lien) et son code de transaction (formulaire de l'espace)",
    response_class=Response,
)
def create_offer(
    request: Request,
    c: Ctx,
    token: FormToken,
    attestation: Annotated[PublicId, Form()],
    lang: Lang = None,
) -> Response:
    holder, held = _holder_of(c, token)
    chosen = next((a for a in held if a.public_id == attestation), None)
    if chosen is None or not offerable(chosen):
        raise Forbidden("Cette attestation n'est pas l'une des vôtres en vigueur.")
    made = offers(request, c).create(holder, chosen)
    t = c.texts(i18n.language_of(request))
    expires = datetime.fromisoformat(made.offer.expires_at).astimezone(PAGE_TZ)
    context = {
        "title": chosen.title,
        "code": chosen.code,
        "url": made.url,
        "qr": qr_svg(made.url, t.gettext("QR code de l'offre pour votre portefeuille")),
        "tx_code": made.tx_code,
        "expires_at": f"{expires:%H:%M}",
        "space_url": "/space?" + urlencode({"token": token, **_lang_param(t)}),
    }
    # Shown once: the secrets are stored as digests only, so the page cannot be rebuilt. Its
    # language switch leads (GET, below) back to the space in the other language.
    return c.page(request, "wallet_offer.html", context, headers=PRIVATE, keep=("token",))


@router.get("/space/wallet-offers", include_in_schema=False)
def back_to_space(token: SpaceToken, lang: Lang = None) -> RedirectResponse:
    """Where the offer page's language switch leads: the space, in that language (an offer
    is made by POST only)."""
    query = {"token": token}
    if (chosen := i18n.supported(lang)) is not None:
        query[i18n.QUERY_PARAMETER] = chosen
    return RedirectResponse(f"/space?{urlencode(query)}#portefeuille", status_code=303)
