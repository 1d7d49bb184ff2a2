"""French by default, English on request: language negotiation, gettext catalogues, dates and
per-language Jinja2 environments, shared by every service.

French is the source language: the msgids *are* the French texts (what the templates and the
code say), and each service's ``locales/en/LC_MESSAGES/messages.po`` translates them. Nothing
is read at import time: a service's composition root calls ``Catalogues.load(dir)`` once (the
``.po`` files are parsed with Babel and compiled to ``.mo`` in memory, fuzzy entries left out;
no ``.mo`` file is committed) and keeps the result; its ``Texts`` and environments are
immutable afterwards, so threads share them.

- ``negotiate(lang, accept_language)``: an explicit, supported ``?lang=`` wins; else the
  ``Accept-Language`` header (RFC 9110 q-values, matched by Babel's ``negotiate_locale``,
  ``en-GB`` giving ``en``); else French. A header longer than ``MAX_ACCEPT_LANGUAGE`` or that
  does not parse is ignored.
- ``Texts``: one language's ``gettext``/``ngettext``/``pgettext`` and dates (Babel's CLDR
  data: "3 juillet 2026", "3 July 2026"; French says "1er" for the first of the month).
- ``Templates``: one Jinja2 ``Environment`` per language with ``jinja2.ext.i18n`` installed
  for that language (``{% trans %}``, ``_()``, ``ngettext()``), so rendering needs no per-request
  state and no lock.
- ``language_links(request, current)``: the language switch of a page (plain links, other
  query parameters such as ``token`` kept).

Pages answer with ``response_headers(lang)`` (``Content-Language``, ``Vary: Accept-Language``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from io import BytesIO
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlencode

import jinja2
from babel import Locale, UnknownLocaleError
from babel.core import negotiate_locale
from babel.dates import format_date, get_month_names
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import NullTranslations, Translations

DEFAULT: Final = "fr"
LANGUAGES: Final = ("fr", "en")  # the default first
#: Each language's name in itself, for the switch (a language is offered in its own words).
NAMES: Final = {"fr": "Français", "en": "English"}
#: BCP 47 tags for documents (the PDF's /Lang).
TAGS: Final = {"fr": "fr-FR", "en": "en"}
#: Browsers send a few dozen bytes; a longer header is ignored (French), not parsed.
MAX_ACCEPT_LANGUAGE: Final = 512
MAX_RANGES: Final = 32
CATALOGUE: Final = "messages.po"
QUERY_PARAMETER: Final = "lang"

_RANGE = re.compile(r"[A-Za-z]{1,8}(?:-[A-Za-z0-9]{1,8})*|\*")
_QUALITY = re.compile(r"[qQ]=(0(?:\.\d{0,3})?|1(?:\.0{0,3})?)")


def N_(message: str) -> str:  # noqa: N802  # the gettext convention (Babel extracts N_)
    """Marks a msgid for extraction where it is defined; it is translated where it is shown."""
    return message


def supported(lang: str | None) -> str | None:
    """``lang`` if it names a supported language (case-insensitive), else None."""
    if lang is None:
        return None
    lang = lang.strip().lower()
    return lang if lang in LANGUAGES else None


def accepted(header: str | None) -> list[str]:
    """The language ranges of an ``Accept-Language`` header, preferred first (q=0 dropped;
    equal q-values keep their order). Empty when the header is absent, too long or malformed."""
    if not header or len(header) > MAX_ACCEPT_LANGUAGE:
        return []
    ranges: list[tuple[float, int, str]] = []
    for position, part in enumerate(header.split(",")):
        if position >= MAX_RANGES:
            return []
        tag, *params = (p.strip() for p in part.split(";"))
        if not tag and not params:
            continue  # "fr,,en": an empty element is allowed (RFC 9110 #rule)
        if _RANGE.fullmatch(tag) is None:
            return []
        quality = 1.0
        for param in params:
            match = _QUALITY.fullmatch(param)
            if match is None:
                return []
            quality = float(match.group(1))
        if quality > 0 and tag != "*":
            ranges.append((-quality, position, tag))
    return [tag for _, _, tag in sorted(ranges)]


def negotiate(lang: str | None, accept_language: str | None) -> str:
    """The language to answer in: ``lang`` (a ``?lang=`` parameter) when supported, else the
    best match of ``accept_language``, else French."""
    explicit = supported(lang)
    if explicit is not None:
        return explicit
    preferred = accepted(accept_language)
    if not preferred:
        return DEFAULT
    found = negotiate_locale(preferred, list(LANGUAGES), sep="-")
    if found is None:
        return DEFAULT
    try:
        language = Locale.parse(found, sep="-").language
    except (ValueError, UnknownLocaleError):
        return DEFAULT
    return language if language in LANGUAGES else DEFAULT


def language_of(request: Any) -> str:
    """A Starlette request's language (``?lang=``, then ``Accept-Language``)."""
    return negotiate(
        request.query_params.get(QUERY_PARAMETER), request.headers.get("accept-language")
    )


def response_headers(lang: str, vary: Iterable[str] = ()) -> dict[str, str]:
    """Headers of an answer whose language was negotiated: ``Content-Language``, and ``Vary``
    naming ``Accept-Language`` after what else it varies on (``vary``)."""
    return {"Content-Language": lang, "Vary": ", ".join([*vary, "Accept-Language"])}


