"""The attestation as data: an Open Badges 3.0 credential (W3C VC 2.0) and its status list.

Pure functions only: nothing here reads a clock, a store or the network. The shapes follow

- W3C Verifiable Credentials Data Model 2.0 (``@context``, ``validFrom``, ``credentialStatus``);
- Open Badges 3.0 ``AchievementCredential`` (``OpenBadgeCredential`` type, ``AchievementSubject``
  naming the holder through ``IdentityObject`` entries, ``Achievement`` for the bloc or the
  certification);
- W3C Bitstring Status List v1.0 (``BitstringStatusListEntry`` and
  ``BitstringStatusListCredential``, GZIP then multibase base64url, at least 131,072 entries).

A credential carries the holder's names only: never a birth date, never a grade. What the
jury decided travels with it (``AwardFacts``): ``awardedDate`` is the date of the jury's
decision (``validFrom`` stays the signing instant), ``credentialSubject.term`` the session,
an ``evidence`` entry the decision and the route (exam, VAE, a grade carried over), a
``result`` the diploma's mention, ``credentialSubject.source`` the exam center when the
candidate asked for it to be shown.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import re
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import lru_cache
from typing import Any, Literal

VC_V2_CONTEXT = "https://www.w3.org/ns/credentials/v2"
OB_V3_CONTEXT = "https://purl.imsglobal.org/spec/ob/v3p0/context-3.0.3.json"
CREDENTIAL_CONTEXT = (VC_V2_CONTEXT, OB_V3_CONTEXT)

#: The France compétences page of an RNCP entry; a bloc is a fragment of its certification's page.
RNCP_PAGE = "https://www.francecompetences.fr/recherche/rncp/{number}/"
RNCP_FRAMEWORK = "Répertoire national des certifications professionnelles (RNCP)"

#: Open Badges 3.0 has no SIRET in its IdentifierTypeEnum; the enum is extensible with ``ext:``.
SIRET_IDENTIFIER_TYPE = "ext:SIRET"
#: Structured parts of the holder's name, next to the display name (identityType ``name``).
FAMILY_NAME_IDENTITY_TYPE = "ext:familyName"
GIVEN_NAMES_IDENTITY_TYPE = "ext:givenNames"
BIRTH_NAME_IDENTITY_TYPE = "ext:birthName"
#: The exam center's UAI (code of the Répertoire national des établissements).
UAI_IDENTIFIER_TYPE = "ext:UAI"
#: OB 3.0's ResultType has no "mention" (a French honour grade): extension value.
MENTION_RESULT_TYPE = "ext:Mention"
GIVEN_NAMES_SEPARATOR = ", "

#: Bitstring Status List v1.0: "the bitstring MUST be at least 16KB in size" (131,072 entries).
STATUS_LIST_MIN_SIZE = 131_072
STATUS_PURPOSE = "revocation"
#: Refuse to inflate an encodedList beyond this many bytes (128 Mi entries): a gzip bomb guard.
STATUS_LIST_MAX_BYTES = 16 * 1024 * 1024

_CERTIFICATION_CODE = re.compile(r"RNCP(\d+)")
_BLOC_SUFFIX = re.compile(r"[A-Za-z][A-Za-z0-9-]*")  # "BC01", and "UF-LV" for an optional bloc


@dataclass(frozen=True)
class IssuerProfile:
    """The certifier, as it signs its attestations."""

    id: str  # e.g. "did:web:127.0.0.1%3A8102"
    name: str  # certifier legal name
    siret: str
    url: str  # public base URL of the attestation service


@dataclass(frozen=True)
class ServiceIssuer:
    """The attestation service itself, as the issuer of what every certification shares (the
    status lists): the same id (did:web) as every attestation's issuer, its own name."""

    id: str
    name: str


@dataclass(frozen=True)
class Holder:
    """Who the attestation is about: names only."""

    given_names: tuple[str, ...]
    family_name: str  # usage name if any, else birth name
    birth_name: str | None  # only when it differs from family_name

    @property
    def display_name(self) -> str:
        return " ".join((*self.given_names, self.family_name))


@dataclass(frozen=True)
class AchievementInfo:
    """What is attested: one bloc of a certification, or the whole certification."""

    code: str  # "RNCP12345BC01" (a bloc) or "RNCP12345" (the whole certification)
    title: str
    kind: Literal["bloc", "certification"]
    competences: tuple[str, ...]
    certification_code: str
    certification_title: str
    level: int  # EQF/RNCP level, e.g. 4
    mentions: tuple[str, ...] = ()  # the diploma's possible mentions (labels), from the referential


