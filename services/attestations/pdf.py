"""The candidate's attestation as a PDF: A4, signed (PAdES) and carrying its credential; French,
or English when drawn with English ``Texts`` (``texts=``, from the service's catalogues: the
msgids are the French texts below; ``/Lang`` says which). The drawing helpers take ``texts``
as their last, optional parameter (None: French), so other documents reuse them as they are.

``render`` lays the page out with reportlab (built-in Helvetica, WinAnsi: French accents,
« », œ and ’ are covered), draws the verification URL as text and as a QR code (segno, with a
fixed mask so no time goes into choosing one) and attaches the credential's compact JWS as
``attestation.vc.jwt`` (``application/vc+jwt``), both in the document's embedded files and as a
PDF 2.0 associated file of the document. ``PdfSigner.sign`` adds a PAdES baseline signature
(pyHanko, ``/ETSI.CAdES.detached``) as a certification signature that allows no further change.
``build_signed_pdf`` does both in a single incremental update, so the signature covers the
attachment. ``embedded_credential`` reads the attachment back, from any PDF.

pyHanko's synchronous API runs its own event loop (``asyncio.run``): call ``sign`` and
``build_signed_pdf`` from a worker thread or process, never on a thread whose event loop is
running (``await asyncio.to_thread(build_signed_pdf, ...)``).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import os
import re
import tempfile
import threading
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date
from io import BytesIO
from pathlib import Path
from typing import Any, Literal
from xml.sax.saxutils import escape

import segno
from cryptography import x509
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.x509.oid import NameOID
from pyhanko.keys import load_certs_from_pemder_data, load_private_key_from_pemder_data
from pyhanko.pdf_utils import embed, generic
from pyhanko.pdf_utils.decode_limits import (
    DecodeLimits,
    DocumentDecodeBudget,
    StreamDecodeLimits,
)
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.misc import PdfError
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign import fields, signers
from pyhanko_certvalidator.registry import SimpleCertificateStore
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.pdfgen.canvas import Canvas
from reportlab.platypus import (
    BaseDocTemplate,
    Flowable,
    Frame,
    ListFlowable,
    ListItem,
    PageTemplate,
    Paragraph,
)

from services.runtime.i18n import N_, Texts, french

__all__ = [
    "ATTACHMENT_MIME_TYPE",
    "ATTACHMENT_NAME",
    "PdfContent",
    "PdfSigner",
    "build_signed_pdf",
    "cached_pdf",
    "credential_in",
    "embedded_credential",
    "french_date",
    "open_pdf",
    "render",
]

ATTACHMENT_NAME = "attestation.vc.jwt"
ATTACHMENT_MIME_TYPE = "application/vc+jwt"
SIGNATURE_FIELD = "Signature1"
QR_MASK = 4
"""Any of the 8 masks gives a valid code; fixing one saves segno ~6 ms of penalty scoring."""

_MAX_CREDENTIAL_BYTES = 256 * 1024
_MAX_ATTACHMENTS = 64  # ours carry one; a name tree of thousands is not worth reading
SIGNER_FILE = "pdf-signer.pem"  # the PDF identity: key and certificate, one PEM file
_CERT_VALIDITY = dt.timedelta(days=3650)


@dataclass(frozen=True)
class PdfContent:
    """What the attestation PDF says."""

    attestation_id: str
    holder_name: str
    kind: Literal["bloc", "certification"]
    code: str
    title: str
    competences: tuple[str, ...]
    certification_code: str
    certification_title: str
    issuer_name: str
    issued_on: date  # when it was signed
    verify_url: str
    # What the jury decided (attestations issued before 2026-12 know none of it):
    awarded_on: date | None = None  # the date of the jury's decision
    session: str | None = None  # "session de juin 2026"
    route: str | None = None  # "par examen", "par la VAE", "par report d'une note …"
    mention: str | None = None  # "Bien" (the diploma only)
    exam_center: str | None = None  # the exam center's name, when the candidate wants it


# --------------------------------------------------------------------------- French text

_MONTHS = (
    "janvier",
    "février",
    "mars",
    "avril",
    "mai",
    "juin",
    "juillet",
    "août",
    "septembre",
    "octobre",
    "novembre",
    "décembre",
)


def french_date(day: date) -> str:
    """``3 juillet 2026``, ``1er mai 2026``: no dependency on the OS locale."""
    number = "1er" if day.day == 1 else str(day.day)
    return f"{number} {_MONTHS[day.month - 1]} {day.year}"


# Characters outside WinAnsi (cp1252) that have an obvious stand-in inside it.
_WINANSI_STANDINS = str.maketrans(
    {
        "\u202f": "\u00a0",  # narrow no-break space (French « » : ; ! ?) -> no-break space
        "\u2007": "\u00a0",
        "\u2009": " ",
        "\u200a": " ",
        "\u200b": "",
        "\u2010": "-",
        "\u2011": "-",
        "\u2212": "-",
        "\u2032": "'",
        "\u2033": '"',
    }
)


def _winansi(text: str) -> str:
    """Text the built-in Type 1 fonts can show: NFC, stand-ins, else accents dropped, else '?'."""
    text = unicodedata.normalize("NFC", text).translate(_WINANSI_STANDINS)
    try:
        text.encode("cp1252")
    except UnicodeEncodeError:
        out = []
        for char in text:
            try:
                char.encode("cp1252")
                out.append(char)
            except UnicodeEncodeError:
                base = "".join(
                    c for c in unicodedata.normalize("NFKD", char) if not unicodedata.combining(c)
                )
                try:
                    base.encode("cp1252")
                    out.append(base or "?")
                except UnicodeEncodeError:
                    out.append("?")
        text = "".join(out)
    return text


def _markup(text: str) -> str:
    """Plain text -> reportlab Paragraph markup."""
    return escape(_winansi(text))


# --------------------------------------------------------------------------- layout

_INK = colors.HexColor("#1d2433")
_ACCENT = colors.HexColor("#1f4e79")
_MUTED = colors.HexColor("#5b6474")
_RULE = colors.HexColor("#c9d3e0")
_PANEL = colors.HexColor("#f2f5f9")

_PAGE_W, _PAGE_H = A4
_MARGIN = 20 * mm
_HEADER_H = 16 * mm
_FOOTER_H = 10 * mm
_VERIFY_H = 46 * mm
_QR_SIZE = 36 * mm

_STYLES = {
    "title": ParagraphStyle(
        "title", fontName="Helvetica-Bold", fontSize=22, leading=27, textColor=_ACCENT
    ),
    "lead": ParagraphStyle(
        "lead", fontName="Helvetica", fontSize=11, leading=15, textColor=_MUTED, spaceBefore=14
    ),
    "holder": ParagraphStyle(
        "holder", fontName="Helvetica-Bold", fontSize=20, leading=25, textColor=_INK, spaceBefore=4
    ),
    "subject": ParagraphStyle(
        "subject", fontName="Helvetica-Bold", fontSize=13, leading=17, textColor=_INK, spaceBefore=4
    ),
    "body": ParagraphStyle(
        "body", fontName="Helvetica", fontSize=10.5, leading=14, textColor=_INK, spaceBefore=6
    ),
    "heading": ParagraphStyle(
        "heading",
        fontName="Helvetica-Bold",
        fontSize=11.5,
        leading=15,
        textColor=_ACCENT,
        spaceBefore=14,
        spaceAfter=4,
        keepWithNext=1,
    ),
    "issued": ParagraphStyle(
        "issued", fontName="Helvetica", fontSize=10.5, leading=14, textColor=_INK, spaceBefore=14
    ),
    "item": ParagraphStyle("item", fontName="Helvetica", fontSize=10.5, leading=13.5),
    "box_title": ParagraphStyle(
        "box_title", fontName="Helvetica-Bold", fontSize=11, leading=14, textColor=_ACCENT
    ),
    "box_url": ParagraphStyle(
        "box_url", fontName="Courier-Bold", fontSize=9, leading=11.5, textColor=_INK, spaceBefore=3
    ),
    "box_text": ParagraphStyle(
        "box_text", fontName="Helvetica", fontSize=8.3, leading=10.6, textColor=_INK, spaceBefore=5
    ),
}

# msgids (translated when drawn): French is the source language.
_TITLES = {
    "bloc": N_("Attestation de bloc de compétences"),
    "certification": N_("Attestation de certification"),
}
_ACQUIRED = {
    "bloc": N_("a acquis les compétences du bloc"),
    "certification": N_("a obtenu la certification professionnelle"),
}
_HOW_TO_VERIFY = N_(
    "<b>Comment vérifier\u00a0?</b> Scannez le QR code ou saisissez l’adresse ci-dessus dans un "
    "navigateur\u00a0: la page indique si l’attestation est valide, révoquée ou inconnue, ce "
    "qu’elle certifie, par qui et quand. Ce PDF porte une signature électronique (PAdES) que "
    "votre lecteur PDF affiche dans son panneau «\u00a0Signatures\u00a0»\u00a0; il contient en "
    "pièce jointe l’attestation numérique «\u00a0attestation.vc.jwt\u00a0» (W3C Verifiable "
    "Credential), qui peut être vérifiée à la même adresse."
)


def draw_qr(canvas: Canvas, matrix: tuple[bytearray, ...], x: float, y: float, size: float) -> None:
    """Draw a QR matrix with a 4-module quiet zone in the square (x, y, size); one path."""
    quiet = 4
    count = len(matrix) + 2 * quiet
    module = size / count
    canvas.saveState()
    canvas.setFillColor(colors.white)
    canvas.rect(x, y, size, size, stroke=0, fill=1)
    canvas.setFillColor(colors.black)
    path = canvas.beginPath()
    top = y + size - quiet * module
    for r, row in enumerate(matrix):
        row_y = top - (r + 1) * module
        c = 0
        width = len(row)
        while c < width:
            if row[c]:
                start = c
                while c < width and row[c]:
                    c += 1
                path.rect(x + (quiet + start) * module, row_y, (c - start) * module, module)
            else:
                c += 1
    canvas.drawPath(path, stroke=0, fill=1)
    canvas.restoreState()


def _story(content: PdfContent, texts: Texts | None = None) -> list[Flowable]:
    t = texts or french()
    _ = t.gettext
    story: list[Flowable] = [
        Paragraph(_markup(_(_TITLES[content.kind])), _STYLES["title"]),
        Paragraph(
            _markup(_("%(issuer)s atteste que") % {"issuer": content.issuer_name}),
            _STYLES["lead"],
        ),
        Paragraph(_markup(content.holder_name), _STYLES["holder"]),
        Paragraph(_markup(_(_ACQUIRED[content.kind])), _STYLES["body"]),
        Paragraph(f"{_markup(content.code)}\u00a0— {_markup(content.title)}", _STYLES["subject"]),
    ]
    if content.kind == "bloc":
        story.append(
            Paragraph(
                _(
                    "de la certification professionnelle <b>%(code)s</b>\u00a0— %(title)s, "
                    "enregistrée au Répertoire national des certifications professionnelles "
                    "(RNCP)."
                )
                % {
                    "code": _markup(content.certification_code),
                    "title": _markup(content.certification_title),
                },
                _STYLES["body"],
            )
        )
    else:
        story.append(
            Paragraph(
                _("enregistrée au Répertoire national des certifications professionnelles (RNCP)."),
                _STYLES["body"],
            )
        )
    if content.competences:
        label = (
            _("Compétences attestées") if content.kind == "bloc" else _("Compétences certifiées")
        )
        items: list[Any] = [  # reportlab's stubs don't know ListFlowable takes ListItems
            ListItem(Paragraph(_markup(c), _STYLES["item"]), spaceAfter=3)
            for c in content.competences
        ]
        story.append(  # keepWithNext
            Paragraph(_markup(_("%(label)s\u00a0:") % {"label": label}), _STYLES["heading"])
        )
        story.append(
            ListFlowable(
                items,
                bulletType="bullet",
                start="•",
                bulletFontName="Helvetica-Bold",
                bulletFontSize=9,
                bulletColor=_ACCENT,
                leftIndent=14,
                bulletOffsetY=-1,
            )
        )
    issuer = f"<b>{_markup(content.issuer_name)}</b>"
    if content.awarded_on is None:  # issued before 2026-12: only the signing date is known
        story.append(
            Paragraph(
                _("Délivrée par %(issuer)s le %(day)s.")
                % {"issuer": issuer, "day": f"<b>{_markup(t.date(content.issued_on))}</b>"},
                _STYLES["issued"],
            )
        )
        return story
    story.append(Paragraph(_decision_sentence(content, t), _STYLES["issued"]))
    story.append(
        Paragraph(
            _("Délivrée par %(issuer)s sur décision du jury du %(day)s.")
            % {"issuer": issuer, "day": f"<b>{_markup(t.date(content.awarded_on))}</b>"},
            _STYLES["body"],
        )
    )
    if content.exam_center:
        story.append(
            Paragraph(
                _markup(_("Centre d'examen\u00a0: %(center)s.") % {"center": content.exam_center}),
                _STYLES["body"],
            )
        )
    signed = t.date(content.issued_on)
    story.append(
        Paragraph(
            _markup(_("Attestation signée électroniquement le %(day)s.") % {"day": signed}),
            _STYLES["body"],
        )
    )
    return story


def _decision_sentence(content: PdfContent, texts: Texts | None = None) -> str:
    """The decision's facts known: "Bloc de compétences acquis par examen, session de juin
    2026." / "Certification obtenue par examen, session de juin 2026, mention Bien"."""
    _ = (texts or french()).gettext
    what = _("Bloc de compétences acquis") if content.kind == "bloc" else _("Certification obtenue")
    parts = [f"{_markup(what)} {_markup(content.route)}" if content.route else _markup(what)]
    if content.session:
        parts.append(_markup(content.session))
    if content.mention:
        parts.append(_("mention %(mention)s") % {"mention": f"<b>{_markup(content.mention)}</b>"})
    return ", ".join(parts) + "."


