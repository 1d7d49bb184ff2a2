"""French by default, English on request: negotiation, dates, language links, and catalogues
kept complete (every msgid the code and templates use has a non-fuzzy English translation,
and no catalogue keeps an entry nothing uses)."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from types import SimpleNamespace

import pytest
from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po
from starlette.datastructures import URL, QueryParams

from services.runtime import i18n

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("attestations", "notifications")


@pytest.mark.parametrize(
    ("lang", "header", "expected"),
    [
        (None, None, "fr"),
        (None, "", "fr"),
        (None, "en", "en"),
        (None, "en-GB,en;q=0.9", "en"),
        (None, "EN-us", "en"),
        (None, "fr-FR,fr;q=0.9,en;q=0.8", "fr"),
        (None, "de-DE,de;q=0.9,en;q=0.5", "en"),  # German first, unsupported: English next
        (None, "fr;q=0.2,en;q=0.9", "en"),  # q-values, not order
        (None, "en;q=0,fr;q=0.1", "fr"),  # q=0: not acceptable
        (None, "en;q=0", "fr"),
        (None, "de, es", "fr"),  # nothing supported
        (None, "*", "fr"),
        (None, "fr,,en", "fr"),
        (None, "en;q=2", "fr"),  # garbage: ignored, French
        (None, "en;q=abc", "fr"),
        (None, "<script>", "fr"),
        (None, "en" + ",en" * 400, "fr"),  # longer than MAX_ACCEPT_LANGUAGE
        (None, ",".join(["de"] * 40 + ["en"]), "fr"),  # too many ranges
        ("en", "fr", "en"),  # ?lang= beats the header
        ("fr", "en", "fr"),
        ("EN", None, "en"),
        ("de", "en", "en"),  # an unsupported ?lang= is ignored
        ("x" * 100, None, "fr"),
    ],
)
def test_negotiation(lang: str | None, header: str | None, expected: str) -> None:
    assert i18n.negotiate(lang, header) == expected


def test_dates_per_language() -> None:
    fr, en = i18n.french(), i18n.Catalogues.load(ROOT / "services/attestations/locales").texts("en")
    assert fr.date(date(2026, 7, 3)) == "3 juillet 2026"
    assert fr.date(date(2026, 6, 1)) == "1er juin 2026"
    assert en.date(date(2026, 7, 3)) == "3 July 2026"
    assert en.date(date(2026, 6, 1)) == "1 June 2026"


def test_language_links_keep_the_other_query_parameters() -> None:
    request = SimpleNamespace(
        url=URL("http://x/space?token=a.b.c&lang=en"),
        query_params=QueryParams("token=a.b.c&lang=en"),
    )
    links = i18n.language_links(request, "en")
    assert [(link.code, link.url, link.current) for link in links] == [
        ("fr", "/space?token=a.b.c&lang=fr", False),
        ("en", "/space?token=a.b.c&lang=en", True),
    ]
    assert links[0].name == "Français" and links[1].name == "English"
    only = i18n.language_links(request, "fr", keep=())
    assert only[1].url == "/space?lang=en"
    assert i18n.with_language("https://x/v/abc", "en") == "https://x/v/abc?lang=en"
    assert i18n.with_language("https://x/pdf?token=t", "en") == "https://x/pdf?token=t&lang=en"
    assert i18n.with_language("https://x/v/abc", "fr") == "https://x/v/abc"
    assert i18n.response_headers("en", ["Accept"]) == {
        "Content-Language": "en",
        "Vary": "Accept, Accept-Language",
    }


def _extracted(service: str) -> Catalog:
    with (ROOT / "babel.cfg").open() as cfg:
        method_map, options_map = parse_mapping_cfg(cfg)
    catalog = Catalog()
    for filename, lineno, message, comments, context in extract_from_dir(
        str(ROOT / "services" / service), method_map, options_map
    ):
        catalog.add(message, None, [(filename, lineno)], auto_comments=comments, context=context)
    return catalog


@pytest.mark.parametrize("service", SERVICES)
def test_catalogue_is_complete_and_has_no_obsolete_entry(service: str) -> None:
    used = _extracted(service)
    path = ROOT / "services" / service / "locales" / "en" / "LC_MESSAGES" / "messages.po"
    with path.open("rb") as handle:
        english = read_po(handle, locale="en")
    assert not english.obsolete, f"{path}: obsolete entries {list(english.obsolete)}"
    assert len(used) > 10  # the extraction found the service's texts
    missing, fuzzy = [], []
    for message in used:
        if not message.id:
            continue
        found = english.get(message.id, message.context)
        strings = (
            found.string
            if found is not None and isinstance(found.string, tuple)
            else (found.string if found else "",)
        )
        if found is None or not all(strings):
            missing.append(message.id)
        elif found.fuzzy:
            fuzzy.append(message.id)
        elif found.python_format:
            # The same placeholders, or formatting the English fails at run time.
            assert not list(found.check(english)), message.id
    assert not missing, f"{path}: no English for {missing}"
    assert not fuzzy, f"{path}: fuzzy (not used) {fuzzy}"
    used_ids = {(m.id if isinstance(m.id, str) else m.id[0], m.context) for m in used if m.id}
    unused = [
        m.id
        for m in english
        if m.id and ((m.id if isinstance(m.id, str) else m.id[0]), m.context) not in used_ids
    ]
    assert not unused, f"{path}: entries nothing uses any more {unused}"


def test_catalogues_load_and_translate() -> None:
    catalogues = i18n.Catalogues.load(ROOT / "services/notifications/locales")
    en = catalogues.texts("en")
    assert en.gettext("Cordialement,") == "Kind regards,"
    assert catalogues.texts("fr").gettext("Cordialement,") == "Cordialement,"
    assert catalogues.texts("de").lang == "fr"  # unknown: the default
    with pytest.raises(FileNotFoundError):
        i18n.Catalogues.load(ROOT / "nowhere")
