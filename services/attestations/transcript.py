"""The relevé: one PDF that gathers every attestation a candidate holds in force.

Laid out with the attestation PDF's styles (pdf.py), one row per attestation: what was
acquired, how, when the jury decided, and the attestation's own verification address (the
relevé states nothing an attestation does not). Each attestation's credential is attached
(``attestation-<code>-<id>.vc.jwt``, PDF 2.0 associated files) and the whole is signed
(PAdES, a certification signature that allows no further change), so the relevé can be
checked offline in any PDF reader and each line online at its address.

Like ``pdf.build_signed_pdf``: call from a worker thread, never from a running event loop.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from io import BytesIO
from typing import Any

from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.platypus import Flowable, Frame, PageTemplate, Paragraph, Table
from reportlab.platypus.tables import TableStyle

# The attestation PDF's look, shared on purpose: one house style for both documents.
from services.attestations.pdf import (
    _ACCENT,
    _INK,
    _MARGIN,
    _PAGE_H,
    _PAGE_W,
    _PANEL,
    _RULE,
    _STYLES,
    PdfContent,
    PdfSigner,
    _attach_credential,
    _check_jws,
    _markup,
    _NumberedCanvas,
    _winansi,
    a4_document,
    draw_page_frame,
)
from services.runtime.i18n import Texts, french

__all__ = ["Transcript", "build_signed_transcript", "render_transcript"]

MAX_ENTRIES = 128  # a candidate holds a few dozen attestations at most


@dataclass(frozen=True)
class Transcript:
    """What the relevé says: the candidate, their certification, what they hold in force."""

    holder_name: str
    certification_code: str
    certification_title: str
    issuer_name: str
    produced_on: date
    entries: tuple[PdfContent, ...]  # the diploma first, if obtained; then blocs by code
    credentials: tuple[str, ...]  # each entry's compact JWS, in the same order

    def __post_init__(self) -> None:
        if len(self.entries) != len(self.credentials):
            raise ValueError("one credential per entry")
        if len(self.entries) > MAX_ENTRIES:
            raise ValueError(f"a relevé lists at most {MAX_ENTRIES} attestations")
        for jws in self.credentials:
            _check_jws(jws)


_CELL = ParagraphStyle("cell", fontName="Helvetica", fontSize=8.8, leading=11, textColor=_INK)
_CELL_HEAD = ParagraphStyle("cell_head", parent=_CELL, fontName="Helvetica-Bold", textColor=_ACCENT)
_CELL_URL = ParagraphStyle("cell_url", parent=_CELL, fontName="Courier", fontSize=7.4, leading=9)


def _how(entry: PdfContent, x: Texts) -> str:
    """ "Acquis par la VAE, session de juin 2026" / "Obtenue par examen, …, mention Bien"."""
    if entry.kind == "certification":
        what = x.pgettext("certification", "Obtenue")
    else:
        what = x.pgettext("bloc", "Acquis")
    parts = [f"{what} {entry.route}" if entry.route else what]
    if entry.session:
        parts.append(entry.session)
    if entry.mention:
        parts.append(x.gettext("mention %(mention)s") % {"mention": entry.mention})
    return ", ".join(parts)


def _row(entry: PdfContent, x: Texts) -> list[Flowable]:
    decided = entry.awarded_on or entry.issued_on  # attestations before 2026-12: signing date
    url = _markup(entry.verify_url)
    return [
        Paragraph(f"<b>{_markup(entry.code)}</b>", _CELL),
        Paragraph(_markup(entry.title), _CELL),
        Paragraph(_markup(_how(entry, x)), _CELL),
        Paragraph(_markup(x.date(decided)), _CELL),
        Paragraph(f'<link href="{url}">{url}</link>', _CELL_URL),
    ]


def _story(t: Transcript, x: Texts) -> list[Flowable]:
    _ = x.gettext
    story: list[Flowable] = [
        Paragraph(_markup(_("Relevé des attestations")), _STYLES["title"]),
        Paragraph(
            _markup(_("%(issuer)s atteste que") % {"issuer": t.issuer_name}), _STYLES["lead"]
        ),
        Paragraph(_markup(t.holder_name), _STYLES["holder"]),
        Paragraph(
            _(
                "détient, au %(day)s, les attestations suivantes de la certification "
                "professionnelle %(code)s\u00a0— %(title)s, enregistrée au Répertoire "
                "national des certifications professionnelles (RNCP)\u00a0:"
            )
            % {
                "day": f"<b>{_markup(x.date(t.produced_on))}</b>",
                "code": f"<b>{_markup(t.certification_code)}</b>",
                "title": _markup(t.certification_title),
            },
            _STYLES["body"],
        ),
    ]
    if not t.entries:
        story.append(Paragraph(_markup(_("Aucune attestation en vigueur.")), _STYLES["issued"]))
        return story
    head = [_("Code"), _("Intitulé"), _("Obtention"), _("Décision du jury"), _("Vérification")]
    rows: list[list[Any]] = [[Paragraph(_markup(h), _CELL_HEAD) for h in head]]
    rows += [_row(e, x) for e in t.entries]
    body_w = _PAGE_W - 2 * _MARGIN
    table = Table(
        rows,
        colWidths=[b * body_w for b in (0.18, 0.27, 0.19, 0.13, 0.23)],
        repeatRows=1,  # the header again on each page
        hAlign="LEFT",
    )
    table.setStyle(
        TableStyle(
            [
                ("VALIGN", (0, 0), (-1, -1), "TOP"),
                ("BACKGROUND", (0, 0), (-1, 0), _PANEL),
                ("LINEBELOW", (0, 0), (-1, 0), 0.8, _ACCENT),
                ("LINEBELOW", (0, 1), (-1, -1), 0.4, _RULE),
                ("TOPPADDING", (0, 0), (-1, -1), 4),
                ("BOTTOMPADDING", (0, 0), (-1, -1), 4),
            ]
        )
    )
    story += [
        Paragraph("", _STYLES["heading"]),
        table,
        Paragraph(
            _markup(
                _(
                    "Ce relevé ne remplace pas les attestations\u00a0: chacune fait foi à son "
                    "adresse de vérification, qui indique si elle est toujours valide. Ce PDF "
                    "porte une signature électronique (PAdES), que votre lecteur PDF affiche "
                    "dans son panneau «\u00a0Signatures\u00a0», et contient en pièces jointes "
                    "l’attestation numérique de chaque ligne (W3C Verifiable Credential)."
                )
            ),
            _STYLES["issued"],
        ),
    ]
    return story


def _decorations(t: Transcript, x: Texts) -> Any:
    issuer = _winansi(t.issuer_name)
    running = _winansi(f"{x.gettext('Relevé des attestations')} — {t.holder_name}")
    footer = _winansi(x.gettext("Relevé produit le %(day)s") % {"day": x.date(t.produced_on)})

    def on_page(canvas: Any, doc: Any) -> None:
        draw_page_frame(canvas, issuer if doc.page == 1 else running, footer)

    return on_page


def _layout(t: Transcript, x: Texts) -> bytes:
    out = BytesIO()
    doc = a4_document(
        out,
        title=f"{x.gettext('Relevé des attestations')} — {t.certification_code}",
        author=t.issuer_name,
        subject=f"{t.certification_code} — {t.holder_name}",
        lang=x.tag,
    )
    top = _PAGE_H - _MARGIN - 8 * mm
    bottom = _MARGIN + 2 * mm
    frame = Frame(_MARGIN, bottom, _PAGE_W - 2 * _MARGIN, top - bottom, id="body")
    doc.addPageTemplates([PageTemplate(id="page", frames=[frame], onPage=_decorations(t, x))])
    numbered = functools.partial(_NumberedCanvas, page_label=x.gettext("page %(n)d / %(total)d"))
    doc.build(_story(t, x), canvasmaker=numbered)
    return out.getvalue()


def attachment_name(entry: PdfContent) -> str:
    return f"attestation-{entry.code}-{entry.attestation_id}.vc.jwt"


def _writer(t: Transcript, texts: Texts | None) -> IncrementalPdfFileWriter:
    writer = IncrementalPdfFileWriter(BytesIO(_layout(t, texts or french())))
    for entry, jws in zip(t.entries, t.credentials, strict=True):
        _attach_credential(writer, jws, attachment_name(entry))
    return writer


def render_transcript(t: Transcript, texts: Texts | None = None) -> bytes:
    """The unsigned relevé, its credentials attached (``texts``: its language; French)."""
    out = BytesIO()
    _writer(t, texts).write(out)  # type: ignore[no-untyped-call]
    return out.getvalue()


def build_signed_transcript(t: Transcript, signer: PdfSigner, texts: Texts | None = None) -> bytes:
    """Lay out, attach every credential and sign, in one incremental update."""
    return signer.sign_writer(_writer(t, texts))


def order_key(entry: PdfContent) -> tuple[bool, str]:
    return entry.kind != "certification", entry.code


def gather(
    contents: Sequence[tuple[PdfContent, str]],
    *,
    holder_name: str,
    certification_code: str,
    certification_title: str,
    issuer_name: str,
    produced_on: date,
) -> Transcript:
    """A relevé of ``(content, credential)`` pairs, the diploma first, then blocs by code."""
    ordered = sorted(contents, key=lambda pair: order_key(pair[0]))
    return Transcript(
        holder_name=holder_name,
        certification_code=certification_code,
        certification_title=certification_title,
        issuer_name=issuer_name,
        produced_on=produced_on,
        entries=tuple(c for c, _ in ordered),
        credentials=tuple(jws for _, jws in ordered),
    )
