"""What the pages and the PDF say in the reader's language: the service's catalogues
(``locales/<lang>/LC_MESSAGES/messages.po``, French being the msgids), its per-language page
templates, and the labels computed in Python (routes, sessions, mentions, kinds, dates).

The signed credential is not worded here: it stays French whatever the reader's language
(``domain.credential``; it is signed data, the same bytes for everyone). Bloc titles,
competences and mentions come from the referential, in English where its file has an English
version (``contracts.referential``), else French.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import cache
from importlib import resources
from pathlib import Path

import jinja2

from contracts.referential import Certification, load_certification
from services.attestations.domain.credential import ROUTE_LABELS
from services.runtime import i18n
from services.runtime.i18n import Catalogues, Texts


def locales_dir() -> Path:
    return Path(str(resources.files("services.attestations") / "locales"))


def templates_dir() -> Path:
    return Path(str(resources.files("services.attestations") / "templates"))


@cache
def catalogues() -> Catalogues:
    """The service's catalogues, read once (by the composition root, at start)."""
    return Catalogues.load(locales_dir())


def page_templates(
    catalogues: Catalogues, static_url: Callable[[str], str] | None = None
) -> i18n.Templates:
    """One environment per language for the pages (autoescaped), ``static_url`` their global."""

    def make() -> jinja2.Environment:
        return jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(templates_dir())),
            autoescape=True,
            auto_reload=False,
        )

    def configure(env: jinja2.Environment, texts: Texts) -> None:
        env.policies["ext.i18n.trimmed"] = True  # as babel.cfg extracts them
        if static_url is not None:
            env.globals["static_url"] = static_url

    return i18n.Templates(catalogues, make, configure)


def texts(lang: str) -> Texts:
    return catalogues().texts(lang)


def route_label(route: str, t: Texts, grade_session: str | None = None) -> str | None:
    """ "par examen", "by examination"; a carried-over grade names its session."""
    if route not in ROUTE_LABELS:
        return None
    label = t.gettext(ROUTE_LABELS[route])
    if route == "carried_over" and grade_session:
        label = f"{label} ({session_label(grade_session, t)})"
    return label


def session_label(session: str, t: Texts) -> str:
    """ "session de juin 2026", "session d'avril 2026"; "June 2026 session"."""
    match = re.fullmatch(r"(\d{4})-(\d{2})", session)
    if match is None or not 1 <= int(match.group(2)) <= 12:
        raise ValueError(f"not a session (YYYY-MM): {session!r}")
    month, year = t.month(int(match.group(2))), match.group(1)
    if month[:1] in "aeiouAEIOU":  # French elides "de" before a vowel: "session d'avril"
        return t.gettext("session d'%(month)s %(year)s") % {"month": month, "year": year}
    return t.gettext("session de %(month)s %(year)s") % {"month": month, "year": year}


def kind_label(kind: str, t: Texts) -> str:
    return t.gettext("Bloc de compétences") if kind == "bloc" else t.gettext("Certification")


def status_label(status: str, t: Texts) -> str:
    return t.gettext("Révoquée") if status == "revoked" else t.gettext("Valide")


def certification_or_none(code: str) -> Certification | None:
    try:
        return load_certification(code)
    except KeyError:
        return None


def mention_label(certification: str, code: str | None, lang: str) -> str | None:
    """The referential's label of a mention in ``lang`` (French if untranslated; the code
    itself if the referential has no such mention)."""
    if code is None:
        return None
    cert = certification_or_none(certification)
    found = cert.mention_label_in(code, lang) if cert else None
    return found or code


def achievement_title(certification: str, kind: str, code: str, french: str, lang: str) -> str:
    """The title of a bloc or certification in ``lang`` where the referential translates it;
    else ``french`` (what the attestation recorded when issued)."""
    if lang == i18n.DEFAULT:
        return french
    cert = certification_or_none(certification)
    if cert is None or lang not in cert.translations:
        return french
    if kind == "bloc":
        translation = cert.translations[lang].blocs.get(code)
        return (translation.title if translation else None) or french
    return cert.translations[lang].title or french