MONTHS = (
    "janvier", "février", "mars", "avril", "mai", "juin",
    "juillet", "août", "septembre", "octobre", "novembre", "décembre",
)  # fmt: skip


def N_(message: str) -> str:  # noqa: N802  # the gettext convention (Babel extracts N_)
    """Marks a msgid for extraction (the pages and the PDF translate it; the credential,
    signed data, keeps the French)."""
    return message


Route = Literal["exam", "vae", "carried_over"]
ROUTE_LABELS: dict[str, str] = {
    "exam": N_("par examen"),
    "vae": N_("par la VAE"),
    "carried_over": N_("par report d'une note obtenue à une session antérieure"),
}


def french_date(day: date) -> str:
    """A date as French text: "3 juillet 2026", "1er juin 2026"."""
    return f"{day.day}{'er' if day.day == 1 else ''} {MONTHS[day.month - 1]} {day.year}"


def session_label(session: str) -> str:
    """A session as French text: "2026-06" -> "session de juin 2026" (else ValueError)."""
    match = re.fullmatch(r"(\d{4})-(\d{2})", session)
    if match is None or not 1 <= int(match.group(2)) <= 12:
        raise ValueError(f"not a session (YYYY-MM): {session!r}")
    month = MONTHS[int(match.group(2)) - 1]
    of = "d'" if month[0] in "aeiou" else "de "  # "session d'avril", "session de juin"
    return f"session {of}{month} {match.group(1)}"


def route_label(route: str) -> str:
    return ROUTE_LABELS[route]


@dataclass(frozen=True)
class ExamCenterInfo:
    """The exam center that presented the candidate, shown only when the candidate wants it."""

    uai: str
    name: str


@dataclass(frozen=True)
class AwardFacts:
    """What the jury decided: when, at which session, by which route, with which mention."""

    awarded_on: date  # the date of the jury's decision (for the diploma: of its award)
    route: Route
    session: str | None = None  # "2026-06"; none for a VAE decision
    grade_session: str | None = None  # the earlier session of a carried-over grade
    mention: str | None = None  # the mention's label ("Assez bien"), diploma only
    mention_code: str | None = None  # its code in the referential ("assez_bien")
    exam_center: ExamCenterInfo | None = None

    @property
    def route_text(self) -> str:
        """The route as French text; a carried-over grade names its session."""
        text = route_label(self.route)
        if self.route == "carried_over" and self.grade_session:
            text = f"{text} ({session_label(self.grade_session)})"
        return text


@dataclass(frozen=True)
class StatusEntry:
    """Where the attestation's revocation bit lives."""

    list_url: str  # e.g. "http://127.0.0.1:8102/v1/status-lists/1"
    index: int


@lru_cache(maxsize=256)  # a deliberation's events share one timestamp
def format_datetime(moment: datetime) -> str:
    """An XML Schema dateTime in UTC with a ``Z``, to the second (what VC 2.0 and OB 3.0 accept)."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("a credential date must be timezone-aware")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def rncp_page(certification_code: str) -> str:
    """The public France compétences page of a certification, e.g. for ``RNCP12345``."""
    match = _CERTIFICATION_CODE.fullmatch(certification_code)
    if match is None:
        raise ValueError(f"not an RNCP certification code: {certification_code!r}")
    return RNCP_PAGE.format(number=match.group(1))


def achievement_id(achievement: AchievementInfo) -> str:
    """A stable URL for the achievement: its certification's RNCP page, ``#<code>`` for a bloc."""
    page = rncp_page(achievement.certification_code)
    if achievement.kind == "certification":
        if achievement.code != achievement.certification_code:
            raise ValueError(
                f"a certification achievement has the certification's code, "
                f"not {achievement.code!r}"
            )
        return page
    prefix, _, suffix = achievement.code.partition(achievement.certification_code)
    if prefix or _BLOC_SUFFIX.fullmatch(suffix) is None:
        raise ValueError(
            f"{achievement.code!r} is not a bloc code of {achievement.certification_code!r}"
        )
    return f"{page}#{achievement.code}"