def draw_page_frame(canvas: Canvas, heading: str, footer: str) -> None:
    """What every page of our documents has: the accent band, a heading line (WinAnsi
    text), a footer line and its rule ("page n / N" is drawn by ``_NumberedCanvas``)."""
    canvas.saveState()
    canvas.setFillColor(_ACCENT)
    canvas.rect(0, _PAGE_H - 5 * mm, _PAGE_W, 5 * mm, stroke=0, fill=1)
    canvas.setFillColor(_MUTED)
    canvas.setFont("Helvetica-Bold", 8)
    canvas.drawString(_MARGIN, _PAGE_H - 12 * mm, heading)
    canvas.setFont("Helvetica", 8)
    canvas.drawString(_MARGIN, 12 * mm, footer)
    canvas.setStrokeColor(_RULE)
    canvas.setLineWidth(0.6)
    canvas.line(_MARGIN, 15.5 * mm, _PAGE_W - _MARGIN, 15.5 * mm)
    canvas.restoreState()


def _page_decorations(
    content: PdfContent, texts: Texts | None = None
) -> tuple[Callable[..., None], Callable[..., None]]:
    _ = (texts or french()).gettext
    issuer = _winansi(content.issuer_name)
    running = _winansi(
        _("%(title)s — %(holder)s (suite)")
        % {"title": _(_TITLES[content.kind]), "holder": content.holder_name}
    )
    footer = _winansi(_("Attestation n° %(id)s") % {"id": content.attestation_id})
    matrix = segno.make(content.verify_url, error="m", mask=QR_MASK, micro=False).matrix
    url = Paragraph(_markup(content.verify_url), _STYLES["box_url"])
    how = Paragraph(_winansi(_(_HOW_TO_VERIFY)), _STYLES["box_text"])
    box_title = Paragraph(_markup(_("Vérifier cette attestation")), _STYLES["box_title"])

    def common(canvas: Canvas, doc: Any) -> None:
        draw_page_frame(canvas, issuer if doc.page == 1 else running, footer)

    def first_page(canvas: Canvas, doc: Any) -> None:
        common(canvas, doc)
        canvas.saveState()
        box_x, box_y = _MARGIN, _MARGIN
        box_w = _PAGE_W - 2 * _MARGIN
        canvas.setFillColor(_PANEL)
        canvas.setStrokeColor(_RULE)
        canvas.roundRect(box_x, box_y, box_w, _VERIFY_H, 3 * mm, stroke=1, fill=1)
        pad = (_VERIFY_H - _QR_SIZE) / 2
        draw_qr(canvas, matrix, box_x + pad, box_y + pad, _QR_SIZE)
        text_x = box_x + 2 * pad + _QR_SIZE
        text_w = box_w - (text_x - box_x) - pad
        cursor = box_y + _VERIFY_H - pad
        for para in (box_title, url, how):
            _, height = para.wrap(text_w, _VERIFY_H)
            cursor -= height + (para.style.spaceBefore if para is not box_title else 0)
            para.drawOn(canvas, text_x, cursor)
        canvas.restoreState()

    return first_page, common


