"""The RNCP40705 referential data file matches the official RNCP description (the seed).

The seed is the French RNCP page saved as text, vendored under ``tests/data/seeds`` (see
``tests/data/README.md``). These tests re-parse it independently of the services and check
that ``contracts/referentials/RNCP40705.json`` carries its blocs, competences (word for word, from
the detailed "RNCP40705BCxx - Title" sections), evaluation modalities and identity data.
"""

import json
import re
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any, NoReturn

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
SEEDS_DIR = REPO_ROOT / "tests" / "data" / "seeds"
REFERENTIAL_PATH = REPO_ROOT / "contracts" / "referentials" / "RNCP40705.json"

CODE = "RNCP40705"
MANDATORY_CODES = [f"{CODE}BC{n:02d}" for n in range(1, 13)]
OPTIONAL_CODES = [f"{CODE}UF-LV", f"{CODE}UF-MOB", f"{CODE}UF-SPORT"]
GROUPS = ("1", "2", "3")

HEADING_RE = re.compile(rf"^({CODE}BC\d\d) - (.+)$")
DASH_RE = re.compile(r"^-\s+(.*)$")
DATE_RE = re.compile(r"^(\d\d)-(\d\d)-(\d{4})$")
LEVEL_RE = re.compile(r"^Niveau (\d)$")
ROME_RE = re.compile(r"^•\s*([A-Z]\d{4}) - (.+)$")
OPTIONAL_HEADING_RE = re.compile(r"^(.+\(bloc facultatif\))$", re.IGNORECASE)
END_OF_DETAIL = "Description des modalités"
END_OF_SUMMARY = "Modalités d'évaluation :"
LIST_HEADER = "Liste de compétences Modalités d'évaluation"

# Seed wording (casefolded, whitespace collapsed) -> value stored in the referential.
MODALITY_WORDS: dict[str, str] = {
    "ccf": "ccf",
    "ponctuel écrit": "ponctuel_ecrit",
    "ponctuel oral": "ponctuel_oral",
    "ponctuel pratique": "ponctuel_pratique",
    "ponctuel oral et pratique": "ponctuel_oral_pratique",
}
ALLOWED_MODALITIES = frozenset(MODALITY_WORDS.values())

BLOC_KEYS = [
    "code",
    "title",
    "optional",
    "unit",
    "coefficient",
    "unit_source",
    "preamble",
    "competences",
    "competence_groups",
    "context",
    "modalities",
    "modality_text",
    "note",
]


def _fail(message: str) -> NoReturn:
    pytest.fail(message, pytrace=False)


def collapse(text: str) -> str:
    """Strip and collapse every run of whitespace (no-break spaces included) to one space."""
    return " ".join(text.split())


def normalise_competence(line: str) -> str:
    """Text after the leading dash, stripped, without a trailing ';' or '.'."""
    match = DASH_RE.match(line.strip())
    if match is None:
        _fail(f"not a competence line: {line!r}")
    text = match.group(1).strip()
    if text.endswith((";", ".")):
        text = text[:-1].rstrip()
    return text


def is_dash_line(line: str) -> bool:
    return DASH_RE.match(line.strip()) is not None


@cache
def seed_lines() -> tuple[str, ...]:
    if not SEEDS_DIR.is_dir():
        _fail(
            f"seed folder {SEEDS_DIR} is missing: the RNCP40705 referential cannot be checked "
            "against the official description"
        )
    candidates = [
        path
        for path in sorted(SEEDS_DIR.glob("*.txt"))
        if f"{CODE}BC01 - " in path.read_text(encoding="utf-8")
    ]
    if len(candidates) != 1:
        _fail(f"expected exactly one {CODE} seed (*.txt) in {SEEDS_DIR}, found {candidates}")
    return tuple(candidates[0].read_text(encoding="utf-8").splitlines())


@cache
def referential() -> dict[str, Any]:
    if not REFERENTIAL_PATH.is_file():
        _fail(f"referential data file {REFERENTIAL_PATH} is missing")
    data: dict[str, Any] = json.loads(REFERENTIAL_PATH.read_text(encoding="utf-8"))
    return data


def blocs_by_code() -> dict[str, dict[str, Any]]:
    return {bloc["code"]: bloc for bloc in referential()["blocs"]}


