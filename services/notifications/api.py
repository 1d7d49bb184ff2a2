"""The notifications service's routes (API.md, notifications section)."""

from __future__ import annotations

import asyncio
import re
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from services.notifications.application import NotificationsApp, view
from services.notifications.destinations import Destinations, HttpsRequired, Refused
from services.notifications.domain import Notification
from services.notifications.webhooks import public_detail, validate_url
from services.runtime.auth import bearer_center
from services.runtime.problems import NotFound, Unprocessable

router = APIRouter(prefix="/v1")


async def _app(request: Request) -> NotificationsApp:
    app: NotificationsApp = request.app.state.notifications
    return app


App = Annotated[NotificationsApp, Depends(_app)]


Center = Annotated[
    str, Depends(bearer_center(lambda r: r.app.state.notifications.authenticate_center))
]


class WebhookIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str = Field(min_length=1, max_length=2048, examples=["https://centre.example.fr/hooks"])


NOT_ALLOWED = (
    "La destination du webhook n'est pas autorisée : son nom doit désigner une adresse "
    "publique (ni locale, ni privée, ni réservée)."
)
HTTPS_REQUIRED = "La destination du webhook doit être en https://."


@router.post(
    "/webhooks",
    tags=["webhooks"],
    status_code=201,
    summary="Enregistrer l'URL de webhook du centre (le secret n'est montré qu'une fois)",
    description="L'hôte est résolu et doit désigner des adresses publiques, en https ; "
    "il l'est de nouveau à chaque envoi.",
)
async def register_webhook(
    body: WebhookIn, request: Request, app: App, center: Center
) -> dict[str, Any]:
    problem = validate_url(body.url)
    if problem is not None:
        raise Unprocessable(problem)
    destinations: Destinations = request.app.state.webhook_destinations
    try:
        await destinations.check(body.url)
    except HttpsRequired:
        raise Unprocessable(HTTPS_REQUIRED) from None
    except Refused:
        # One answer for a refused address and a name that does not resolve: the center
        # must not learn which internal names exist.
        raise Unprocessable(NOT_ALLOWED) from None
    webhook, secret = await asyncio.to_thread(app.register_webhook, center, body.url)
    return {
        "url": webhook.url,
        "secret": secret,
        "registered_at": webhook.registered_at,
        "signature": "Standard Webhooks (webhook-id, webhook-timestamp, webhook-signature v1)",
    }


@router.get("/webhooks", tags=["webhooks"], summary="Le webhook enregistré (sans son secret)")
def get_webhook(app: App, center: Center) -> dict[str, Any]:
    webhook = app.webhook(center)
    if webhook is None:
        raise NotFound("Aucun webhook enregistré pour ce centre.")
    return {"url": webhook.url, "registered_at": webhook.registered_at}


@router.get(
    "/notifications",
    tags=["notifications"],
    summary="Les e-mails et webhooks concernant un candidat, avec leurs tentatives",
)
def list_notifications(
    app: App, center: Center, candidate_number: Annotated[str, Query(max_length=32)]
) -> dict[str, Any]:
    found = app.notifications_of(center, candidate_number)
    if found is None:
        raise NotFound(f"Candidat {candidate_number} inconnu pour ce centre.")
    return {"candidate_number": candidate_number, "notifications": [public(n) for n in found]}


@router.get(
    "/notifications/failed",
    tags=["notifications"],
    summary="Les envois abandonnés du centre (à rejouer)",
)
def failed_notifications(app: App, center: Center) -> dict[str, Any]:
    return {"notifications": [public(n) for n in app.given_up(center)]}


@router.post(
    "/notifications/{delivery_key}/replay",
    tags=["notifications"],
    summary="Rejouer un envoi abandonné",
)
def replay(delivery_key: str, app: App, center: Center) -> dict[str, Any]:
    found = app.replay(center, delivery_key)
    if found is None:
        raise NotFound("Aucun envoi de ce centre ne porte cette clé.")
    return public(found)


def public(n: Notification) -> dict[str, Any]:
    """A notification as its center sees it: a webhook attempt's outcome is coarse
    (delivered, refused with the receiver's status, unreachable), recorded details stay
    with the operator."""
    shown = view(n)
    coarse = public_detail if n.channel == "webhook" else public_mail_detail
    shown["last_error"] = coarse(shown["last_error"])
    shown["history"] = [
        {**entry, "detail": coarse(entry["detail"])} if "detail" in entry else dict(entry)
        for entry in shown["history"]
    ]
    return shown


_SMTP_CODE = re.compile(r">: ([45]\d\d) ")
MAIL_UNREACHABLE = "serveur de messagerie injoignable ou en erreur"


def public_mail_detail(detail: str | None) -> str | None:
    """An e-mail attempt's outcome as the center sees it: accepted, the candidate's address
    refused (with the SMTP reply code: the center can correct the address) or unusable, else
    the mail server unreachable — never the relay's host, port or reply text."""
    if detail is None or detail.startswith(("accepté", "adresse ou contenu inutilisable")):
        return detail
    if detail.startswith("recipient refused"):
        code = _SMTP_CODE.search(detail)
        suffix = f" (code {code.group(1)})" if code else ""
        return f"adresse du candidat refusée par le serveur de messagerie{suffix}"
    return MAIL_UNREACHABLE
