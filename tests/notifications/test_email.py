"""Attestation e-mails: composition from the template files, SMTP pool, dev sink (real sockets)."""

from __future__ import annotations

import asyncio
import email
import email.policy
import re
import socket
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, date, datetime
from email.message import EmailMessage
from email.utils import parsedate_to_datetime
from pathlib import Path

import jinja2
import pytest
from aiosmtplib.email import flatten_message

from services.notifications.email import (
    ITEMS_MAX,
    AttestationsMail,
    MailItem,
    compose,
    message_id,
    render,
    template_environment,
)
from services.notifications.sink import file_stem, message_count, receptions, start_sink
from services.notifications.smtp import SmtpDeliveryError, SmtpPool, SmtpSettings
from services.notifications.wire import WireMail, wire_bytes

REFUSED = "refuse@example.org"
NBSP = "\u00a0"
BASE = "http://127.0.0.1:8102"
TOKEN = "t1.eyJjIjoiQ0VOVFJFLTAxL0wwMDAxIiwiZSI6MTc4NTU0MjQwMH0.mN3bq8v0yXc2QdP1Rk7sWq9fLz4hT6u"
CERTIFICATION = "BAC PRO - Assistance à la gestion des organisations et de leurs activités"
BLOC_TITLES = (  # RNCP40705's twelve blocs (contracts/referentials/RNCP40705.json)
    "Gérer des relations avec les clients, les usagers et les adhérents",
    "Organiser et suivre l'activité de production (de biens ou de services)",
    "Administrer le personnel",
    "Prévention-santé-environnement",
    "Économie-droit",
    "Mathématiques",
    "Langue vivante A",
    "Langue vivante B",
    "Français",
    "Histoire-géographie et éducation civique",
    "Arts appliqués et cultures artistiques",
    "Éducation physique et sportive",
)


def issued_item(n: int, code: str, title: str, kind: str = "bloc") -> MailItem:
    aid = f"q3Vx8Lr2TmWc5NbYp0Ks{n:02d}"
    return MailItem(
        kind=kind,  # type: ignore[arg-type]
        code=code,
        title=title,
        verify_url=f"{BASE}/v/{aid}",
        download_url=f"{BASE}/v1/attestations/{aid}/pdf?token={TOKEN}",
        credential_url=f"{BASE}/v1/attestations/{aid}/credential?token={TOKEN}",
    )


BLOCS = tuple(
    issued_item(n, f"RNCP40705BC{n:02d}", title) for n, title in enumerate(BLOC_TITLES, 1)
)
DIPLOMA = issued_item(13, "RNCP40705", CERTIFICATION, kind="certification")

ISSUED = AttestationsMail(
    delivery_key="mail:d7Hq2Lx9Vb3Nc8Mz1Kp4Ra:issued",
    event="issued",
    to_address="lea.martin@example.org",
    holder_name="Léa Martin",
    certification_title=CERTIFICATION,
    certification_code="RNCP40705",
    decided_on=date(2026, 7, 3),
    items=(BLOCS[0],),
    sender="certibloc <no-reply@certibloc.localhost>",
    domain="certibloc.localhost",
    links_expire_on=date(2026, 8, 1),
)
# One jury deliberation: twelve blocs and the certification, one e-mail.
THIRTEEN = replace(ISSUED, items=(*BLOCS, DIPLOMA))

REVOKED = replace(
    ISSUED,
    delivery_key="mail:d7Hq2Lx9Vb3Nc8Mz1Kp4Ra:revoked",
    event="revoked",
    items=(
        MailItem(
            kind="certification",
            code="RNCP40705",
            title=CERTIFICATION,
            verify_url=DIPLOMA.verify_url,
            reason="Erreur matérielle dans la saisie des notes du jury",
        ),
    ),
    links_expire_on=None,
)
# A correction: two blocs taken away, each for its own reason.
REVOKED_TWO = replace(
    REVOKED,
    items=(
        MailItem(
            kind="bloc",
            code="RNCP40705BC03",
            title="Administrer le personnel",
            verify_url=BLOCS[2].verify_url,
            reason="Erreur matérielle dans la saisie des notes du jury",
        ),
        MailItem(
            kind="bloc",
            code="RNCP40705BC06",
            title="Mathématiques",
            verify_url=BLOCS[5].verify_url,
            reason="Note de l’épreuve ponctuelle annulée après réclamation",
        ),
    ),
)


@pytest.fixture(scope="module")
def templates() -> jinja2.Environment:
    return template_environment()


