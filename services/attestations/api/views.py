"""What a verification shows: one view model for the HTML page and the JSON answer."""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import orjson
from jinja2 import Environment

from contracts.referential import load_certification
from services.attestations.application import AttestationsApp, mention_label
from services.attestations.domain.aggregates import Attestation
from services.attestations.domain.credential import (
    ROUTE_LABELS,
    french_date,
    session_label,
)
from services.attestations.domain.jose import unverified_payload


def _upper_first(text: str) -> str:
    return text[:1].upper() + text[1:]


def facts_of(attestation: Attestation) -> dict[str, Any]:
    """What the jury decided, as far as the attestation knows (those issued before 2026-12
    know none of it): only the facts it has."""
    facts: dict[str, Any] = {}
    if attestation.awarded_on:
        facts["awarded_on"] = attestation.awarded_on
    if attestation.session:
        facts["session"] = {
            "code": attestation.session,
            "label": session_label(attestation.session),
        }
    if attestation.route in ROUTE_LABELS:
        label = ROUTE_LABELS[attestation.route]
        if attestation.route == "carried_over" and attestation.grade_session:
            label = f"{label} ({session_label(attestation.grade_session)})"
        facts["route"] = {"code": attestation.route, "label": label}
        if attestation.grade_session:
            facts["route"]["grade_session"] = attestation.grade_session
    if attestation.mention:
        facts["mention"] = {
            "code": attestation.mention,
            "label": mention_label(attestation.certification, attestation.mention),
        }
    if attestation.exam_center_name:
        facts["exam_center"] = {
            "uai": attestation.exam_center,
            "name": attestation.exam_center_name,
        }
    return facts


def competences_of(attestation: Attestation) -> list[str]:
    cert = load_certification(attestation.certification)
    if attestation.kind == "bloc":
        bloc = cert.bloc(attestation.code)
        return list(bloc.competences) if bloc else []
    return [c for b in cert.mandatory_blocs for c in b.competences]


def issuer_of(attestation: Attestation) -> dict[str, str]:
    """Who issued it, as its signed credential says (id and the certifier's name): what was
    signed, whatever the referential says today; its certification's certifier for a
    credential that would name its issuer by id alone."""
    issuer = unverified_payload(attestation.credential).get("issuer")
    if isinstance(issuer, dict) and isinstance(issuer.get("id"), str):
        name = issuer.get("name")
        if isinstance(name, str):
            return {"id": issuer["id"], "name": name}
        issuer = issuer["id"]
    if not isinstance(issuer, str):
        raise ValueError(f"attestation {attestation.public_id}: its credential names no issuer")
    return {"id": issuer, "name": load_certification(attestation.certification).certifier.name}


def as_json(attestation: Attestation, verify_url: str) -> dict[str, Any]:
    """The public answer: names, what is certified, by whom, when; never birth date or grades."""
    cert = load_certification(attestation.certification)
    issuer = issuer_of(attestation)
    body: dict[str, Any] = {
        "id": attestation.public_id,
        "status": attestation.status,
        "holder": {
            "given_names": attestation.holder["given_names"],
            "family_name": attestation.holder["family_name"],
        },
        "achievement": {
            "kind": attestation.kind,
            "code": attestation.code,
            "title": attestation.title,
            "competences": competences_of(attestation),
            "certification": {"code": cert.code, "title": cert.title, "level": cert.level},
        },
        "issuer": issuer,
        "issued_at": attestation.issued_at,
        **facts_of(attestation),
        "verify_url": verify_url,
    }
    if attestation.revoked_at:
        body["revoked_at"] = attestation.revoked_at
        body["revocation_reason"] = attestation.revocation_reason
    if attestation.superseded_by:
        body["superseded_by"] = attestation.superseded_by
    return body


def for_page(attestation: Attestation) -> dict[str, Any]:
    cert = load_certification(attestation.certification)
    issuer = issuer_of(attestation)
    issued = datetime.fromisoformat(attestation.issued_at)
    revoked = datetime.fromisoformat(attestation.revoked_at) if attestation.revoked_at else None
    holder = attestation.holder
    return {
        "status": attestation.status,
        "kind": attestation.kind,
        "code": attestation.code,
        "title": attestation.title,
        "holder_name": " ".join([*holder["given_names"], holder["family_name"]]),
        "certification_code": cert.code,
        "certification_title": cert.title,
        "level": cert.level,
        "issuer_name": issuer["name"],
        "issuer_id": issuer["id"],
        "issued_on": french_date(issued.date()),
        "issued_at_iso": issued.date().isoformat(),
        "revoked_on": french_date(revoked.date()) if revoked else None,
        "revocation_reason": attestation.revocation_reason,
        "competences": competences_of(attestation),
        **_page_facts(facts_of(attestation)),
    }


def _page_facts(facts: dict[str, Any]) -> dict[str, Any]:
    awarded = date.fromisoformat(facts["awarded_on"]) if "awarded_on" in facts else None
    session = facts["session"]["label"] if "session" in facts else None
    route = facts["route"]["label"] if "route" in facts else None
    return {
        "awarded_on": french_date(awarded) if awarded else None,
        "awarded_on_iso": awarded.isoformat() if awarded else None,
        "session": _upper_first(session) if session else None,
        "session_label": session,  # for running text ("…, session de juin 2026")
        "route": _upper_first(route) if route else None,
        "route_label": route,
        "mention": facts["mention"]["label"] if "mention" in facts else None,
        "exam_center": facts["exam_center"]["name"] if "exam_center" in facts else None,
    }


@dataclass(frozen=True)
class Rendered:
    version: int
    json: bytes
    page: dict[str, Any]


class VerificationViews:
    """Verification answers, cached per attestation version: a request costs one indexed
    lookup of the latest version, and the answer is rebuilt only when an event (a revocation)
    changed it, so the cache is never stale."""

    def __init__(
        self,
        app: AttestationsApp,
        templates: Environment,
        size: int = 50_000,
    ) -> None:
        self.app = app
        self.templates = templates
        self.size = size
        self._cache: OrderedDict[str, Rendered] = OrderedDict()
        self._html: OrderedDict[tuple[str, int, date], bytes] = OrderedDict()
        self._lock = threading.Lock()

    def lookup(self, public_id: str) -> Rendered | None:
        version = self.app.current_version(public_id)
        if version is None:
            return None
        with self._lock:
            cached = self._cache.get(public_id)
        if cached is not None and cached.version == version:
            return cached
        attestation = self.app.attestation(public_id)
        if attestation is None:
            return None
        rendered = Rendered(
            version=attestation.version,
            json=orjson.dumps(as_json(attestation, self.app.links.verify(attestation.public_id))),
            page=for_page(attestation),
        )
        with self._lock:
            self._cache[public_id] = rendered
            if len(self._cache) > self.size:
                self._cache.popitem(last=False)
        return rendered

    def html(self, public_id: str, rendered: Rendered, today: date) -> bytes:
        key = (public_id, rendered.version, today)
        with self._lock:
            cached = self._html.get(key)
        if cached is not None:
            return cached
        page = self.templates.get_template("verification.html").render(
            a=rendered.page, today=french_date(today)
        )
        data = page.encode()
        with self._lock:
            self._html[key] = data
            if len(self._html) > self.size:
                self._html.popitem(last=False)
        return data
