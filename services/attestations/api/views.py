"""What a verification shows: one view model for the HTML page and the JSON answer.

The JSON answer (``as_json``) stays French, like the signed credential it describes; the page
(``for_page``) is worded in the reader's language (``services.attestations.wording``)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import orjson

from contracts.referential import load_certification
from services.attestations import wording
from services.attestations.application import AttestationsApp, mention_label
from services.attestations.domain.aggregates import Attestation
from services.attestations.domain.credential import ROUTE_LABELS, session_label
from services.attestations.domain.jose import unverified_payload
from services.runtime import i18n
from services.runtime.i18n import Texts


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


def competences_of(attestation: Attestation, lang: str = i18n.DEFAULT) -> list[str]:
    """The competences attested, in ``lang`` where the referential translates them."""
    cert = load_certification(attestation.certification)
    if attestation.kind == "bloc":
        return cert.competences_in(attestation.code, lang)
    return [c for b in cert.mandatory_blocs for c in cert.competences_in(b.code, lang)]


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


def for_page(attestation: Attestation, t: Texts | None = None) -> dict[str, Any]:
    """The page's (and the PDF's) view of an attestation, worded in ``t``'s language
    (French when none is given)."""
    t = t or i18n.french()
    cert = load_certification(attestation.certification)
    issuer = issuer_of(attestation)
    issued = datetime.fromisoformat(attestation.issued_at)
    revoked = datetime.fromisoformat(attestation.revoked_at) if attestation.revoked_at else None
    holder = attestation.holder
    return {
        "status": attestation.status,
        "status_label": wording.status_label(attestation.status, t),
        "kind": attestation.kind,
        "kind_label": wording.kind_label(attestation.kind, t),
        "code": attestation.code,
        "title": wording.achievement_title(
            cert.code, attestation.kind, attestation.code, attestation.title, t.lang
        ),
        "holder_name": " ".join([*holder["given_names"], holder["family_name"]]),
        "certification_code": cert.code,
        "certification_title": cert.title_in(t.lang),
        "level": cert.level,
        "issuer_name": issuer["name"],
        "issuer_id": issuer["id"],
        "issued_on": t.date(issued.date()),
        "issued_at_iso": issued.date().isoformat(),
        "revoked_on": t.date(revoked.date()) if revoked else None,
        "revocation_reason": attestation.revocation_reason,  # the center's words, as given
        "competences": competences_of(attestation, t.lang),
        **_page_facts(attestation, t),
    }


def _page_facts(attestation: Attestation, t: Texts) -> dict[str, Any]:
    awarded = date.fromisoformat(attestation.awarded_on) if attestation.awarded_on else None
    session = wording.session_label(attestation.session, t) if attestation.session else None
    route = (
        wording.route_label(attestation.route, t, attestation.grade_session)
        if attestation.route
        else None
    )
    mention = wording.mention_label(attestation.certification, attestation.mention, t.lang)
    return {
        "awarded_on": t.date(awarded) if awarded else None,
        "awarded_on_iso": awarded.isoformat() if awarded else None,
        "session": _upper_first(session) if session else None,
        "session_label": session,  # for running text ("…, session de juin 2026")
        "route": _upper_first(route) if route else None,
        "route_label": route,
        "mention": mention,
        "exam_center": attestation.exam_center_name or None,
    }


@dataclass(frozen=True)
class Rendered:
    version: int
    json: bytes
    attestation: Attestation  # worded for the page in each reader's language, when asked


class VerificationViews:
    """Verification answers, cached per attestation version: a request costs one indexed
    lookup of the latest version, and the answer is rebuilt only when an event (a revocation)
    changed it, so the cache is never stale."""

    def __init__(
        self,
        app: AttestationsApp,
        templates: i18n.Templates,
        size: int = 50_000,
    ) -> None:
        self.app = app
        self.templates = templates
        self.size = size
        self._cache: OrderedDict[str, Rendered] = OrderedDict()
        self._html: OrderedDict[tuple[str, int, date, str], bytes] = OrderedDict()
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
            attestation=attestation,
        )
        with self._lock:
            self._cache[public_id] = rendered
            if len(self._cache) > self.size:
                self._cache.popitem(last=False)
        return rendered

    def html(
        self, public_id: str, rendered: Rendered, today: date, lang: str = i18n.DEFAULT
    ) -> bytes:
        key = (public_id, rendered.version, today, lang)
        with self._lock:
            cached = self._html.get(key)
        if cached is not None:
            return cached
        t = self.templates.catalogues.texts(lang)
        page = self.templates.render(
            lang,
            "verification.html",
            a=for_page(rendered.attestation, t),
            today=t.date(today),
            languages=i18n.links_for(f"/v/{public_id}", lang),
        )
        data = page.encode()
        with self._lock:
            self._html[key] = data
            if len(self._html) > self.size:
                self._html.popitem(last=False)
        return data