class _NumberedCanvas(Canvas):
    """Defers each page's output so the footer can say "page n / N"."""

    def __init__(
        self, *args: Any, page_label: str = "page %(n)d / %(total)d", **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self._pages: list[dict[str, Any]] = []
        self.page_label = page_label  # translated by _layout

    def showPage(self) -> None:  # noqa: N802  # reportlab's name
        self._pages.append(dict(self.__dict__))
        self._startPage()  # type: ignore[attr-defined]  # not in reportlab's stubs

    def save(self) -> None:
        total = len(self._pages)
        for state in self._pages:
            self.__dict__.update(state)
            self.setFillColor(_MUTED)
            self.setFont("Helvetica", 8)
            self.drawRightString(
                _PAGE_W - _MARGIN,
                12 * mm,
                _winansi(self.page_label % {"n": self.getPageNumber(), "total": total}),
            )
            super().showPage()
        super().save()


def a4_document(out: BytesIO, *, title: str, author: str, subject: str, lang: str) -> Any:
    """Our documents' page setup (A4, margins) and metadata (WinAnsi; ``lang``: /Lang)."""
    return BaseDocTemplate(
        out,
        pagesize=A4,
        leftMargin=_MARGIN,
        rightMargin=_MARGIN,
        topMargin=_MARGIN,
        bottomMargin=_MARGIN,
        title=_winansi(title),
        author=_winansi(author),
        subject=_winansi(subject),
        creator="certibloc",
        lang=lang,
    )


def _layout(content: PdfContent, texts: Texts | None = None) -> bytes:
    """The pages alone (reportlab), without attachment or signature."""
    t = texts or french()
    out = BytesIO()
    doc = a4_document(
        out,
        title=f"{t.gettext(_TITLES[content.kind])} — {content.code}",
        author=content.issuer_name,
        subject=f"{content.code} — {content.title} — {content.holder_name}",
        lang=t.tag,
    )
    body_w = _PAGE_W - 2 * _MARGIN
    top = _PAGE_H - _MARGIN - _HEADER_H + 8 * mm
    first_bottom = _MARGIN + _VERIFY_H + 6 * mm
    later_bottom = _MARGIN + _FOOTER_H - 4 * mm
    first_page, later_page = _page_decorations(content, t)
    doc.addPageTemplates(
        [
            PageTemplate(
                id="first",
                frames=[Frame(_MARGIN, first_bottom, body_w, top - first_bottom, id="first")],
                onPage=first_page,
                autoNextPageTemplate="later",
            ),
            PageTemplate(
                id="later",
                frames=[Frame(_MARGIN, later_bottom, body_w, top - later_bottom, id="later")],
                onPage=later_page,
            ),
        ]
    )
    numbered = functools.partial(_NumberedCanvas, page_label=t.gettext("page %(n)d / %(total)d"))
    doc.build(_story(content, t), canvasmaker=numbered)
    return out.getvalue()


def _attach_credential(
    writer: IncrementalPdfFileWriter, credential_jws: str, name: str = ATTACHMENT_NAME
) -> None:
    data = credential_jws.encode("ascii")
    stream = embed.EmbeddedFileObject.from_file_data(
        writer,
        data,
        compress=False,  # a JWS is base64url: deflate saves little and costs time
        params=embed.EmbeddedFileParams(embed_size=True, embed_checksum=True),
        mime_type=ATTACHMENT_MIME_TYPE,
    )
    embed.embed_file(
        writer,
        embed.FileSpec(
            file_spec_string=name,
            file_name=name,
            embedded_data=stream,
            description="Attestation numérique (W3C Verifiable Credential, VC-JOSE-COSE)",
            af_relationship=generic.pdf_name("/Source"),
        ),
    )


def _check_jws(credential_jws: str) -> None:
    if not credential_jws.isascii() or credential_jws.count(".") != 2:
        raise ValueError("credential_jws must be a compact JWS (three base64url parts)")


def render(content: PdfContent, credential_jws: str, texts: Texts | None = None) -> bytes:
    """The unsigned attestation PDF, with the credential attached (``texts``: its language)."""
    _check_jws(credential_jws)
    writer = IncrementalPdfFileWriter(BytesIO(_layout(content, texts)))
    _attach_credential(writer, credential_jws)
    out = BytesIO()
    writer.write(out)  # type: ignore[no-untyped-call]
    return out.getvalue()


def build_signed_pdf(
    content: PdfContent, credential_jws: str, signer: PdfSigner, texts: Texts | None = None
) -> bytes:
    """Render, attach the credential and sign, the attachment and signature in one update."""
    _check_jws(credential_jws)
    writer = IncrementalPdfFileWriter(BytesIO(_layout(content, texts)))
    _attach_credential(writer, credential_jws)
    return signer.sign_writer(writer)


# --------------------------------------------------------------------------- reading back

_READ_LIMITS = DecodeLimits(
    per_stream=StreamDecodeLimits(max_ratio=200, ratio_floor=1024 * 1024, max_output_size=8 << 20),
    document_budget=DocumentDecodeBudget(base_allowance=64 << 20, max_ratio=50),
)


def _get(container: Any, key: str) -> Any:
    """``container[key]`` dereferenced, or None (pyHanko's ``.get`` keeps indirect references)."""
    if not isinstance(container, generic.DictionaryObject):
        return None
    return _deref(container.get(key))


def _deref(value: Any) -> Any:
    if isinstance(value, generic.PdfObject):
        return value.get_object()  # type: ignore[no-untyped-call]
    return value


def _name_tree_leaves(node: Any, depth: int = 0) -> Iterator[tuple[Any, Any]]:
    if depth > 16 or not isinstance(node, generic.DictionaryObject):
        return
    names = _get(node, "/Names")
    if isinstance(names, generic.ArrayObject):
        for i in range(0, len(names) - 1, 2):
            yield names[i], names[i + 1]
    kids = _get(node, "/Kids")
    if isinstance(kids, generic.ArrayObject):
        for kid in kids:
            yield from _name_tree_leaves(kid, depth + 1)


def _spec_names(key: Any, spec: generic.DictionaryObject) -> set[str]:
    found = {str(key)} if isinstance(key, str) else set()
    for entry in ("/UF", "/F"):
        value = _get(spec, entry)
        if isinstance(value, str):
            found.add(value)
    return found


def open_pdf(pdf: bytes) -> PdfFileReader:
    """A lenient reader with decode limits (no stream inflates beyond them); PdfError if none."""
    return PdfFileReader(BytesIO(pdf), strict=False, decode_limits=_READ_LIMITS)


def credential_in(root: Any) -> str | None:
    """The JWS attached as ``attestation.vc.jwt`` under a document catalog, or None."""
    candidates = list(_name_tree_leaves(_get(_get(root, "/Names"), "/EmbeddedFiles")))
    associated = _get(root, "/AF")
    if isinstance(associated, generic.ArrayObject):
        candidates.extend((None, spec) for spec in associated)
    for key, raw_spec in candidates[:_MAX_ATTACHMENTS]:
        spec = _deref(raw_spec)
        if not isinstance(spec, generic.DictionaryObject):
            continue
        if ATTACHMENT_NAME not in _spec_names(key, spec):
            continue
        ef = _get(spec, "/EF")
        stream = _get(ef, "/UF") or _get(ef, "/F")
        if not isinstance(stream, generic.StreamObject):
            continue
        data = stream.data
        if len(data) > _MAX_CREDENTIAL_BYTES:
            return None
        text = data.decode("ascii").strip()
        return text if text.count(".") == 2 else None
    return None


def embedded_credential(pdf: bytes) -> str | None:
    """The JWS attached as ``attestation.vc.jwt``; None if absent, unreadable or not a PDF.

    Parses in the calling thread: for untrusted input use ``pdf_inspection``, which runs this
    in a worker process with time and memory limits."""
    if b"%PDF-" not in pdf[:1024]:
        return None
    try:
        return credential_in(open_pdf(pdf).root)
    except (PdfError, ValueError, KeyError, TypeError, AttributeError, IndexError, RecursionError):
        return None


# --------------------------------------------------------------------------- the cache

_BUILD_LOCKS: dict[Path, threading.Lock] = {}
_BUILD_LOCKS_GUARD = threading.Lock()


def _build_lock(path: Path) -> threading.Lock:
    with _BUILD_LOCKS_GUARD:
        return _BUILD_LOCKS.setdefault(path, threading.Lock())


class CacheCipher:
    """AES-256-GCM for the cached PDFs, which name their holder: the cache on disk is as
    unreadable as the event store. The key is derived (HKDF) from the store key, so one secret
    protects the service's data at rest without the two uses sharing a key."""

    MAGIC = b"CBPDF1"  # what an encrypted cache file starts with
    NONCE_BYTES = 12

    def __init__(self, store_key: bytes) -> None:
        key = HKDF(
            algorithm=hashes.SHA256(), length=32, salt=None, info=b"certibloc/pdf-cache/v1"
        ).derive(store_key)
        self._aead = AESGCM(key)

    def seal(self, data: bytes, name: str) -> bytes:
        nonce = os.urandom(self.NONCE_BYTES)
        # The file's name is authenticated too: a cached file renamed to another id is refused.
        return self.MAGIC + nonce + self._aead.encrypt(nonce, data, name.encode())

    def open(self, blob: bytes, name: str) -> bytes | None:
        """The PDF, or None when the file is not ours to read (written in clear before
        2026-12, under another key, or tampered with): then it is built again."""
        head = len(self.MAGIC) + self.NONCE_BYTES
        if not blob.startswith(self.MAGIC) or len(blob) <= head:
            return None
        try:
            return self._aead.decrypt(blob[len(self.MAGIC) : head], blob[head:], name.encode())
        except InvalidTag:
            return None


def _read_cached(path: Path, cipher: CacheCipher | None) -> bytes | None:
    try:
        blob = path.read_bytes()
    except FileNotFoundError:
        return None
    return blob if cipher is None else cipher.open(blob, path.name)


def cached_pdf(path: Path, build: Callable[[], bytes], cipher: CacheCipher | None = None) -> bytes:
    """The file at ``path``, built once by ``build`` if missing (kept encrypted with
    ``cipher`` when given).

    Concurrent first requests in this process wait for the one that builds (a lock per file);
    the file is written to a private temporary file of its own, fsynced, then renamed into
    place, so a reader (another process sharing the directory included) sees either no file
    or the whole file, never a partial one.
    """
    path = path.absolute()
    if (found := _read_cached(path, cipher)) is not None:
        return found
    with _build_lock(path):
        if (found := _read_cached(path, cipher)) is not None:
            return found  # built while we waited
        data = build()
        stored = data if cipher is None else cipher.seal(data, path.name)
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as handle:  # mkstemp: mode 0600
                handle.write(stored)
                handle.flush()
                os.fsync(handle.fileno())
            Path(tmp).replace(path)  # atomic: readers see no file or the whole file
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        with _BUILD_LOCKS_GUARD:
            _BUILD_LOCKS.pop(path, None)  # the file exists now: later readers need no lock
        return data


# --------------------------------------------------------------------------- signing


def _new_identity(common_name: str) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "certibloc"),
            x509.NameAttribute(NameOID.COUNTRY_NAME, "FR"),
        ]
    )
    now = dt.datetime.now(dt.UTC)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + _CERT_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=True,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return key_pem + cert.public_bytes(serialization.Encoding.PEM)


