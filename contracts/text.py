"""Bounded, clean text: what every string a client sends, and every string an event carries,
must be.

The limits are part of the contracts: the registry refuses at its API what exceeds them, and
a consumer refuses (dead-letters) an event that carries more, so a producer's bug cannot
travel. Why each limit is what it is:

- ``NAME_MAX`` (100 characters): longer than any real birth name, usage name or given name,
  short enough to print whole on the attestation and its PDF.
- ``GIVEN_NAMES_MAX`` (6): French civil status allows several given names; six covers the
  long ones and keeps the holder's line on the attestation readable.
- ``EMAIL_MAX`` (254): the longest address SMTP can carry (RFC 5321 path limit, 256 with the
  brackets); a local part of at most 64 (RFC 5321 §4.5.3.1.1).
- ``REASON_MAX`` (500): a correction's reason, a DISP line's justification, a revocation's
  reason: a few sentences, which is what a jury's minutes hold.
- ``CODE_MAX`` (32): RNCP codes (``RNCP40705BC01``), candidate numbers, UAIs and ids.

Names are NFC-normalised (so "é" is one code point whatever the keyboard sent) and may hold
letters, marks, spaces and the punctuation names use; control characters, bidirectional
overrides and isolates, zero-width and other default-ignorable characters (fillers, variation
selectors...) are refused: they can make a name display as another one (CVE-2021-42574's
trick) or hide text.

The events carry what the registry has ever accepted, which is looser than what it accepts
now: v1 is not a new version, and an event written before these limits must still be
publishable and consumable. So the *contract* types (``PersonName``, ``FreeText``...) bound
lengths at what the API used to allow (``CONTRACT_NAME_MAX`` 200, ``CONTRACT_TEXT_MAX`` 2000)
and refuse only invisible and control characters; the *input* types (``NameInput``...) apply
today's limits and rules at the edge.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Annotated, Final, Literal

from pydantic import AfterValidator, BeforeValidator, Field
from pydantic_core import PydanticCustomError

NAME_MAX: Final = 100
GIVEN_NAMES_MAX: Final = 6
EMAIL_MAX: Final = 254
EMAIL_LOCAL_MAX: Final = 64
REASON_MAX: Final = 500
CODE_MAX: Final = 32
CONTRACT_NAME_MAX: Final = 200  # jury names were taken up to 200 before 2026-12
CONTRACT_TEXT_MAX: Final = 2000  # correction reasons were taken up to 2000 before 2026-12

# Unicode general categories never accepted in text: controls, format characters (bidi
# controls, zero-width space/joiners, word joiner, BOM, soft hyphen...), surrogates, private
# use, unassigned code points, line and paragraph separators.
_FORBIDDEN_CATEGORIES: Final = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
_NAME_PUNCTUATION: Final = frozenset("'’-. ")
_MAX_COMBINING_RUN: Final = 3  # "Zalgo" text stacks dozens of marks on one letter
# Unicode's Default_Ignorable_Code_Point (DerivedCoreProperties.txt): rendered as nothing.
# Most are format characters (Cf, refused above); these are not: the combining grapheme
# joiner, Hangul fillers (letters!), Khmer inherent vowels, Mongolian and other variation
# selectors, and reserved ranges.
_IGNORABLE_RANGES: Final = (
    (0x034F, 0x034F),
    (0x115F, 0x1160),
    (0x17B4, 0x17B5),
    (0x180B, 0x180F),
    (0x3164, 0x3164),
    (0xFE00, 0xFE0F),
    (0xFFA0, 0xFFA0),
    (0xFFF0, 0xFFF8),
    (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A),
    (0xE0000, 0xE0FFF),
)


def _ignorable(char: str) -> bool:
    code = ord(char)
    return any(low <= code <= high for low, high in _IGNORABLE_RANGES)


_SPACES = re.compile(r"[^\S\n]+")  # any white space but the line break


def _refuse(message: str) -> PydanticCustomError:
    return PydanticCustomError("certibloc_text", message)


def _describe(char: str) -> str:
    name = unicodedata.name(char, "")
    return f"U+{ord(char):04X}" + (f" ({name})" if name else "")


# Characters already judged (True: fine in text, anything but a mark or a refused one), so
# that accented text is decided per distinct character by a dict lookup. Bounded: text full
# of rare characters is still judged right, only without the memo.
_PLAIN: dict[str, bool] = {}
_PLAIN_MAX: Final = 20_000
# Non-ASCII single-line texts already accepted: the referential's titles and the candidates'
# names come back in every event about them. Bounded the same way.
_ACCEPTED: set[str] = set()
_ACCEPTED_MAX: Final = 20_000


def _plain(char: str) -> bool:
    known = _PLAIN.get(char)
    if known is None:
        category = unicodedata.category(char)
        known = not (
            category in _FORBIDDEN_CATEGORIES or category in ("Mn", "Me") or _ignorable(char)
        )
        if len(_PLAIN) < _PLAIN_MAX:
            _PLAIN[char] = known
    return known


def text_problem(value: str, *, multiline: bool = False) -> str | None:
    """Why ``value`` is not acceptable text, in French, or None when it is."""
    if value.isascii() and value.isprintable():
        return None  # the common case (codes, ids, most text), decided at C speed
    if value in _ACCEPTED:
        return None
    if unicodedata.is_normalized("NFC", value) and all(
        _plain(char) or (multiline and char == "\n") for char in set(value)
    ):
        # Accented text without marks: decided per distinct character. (A multi-line text
        # is not remembered: accepted as one, it would be refused as a line.)
        if not multiline and len(_ACCEPTED) < _ACCEPTED_MAX and len(value) <= 300:
            _ACCEPTED.add(value)
        return None
    if unicodedata.normalize("NFC", value) != value:
        return "le texte doit être en forme normalisée NFC"
    combining = 0
    for char in value:
        if char == "\n" and multiline:
            combining = 0
            continue
        category = unicodedata.category(char)
        if category in _FORBIDDEN_CATEGORIES or _ignorable(char):
            return f"caractère interdit {_describe(char)} (contrôle, invisible ou de direction)"
        combining = combining + 1 if category in ("Mn", "Me") else 0
        if combining > _MAX_COMBINING_RUN:
            return "trop de signes diacritiques empilés sur une même lettre"
    return None


def name_problem(value: str) -> str | None:
    """Why ``value`` is not acceptable as a person's name, in French, or None."""
    problem = text_problem(value)
    if problem is not None:
        return problem
    if not any(unicodedata.category(c).startswith("L") for c in value):
        return "un nom doit contenir au moins une lettre"
    for char in value:
        category = unicodedata.category(char)
        if not (category[0] in "LM" or char in _NAME_PUNCTUATION):
            return f"caractère inattendu dans un nom : {_describe(char)}"
    if value != value.strip() or "  " in value:
        return "espaces en trop dans le nom"
    return None