def parts(message: EmailMessage) -> tuple[str, str]:
    """The text and HTML bodies (line ends as LF: a message read back from the wire has CRLF)."""
    text = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert isinstance(text, EmailMessage) and isinstance(html, EmailMessage)
    return text.get_content().replace("\r\n", "\n"), html.get_content().replace("\r\n", "\n")


def html_text(html: str) -> str:
    """The HTML part's words as a reader gets them: tags out, white space collapsed."""
    words = re.sub(r"<[^>]+>", "", html.replace("<br>", " "))
    return re.sub(r"[ \t\n]+", " ", words).replace("&#39;", "'")  # no-break spaces stay


def mail_for(n: int, **changes: object) -> AttestationsMail:
    key = f"t{n:021d}"
    return replace(
        ISSUED,
        delivery_key=f"mail:{key}:issued",
        to_address=f"candidat{n}@example.org",
        items=(replace(BLOCS[0], verify_url=f"{BASE}/v/{key}"),),
        **changes,  # type: ignore[arg-type]
    )


# --- composing -----------------------------------------------------------------------------


def test_message_id_is_derived_from_the_delivery_key(templates: jinja2.Environment) -> None:
    first = message_id("mail:a:issued", "certibloc.localhost")
    assert re.fullmatch(r"<[0-9a-f]{32}@certibloc\.localhost>", first)
    assert message_id("mail:a:issued", "certibloc.localhost") == first
    assert message_id("mail:a:revoked", "certibloc.localhost") != first
    # The same decision's e-mail composed again (a resend): the same Message-ID, whatever else.
    again = replace(THIRTEEN, items=THIRTEEN.items[:3], holder_name="Léa Martin-Durand")
    expected = message_id(THIRTEEN.delivery_key, "certibloc.localhost")
    assert compose(THIRTEEN, templates)["Message-ID"] == expected
    assert compose(again, templates)["Message-ID"] == expected
    assert compose(REVOKED_TWO, templates)["Message-ID"] != expected


def test_issued_mail_for_one_bloc(templates: jinja2.Environment) -> None:
    message = compose(ISSUED, templates)
    again = compose(ISSUED, templates)

    assert message["From"] == "certibloc <no-reply@certibloc.localhost>"
    assert message["To"].addresses[0].addr_spec == "lea.martin@example.org"
    assert message["To"].addresses[0].display_name == "Léa Martin"
    assert message["Subject"] == (
        "Votre attestation\u00a0: bloc de compétences «\u00a0Gérer des relations avec les "
        "clients, les usagers et les adhérents\u00a0» (RNCP40705BC01)"
    )
    assert parsedate_to_datetime(message["Date"]).tzinfo is not None
    assert message["Message-ID"] == message_id(ISSUED.delivery_key, "certibloc.localhost")
    assert again["Message-ID"] == message["Message-ID"]
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["X-Certibloc-Delivery-Key"] == ISSUED.delivery_key
    assert message.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in message.iter_parts()] == ["text/plain", "text/html"]
    assert all(p.get_content_charset() == "utf-8" for p in message.iter_parts())

    text, html = parts(message)
    for body in (text, html_text(html)):
        assert "Léa Martin" in body
        assert "RNCP40705BC01" in body
        assert "Gérer des relations avec les clients, les usagers et les adhérents" in body
        assert "BAC PRO - Assistance à la gestion des organisations" in body
        assert "bloc de compétences" in body
        assert "décision du jury du 3 juillet 2026" in body
        assert f"liens de téléchargement sont personnels{NBSP}: ne les transmettez pas" in body
        assert "expirent le 1er août 2026" in body
        assert "elle est publique et n’expire pas" in body
    for url in (ISSUED.items[0].verify_url, BLOCS[0].download_url, BLOCS[0].credential_url):
        assert url is not None
        assert url in text
        assert f'href="{url}"' in html
    assert '<html lang="fr">' in html
    assert "<img" not in html and "<ol" not in html  # one attestation: no list of one


