"""The e-mails sent to candidates about their attestations, composed from template files.

One e-mail per candidate and registry decision: it lists every attestation the decision issued
(``attestations_issued``) or, in another e-mail, every one it revoked (``attestations_revoked``);
after the candidate's personal links were revoked, one gives new links to what is in force
(``attestations_links_renewed``).
Each e-mail has a stable delivery key; the Message-ID is derived from it, so a message re-sent
after a crash carries the same Message-ID and is recognisable as the same message. Templates
live in ``templates/`` (package data): ``<name>.subject.txt``, ``<name>.txt`` and
``<name>.html``; ``_attestations.txt`` and ``_attestations.html`` hold their shared phrases.

Each e-mail is in the candidate's preferred language (``AttestationsMail.language``, chosen at
registration; French by default): the templates' texts are French msgids translated by the
service's catalogue (``locales/en/LC_MESSAGES/messages.po``), one Jinja2 environment per
language; titles come from the referential in that language where it has them; the links it
gives carry ``lang=en`` for an English reader, so the pages and the PDF open in English.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import jinja2

from contracts.referential import Certification, load_certification
from services.notifications.wire import WireMail, attestation_mail_bytes
from services.runtime import i18n
from services.runtime.i18n import N_, Texts

MONTHS = (
    "janvier", "février", "mars", "avril", "mai", "juin",
    "juillet", "août", "septembre", "octobre", "novembre", "décembre",
)  # fmt: skip

ITEMS_MAX = 32  # what one decision may issue or revoke (contracts.attestations_v1)


@dataclass(frozen=True)
class MailItem:
    """One attestation an e-mail is about."""

    kind: Literal["bloc", "certification"]
    code: str  # RNCP code of the bloc or of the certification
    title: str  # its title
    verify_url: str  # public, does not expire
    download_url: str | None = None  # personal PDF link, carrying a token (issued only)
    credential_url: str | None = None  # personal verifiable-credential link (issued only)
    reason: str | None = None  # why it was revoked (revoked only; may span several lines)
    # How it was acquired (issued since 2027-01; unknown before):
    route: str | None = None  # "exam", "vae", "carried_over"
    session: str | None = None  # "2026-06"
    grade_session: str | None = None  # the earlier session of a carried-over grade


@dataclass(frozen=True)
class AttestationsMail:
    """The e-mail about what one decision issued, or revoked, for one candidate."""

    delivery_key: str  # stable id of this notification; the Message-ID derives from it
    event: Literal["issued", "revoked", "links_renewed"]  # links_renewed: after a revocation
    to_address: str
    holder_name: str
    certification_title: str  # "BAC PRO - Assistance à la gestion des organisations et de …"
    certification_code: str  # "RNCP12345"
    decided_on: date | None  # the jury's decision date, if known
    items: tuple[MailItem, ...]  # 1 to 32; listed blocs first in code order, the certification last
    sender: str  # "certibloc <no-reply@certibloc.localhost>"
    domain: str  # right-hand side of the Message-ID, e.g. "certibloc.localhost"
    links_expire_on: date | None = None  # when the personal links stop working, if known
    space_url: str | None = None  # the candidate's personal space (a personal link too)
    language: str = i18n.DEFAULT  # the candidate's preferred language ("fr", "en")


def message_id(delivery_key: str, domain: str) -> str:
    """``<32 hex digits of sha256(delivery key)@domain>``: the same key, the same Message-ID."""
    digest = hashlib.sha256(delivery_key.encode("utf-8")).hexdigest()[:32]
    return f"<{digest}@{domain}>"


def french_date(day: date) -> str:
    return f"{day.day}{'er' if day.day == 1 else ''} {MONTHS[day.month - 1]} {day.year}"


@cache
def catalogues() -> i18n.Catalogues:
    """The service's catalogues, read once (the composition root's dispatcher asks first)."""
    return i18n.Catalogues.load(Path(str(resources.files("services.notifications") / "locales")))


def template_environment() -> i18n.Templates:
    """The e-mail templates (package resource), one environment per language; HTML templates
    are autoescaped, text ones not."""

    def make() -> jinja2.Environment:
        env = jinja2.Environment(
            loader=jinja2.PackageLoader("services.notifications", "templates"),
            autoescape=jinja2.select_autoescape(
                enabled_extensions=("html",), default_for_string=False, default=False
            ),
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
            auto_reload=False,
        )
        env.policies["ext.i18n.trimmed"] = True  # as babel.cfg extracts them
        return env

    return i18n.Templates(catalogues(), make)


# How an attestation was acquired, as the e-mail says it (msgids: the French).
ROUTES = {
    "exam": N_("par examen"),
    "vae": N_("par la VAE"),
    "carried_over": N_("par report d'une note obtenue à une session antérieure"),
}


def session_label(session: str, t: Texts) -> str | None:
    """ "session de juin 2026", "session d'avril 2026"; "June 2026 session"."""
    match = re.fullmatch(r"(\d{4})-(\d{2})", session)
    if match is None or not 1 <= int(match.group(2)) <= 12:
        return None
    month, year = t.month(int(match.group(2))), match.group(1)
    if month[:1] in "aeiouAEIOU":  # French elides "de" before a vowel: "session d'avril"
        return t.gettext("session d'%(month)s %(year)s") % {"month": month, "year": year}
    return t.gettext("session de %(month)s %(year)s") % {"month": month, "year": year}


def acquired(item: MailItem, t: Texts) -> str | None:
    """ "Session de juin 2026, par examen", "Par la VAE": what is known of how it was acquired."""
    parts = []
    if item.session and (label := session_label(item.session, t)):
        parts.append(label)
    if item.route in ROUTES:
        route = t.gettext(ROUTES[item.route])
        if item.route == "carried_over" and item.grade_session:
            earlier = session_label(item.grade_session, t)
            route = f"{route} ({earlier})" if earlier else route
        parts.append(route)
    text = ", ".join(parts)
    return text[:1].upper() + text[1:] if text else None


def _certification(code: str) -> Certification | None:
    try:
        return load_certification(code)
    except KeyError:
        return None


_BREAKS = re.compile(r"[ \t\r\n\f\v]+")  # ASCII white space only: no-break spaces stay
_LINE_ENDS = re.compile(r"\r\n|\r")


def _single_line(text: str) -> str:
    return _BREAKS.sub(" ", text).strip(" ")


def _one_line(value: str, what: str) -> str:
    if "\r" in value or "\n" in value:
        raise ValueError(f"{what} must fit on one line: {value!r}")
    return value


@dataclass(frozen=True)
class _Shown:
    """An item as the templates show it, in the mail's language."""

    kind: str
    code: str
    title: str
    verify_url: str
    download_url: str | None
    credential_url: str | None
    reason: str | None
    about: str | None  # how it was acquired ("Session de juin 2026, par examen")