def _checked_name(value: str) -> str:
    problem = name_problem(value)
    if problem is not None:
        raise _refuse(problem)
    return value


def _checked_text(value: str) -> str:
    problem = text_problem(value, multiline=True)
    if problem is not None:
        raise _refuse(problem)
    return value


def _checked_line(value: str) -> str:
    problem = text_problem(value)
    if problem is not None:
        raise _refuse(problem)
    return value


def normalise_name(value: object) -> object:
    """What a client sent, as a name: NFC, runs of white space as one space, trimmed.
    (Anything but a string is left for the type check to refuse.)"""
    if not isinstance(value, str):
        return value
    return " ".join(unicodedata.normalize("NFC", value).split())


def normalise_text(value: object) -> object:
    """What a client sent, as free text: NFC, CR LF as LF, spaces within a line collapsed."""
    if not isinstance(value, str):
        return value
    text = unicodedata.normalize("NFC", value).replace("\r\n", "\n").replace("\r", "\n")
    return "\n".join(_SPACES.sub(" ", line).strip() for line in text.split("\n")).strip()


def _checked_email(value: str) -> str:
    _checked_line(value)
    local, at, domain = value.rpartition("@")
    if (
        not at
        or not local
        or "@" in local
        or len(local) > EMAIL_LOCAL_MAX
        or "." not in domain.strip(".")
        or any(c.isspace() for c in value)
    ):
        raise _refuse("adresse électronique invalide")
    return value


# --- the types events carry (consumers check them; nothing is normalised on the way) -------

PersonName = Annotated[
    str, Field(min_length=1, max_length=CONTRACT_NAME_MAX), AfterValidator(_checked_line)
]
FreeText = Annotated[
    str, Field(min_length=1, max_length=CONTRACT_TEXT_MAX), AfterValidator(_checked_text)
]
Email = Annotated[str, Field(min_length=3, max_length=EMAIL_MAX), AfterValidator(_checked_line)]
# An identifier: RNCP and bloc codes, candidate numbers, UAIs, key ids, mention codes (checked
# by the schema's own pattern, in Rust: they are most of every event's strings).
Code = Annotated[
    str, Field(min_length=1, max_length=CODE_MAX, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
]
# A stable id (a UUID, a deliberation or decision id): ASCII, no white space.
Ref = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:-]+$")]
# Short single-line text that is not a name: a title from the referential, a mention code.
#: The languages a candidate is written to in (e-mails, the pages their links open): French by
#: default, English on request.
Language = Literal["fr", "en"]
LANGUAGE_DESCRIPTION = (
    "The candidate's preferred language for e-mails and the pages they link to: fr (default) "
    "or en (absent before 2027-01: fr)."
)

Label = Annotated[str, Field(min_length=1, max_length=300), AfterValidator(_checked_line)]
Url = Annotated[str, Field(min_length=1, max_length=2048), AfterValidator(_checked_line)]

# --- what a client sends: normalised first, then held to today's limits and rules ----------

NameInput = Annotated[
    str,
    Field(min_length=1, max_length=NAME_MAX),
    AfterValidator(_checked_name),
    BeforeValidator(normalise_name),
]
TextInput = Annotated[
    str,
    Field(min_length=1, max_length=REASON_MAX),
    AfterValidator(_checked_text),
    BeforeValidator(normalise_text),
]
EmailInput = Annotated[
    str,
    Field(min_length=3, max_length=EMAIL_MAX),
    AfterValidator(_checked_email),
    BeforeValidator(normalise_name),
]