def test_issued_mail_for_a_whole_deliberation(templates: jinja2.Environment) -> None:
    message = compose(THIRTEEN, templates)
    assert message["Subject"] == (
        f"Vos attestations{NBSP}: 12 blocs de compétences et la certification "
        f"«{NBSP}{CERTIFICATION}{NBSP}»"
    )
    text, html = parts(message)
    for body in (text, html_text(html)):
        assert "Bonjour Léa Martin," in body
        assert f"décision du jury du 3 juillet 2026, 13{NBSP}attestations vous sont" in body
        assert f"et pour 12{NBSP}de ses blocs de compétences" in body
        # The personal links and the public addresses are explained once, not thirteen times.
        assert body.count("personnels") == 1
        assert body.count("expirent le 1er août 2026") == 1
        assert body.count("ces adresses sont publiques et n’expirent pas") == 1
        assert "(format Open Badges)" in body
    for item in THIRTEEN.items:
        assert item.download_url and item.credential_url
        for body in (text, html_text(html)):
            assert item.title in body
            assert item.code in body
            assert item.verify_url in body  # shown: it is the address to give out
        for url in (item.verify_url, item.download_url, item.credential_url):
            assert f"{url}\n" in text  # a URL ends its line: nothing glued to it
            assert html.count(f'href="{url}"') == 1
        assert item.download_url not in html_text(html)  # a token is never shown as text
    assert re.findall(r"^ ?(\d+)\. ", text, re.MULTILINE) == [str(n) for n in range(1, 14)]
    assert html.count("<li") == 13 and "<ol" in html and "<h2" in html


def test_the_list_has_the_blocs_in_code_order_and_the_certification_last(
    templates: jinja2.Environment,
) -> None:
    shuffled = replace(THIRTEEN, items=(DIPLOMA, *reversed(BLOCS)))
    text, html = parts(compose(shuffled, templates))
    assert parts(compose(THIRTEEN, templates)) == (text, html)
    positions = [text.index(f"{item.code}\n") for item in THIRTEEN.items]
    assert positions == sorted(positions)
    assert text.index(" 1. Gérer des relations") < text.index("13. BAC PRO")


def test_one_text_block_per_attestation(templates: jinja2.Environment) -> None:
    text, _ = parts(compose(THIRTEEN, templates))
    listed = text.split(f"Vos 13{NBSP}attestations{NBSP}:\n\n", 1)[1].split("\n\nCordialement")[0]
    blocks = listed.split("\n\n")
    assert len(blocks) == 13
    for block, item in zip(blocks, THIRTEEN.items, strict=True):
        lines = block.split("\n")
        assert lines[0].endswith(f". {item.title}")
        assert [line[:4] for line in lines[1:]] == ["    "] * 4  # aligned under the title
        assert lines[1].strip() == (
            f"Bloc de compétences {item.code}"
            if item.kind == "bloc"
            else f"Certification {item.code}"
        )
        assert lines[2].strip() == f"PDF signé{NBSP}: {item.download_url}"
        assert lines[3].strip() == f"Attestation numérique{NBSP}: {item.credential_url}"
        assert lines[4].strip() == f"Vérification publique{NBSP}: {item.verify_url}"


@pytest.mark.parametrize(
    ("items", "subject"),
    [
        (BLOCS[:4], "Vos 4 attestations de blocs de compétences (RNCP40705)"),
        (
            (BLOCS[0], DIPLOMA),
            f"Vos attestations{NBSP}: 1 bloc de compétences et la certification "
            f"«{NBSP}{CERTIFICATION}{NBSP}»",
        ),
        (
            (DIPLOMA,),
            f"Votre attestation{NBSP}: certification «{NBSP}{CERTIFICATION}{NBSP}» (RNCP40705)",
        ),
    ],
)
def test_subjects_of_issued_mails(
    items: tuple[MailItem, ...], subject: str, templates: jinja2.Environment
) -> None:
    assert compose(replace(ISSUED, items=items), templates)["Subject"] == subject


def test_the_decision_date_when_unknown(templates: jinja2.Environment) -> None:
    for mail in (ISSUED, THIRTEEN, REVOKED_TWO):
        text, html = parts(compose(replace(mail, decided_on=None), templates))
        for body in (text, html_text(html)):
            assert "À la suite de la décision du jury, " in body


def test_links_without_a_known_expiry(templates: jinja2.Environment) -> None:
    text, _ = parts(compose(replace(THIRTEEN, links_expire_on=None), templates))
    assert "ne sont valables que pendant une durée limitée" in text
    assert "expirent le" not in text
    only_pdf = replace(ISSUED, items=(replace(BLOCS[0], credential_url=None),))
    text, html = parts(compose(only_pdf, templates))
    assert f"Le lien de téléchargement est personnel{NBSP}: ne le transmettez pas." in text
    assert "Il expire le 1er août 2026" in text
    assert "Open Badges" not in text and "credential" not in html


