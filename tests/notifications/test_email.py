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
    AttestationMail,
    compose,
    message_id,
    render,
    template_environment,
)
from services.notifications.sink import file_stem, message_count, receptions, start_sink
from services.notifications.smtp import SmtpDeliveryError, SmtpPool, SmtpSettings
from services.notifications.wire import WireMail, wire_bytes

REFUSED = "refuse@example.org"

ISSUED = AttestationMail(
    delivery_key="mail:q3Vx8Lr2TmWc5NbYp0Ks7A:issued",
    event="issued",
    to_address="lea.martin@example.org",
    holder_name="Léa Martin",
    kind="bloc",
    code="RNCP40705BC01",
    title="Gérer des relations avec les clients, les usagers et les adhérents",
    certification_title="BAC PRO - Assistance à la gestion des organisations et de leurs activités",
    verify_url="http://127.0.0.1:8102/v/q3Vx8Lr2TmWc5NbYp0Ks7A",
    download_url="http://127.0.0.1:8102/v1/attestations/q3Vx8Lr2TmWc5NbYp0Ks7A/pdf?token=t1.abc.def",
    credential_url=(
        "http://127.0.0.1:8102/v1/attestations/q3Vx8Lr2TmWc5NbYp0Ks7A/credential?token=t1.abc.def"
    ),
    reason=None,
    sender="certibloc <no-reply@certibloc.localhost>",
    domain="certibloc.localhost",
    links_expire_on=date(2026, 8, 1),
)