@dataclass(frozen=True)
class LanguageLink:
    """One entry of a language switch: ``<a href=url lang=code hreflang=code>name</a>``."""

    code: str
    name: str
    url: str
    current: bool


def language_links(
    request: Any, current: str, keep: Iterable[str] | None = None
) -> list[LanguageLink]:
    """The switch of a page: its path with ``?lang=`` set, the other query parameters kept
    (``keep``: only those named; None: all, e.g. a personal ``token``). Relative URLs."""
    kept = None if keep is None else set(keep)
    params = [
        (k, v)
        for k, v in request.query_params.multi_items()
        if k != QUERY_PARAMETER and (kept is None or k in kept)
    ]
    return links_for(request.url.path, current, params)


def links_for(
    path: str, current: str, params: Iterable[tuple[str, str]] = ()
) -> list[LanguageLink]:
    """The switch of the page at ``path`` (with the query ``params``, ``lang`` left out)."""
    kept = [(k, v) for k, v in params if k != QUERY_PARAMETER]
    return [
        LanguageLink(
            code=code,
            name=NAMES[code],
            url=f"{path}?{urlencode([*kept, (QUERY_PARAMETER, code)])}",
            current=code == current,
        )
        for code in LANGUAGES
    ]


def with_language(url: str, lang: str) -> str:
    """``url`` with ``lang=`` added for a language other than French (e-mail links: the page
    opens in the candidate's language); French links stay as they were."""
    if lang == DEFAULT:
        return url
    return f"{url}{'&' if '?' in url else '?'}{urlencode({QUERY_PARAMETER: lang})}"


class Texts:
    """One language's texts and formats. French (the source language) translates nothing."""

    def __init__(self, lang: str, translations: NullTranslations) -> None:
        self.lang = lang
        self.translations = translations
        self.locale = Locale.parse(lang)
        self.tag = TAGS[lang]

    def gettext(self, message: str) -> str:
        return self.translations.gettext(message)

    def ngettext(self, singular: str, plural: str, n: int) -> str:
        return self.translations.ngettext(singular, plural, n)

    def pgettext(self, context: str, message: str) -> str:
        return str(self.translations.pgettext(context, message))

    def date(self, day: date) -> str:
        """French "3 juillet 2026", "1er juillet 2026"; English "3 July 2026"."""
        text = format_date(day, "d MMMM y", locale=self.locale)
        if self.lang == "fr" and day.day == 1:
            text = "1er" + text[1:]
        return text

    def month(self, number: int) -> str:
        """The month's name, as in running text ("juin", "June")."""
        return str(get_month_names("wide", locale=self.locale)[number])


def french() -> Texts:
    """The default texts, for a caller given none (French needs no catalogue)."""
    return Texts(DEFAULT, NullTranslations())


def _read(path: Path, lang: str) -> Translations:
    with path.open("rb") as handle:
        catalog = read_po(handle, locale=lang)
    compiled = BytesIO()
    write_mo(compiled, catalog, use_fuzzy=False)  # a fuzzy entry is not a translation
    compiled.seek(0)
    return Translations(fp=compiled)


class Catalogues:
    """A service's catalogues: ``<directory>/<lang>/LC_MESSAGES/messages.po`` for each language
    but French (a missing one is an error: the service would answer in French)."""

    def __init__(self, texts: Mapping[str, Texts]) -> None:
        self._texts = dict(texts)

    @classmethod
    def load(cls, directory: Path) -> Catalogues:
        texts = {DEFAULT: french()}
        for lang in LANGUAGES:
            if lang == DEFAULT:
                continue
            path = Path(directory) / lang / "LC_MESSAGES" / CATALOGUE
            if not path.is_file():
                raise FileNotFoundError(f"{path}: no {lang} catalogue")
            texts[lang] = Texts(lang, _read(path, lang))
        return cls(texts)

    def texts(self, lang: str) -> Texts:
        return self._texts.get(lang) or self._texts[DEFAULT]


class Templates:
    """One Jinja2 environment per language, each with ``jinja2.ext.i18n`` installed for its
    language (``_()``, ``gettext()``, ``ngettext()`` newstyle: ``%(name)s`` placeholders,
    autoescaped), a ``lang`` global and a ``date`` filter; ``configure`` sets what the
    environments share (globals, filters)."""

    def __init__(
        self,
        catalogues: Catalogues,
        make: Callable[[], jinja2.Environment],
        configure: Callable[[jinja2.Environment, Texts], None] | None = None,
    ) -> None:
        self.catalogues = catalogues
        self._envs: dict[str, jinja2.Environment] = {}
        for lang in LANGUAGES:
            texts = catalogues.texts(lang)
            env = make()
            env.add_extension("jinja2.ext.i18n")
            env.install_gettext_translations(texts.translations, newstyle=True)  # type: ignore[attr-defined]
            env.globals["lang"] = lang
            env.filters["date"] = texts.date
            if configure is not None:
                configure(env, texts)
            self._envs[lang] = env

    def env(self, lang: str) -> jinja2.Environment:
        return self._envs.get(lang) or self._envs[DEFAULT]

    def render(self, lang: str, name: str, **context: Any) -> str:
        return self.env(lang).get_template(name).render(**context)