@cache
def detailed_sections() -> dict[str, dict[str, Any]]:
    """Parse every "RNCP40705BCxx - Title" section of the seed, in order."""
    sections: dict[str, dict[str, Any]] = {}
    current: dict[str, Any] | None = None
    for raw in seed_lines():
        line = collapse(raw)
        if line.startswith(END_OF_DETAIL):
            break
        heading = HEADING_RE.match(line)
        if heading is not None:
            current = {
                "title": heading.group(2),
                "preamble": None,
                "competences": [],
                "groups": [],
                "context": None,
                "modality_lines": [],
            }
            sections[heading.group(1)] = current
            continue
        if current is None or not line or line == LIST_HEADER:
            continue
        if is_dash_line(raw):
            competence = normalise_competence(raw)
            current["competences"].append(competence)
            if current["groups"]:
                current["groups"][-1]["competences"].append(competence)
        elif line.startswith("Compétences de niveau"):
            current["preamble"] = line
        elif line.startswith("Compétences d"):
            current["groups"].append({"title": line, "competences": []})
        elif line.startswith("dans des situations"):
            current["context"] = line
        elif ":" in line and line.startswith(("Scolaire", "Formation professionnelle")):
            current["modality_lines"].append(line)
        else:
            _fail(f"unexpected line in the detailed section of {CODE}: {line!r}")
    if not sections:
        _fail(f"no '{CODE}BCxx - ' heading found in the seed")
    return sections


@cache
def optional_sections() -> dict[str, dict[str, Any]]:
    """Parse the "(Bloc facultatif)" parts of the summary, keyed by casefolded heading."""
    sections: dict[str, dict[str, Any]] = {}
    current: dict[str, Any] | None = None
    for raw in seed_lines():
        line = collapse(raw)
        if line == END_OF_SUMMARY:
            break
        if OPTIONAL_HEADING_RE.match(line):
            current = {"title": line, "preamble": None, "competences": [], "groups": []}
            sections[line.casefold()] = current
            continue
        if current is None or not line:
            continue
        if is_dash_line(raw):
            competence = normalise_competence(raw)
            current["competences"].append(competence)
            if current["groups"]:
                current["groups"][-1]["competences"].append(competence)
        elif line.startswith("Compétences de niveau"):
            current["preamble"] = line
        else:
            current["groups"].append({"title": line, "competences": []})
    return sections


def value_after_heading(heading: str) -> str:
    """First non-empty line after the first line starting with ``heading``."""
    lines = seed_lines()
    for index, raw in enumerate(lines):
        if collapse(raw).startswith(heading):
            for following in lines[index + 1 :]:
                if collapse(following):
                    return collapse(following)
    _fail(f"heading {heading!r} not found in the seed")


def first_date_after(heading: str) -> str:
    lines = seed_lines()
    for index, raw in enumerate(lines):
        if collapse(raw).startswith(heading):
            for following in lines[index + 1 :]:
                match = DATE_RE.match(collapse(following))
                if match is not None:
                    day, month, year = match.groups()
                    return f"{year}-{month}-{day}"
    _fail(f"no date found after {heading!r} in the seed")


def modality_from_text(text: str) -> str:
    words = collapse(text.rpartition(":")[2]).casefold()
    if words not in MODALITY_WORDS:
        _fail(f"unknown evaluation modality {words!r} in {text!r}")
    return MODALITY_WORDS[words]


# --- structure ---------------------------------------------------------------------------


def test_seed_folder_exists() -> None:
    assert seed_lines(), f"the seed in {SEEDS_DIR} is empty"


def test_bloc_list_is_twelve_mandatory_then_three_optional() -> None:
    blocs = referential()["blocs"]
    assert len(blocs) == 15
    assert [bloc["code"] for bloc in blocs] == MANDATORY_CODES + OPTIONAL_CODES
    assert [bloc["optional"] for bloc in blocs] == [False] * 12 + [True] * 3
    for bloc in blocs:
        assert list(bloc) == BLOC_KEYS, bloc["code"]


def test_seed_has_the_same_mandatory_blocs() -> None:
    assert list(detailed_sections()) == MANDATORY_CODES