_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z ]+)-----.+?-----END \1-----\r?\n?", re.DOTALL)


class PdfSigner:
    """The service's PDF signing identity: an EC P-256 key + a self-signed X.509 certificate
    (cryptography), created on first use in `directory` (files mode 0600, dir 0700), reused after.

    Key and certificate live together in one file, ``pdf-signer.pem``, written to a private
    temporary file and then hard-linked into place: concurrent first uses never leave a key that
    does not match its certificate; the first writer wins and the others load its file.
    ECDSA P-256 rather than Ed25519 because PDF readers (Acrobat among them) validate it.
    """

    def __init__(self, key_pem: bytes, certificate_pem: bytes) -> None:
        self._certificate_pem = certificate_pem
        cert = next(iter(load_certs_from_pemder_data(certificate_pem)))
        key = load_private_key_from_pemder_data(key_pem, passphrase=None)
        self._signer = signers.SimpleSigner(
            signing_cert=cert,
            signing_key=key,
            cert_registry=SimpleCertificateStore.from_certs([cert]),  # type: ignore[no-untyped-call]
        )
        # Reserve room for the CMS (written as hex, hence x2): certificate + signed attributes
        # + signature + structure, with margin. Passing it skips pyHanko's dry-run signature.
        self._bytes_reserved = 2 * (len(cert.dump()) + 2048)
        self._meta = signers.PdfSignatureMetadata(
            field_name=SIGNATURE_FIELD,
            md_algorithm="sha256",
            subfilter=fields.SigSeedSubFilter.PADES,
            reason="Attestation de compétences délivrée et certifiée conforme",
            location="France",
            certify=True,
            docmdp_permissions=fields.MDPPerm.NO_CHANGES,
        )
        self._pdf_signer = signers.PdfSigner(self._meta, signer=self._signer)

    @classmethod
    def load_or_create(
        cls, directory: Path, common_name: str = "certibloc attestations (dev)"
    ) -> PdfSigner:
        directory = Path(directory)
        if not directory.is_dir():
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            directory.chmod(0o700)
        path = directory / SIGNER_FILE
        if not path.exists():
            fd, tmp = tempfile.mkstemp(dir=directory, prefix=".pdf-signer-", suffix=".tmp")
            try:
                with os.fdopen(fd, "wb") as handle:  # mkstemp: mode 0600
                    handle.write(_new_identity(common_name))
                    handle.flush()
                    os.fsync(handle.fileno())
                with contextlib.suppress(FileExistsError):  # another process was first: use theirs
                    path.hardlink_to(tmp)
            finally:
                Path(tmp).unlink(missing_ok=True)
        return cls.from_pem(path.read_bytes())

    @classmethod
    def from_pem(cls, bundle: bytes) -> PdfSigner:
        """From a PEM bundle holding a private key and its certificate."""
        key_pem = cert_pem = None
        for block in _PEM_BLOCK.finditer(bundle):
            if block.group(1).endswith(b"PRIVATE KEY") and key_pem is None:
                key_pem = block.group(0)
            elif block.group(1) == b"CERTIFICATE" and cert_pem is None:
                cert_pem = block.group(0)
        if key_pem is None or cert_pem is None:
            raise ValueError("PDF signer bundle needs a private key and a certificate")
        return cls(key_pem, cert_pem)

    @property
    def certificate_pem(self) -> bytes:
        return self._certificate_pem

    def sign(self, pdf: bytes) -> bytes:
        """Add the PAdES baseline-B certification signature ``Signature1`` to ``pdf``."""
        return self.sign_writer(IncrementalPdfFileWriter(BytesIO(pdf)))

    def sign_writer(self, writer: IncrementalPdfFileWriter) -> bytes:
        """Sign an incremental writer, pending changes (e.g. an attachment) included."""
        out = BytesIO()
        self._pdf_signer.sign_pdf(writer, bytes_reserved=self._bytes_reserved, output=out)
        return out.getvalue()