@lru_cache(maxsize=64)
def issuer_profile(issuer: IssuerProfile) -> dict[str, Any]:
    """The OB 3.0 ``Profile`` of the certifier, with its SIRET as an ``IdentifierEntry``."""
    return {
        "id": issuer.id,
        "type": ["Profile"],
        "name": issuer.name,
        "url": issuer.url,
        "otherIdentifier": [
            {
                # OB 3.0's IdentifierEntry.type is a single string, not an array.
                "type": "IdentifierEntry",
                "identifier": issuer.siret,
                "identifierType": SIRET_IDENTIFIER_TYPE,
            }
        ],
    }


def _identity(identity_type: str, value: str) -> dict[str, Any]:
    # hashed false: identityHash carries the plain value (OB 3.0 IdentityObject).
    return {
        "type": "IdentityObject",
        "identityType": identity_type,
        "hashed": False,
        "identityHash": value,
    }


def holder_identifiers(holder: Holder) -> list[dict[str, Any]]:
    """The holder as OB 3.0 ``IdentityObject`` entries: display name first, then its parts."""
    if not holder.given_names or not holder.family_name:
        raise ValueError("a holder needs at least one given name and a family name")
    entries = [
        _identity("name", holder.display_name),
        _identity(FAMILY_NAME_IDENTITY_TYPE, holder.family_name),
        _identity(GIVEN_NAMES_IDENTITY_TYPE, GIVEN_NAMES_SEPARATOR.join(holder.given_names)),
    ]
    if holder.birth_name and holder.birth_name != holder.family_name:
        entries.append(_identity(BIRTH_NAME_IDENTITY_TYPE, holder.birth_name))
    return entries


def _achievement_description(achievement: AchievementInfo) -> str:
    level = f"niveau {achievement.level} du cadre national des certifications professionnelles"
    certification = f"« {achievement.certification_title} » ({achievement.certification_code})"
    if achievement.kind == "bloc":
        return (
            f"Bloc de compétences {achievement.code} de la certification professionnelle "
            f"{certification}, enregistrée au RNCP, {level}."
        )
    return f"Certification professionnelle {certification}, enregistrée au RNCP, {level}."


def _criteria_narrative(achievement: AchievementInfo) -> str:
    if achievement.kind == "bloc":
        how = "Bloc de compétences validé par le jury de la certification"
    else:
        how = "Certification délivrée par décision du jury, tous ses blocs de compétences acquis"
    if not achievement.competences:
        return f"{how}."
    listed = "\n".join(f"- {competence}" for competence in achievement.competences)
    return f"{how}. Compétences attestées :\n\n{listed}\n"


def _alignment(achievement: AchievementInfo) -> dict[str, Any]:
    """The achievement's own entry in the RNCP, the framework it is defined in."""
    if achievement.kind == "certification":
        # CTDL's class for a credential: the RNCP entry of a certification is one.
        target_type = "ceterms:Credential"
    else:
        # No AlignmentTargetType fits a bloc of an RNCP certification: extension value.
        target_type = "ext:RNCPBlocDeCompetences"
    return {
        "type": ["Alignment"],
        "targetName": achievement.title,
        "targetCode": achievement.code,
        "targetFramework": RNCP_FRAMEWORK,
        "targetType": target_type,
        "targetUrl": achievement_id(achievement),
    }


# Shared by every credential of the same bloc: built once. Callers only serialise it.
@lru_cache(maxsize=1024)
def achievement_object(achievement: AchievementInfo) -> dict[str, Any]:
    """The OB 3.0 ``Achievement`` for a bloc (``Competency``) or a certification (``Diploma``)."""
    body: dict[str, Any] = {
        "id": achievement_id(achievement),
        "type": ["Achievement"],
        "achievementType": "Competency" if achievement.kind == "bloc" else "Diploma",
        "name": achievement.title,
        "description": _achievement_description(achievement),
        "criteria": {"narrative": _criteria_narrative(achievement)},
        "humanCode": achievement.code,
        "alignment": [_alignment(achievement)],
        "inLanguage": "fr",
    }
    if achievement.kind == "certification" and achievement.mentions:
        body["resultDescription"] = [
            {
                "id": mention_description_id(achievement),
                "type": ["ResultDescription"],
                "name": "Mention",
                "resultType": MENTION_RESULT_TYPE,
                "allowedValue": list(achievement.mentions),
            }
        ]
    return body


def mention_description_id(achievement: AchievementInfo) -> str:
    return f"{achievement_id(achievement)}#mention"


def credential_name(achievement: AchievementInfo) -> str:
    if achievement.kind == "bloc":
        return f"Attestation de bloc de compétences — {achievement.title}"
    return f"Attestation de certification — {achievement.title}"