def test_revoked_mail_for_a_certification(templates: jinja2.Environment) -> None:
    message = compose(REVOKED, templates)

    assert message["Subject"] == (
        f"Attestation révoquée{NBSP}: certification «{NBSP}{CERTIFICATION}{NBSP}» (RNCP40705)"
    )
    assert message["Message-ID"] == message_id(REVOKED.delivery_key, "certibloc.localhost")
    assert message["Message-ID"] != compose(ISSUED, templates)["Message-ID"]
    text, html = parts(message)
    for body in (text, html_text(html)):
        assert "Léa Martin" in body
        assert "RNCP40705" in body
        assert "Erreur matérielle dans la saisie des notes du jury" in body
        assert "ne prouve plus l’acquisition de cette certification" in body
        assert REVOKED.items[0].verify_url in body
        assert "contactez votre centre d’examen" in body
    for body in (text, html):
        assert "token=" not in body
        assert "Télécharger" not in body


def test_revoked_mail_for_several_attestations(templates: jinja2.Environment) -> None:
    message = compose(REVOKED_TWO, templates)
    assert message["Subject"] == "2 attestations révoquées (RNCP40705)"
    text, html = parts(message)
    for body in (text, html_text(html)):
        assert f"2{NBSP}de vos attestations pour la certification" in body
        assert "ne prouvent plus l’acquisition des blocs de compétences concernés" in body
        assert body.count("signalés comme révoqués") == 1
        for item in REVOKED_TWO.items:
            assert item.title in body
            assert item.code in body
            assert item.verify_url in body
            assert f"Motif{NBSP}: {item.reason}" in body
    assert "1. Administrer le personnel\n" in text and "2. Mathématiques\n" in text
    assert html.count("<li") == 2
    for body in (text, html):
        assert "token=" not in body and "Télécharger" not in body


def test_one_reason_for_all_is_said_once(templates: jinja2.Environment) -> None:
    same = replace(
        REVOKED_TWO, items=tuple(replace(i, reason="Fraude constatée") for i in REVOKED_TWO.items)
    )
    text, html = parts(compose(same, templates))
    for body in (text, html_text(html)):
        assert body.count("Fraude constatée") == 1
    mixed = replace(
        REVOKED_TWO, items=(REVOKED_TWO.items[0], replace(REVOKED_TWO.items[1], reason=None))
    )
    text, html = parts(compose(mixed, templates))
    for body in (text, html_text(html)):
        assert f"Motif{NBSP}: Erreur matérielle" in body
        assert f"Motif{NBSP}: non précisé" in body


def test_revoked_without_a_reason_says_so(templates: jinja2.Environment) -> None:
    bare = replace(REVOKED, items=(replace(REVOKED.items[0], reason=None),))
    text, html = parts(compose(bare, templates))
    assert "Aucun motif n’a été précisé." in text
    assert "Aucun motif n’a été précisé." in html


def test_a_revocation_queued_before_2026_12(templates: jinja2.Environment) -> None:
    # One attestation, its certification unknown (the event did not carry it), no date.
    legacy = replace(
        REVOKED_TWO,
        certification_title="",
        certification_code="",
        decided_on=None,
        items=REVOKED_TWO.items[:1],
    )
    message = compose(legacy, templates)
    assert message["Subject"] == (
        f"Attestation révoquée{NBSP}: bloc de compétences «{NBSP}Administrer le personnel{NBSP}» "
        "(RNCP40705BC03)"
    )
    text, html = parts(message)
    for body in (text, html_text(html)):
        assert (
            f"À la suite de la décision du jury, l’attestation délivrée pour le bloc de "
            f"compétences «{NBSP}Administrer le personnel{NBSP}» (RNCP40705BC03) a été révoquée."
        ) in body
        assert "certification «" not in body


def test_a_reason_on_several_lines_stays_in_its_item(templates: jinja2.Environment) -> None:
    reason = "Relevé de notes corrigé.\r\nVoir le courrier du rectorat."
    mixed = replace(
        REVOKED_TWO, items=(REVOKED_TWO.items[0], replace(REVOKED_TWO.items[1], reason=reason))
    )
    text, _ = parts(compose(mixed, templates))
    assert f"   Motif{NBSP}: Relevé de notes corrigé.\n   Voir le courrier du rectorat.\n" in text


@pytest.mark.parametrize("count", [0, ITEMS_MAX + 1])
def test_an_e_mail_lists_one_to_32_attestations(count: int, templates: jinja2.Environment) -> None:
    mail = replace(THIRTEEN, items=(BLOCS[0],) * count)
    with pytest.raises(ValueError, match="1 to 32 attestations"):
        compose(mail, templates)
    with pytest.raises(ValueError, match="1 to 32 attestations"):
        render(mail, templates)


