"""The CSV form of a PV's lines: header row, ``;`` or ``,``, French decimal commas, BOM tolerated.

Parsing uses the standard ``csv`` module; only the delimiter is chosen here, from the header row
(sniffing data rows is unreliable when grades carry decimal commas).
"""

from __future__ import annotations

import csv
import io
from typing import Any

from services.registry.domain.pv import LINE_FIELDS, PV_LINES_MAX, ROW_ERROR
from services.runtime.problems import Unprocessable

REQUIRED = ("candidate_number", "bloc", "grade")


def decode(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        # Spreadsheets on French Windows export Windows-1252; accept it rather than refuse.
        return data.decode("cp1252", errors="strict")


def read_rows(data: bytes) -> list[tuple[int, dict[str, Any]]]:
    """Rows numbered by their line in the file (the header is line 1)."""
    try:
        text = decode(data)
    except UnicodeDecodeError:
        raise Unprocessable("Le fichier CSV n'est ni en UTF-8 ni en Windows-1252.") from None
    header_line = text.split("\n", 1)[0]
    delimiter = ";" if header_line.count(";") >= header_line.count(",") else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    try:
        header = [h.strip().lower() for h in next(reader)]
    except StopIteration:
        raise Unprocessable("Le fichier CSV est vide.") from None
    except csv.Error as error:
        raise Unprocessable(f"CSV illisible : {error}.") from None
    missing = [name for name in REQUIRED if name not in header]
    unknown = [name for name in header if name not in LINE_FIELDS]
    if missing or unknown or len(set(header)) != len(header):
        raise Unprocessable(
            "En-tête CSV invalide : attendu candidate_number, bloc, grade et, au choix, "
            "modality, justification"
            + (f" ; manquant : {', '.join(missing)}" if missing else "")
            + (f" ; inconnu : {', '.join(unknown)}" if unknown else "")
            + "."
        )
    rows: list[tuple[int, dict[str, Any]]] = []
    try:
        for values in reader:
            number = reader.line_num
            if len(rows) >= PV_LINES_MAX:
                raise Unprocessable(
                    f"Le fichier CSV compte plus de {PV_LINES_MAX} lignes : envoyez le "
                    "procès-verbal en plusieurs fois."
                )
            if not any(v.strip() for v in values):
                continue
            if len(values) != len(header):
                message = f"{len(values)} colonne(s) au lieu de {len(header)}"
                rows.append((number, {ROW_ERROR: message}))
                continue
            cells = zip(header, values, strict=True)
            rows.append((number, {k: (v if v.strip() else None) for k, v in cells}))
    except csv.Error as error:
        raise Unprocessable(f"CSV illisible à la ligne {reader.line_num} : {error}.") from None
    return rows
