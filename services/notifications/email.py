"""The e-mails sent to candidates about their attestations, composed from template files.

Each notification has a stable delivery key; the Message-ID is derived from it, so a message
re-sent after a crash carries the same Message-ID and is recognisable as the same message.
Templates live in ``templates/`` (package data): ``<name>.subject.txt``, ``<name>.txt`` and
``<name>.html`` for ``attestation_issued`` and ``attestation_revoked``.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any, Literal

import jinja2

from services.notifications.wire import WireMail, attestation_mail_bytes

MONTHS = (
    "janvier", "février", "mars", "avril", "mai", "juin",
    "juillet", "août", "septembre", "octobre", "novembre", "décembre",
)  # fmt: skip


@dataclass(frozen=True)
class AttestationMail:
    delivery_key: str  # stable id of this notification, e.g. "mail:<attestation_id>:issued"
    event: Literal["issued", "revoked"]
    to_address: str
    holder_name: str
    kind: Literal["bloc", "certification"]
    code: str
    title: str  # bloc or certification title
    certification_title: str
    verify_url: str
    download_url: str | None  # personal link (PDF) carrying a token; None for "revoked"
    credential_url: str | None
    reason: str | None  # revocation reason
    sender: str  # "certibloc <no-reply@certibloc.localhost>"
    domain: str  # right-hand side of the Message-ID, e.g. "certibloc.localhost"
    links_expire_on: date | None = None  # when the personal links stop working, if known


def message_id(delivery_key: str, domain: str) -> str:
    """``<32 hex digits of sha256(delivery key)@domain>``: the same key, the same Message-ID."""
    digest = hashlib.sha256(delivery_key.encode("utf-8")).hexdigest()[:32]
    return f"<{digest}@{domain}>"


def french_date(day: date) -> str:
    return f"{day.day}{'er' if day.day == 1 else ''} {MONTHS[day.month - 1]} {day.year}"


def template_environment() -> jinja2.Environment:
    """The e-mail templates (package resource); HTML templates are autoescaped, text ones not."""
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
    env.filters["french_date"] = french_date
    return env


_BREAKS = re.compile(r"[ \t\r\n\f\v]+")  # ASCII white space only: no-break spaces stay


def _single_line(text: str) -> str:
    return _BREAKS.sub(" ", text).strip(" ")


def _one_line(value: str, what: str) -> str:
    if "\r" in value or "\n" in value:
        raise ValueError(f"{what} must fit on one line: {value!r}")
    return value


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


def _render(
    mail: AttestationMail, templates: jinja2.Environment, now: datetime | None
) -> _Rendered:
    name = f"attestation_{mail.event}"
    context: dict[str, Any] = {
        "event": mail.event,
        "holder_name": mail.holder_name,
        "kind": mail.kind,
        "code": mail.code,
        "title": mail.title,
        "certification_title": mail.certification_title,
        "verify_url": mail.verify_url,
        "download_url": mail.download_url,
        "credential_url": mail.credential_url,
        "reason": mail.reason,
        "links_expire_on": mail.links_expire_on,
    }
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
        to_name=_single_line(mail.holder_name),
        to_address=mail.to_address.strip(),
        date=format_datetime(now or datetime.now(UTC)),
        message_id=message_id(mail.delivery_key, _one_line(mail.domain, "domain")),
        boundary=f"=_{digest[:24]}",
    )


def compose(
    mail: AttestationMail, templates: jinja2.Environment, *, now: datetime | None = None
) -> EmailMessage:
    """The complete message: headers, a French text part and its HTML alternative (UTF-8).

    Raises ValueError when the recipient address or the sender cannot be used in a header.
    """
    return _message(mail, _render(mail, templates, now))


def _message(mail: AttestationMail, r: _Rendered) -> EmailMessage:
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
    message["Content-Language"] = "fr"  # after set_content(), which clears Content-* headers
    return message


def render(
    mail: AttestationMail, templates: jinja2.Environment, *, now: datetime | None = None
) -> WireMail | EmailMessage:
    """What the dispatcher sends: the bytes of ``compose()``'s message written directly (ten
    times cheaper), or that message itself when an input needs the stdlib's encoding."""
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
    )
    return wire if wire is not None else _message(mail, r)