def test_html_is_escaped_and_text_is_not(templates: jinja2.Environment) -> None:
    hostile = replace(
        THIRTEEN,
        holder_name="Zoé <b>Durand</b>",
        certification_title="Certif <i>x</i>",
        items=(
            replace(
                BLOCS[0],
                title='Bloc <script>alert("x")</script> & co',
                download_url="http://127.0.0.1:8102/v1/attestations/x/pdf?token=a&lang=fr",
            ),
            replace(BLOCS[1], verify_url='http://127.0.0.1:8102/v/x"><script>'),
        ),
    )
    message = compose(hostile, templates)
    text, html = parts(message)

    assert "<script>" not in html and "<b>" not in html and "<i>" not in html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; co" in html
    assert "Zoé &lt;b&gt;Durand&lt;/b&gt;" in html
    assert "Certif &lt;i&gt;x&lt;/i&gt;" in html
    assert 'href="http://127.0.0.1:8102/v1/attestations/x/pdf?token=a&amp;lang=fr"' in html
    assert 'href="http://127.0.0.1:8102/v/x&#34;&gt;&lt;script&gt;"' in html
    assert '<script>alert("x")</script> & co' in text
    assert "Zoé <b>Durand</b>" in text


def test_html_is_plain_enough_for_mail_clients(templates: jinja2.Environment) -> None:
    for mail in (ISSUED, THIRTEEN, REVOKED, REVOKED_TWO):
        _, html = parts(compose(mail, templates))
        assert '<html lang="fr">' in html
        assert "<h1" in html
        for tag in ("<img", "<script", "<style", "<link", "<table", "class="):
            assert tag not in html, tag
        assert "http" not in html.replace('href="http', "").replace(">http", "")


def test_a_line_break_cannot_reach_the_headers(templates: jinja2.Environment) -> None:
    broken = replace(BLOCS[0], title="Gérer\r\nBcc: everyone@example.org")
    for items in ((broken,), (broken, *BLOCS[1:4])):
        message = compose(
            replace(ISSUED, items=items, holder_name="Léa\nBcc: x@example.org"), templates
        )
        assert "\n" not in message["Subject"] and "\r" not in message["Subject"]
        assert message["Bcc"] is None
        assert message["To"].addresses[0].display_name == "Léa Bcc: x@example.org"
    many = replace(
        REVOKED_TWO, certification_code="RNCP40705\r\nBcc: a@example.org", items=REVOKED_TWO.items
    )
    message = compose(many, templates)
    assert message["Bcc"] is None and "\n" not in message["Subject"]
    # Nor the text part's layout: a title keeps to its line.
    text, _ = parts(compose(replace(THIRTEEN, items=(broken, *BLOCS[1:])), templates))
    assert " 1. Gérer Bcc: everyone@example.org\n    Bloc de compétences RNCP40705BC01\n" in text
    with pytest.raises(ValueError, match="one line"):
        compose(replace(ISSUED, delivery_key="mail:x\r\nBcc: a@example.org"), templates)
    with pytest.raises(ValueError, match="one line"):
        render(replace(ISSUED, sender="a@example.org\nBcc: b@example.org"), templates)


def test_wire_form_reads_back_as_the_composed_message(templates: jinja2.Environment) -> None:
    long_names = replace(
        THIRTEEN,
        holder_name="Marie-Éléonore de Saint-Exupéry",
        items=tuple(
            replace(item, title="Concevoir, réaliser et évaluer « des » projets " * 6)
            for item in THIRTEEN.items
        ),
    )
    for mail in (ISSUED, THIRTEEN, REVOKED, REVOKED_TWO, long_names):
        message = compose(mail, templates)
        wire = wire_bytes(message)
        assert all(len(line) <= 78 for line in wire.split(b"\r\n"))  # headers and bodies
        assert b"\n" not in wire.replace(b"\r\n", b"")
        back = email.message_from_bytes(wire, policy=email.policy.default)
        for name in ("From", "To", "Subject", "Date", "Message-ID", "X-Certibloc-Delivery-Key"):
            assert str(back[name]) == str(message[name]), name
        assert isinstance(back, EmailMessage)
        assert parts(back) == parts(message)
    # An ASCII-only message comes out byte for byte as aiosmtplib's own serialization.
    plain = EmailMessage()
    plain["From"] = "a@example.org"
    plain["To"] = "b@example.org"
    plain["Subject"] = "hello"
    plain.set_content("one\ntwo\r\nthree\n")
    plain.add_alternative("<p>one</p>\n", subtype="html")
    assert wire_bytes(plain) == flatten_message(plain)


def _items(n: int) -> tuple[MailItem, ...]:
    return tuple(
        issued_item(k, f"RNCP40705BC{k:02d}", f"Bloc n° {k} : compétences « avancées »")
        for k in range(1, n + 1)
    )


