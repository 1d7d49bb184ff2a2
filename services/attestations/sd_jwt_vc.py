"""The SD-JWT VC form of an attestation (``dc+sd-jwt``, draft-ietf-oauth-sd-jwt-vc on RFC 9901),
for holders who show part of it: the bloc without their name, their name without the route…

What is always shown (plain claims of the issuer-signed JWT) and what the holder chooses
(one salted Disclosure each):

- always: ``iss`` (the service's did:web), ``iat``, ``vct``, ``cnf``, ``status`` (SD-JWT VC
  forbids disclosing them selectively; ``vct`` names the certification and whether it is a
  bloc or the diploma), ``certification`` {code, title, level} and ``certifier`` {name, siret}
  (public facts of the RNCP; ``vct`` names the certification already);
- chosen by the holder: ``given_name``, ``family_name`` (who), ``bloc`` {code, title} (what,
  for a bloc), ``decision_date``, ``route``, ``session``, ``mention``, ``exam_center`` {uai,
  name} (the jury's decision: when, how, where).

Never in it: a birth date, a grade, the attestation's id or verification URL (its page names
the holder: it would undo every choice). ``_sd`` is padded with decoy digests to the same length
for every attestation, so its length says nothing of which claims exist. Each download is a new
issuance with new salts and a new ``iat`` (two presentations of two downloads share no salt or
digest; the status index is the one thing they share, as with any status list).

Holder binding (``cnf.jwk``) needs the holder's public key, which only an issuance protocol in
which the holder proves possession of it brings (OpenID4VCI): ``issue_sd_jwt_vc(…,
holder_jwk=…)``. Downloaded as today (center key or personal link) it has no ``cnf``.

The type metadata of each ``vct`` is served at the ``vct`` URL itself (the draft's retrieval
"from a URL in the vct claim"): ``/vct/<certification>/bloc`` and
``/vct/<certification>/certification``, with names and claim labels in French and English.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, Literal

from contracts.referential import load_certification
from services.attestations.application import AttestationsApp, mention_label
from services.attestations.domain import sd_jwt
from services.attestations.domain.aggregates import Attestation
from services.attestations.token_status import token_status_list_url

FORMAT = "dc+sd-jwt"
TYP = "dc+sd-jwt"
MEDIA_TYPE = "application/dc+sd-jwt"
Kind = Literal["bloc", "certification"]
KINDS: tuple[Kind, ...] = ("bloc", "certification")
#: Digests in every ``_sd``: the most claims a credential has (8), and decoys.
PAD_DIGESTS_TO = 10


class NotIssuable(Exception):
    """An attestation that gets no new credential (revoked, or its referential is gone)."""


def vct_url(base_url: str, certification: str, kind: str) -> str:
    return f"{base_url.rstrip('/')}/vct/{certification}/{kind}"


def claims_of(
    attestation: Attestation, *, base_url: str, certifier: tuple[str, str], now: datetime
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(plain claims, selectively disclosable claims) of an attestation, ``cnf`` aside."""
    try:
        cert = load_certification(attestation.certification)
    except KeyError:
        raise NotIssuable(f"no referential for {attestation.certification}") from None
    plain: dict[str, Any] = {
        "iss": "",  # set by the caller (the service's DID)
        "iat": int(now.timestamp()),
        "vct": vct_url(base_url, cert.code, attestation.kind),
        "status": {
            "status_list": {
                "idx": attestation.status_index,
                "uri": token_status_list_url(base_url, attestation.status_list),
            }
        },
        "certification": {"code": cert.code, "title": cert.title, "level": cert.level},
        "certifier": {"name": certifier[0], "siret": certifier[1]},
    }
    holder = attestation.holder
    selective: dict[str, Any] = {
        "given_name": " ".join(holder["given_names"]),
        "family_name": holder["family_name"],
    }
    if attestation.kind == "bloc":
        selective["bloc"] = {"code": attestation.code, "title": attestation.title}
    if attestation.awarded_on:
        selective["decision_date"] = attestation.awarded_on
    if attestation.route:
        selective["route"] = attestation.route
    if attestation.session:
        selective["session"] = attestation.session
    if attestation.mention and attestation.kind == "certification":
        selective["mention"] = mention_label(attestation.certification, attestation.mention)
    if attestation.exam_center_name:
        selective["exam_center"] = {
            "uai": attestation.exam_center,
            "name": attestation.exam_center_name,
        }
    return plain, selective


def issue_sd_jwt_vc(
    app: AttestationsApp,
    attestation: Attestation,
    *,
    holder_jwk: Mapping[str, Any] | None = None,
    now: datetime | None = None,
) -> str:
    """A new SD-JWT VC of ``attestation`` with every Disclosure (``<JWT>~<D1>~…~``), signed
    with the service's active key (``kid`` its DID URL, ``iss`` the DID), bound to
    ``holder_jwk`` (``cnf.jwk``: an Ed25519 or P-256 *public* JWK; ValueError otherwise) when
    given. NotIssuable for a revoked attestation."""
    if attestation.revoked_at is not None:
        raise NotIssuable("this attestation is revoked")
    profile = app.issuers.for_certification(attestation.certification)
    plain, selective = claims_of(
        attestation,
        base_url=app.links.base_url,
        certifier=(profile.name, profile.siret),
        now=now or datetime.now(UTC),
    )
    plain["iss"] = app.issuers.did
    if holder_jwk is not None:
        plain["cnf"] = {"jwk": sd_jwt.holder_public_jwk(holder_jwk)}
    return sd_jwt.issue(plain, selective, app.signing_key(), typ=TYP, pad_digests_to=PAD_DIGESTS_TO)