@pytest.mark.parametrize("code", MANDATORY_CODES)
def test_mandatory_bloc_title_matches_seed_heading(code: str) -> None:
    assert blocs_by_code()[code]["title"] == detailed_sections()[code]["title"]


# --- competences -------------------------------------------------------------------------


@pytest.mark.parametrize("code", MANDATORY_CODES)
def test_mandatory_bloc_competences_are_the_seed_detailed_list(code: str) -> None:
    seed = detailed_sections()[code]
    competences = blocs_by_code()[code]["competences"]
    for competence in seed["competences"]:
        assert competence in competences, f"{code}: {competence!r} missing from the referential"
    assert len(competences) == len(seed["competences"]), code
    assert competences == seed["competences"], f"{code}: order differs from the seed"


@pytest.mark.parametrize("code", MANDATORY_CODES)
def test_mandatory_bloc_preamble_groups_and_context_follow_seed(code: str) -> None:
    seed = detailed_sections()[code]
    bloc = blocs_by_code()[code]
    assert bloc["preamble"] == seed["preamble"]
    assert bloc["context"] == seed["context"]
    assert bloc["competence_groups"] == (seed["groups"] or None)


def test_language_bloc_levels_keep_the_detailed_text() -> None:
    blocs = blocs_by_code()
    assert "B1+" in blocs[f"{CODE}BC07"]["preamble"]
    assert "A2+" in blocs[f"{CODE}BC08"]["preamble"]
    assert "B1+" in blocs[f"{CODE}BC08"]["note"], "BC08 must record the summary's B1+ discrepancy"


def test_arts_bloc_has_its_four_competence_groups() -> None:
    groups = blocs_by_code()[f"{CODE}BC11"]["competence_groups"]
    assert [group["title"] for group in groups] == [
        "Compétences d'investigation",
        "Compétences d'expérimentation",
        "Compétences de réalisation",
        "Compétences de communication",
    ]


def test_optional_blocs_match_seed_summary() -> None:
    seed = optional_sections()
    assert len(seed) == 3, f"expected three '(Bloc facultatif)' parts in the seed, got {list(seed)}"
    blocs = blocs_by_code()
    for code in OPTIONAL_CODES:
        bloc = blocs[code]
        key = bloc["title"].casefold()
        assert key in seed, f"{code}: title {bloc['title']!r} is not a seed heading"
        expected = seed[key]
        for competence in expected["competences"]:
            assert competence in bloc["competences"], f"{code}: {competence!r} missing"
        assert bloc["competences"] == expected["competences"], code
        assert bloc["competence_groups"] == (expected["groups"] or None), code
        assert bloc["preamble"] == expected["preamble"], code


def test_optional_bloc_metadata() -> None:
    blocs = blocs_by_code()
    for code in OPTIONAL_CODES:
        bloc = blocs[code]
        assert bloc["unit"] == "UF", code
        assert bloc["coefficient"] is None, code
        assert bloc["unit_source"] == "secondary", code
        assert bloc["modalities"] is None, code
        assert bloc["modality_text"] is None, code
        assert "seed gives none" in bloc["note"], code
    lv = blocs[f"{CODE}UF-LV"]["competence_groups"]
    assert [group["title"] for group in lv] == [
        "Langue vivante étrangère ou régionale",
        "Langue des signes française",
    ]


def test_competence_strings_are_normalised() -> None:
    for bloc in referential()["blocs"]:
        competences = bloc["competences"]
        assert len(set(competences)) == len(competences), f"{bloc['code']}: duplicates"
        for competence in competences:
            assert competence == competence.strip(), (bloc["code"], competence)
            assert not competence.endswith((";", ".")), (bloc["code"], competence)
            assert not competence.startswith("-"), (bloc["code"], competence)
        if bloc["competence_groups"] is not None:
            flat = [c for group in bloc["competence_groups"] for c in group["competences"]]
            assert flat == competences, f"{bloc['code']}: groups and flat list differ"


# --- evaluation modalities, units --------------------------------------------------------


