"""The notifications service's routes (API.md, notifications section)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field

from services.notifications.application import NotificationsApp, view
from services.notifications.webhooks import validate_url
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
    url: str = Field(min_length=1, max_length=2048, examples=["https://centre.example.fr/hooks"])


@router.post(
    "/webhooks",
    tags=["webhooks"],
    status_code=201,
    summary="Enregistrer l'URL de webhook du centre (le secret n'est montré qu'une fois)",
)
def register_webhook(body: WebhookIn, app: App, center: Center) -> dict[str, Any]:
    problem = validate_url(body.url)
    if problem is not None:
        raise Unprocessable(problem)
    webhook, secret = app.register_webhook(center, body.url)
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
    return {"candidate_number": candidate_number, "notifications": [view(n) for n in found]}


@router.get(
    "/notifications/failed",
    tags=["notifications"],
    summary="Les envois abandonnés du centre (à rejouer)",
)
def failed_notifications(app: App, center: Center) -> dict[str, Any]:
    return {"notifications": [view(n) for n in app.given_up(center)]}


@router.post(
    "/notifications/{delivery_key}/replay",
    tags=["notifications"],
    summary="Rejouer un envoi abandonné",
)
def replay(delivery_key: str, app: App, center: Center) -> dict[str, Any]:
    found = app.replay(center, delivery_key)
    if found is None:
        raise NotFound("Aucun envoi de ce centre ne porte cette clé.")
    return view(found)