# Inputs the direct writer handles, and unusual ones it must hand back to the stdlib.
DIRECT = [
    ISSUED,
    THIRTEEN,
    REVOKED,
    REVOKED_TWO,
    replace(THIRTEEN, items=_items(ITEMS_MAX)),
    replace(THIRTEEN, items=BLOCS[:4], decided_on=None, links_expire_on=None),
    replace(ISSUED, holder_name="Jean Dupont", items=(replace(BLOCS[0], title="Plain ASCII"),)),
    replace(THIRTEEN, holder_name="Marie-Éléonore de La Tour d'Auvergne-Lauraguais Saint-Exupéry"),
    replace(
        THIRTEEN,
        holder_name="Zoë 李",
        items=tuple(
            replace(i, title="Concevoir, réaliser « des » projets " * 8) for i in THIRTEEN.items
        ),
    ),
    replace(THIRTEEN, holder_name=""),
    # an encoded name and an address that just do not fit on one 78-character line
    replace(ISSUED, holder_name="Éloïse Marchand", to_address="eloise.marchand.2026@example.org"),
    replace(ISSUED, items=(replace(DIPLOMA, title="Plain " * 20),), certification_title="P " * 40),
    replace(
        REVOKED_TWO,
        holder_name="Ana",
        items=tuple(
            replace(i, reason="Ligne 1\nLigne 2 avec un point\n.\nfin" + " très longue" * 20)
            for i in (*REVOKED_TWO.items, DIPLOMA)
        ),
    ),
    replace(
        REVOKED_TWO,
        items=(REVOKED_TWO.items[0], replace(REVOKED_TWO.items[1], reason=".\n..\nFrom x\n")),
    ),
]
HANDED_BACK = [
    replace(ISSUED, holder_name="Dupont, Jean"),  # a special: the name must be quoted
    replace(THIRTEEN, holder_name='Jean "Jo" Dupont'),
    replace(ISSUED, holder_name="A" * 80),  # too long to write unfolded
    replace(ISSUED, to_address='"jean dupont"@example.org'),  # quoted local part
    replace(THIRTEEN, to_address="lea@exemple.français"),  # non-ASCII domain (SMTPUTF8)
    replace(REVOKED_TWO, delivery_key="mail:" + "x" * 80 + ":revoked"),  # long ASCII header
]


@pytest.mark.parametrize("mail", DIRECT + HANDED_BACK)
def test_direct_wire_bytes_are_the_stdlib_message(
    mail: AttestationsMail, templates: jinja2.Environment
) -> None:
    """Written directly, the message has the stdlib's header lines byte for byte and the same
    parts once decoded (the bodies' quoted-printable comes from binascii, not email's)."""
    now = datetime(2026, 7, 3, 9, 0, tzinfo=UTC)
    rendered = render(mail, templates, now=now)
    reference = compose(mail, templates, now=now)
    if mail in DIRECT:
        assert isinstance(rendered, WireMail)
        expected = wire_bytes(reference)
        assert rendered.data.split(b"\r\n\r\n", 1)[0] == expected.split(b"\r\n\r\n", 1)[0]
        back = email.message_from_bytes(rendered.data, policy=email.policy.default)
        assert isinstance(back, EmailMessage)
        assert parts(back) == parts(reference)
        for part in back.iter_parts():
            assert part["Content-Transfer-Encoding"] == "quoted-printable"
            assert part.get_content_charset() == "utf-8"
        assert b"\n" not in rendered.data.replace(b"\r\n", b"")
        assert all(len(line) <= 78 for line in rendered.data.split(b"\r\n"))
        assert rendered.recipients == (mail.to_address,)
        assert rendered.sender == "no-reply@certibloc.localhost"
    else:
        assert isinstance(rendered, EmailMessage)
        assert rendered.as_bytes() == reference.as_bytes()


def test_file_names_for_message_ids() -> None:
    assert file_stem("<0123abcd@certibloc.localhost>") == "0123abcd@certibloc.localhost"
    hostile = file_stem("<../../etc/passwd>")
    assert "/" not in hostile and not hostile.startswith(".")
    assert file_stem("<a/b@x>") != file_stem("<a_b@x>")


# --- sending -------------------------------------------------------------------------------