@pytest.mark.parametrize("code", MANDATORY_CODES)
def test_mandatory_bloc_modalities_follow_seed(code: str) -> None:
    seed_modality_lines = detailed_sections()[code]["modality_lines"]
    assert len(seed_modality_lines) == 3, f"{code}: seed gives {seed_modality_lines}"
    bloc = blocs_by_code()[code]
    assert sorted(bloc["modalities"]) == list(GROUPS)
    assert sorted(bloc["modality_text"]) == list(GROUPS)
    for group, seed_line in zip(GROUPS, seed_modality_lines, strict=True):
        assert bloc["modality_text"][group] == seed_line, (code, group)
        assert bloc["modalities"][group] in ALLOWED_MODALITIES, (code, group)
        assert bloc["modalities"][group] == modality_from_text(seed_line), (code, group)


@pytest.mark.parametrize("code", MANDATORY_CODES)
def test_group_3_is_always_ccf(code: str) -> None:
    assert blocs_by_code()[code]["modalities"]["3"] == "ccf"


def test_candidate_groups_are_the_seed_wording() -> None:
    groups = referential()["candidate_groups"]
    sections = detailed_sections()
    for code, section in sections.items():
        first, _, third = section["modality_lines"]
        assert first.rpartition(":")[0].strip() == groups["1"], code
        assert third.rpartition(":")[0].strip() == groups["3"], code
    second = sections[MANDATORY_CODES[0]]["modality_lines"][1]
    assert second.rpartition(":")[0].strip() == groups["2"]


@pytest.mark.parametrize("code", MANDATORY_CODES)
def test_mandatory_bloc_unit_and_coefficient(code: str) -> None:
    bloc = blocs_by_code()[code]
    assert re.fullmatch(r"U\d+", bloc["unit"]), code
    assert isinstance(bloc["coefficient"], str), code
    assert Decimal(bloc["coefficient"]) > 0, code
    assert bloc["unit_source"] == "secondary", code


def test_units_are_distinct() -> None:
    units = [blocs_by_code()[code]["unit"] for code in MANDATORY_CODES]
    assert len(set(units)) == len(units)


# --- certification identity --------------------------------------------------------------


def test_validity_window_matches_seed() -> None:
    data = referential()
    assert data["valid_from"] == first_date_after("Date de début des parcours certifiants")
    assert data["valid_until"] == first_date_after("Date d’échéance")
    assert (data["valid_from"], data["valid_until"]) == ("2025-09-01", "2028-08-31")


def test_predecessor_matches_seed() -> None:
    line = value_after_heading("Code de la fiche Intitulé de la certification remplacée")
    code, _, title = line.partition(" ")
    assert referential()["predecessors"] == [{"code": code, "title": title}]
    assert code == "RNCP34606"


def test_identity_matches_seed() -> None:
    data = referential()
    assert data["code"] == CODE
    levels = {m.group(1) for m in (LEVEL_RE.match(collapse(raw)) for raw in seed_lines()) if m}
    assert levels == {str(data["level"])}
    nsf_code, _, nsf_label = value_after_heading("Code(s) NSF").partition(" : ")
    assert data["nsf"] == [{"code": nsf_code, "label": nsf_label}]
    formacode, _, formacode_label = value_after_heading("Formacode(s)").partition(" : ")
    assert data["formacode"] == [{"code": formacode, "label": formacode_label}]
    rome = [m.groups() for m in (ROME_RE.match(collapse(raw)) for raw in seed_lines()) if m]
    assert [(r["code"], r["label"]) for r in data["rome"]] == rome
    assert len(rome) == 4
    certifier = value_after_heading("Nom légal Siret")
    assert certifier.startswith(f"{data['certifier']['name']} {data['certifier']['siret']} ")


def test_attestation_and_jury_texts_are_quoted_from_seed() -> None:
    data = referential()
    seed_text = "\n".join(collapse(raw) for raw in seed_lines())
    source = data["attestation_policy"]["source"]
    assert source.startswith("Ceux qui ont préparé le diplôme dans le cadre de la formation")
    assert source in seed_text
    paragraphs = data["jury_rule"].split("\n")
    assert len(paragraphs) == 3
    assert [p[:2] for p in paragraphs[:2]] == ["1°", "2°"]
    for paragraph in paragraphs:
        assert paragraph in seed_text.split("\n"), paragraph
    assert data["attestation_policy"]["certification_attestation_for_all"] is True
    assert "vae" in data["attestation_policy"]["bloc_attestation_access_routes"]