REVOKED = replace(
    ISSUED,
    delivery_key="mail:q3Vx8Lr2TmWc5NbYp0Ks7A:revoked",
    event="revoked",
    kind="certification",
    code="RNCP40705",
    title="BAC PRO - Assistance à la gestion des organisations et de leurs activités",
    download_url=None,
    credential_url=None,
    reason="Erreur matérielle dans la saisie des notes du jury",
    links_expire_on=None,
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


def mail_for(n: int, **changes: object) -> AttestationMail:
    aid = f"t{n:021d}"
    return replace(
        ISSUED,
        delivery_key=f"mail:{aid}:issued",
        to_address=f"candidat{n}@example.org",
        verify_url=f"http://127.0.0.1:8102/v/{aid}",
        **changes,  # type: ignore[arg-type]
    )


# --- composing -----------------------------------------------------------------------------


def test_message_id_is_derived_from_the_delivery_key() -> None:
    first = message_id("mail:a:issued", "certibloc.localhost")
    assert re.fullmatch(r"<[0-9a-f]{32}@certibloc\.localhost>", first)
    assert message_id("mail:a:issued", "certibloc.localhost") == first
    assert message_id("mail:a:revoked", "certibloc.localhost") != first


def test_issued_mail_for_a_bloc(templates: jinja2.Environment) -> None:
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
    for body in (text, html):
        assert "Léa Martin" in body
        assert "RNCP40705BC01" in body
        assert "Gérer des relations avec les clients, les usagers et les adhérents" in body
        assert "BAC PRO - Assistance à la gestion des organisations" in body
        assert "bloc de compétences" in body
        assert "personnels" in body
        assert "expirent le 1er août 2026" in body
    for url in (ISSUED.verify_url, ISSUED.download_url, ISSUED.credential_url):
        assert url is not None
        assert url in text
        assert f'href="{url}"' in html
    assert '<html lang="fr">' in html
    assert "<img" not in html


def test_revoked_mail_for_a_certification(templates: jinja2.Environment) -> None:
    message = compose(REVOKED, templates)

    assert message["Subject"].startswith("Révocation de votre attestation\u00a0: certification «")
    assert "(RNCP40705)" in message["Subject"]
    assert message["Message-ID"] == message_id(REVOKED.delivery_key, "certibloc.localhost")
    assert message["Message-ID"] != compose(ISSUED, templates)["Message-ID"]
    text, html = parts(message)
    for body in (text, html):
        assert "Léa Martin" in body
        assert "RNCP40705" in body
        assert "Erreur matérielle dans la saisie des notes du jury" in body
        assert "ne prouve plus l’acquisition de cette certification" in body
        assert REVOKED.verify_url in body
        assert "token=" not in body
        assert "Télécharger" not in body


def test_revoked_without_a_reason_says_so(templates: jinja2.Environment) -> None:
    text, _ = parts(compose(replace(REVOKED, reason=None), templates))
    assert "Aucun motif n’a été précisé." in text


def test_html_is_escaped_and_text_is_not(templates: jinja2.Environment) -> None:
    hostile = replace(
        ISSUED,
        title='Bloc <script>alert("x")</script> & co',
        holder_name="Zoé <b>Durand</b>",
        download_url="http://127.0.0.1:8102/v1/attestations/x/pdf?token=a&lang=fr",
    )
    message = compose(hostile, templates)
    text, html = parts(message)

    assert "<script>" not in html and "<b>" not in html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; co" in html
    assert "Zoé &lt;b&gt;Durand&lt;/b&gt;" in html
    assert 'href="http://127.0.0.1:8102/v1/attestations/x/pdf?token=a&amp;lang=fr"' in html
    assert '<script>alert("x")</script> & co' in text
    assert "Zoé <b>Durand</b>" in text


def test_a_line_break_cannot_reach_the_headers(templates: jinja2.Environment) -> None:
    message = compose(replace(ISSUED, title="Gérer\r\nBcc: everyone@example.org"), templates)
    assert "\n" not in message["Subject"]
    assert message["Bcc"] is None
    with pytest.raises(ValueError, match="one line"):
        compose(replace(ISSUED, delivery_key="mail:x\r\nBcc: a@example.org"), templates)


def test_wire_form_reads_back_as_the_composed_message(templates: jinja2.Environment) -> None:
    long_names = replace(
        ISSUED,
        holder_name="Marie-Éléonore de Saint-Exupéry",
        title="Concevoir, réaliser et évaluer « des » projets " * 6,
    )
    for mail in (ISSUED, REVOKED, long_names):
        message = compose(mail, templates)
        wire = wire_bytes(message)
        head = wire.split(b"\r\n\r\n", 1)[0]
        assert all(len(line) <= 78 for line in head.split(b"\r\n"))
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


# Inputs the direct writer handles, and unusual ones it must hand back to the stdlib.
DIRECT = [
    ISSUED,
    REVOKED,
    replace(ISSUED, holder_name="Jean Dupont", title="Plain ASCII title"),
    replace(ISSUED, holder_name="Marie-Éléonore de La Tour d'Auvergne-Lauraguais Saint-Exupéry"),
    replace(ISSUED, holder_name="Zoë 李", title="Concevoir, réaliser « des » projets " * 6),
    replace(ISSUED, holder_name=""),
    # an encoded name and an address that just do not fit on one 78-character line
    replace(ISSUED, holder_name="Éloïse Marchand", to_address="eloise.marchand.2026@example.org"),
    replace(ISSUED, kind="certification", title="Plain " * 20),
    replace(REVOKED, reason="Ligne 1\nLigne 2 avec un point\n.\nfin", holder_name="Ana"),
]
HANDED_BACK = [
    replace(ISSUED, holder_name="Dupont, Jean"),  # a special: the name must be quoted
    replace(ISSUED, holder_name='Jean "Jo" Dupont'),
    replace(ISSUED, holder_name="A" * 80),  # too long to write unfolded
    replace(ISSUED, to_address='"jean dupont"@example.org'),  # quoted local part
    replace(ISSUED, to_address="lea@exemple.français"),  # non-ASCII domain (SMTPUTF8)
    replace(ISSUED, delivery_key="mail:" + "x" * 80 + ":issued"),  # long ASCII header
]


@pytest.mark.parametrize("mail", DIRECT + HANDED_BACK)
def test_direct_wire_bytes_equal_the_stdlib_serialization(
    mail: AttestationMail, templates: jinja2.Environment
) -> None:
    now = datetime(2026, 7, 3, 9, 0, tzinfo=UTC)
    rendered = render(mail, templates, now=now)
    reference = compose(mail, templates, now=now)
    if mail in DIRECT:
        assert isinstance(rendered, WireMail)
        assert rendered.data == wire_bytes(reference)
        head = rendered.data.split(b"\r\n\r\n", 1)[0]
        assert all(len(line) <= 78 for line in head.split(b"\r\n"))
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