def _credential_description(
    holder: Holder, achievement: AchievementInfo, facts: AwardFacts | None
) -> str:
    if achievement.kind == "bloc":
        what = (
            f"le bloc de compétences {achievement.code} « {achievement.title} » de la "
            f"certification {achievement.certification_code} "
            f"« {achievement.certification_title} »"
        )
    else:
        what = f"la certification {achievement.code} « {achievement.title} »"
    if facts is None:
        return f"{holder.display_name} a acquis {what}."
    return f"{holder.display_name} a acquis {what} {decision_text(facts)}."


def decision_text(facts: AwardFacts) -> str:
    """The decision in French (the parts known): "par examen, session de juin 2026, mention
    Bien, sur décision du jury du 3 juillet 2026"."""
    parts = [facts.route_text]
    if facts.session:
        parts.append(session_label(facts.session))
    if facts.mention:
        parts.append(f"mention {facts.mention}")
    parts.append(f"sur décision du jury du {french_date(facts.awarded_on)}")
    return ", ".join(parts)


def awarded_date(day: date) -> str:
    """OB 3.0's ``awardedDate`` is a DateTimeZ; a jury decides on a day: its first instant, UTC."""
    return f"{day.isoformat()}T00:00:00Z"


def _evidence(achievement: AchievementInfo, facts: AwardFacts) -> dict[str, Any]:
    what = "Bloc de compétences acquis" if achievement.kind == "bloc" else "Certification obtenue"
    return {
        "type": ["Evidence"],
        "genre": "Décision du jury",
        "name": f"Décision du jury du {french_date(facts.awarded_on)}",
        "description": f"{what} {decision_text(facts)}.",
    }


def exam_center_profile(issuer: IssuerProfile, center: ExamCenterInfo) -> dict[str, Any]:
    """The exam center as the OB 3.0 ``source`` (who assessed on the issuer's behalf); a UAI
    has no URI of its own, so its id is a fragment of the issuer's."""
    return {
        "id": f"{issuer.id}#uai-{center.uai}",
        "type": ["Profile"],
        "name": center.name,
        "otherIdentifier": [
            {
                "type": "IdentifierEntry",
                "identifier": center.uai,
                "identifierType": UAI_IDENTIFIER_TYPE,
            }
        ],
    }


def _subject(
    issuer: IssuerProfile, holder: Holder, achievement: AchievementInfo, facts: AwardFacts | None
) -> dict[str, Any]:
    subject: dict[str, Any] = {
        "type": ["AchievementSubject"],
        "identifier": holder_identifiers(holder),
        "achievement": achievement_object(achievement),
    }
    if facts is None:
        return subject
    if facts.session:
        subject["term"] = session_label(facts.session)
    if facts.mention and achievement.kind == "certification":
        result: dict[str, Any] = {"type": ["Result"], "value": facts.mention}
        if achievement.mentions:
            result["resultDescription"] = mention_description_id(achievement)
        subject["result"] = [result]
    if facts.exam_center is not None:
        subject["source"] = exam_center_profile(issuer, facts.exam_center)
    return subject


def credential_status(status: StatusEntry) -> dict[str, Any]:
    """A ``BitstringStatusListEntry`` pointing at the revocation bit of the attestation."""
    if status.index < 0:
        raise ValueError("a status list index is a non-negative integer")
    return {
        "id": f"{status.list_url}#{status.index}",
        "type": "BitstringStatusListEntry",
        "statusPurpose": STATUS_PURPOSE,
        "statusListIndex": str(status.index),
        "statusListCredential": status.list_url,
    }


def build_credential(
    *,
    attestation_id: str,
    verify_url: str,
    issuer: IssuerProfile,
    holder: Holder,
    achievement: AchievementInfo,
    valid_from: datetime,
    status: StatusEntry,
    facts: AwardFacts | None = None,
) -> dict[str, Any]:
    """The attestation as an Open Badges 3.0 credential, ready to be secured as ``vc+jwt``.

    ``valid_from`` is the signing instant; ``facts.awarded_on`` (the jury's decision) is the
    ``awardedDate``.

    ``attestation_id`` is what ``verify_url`` ends with; it is checked, not repeated, since the
    credential's ``id`` is the verification URL itself. No ``proof``: the JWS secures it.
    """
    if not attestation_id or attestation_id not in verify_url:
        raise ValueError("the verification URL must name the attestation")
    credential: dict[str, Any] = {
        "@context": list(CREDENTIAL_CONTEXT),
        "id": verify_url,
        "type": ["VerifiableCredential", "OpenBadgeCredential"],
        "issuer": issuer_profile(issuer),
        "validFrom": format_datetime(valid_from),
        "name": credential_name(achievement),
        "description": _credential_description(holder, achievement, facts),
        "credentialSubject": _subject(issuer, holder, achievement, facts),
        "credentialStatus": credential_status(status),
    }
    if facts is not None:
        credential["awardedDate"] = awarded_date(facts.awarded_on)
        credential["evidence"] = [_evidence(achievement, facts)]
    return credential