def _listed(item: MailItem, t: Texts, cert: Certification | None) -> _Shown:
    """The item as the templates show it: a title, a code or a URL with a line break would
    break the list's layout (and, in a subject, the header); a reason keeps its lines. Its
    title in the mail's language where the referential has one; its page and PDF links open
    in that language (``lang=``); the credential is data, the same in every language."""
    title = item.title
    if cert is not None and t.lang != i18n.DEFAULT:
        if item.kind == "bloc":
            title = cert.bloc_title_in(item.code, t.lang) or title
        else:
            title = cert.title_in(t.lang)

    def link(url: str | None) -> str | None:
        return None if url is None else i18n.with_language(_single_line(url), t.lang)

    return _Shown(
        kind=item.kind,
        code=_single_line(item.code),
        title=_single_line(title),
        verify_url=link(item.verify_url) or "",
        download_url=link(item.download_url),
        credential_url=None if item.credential_url is None else _single_line(item.credential_url),
        reason=None if item.reason is None else _LINE_ENDS.sub("\n", item.reason).strip(),
        about=acquired(item, t),
    )


def _order(item: _Shown) -> tuple[bool, str]:
    return item.kind == "certification", item.code  # blocs in code order, the certification last


@dataclass(frozen=True)
class _Rendered:
    subject: str
    text: str
    html: str
    to_name: str
    to_address: str
    date: str
    message_id: str
    boundary: str
    language: str