# --- type metadata ----------------------------------------------------------------------------


def _labels(fr: str, en: str, fr_text: str | None = None, en_text: str | None = None) -> list[Any]:
    out: list[dict[str, str]] = [{"locale": "fr", "label": fr}, {"locale": "en", "label": en}]
    if fr_text and en_text:
        out[0]["description"], out[1]["description"] = fr_text, en_text
    return out


def _claim(
    path: list[str], labels: list[Any], sd: str, *, mandatory: bool = False
) -> dict[str, Any]:
    claim: dict[str, Any] = {"path": path, "display": labels, "sd": sd}
    if mandatory:
        claim["mandatory"] = True
    claim["svg_id"] = "_".join(path)
    return claim


ROUTES_FR = (
    "exam : par examen ; vae : par la validation des acquis de l'expérience ; "
    "carried_over : par report d'une note obtenue à une session antérieure"
)
ROUTES_EN = (
    "exam: by examination; vae: by validation of prior experiential learning (VAE); "
    "carried_over: with a grade carried over from an earlier session"
)


@lru_cache(maxsize=64)
def type_metadata(base_url: str, certification: str, kind: str) -> dict[str, Any] | None:
    """The SD-JWT VC Type Metadata of ``vct_url(base_url, certification, kind)``; None when
    there is no such certification or kind."""
    if kind not in KINDS:
        return None
    try:
        cert = load_certification(certification)
    except KeyError:
        return None
    title, code = cert.title, cert.code
    if kind == "bloc":
        display = [
            {
                "locale": "fr",
                "name": f"Bloc de compétences — {title}",
                "description": f"Attestation d'un bloc de compétences de la certification "
                f"professionnelle {code} « {title} », enregistrée au RNCP.",
            },
            {
                "locale": "en",
                "name": f"Block of competences — {title}",
                "description": f"Attestation of a block of competences of the French "
                f"professional certification {code} “{title}”, registered in the RNCP.",
            },
        ]
    else:
        display = [
            {
                "locale": "fr",
                "name": f"Certification professionnelle — {title}",
                "description": f"Attestation de la certification professionnelle {code} "
                f"« {title} », enregistrée au RNCP, délivrée par décision du jury.",
            },
            {
                "locale": "en",
                "name": f"Professional certification — {title}",
                "description": f"Attestation of the French professional certification {code} "
                f"“{title}”, registered in the RNCP, awarded by decision of the jury.",
            },
        ]
    claims = [
        _claim(["given_name"], _labels("Prénom(s)", "Given name(s)"), "always", mandatory=True),
        _claim(["family_name"], _labels("Nom", "Family name"), "always", mandatory=True),
    ]
    if kind == "bloc":
        claims += [
            _claim(
                ["bloc"],
                _labels("Bloc de compétences", "Block of competences"),
                "always",
                mandatory=True,
            ),
            _claim(["bloc", "code"], _labels("Code du bloc", "Block code"), "never"),
            _claim(["bloc", "title"], _labels("Intitulé du bloc", "Block title"), "never"),
        ]
    claims += [
        _claim(
            ["decision_date"],
            _labels("Date de la décision du jury", "Date of the jury's decision"),
            "always",
        ),
        _claim(["route"], _labels("Voie d'obtention", "Route", ROUTES_FR, ROUTES_EN), "always"),
        _claim(
            ["session"],
            _labels("Session", "Exam session", "Mois d'examen (AAAA-MM)", "Month (YYYY-MM)"),
            "always",
        ),
    ]
    if kind == "certification":
        claims.append(_claim(["mention"], _labels("Mention", "Honours"), "always"))
    claims += [
        _claim(["exam_center"], _labels("Centre d'examen", "Exam centre"), "always"),
        _claim(
            ["exam_center", "uai"],
            _labels("UAI", "UAI", "Immatriculation de l'établissement", "French school number"),
            "never",
        ),
        _claim(["exam_center", "name"], _labels("Nom du centre", "Centre name"), "never"),
        _claim(
            ["certification"],
            _labels("Certification professionnelle", "Professional certification"),
            "never",
            mandatory=True,
        ),
        _claim(["certification", "code"], _labels("Code RNCP", "RNCP code"), "never"),
        _claim(["certification", "title"], _labels("Intitulé", "Title"), "never"),
        _claim(
            ["certification", "level"],
            _labels(
                "Niveau",
                "Level",
                "Niveau du cadre national des certifications professionnelles",
                "Level of the French national qualifications framework",
            ),
            "never",
        ),
        _claim(["certifier"], _labels("Certificateur", "Certifying body"), "never", mandatory=True),
        _claim(["certifier", "name"], _labels("Nom", "Name"), "never"),
        _claim(["certifier", "siret"], _labels("SIRET", "SIRET"), "never"),
    ]
    what = "bloc de compétences" if kind == "bloc" else "certification"
    return {
        "vct": vct_url(base_url, code, kind),
        "name": f"certibloc — {what} {code}",
        "description": f"SD-JWT VC d'une attestation ({what}) de {code} « {title} » : le "
        "porteur choisit ce qu'il montre (ses noms, le bloc, la décision du jury).",
        "display": display,
        "claims": claims,
    }