def build_status_list_credential(
    *, list_url: str, issuer: ServiceIssuer, encoded_list: str, valid_from: datetime
) -> dict[str, Any]:
    """A ``BitstringStatusListCredential`` for revocation, ready to be secured as ``vc+jwt``."""
    if not encoded_list.startswith("u"):
        raise ValueError("encodedList is multibase base64url: it starts with 'u'")
    return {
        "@context": [VC_V2_CONTEXT],
        "id": list_url,
        "type": ["VerifiableCredential", "BitstringStatusListCredential"],
        "issuer": {"id": issuer.id, "name": issuer.name},
        "validFrom": format_datetime(valid_from),
        "credentialSubject": {
            "id": f"{list_url}#list",
            "type": "BitstringStatusList",
            "statusPurpose": STATUS_PURPOSE,
            "encodedList": encoded_list,
        },
    }


def encode_status_list(revoked: Iterable[int], size: int = STATUS_LIST_MIN_SIZE) -> str:
    """The ``encodedList`` of a status list of ``size`` entries with the ``revoked`` bits set.

    Index 0 is the left-most bit of the bitstring (the most significant bit of its first byte);
    the bitstring is GZIP-compressed, base64url-encoded without padding and given the multibase
    prefix ``u``.
    """
    if size < STATUS_LIST_MIN_SIZE or size % 8:
        raise ValueError(
            f"a status list has at least {STATUS_LIST_MIN_SIZE} entries, a multiple of 8"
        )
    bits = bytearray(size // 8)
    for index in revoked:
        if not 0 <= index < size:
            raise ValueError(f"status list index {index} is outside 0..{size - 1}")
        bits[index >> 3] |= 0x80 >> (index & 7)
    compressed = gzip.compress(bytes(bits), mtime=0)  # mtime 0: same list, same bytes
    return "u" + base64.urlsafe_b64encode(compressed).rstrip(b"=").decode("ascii")


def inflate_bounded(compressed: bytes, max_bytes: int, *, what: str, container: str) -> bytes:
    """``compressed`` inflated, never past ``max_bytes`` (a compression bomb is refused, not
    inflated); ``container``: "GZIP" or "ZLIB". ValueError naming ``what`` when it is not such
    data, is truncated or too large."""
    wbits = 16 + zlib.MAX_WBITS if container == "GZIP" else zlib.MAX_WBITS
    inflater = zlib.decompressobj(wbits=wbits)
    try:
        data = inflater.decompress(compressed, max_bytes)
    except zlib.error as error:
        raise ValueError(f"{what} is not {container} data: {error}") from None
    if inflater.unconsumed_tail:
        raise ValueError(f"status list larger than {max_bytes} bytes")
    if not inflater.eof:
        raise ValueError(f"{what} is truncated {container} data")
    return data


def decode_status_list(encoded: str) -> bytes:
    """The bitstring of an ``encodedList``; ValueError when it is malformed or too short."""
    if not encoded.startswith("u"):
        raise ValueError("encodedList must be multibase base64url (prefix 'u')")
    body = encoded[1:]
    try:
        compressed = base64.b64decode(body + "=" * (-len(body) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError) as error:
        raise ValueError(f"encodedList is not base64url: {error}") from None
    bits = inflate_bounded(compressed, STATUS_LIST_MAX_BYTES, what="encodedList", container="GZIP")
    if len(bits) * 8 < STATUS_LIST_MIN_SIZE:
        raise ValueError(f"status list shorter than {STATUS_LIST_MIN_SIZE} entries")
    return bits


def is_set(bits: bytes, index: int) -> bool:
    """Whether entry ``index`` of a decoded bitstring is set (index 0 = left-most bit)."""
    if not 0 <= index < len(bits) * 8:
        raise IndexError(f"status list index {index} is outside the list")
    return bool(bits[index >> 3] & (0x80 >> (index & 7)))