def _context(mail: AttestationsMail, t: Texts) -> dict[str, Any]:
    if not 1 <= len(mail.items) <= ITEMS_MAX:
        raise ValueError(f"an e-mail lists 1 to {ITEMS_MAX} attestations, not {len(mail.items)}")
    cert = _certification(mail.certification_code) if t.lang != i18n.DEFAULT else None
    items = sorted((_listed(item, t, cert) for item in mail.items), key=_order)
    reasons = {item.reason for item in items}
    title = cert.title_in(t.lang) if cert is not None else mail.certification_title
    return {
        "event": mail.event,
        "holder_name": _single_line(mail.holder_name),
        "certification_title": _single_line(title),
        "certification_code": _single_line(mail.certification_code),
        "decided_on": mail.decided_on,
        "items": items,
        "blocs": sum(item.kind == "bloc" for item in items),
        "certifications": sum(item.kind == "certification" for item in items),
        # Personal links in the whole e-mail: the note about them says "it" or "they".
        "personal_links": sum(bool(i.download_url) + bool(i.credential_url) for i in items),
        "both_links": all(item.download_url and item.credential_url for item in items),
        # One revocation, or several for one reason (a correction): the reason is said once.
        "common_reason": len(reasons) == 1,
        "links_expire_on": mail.links_expire_on,
        "space_url": None
        if mail.space_url is None
        else i18n.with_language(_single_line(mail.space_url), t.lang),
    }


def _render(
    mail: AttestationsMail, all_templates: i18n.Templates, now: datetime | None
) -> _Rendered:
    name = f"attestations_{mail.event}"
    lang = i18n.supported(mail.language) or i18n.DEFAULT
    templates = all_templates.env(lang)
    context = _context(mail, all_templates.catalogues.texts(lang))
    # A title or a name with a line break must not break the Subject header.
    subject = _single_line(templates.get_template(f"{name}.subject.txt").render(context))
    context["subject"] = subject
    # "=_" never occurs in quoted-printable text, so this boundary cannot clash with the parts;
    # derived from the key, a message sent again is byte for byte the same but for its Date.
    digest = hashlib.sha256(f"boundary:{mail.delivery_key}".encode()).hexdigest()
    _one_line(mail.sender, "sender")
    _one_line(mail.delivery_key, "delivery key")
    return _Rendered(
        subject=subject,
        text=templates.get_template(f"{name}.txt").render(context),
        html=templates.get_template(f"{name}.html").render(context),
        to_name=context["holder_name"],
        to_address=mail.to_address.strip(),
        date=format_datetime(now or datetime.now(UTC)),
        message_id=message_id(mail.delivery_key, _one_line(mail.domain, "domain")),
        boundary=f"=_{digest[:24]}",
        language=lang,
    )


def compose(
    mail: AttestationsMail, templates: i18n.Templates, *, now: datetime | None = None
) -> EmailMessage:
    """The complete message: headers, a text part and its HTML alternative (UTF-8), in the
    mail's language.

    Raises ValueError when the recipient address or the sender cannot be used in a header, or
    when the mail lists no attestation or more than ``ITEMS_MAX``.
    """
    return _message(mail, _render(mail, templates, now))


def _message(mail: AttestationsMail, r: _Rendered) -> EmailMessage:
    message = EmailMessage()
    message["From"] = mail.sender
    message["To"] = Address(display_name=r.to_name, addr_spec=r.to_address)
    message["Subject"] = r.subject
    message["Date"] = r.date
    message["Message-ID"] = r.message_id
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no auto-replies, please
    message["X-Auto-Response-Suppress"] = "All"  # the same, for Exchange
    message["X-Certibloc-Delivery-Key"] = mail.delivery_key
    # quoted-printable: readable, 7-bit clean whatever the server supports, long URLs kept intact.
    message.set_content(r.text, subtype="plain", charset="utf-8", cte="quoted-printable")
    message.make_alternative(boundary=r.boundary)
    message.add_alternative(r.html, subtype="html", charset="utf-8", cte="quoted-printable")
    message["Content-Language"] = r.language  # after set_content(), which clears Content-*
    return message


def render(
    mail: AttestationsMail, templates: i18n.Templates, *, now: datetime | None = None
) -> WireMail | EmailMessage:
    """What the dispatcher sends: the bytes of ``compose()``'s message written directly (ten
    times cheaper), or that message itself when an input needs the stdlib's encoding.

    Raises ValueError as ``compose()`` does."""
    r = _render(mail, templates, now)
    wire = attestation_mail_bytes(
        sender=mail.sender,
        to_name=r.to_name,
        to_address=r.to_address,
        subject=r.subject,
        date=r.date,
        message_id=r.message_id,
        delivery_key=mail.delivery_key,
        boundary=r.boundary,
        text=r.text,
        html=r.html,
        language=r.language,
    )
    return wire if wire is not None else _message(mail, r)