@pytest.fixture
def sink(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    directory = tmp_path / "mail"
    controller, port = start_sink(directory, refused_recipients=[REFUSED])
    yield directory, port
    controller.stop()


def settings(port: int, timeout: float = 5.0) -> SmtpSettings:
    return SmtpSettings(host="127.0.0.1", port=port, timeout=timeout)


async def wait_for_count(directory: Path, expected: int, timeout: float = 15.0) -> int:
    deadline = time.monotonic() + timeout
    while (count := message_count(directory)) < expected and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    return count


def eml_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.eml"))


def stored(directory: Path, message: EmailMessage) -> EmailMessage:
    stem = file_stem(message["Message-ID"])
    parsed = email.message_from_bytes(
        (directory / f"{stem}.eml").read_bytes(), policy=email.policy.default
    )
    assert isinstance(parsed, EmailMessage)
    return parsed


async def test_two_hundred_messages_one_file_each(
    sink: tuple[Path, int], templates: jinja2.Environment
) -> None:
    directory, port = sink
    messages = [compose(mail_for(n), templates) for n in range(200)]
    pool = SmtpPool(settings(port), size=4)
    try:
        await asyncio.gather(*(pool.send(m) for m in messages))
    finally:
        await pool.close()

    assert await wait_for_count(directory, 200) == 200
    received = stored(directory, messages[17])
    assert received["Message-ID"] == messages[17]["Message-ID"]
    assert received["To"].addresses[0].addr_spec == "candidat17@example.org"
    assert received["Subject"] == messages[17]["Subject"]
    assert parts(received) == parts(messages[17])
    assert not [p for p in directory.iterdir() if p.name.startswith(".")]  # no temporary left


async def test_a_message_sent_again_replaces_its_file(
    sink: tuple[Path, int], templates: jinja2.Environment
) -> None:
    directory, port = sink
    first = compose(ISSUED, templates, now=datetime(2026, 7, 3, 9, 0).astimezone())
    again = compose(ISSUED, templates, now=datetime(2026, 7, 4, 9, 0).astimezone())
    other = compose(mail_for(1), templates)
    pool = SmtpPool(settings(port), size=2)
    try:
        await pool.send(first)
        await pool.send(again)
        await pool.send(other)
    finally:
        await pool.close()

    assert await wait_for_count(directory, 2) == 2
    assert sorted(p.name for p in directory.glob("*.eml")) == sorted(
        f"{file_stem(m['Message-ID'])}.eml" for m in (first, other)
    )
    assert stored(directory, first)["Date"] == again["Date"]  # the last one sent
    assert receptions(directory) == {
        file_stem(first["Message-ID"]): 2,  # received twice, kept once
        file_stem(other["Message-ID"]): 1,
    }


async def test_a_refused_recipient_is_a_permanent_failure(
    sink: tuple[Path, int], templates: jinja2.Environment
) -> None:
    directory, port = sink
    pool = SmtpPool(settings(port), size=1)
    try:
        with pytest.raises(SmtpDeliveryError) as refused:
            await pool.send(compose(replace(ISSUED, to_address=REFUSED), templates))
        assert refused.value.permanent is True
        assert refused.value.code == 550
        assert REFUSED in refused.value.detail
        # The same connection goes on with the next message.
        await pool.send(compose(ISSUED, templates))
    finally:
        await pool.close()
    assert await wait_for_count(directory, 1) == 1


async def test_nobody_listening_is_a_transient_failure(templates: jinja2.Environment) -> None:
    with socket.socket() as bound:  # bound but not listening: connections are refused
        bound.bind(("127.0.0.1", 0))
        port = bound.getsockname()[1]
        pool = SmtpPool(settings(port, timeout=2.0), size=2)
        with pytest.raises(SmtpDeliveryError) as failed:
            await pool.send(compose(ISSUED, templates))
    assert failed.value.permanent is False
    assert "cannot open an SMTP session" in failed.value.detail
    await pool.close()


async def test_a_connection_closed_by_the_server_is_replaced(
    tmp_path: Path, templates: jinja2.Environment
) -> None:
    controller, port = start_sink(tmp_path / "one")
    pool = SmtpPool(settings(port, timeout=2.0), size=1)
    try:
        await pool.send(compose(mail_for(1), templates))
        controller.stop()  # drops the pool's open connection
        controller, _ = start_sink(tmp_path / "two", port=port)
        await pool.send(compose(mail_for(2), templates))
    finally:
        await pool.close()
        controller.stop()
    assert message_count(tmp_path / "one") == 1
    assert message_count(tmp_path / "two") == 1


async def test_sink_undoes_dot_stuffing_and_names_messages_without_id(tmp_path: Path) -> None:
    controller, port = start_sink(tmp_path)
    message = EmailMessage()
    message["From"] = "a@example.org"
    message["To"] = "b@example.org"
    message["Subject"] = "points"
    body = ".\n.leading dot\n..two dots\nend\n"
    message.set_content(body, cte="7bit")
    pool = SmtpPool(settings(port), size=1)
    try:
        await pool.send(message)
    finally:
        await pool.close()
        controller.stop()
    [file] = eml_files(tmp_path)
    assert re.fullmatch(r"[0-9a-f]{32}\.eml", file.name)
    back = email.message_from_bytes(file.read_bytes(), policy=email.policy.default)
    assert isinstance(back, EmailMessage)
    assert back.get_content().replace("\r\n", "\n") == body


async def test_idle_connections_are_checked_before_use(
    sink: tuple[Path, int], templates: jinja2.Environment
) -> None:
    directory, port = sink
    pool = SmtpPool(settings(port), size=1, idle_check=0.0)  # NOOP before every reuse
    try:
        for n in range(3):
            await pool.send(compose(mail_for(n), templates))
    finally:
        await pool.close()
    assert await wait_for_count(directory, 3) == 3


def test_new_links_after_a_revocation(templates: jinja2.Environment) -> None:
    renewed = replace(
        THIRTEEN, delivery_key="mail:Zq8Wb2Lx9Vb3Nc8Mz1Kp4R:links_renewed", event="links_renewed"
    )
    message = compose(renewed, templates)
    assert message["Subject"] == "Nouveaux liens vers vos 13 attestations (RNCP40705)"
    text, html = parts(message)
    assert (
        "les liens personnels de téléchargement qui vous avaient été envoyés ne fonctionnent"
        in text
    )
    assert "13 attestations en vigueur" in text and "jury" not in text
    assert text.count("?token=") == 26 and html.count("/pdf?token=") == 13
    assert "Nouveaux liens vers vos attestations" in html
    assert render(renewed, templates) is not None  # the fast writer takes it too
    one = compose(replace(renewed, items=(BLOCS[0],)), templates)
    assert one["Subject"].startswith("Nouveau lien vers votre attestation : bloc de compétences")
    assert "Voici un nouveau lien vers votre attestation pour le bloc" in parts(one)[0]


def test_the_personal_space_link_when_there_is_one(templates: jinja2.Environment) -> None:
    space = f"{BASE}/space?token={TOKEN}"
    text, html = parts(compose(replace(THIRTEEN, space_url=space), templates))
    assert f"espace personnel (lien personnel, à ne pas transmettre) :\n{space}\n" in text
    assert f'<a href="{space}"' in html and "ouvrir mon espace personnel" in html
    without = parts(compose(THIRTEEN, templates))[0]
    assert "espace personnel" not in without


# --- languages -----------------------------------------------------------------------------


def test_an_english_candidate_gets_the_mail_in_english_with_links_that_open_in_english(
    templates: jinja2.Environment,
) -> None:
    item = replace(BLOCS[0], route="exam", session="2026-06")
    english = replace(ISSUED, items=(item,), language="en")
    message = compose(english, templates)
    assert message["Content-Language"] == "en"
    subject = message["Subject"]
    assert subject.startswith("Your attestation: block of competences “")
    text, html = parts(message)
    assert text.startswith("Hello Léa Martin,\n")
    assert "Following the jury's decision of 3 July 2026, you are issued an attestation" in text
    assert "June 2026 session, by examination" in text
    assert "Kind regards," in text and "Cordialement" not in text
    assert f"{item.verify_url}?lang=en" in text
    assert f"{item.download_url}&lang=en" in text  # the PDF opens in English too
    assert '<html lang="en">' in html and "Your attestation is available" in html
    assert "Following the jury's decision of 3 July 2026" in html_text(html)
    # The wire form says the same.
    wire = render(english, templates)
    data = wire.data if isinstance(wire, WireMail) else bytes(wire)
    assert b"Content-Language: en\r\n" in data


def test_a_french_candidate_gets_the_mail_in_french_with_the_session_and_route(
    templates: jinja2.Environment,
) -> None:
    item = replace(BLOCS[0], route="carried_over", session="2026-06", grade_session="2025-04")
    message = compose(replace(ISSUED, items=(item,)), templates)
    assert message["Content-Language"] == "fr"
    assert message["Subject"].startswith("Votre attestation\u00a0: bloc de compétences")
    text, html = parts(message)
    assert text.startswith("Bonjour Léa Martin,\n")
    assert "À la suite de la décision du jury du 3 juillet 2026" in text
    assert (
        "Session de juin 2026, par report d'une note obtenue à une session antérieure "
        "(session d'avril 2025)" in text
    )
    assert "lang=" not in text and "Hello" not in text
    assert '<html lang="fr">' in html
