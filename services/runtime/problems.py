"""RFC 9457 problem details: the one shape of every error a client gets."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

# The title of each status (RFC 9457: with type about:blank, the title is the status's own
# phrase), in French: a 500 never says "Requête invalide".
TITLES: dict[int, str] = {
    400: "Requête invalide",
    401: "Authentification requise",
    403: "Accès refusé",
    404: "Introuvable",
    405: "Méthode non autorisée",
    406: "Format de réponse non disponible",
    408: "Délai de requête dépassé",
    409: "Conflit",
    410: "Disparu",
    411: "Longueur requise",
    412: "Condition préalable non remplie",
    413: "Contenu trop volumineux",
    414: "Adresse trop longue",
    415: "Type de contenu non pris en charge",
    416: "Plage non satisfaisable",
    422: "Contenu invalide",
    428: "Condition préalable requise",
    429: "Trop de requêtes",
    431: "En-têtes trop volumineux",
    500: "Erreur interne",
    501: "Non implémenté",
    502: "Passerelle en erreur",
    503: "Service indisponible",
    504: "Délai de passerelle dépassé",
}


def title_of(status: int) -> str:
    """The French title of ``status``; an unlisted one gets its class's."""
    if status in TITLES:
        return TITLES[status]
    if 500 <= status < 600:
        return TITLES[500]
    if 400 <= status < 500:
        return TITLES[400]
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Erreur"


class Problem(Exception):
    """An error the client caused or must know about; rendered as problem+json.

    ``title`` follows ``status`` (``TITLES``) unless a subclass names its own."""

    status = 400
    title: str | None = None
    type_ = "about:blank"

    def __init__(
        self,
        detail: str,
        *,
        status: int | None = None,
        headers: dict[str, str] | None = None,
        **extensions: Any,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        if status is not None:
            self.status = status
        if self.title is None or (status is not None and status != type(self).status):
            # A status passed in that is not the class's own: its title, not the class's.
            self.title = title_of(self.status)
        self.headers = headers or {}
        self.extensions = extensions

    def body(self, instance: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": self.type_,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if instance:
            body["instance"] = instance
        body.update(self.extensions)
        return body


class BadRequest(Problem):
    status = 400


class Unauthorized(Problem):
    status = 401


class Forbidden(Problem):
    status = 403


class NotFound(Problem):
    status = 404


class Conflict(Problem):
    status = 409


class PayloadTooLarge(Problem):
    status = 413


class UnsupportedMediaType(Problem):
    status = 415


class Unprocessable(Problem):
    status = 422


class InternalError(Problem):
    status = 500


class Unavailable(Problem):
    status = 503
