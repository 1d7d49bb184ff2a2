"""RFC 9457 problem details: the one shape of every error a client gets."""

from __future__ import annotations

from typing import Any


class Problem(Exception):
    """An error the client caused or must know about; rendered as problem+json."""

    status = 400
    title = "Requête invalide"
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
    title = "Requête invalide"


class Unauthorized(Problem):
    status = 401
    title = "Authentification requise"


class Forbidden(Problem):
    status = 403
    title = "Accès refusé"


class NotFound(Problem):
    status = 404
    title = "Introuvable"


class Conflict(Problem):
    status = 409
    title = "Conflit"


class PayloadTooLarge(Problem):
    status = 413
    title = "Requête trop volumineuse"


class UnsupportedMediaType(Problem):
    status = 415
    title = "Type de contenu non pris en charge"


class Unprocessable(Problem):
    status = 422
    title = "Données invalides"


class InternalError(Problem):
    status = 500
    title = "Erreur interne"


class Unavailable(Problem):
    status = 503
    title = "Service momentanément indisponible"
