"""A certification added as data: ``CERTIBLOC_REFERENTIALS_DIR`` adds referential files to the
packaged ones, each checked when loaded (a bad one names its file and field), and no service
code names a certification (the whole path for the second one, as processes, is
``tests/system/test_second_certification.py``)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from contracts import referential
from contracts.referential import ReferentialError, available_codes, load_all, load_certification

REPO_ROOT = Path(__file__).resolve().parents[2]
FIXTURES = REPO_ROOT / "tests" / "data" / "referentials"
FIXTURE = "RNCP99901"  # tests/data/referentials/RNCP99901.json: an invented certification
PACKAGED = "RNCP40705"


@pytest.fixture
def fixture_dir(monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(referential.REFERENTIALS_DIR_ENV, str(FIXTURES))
    return FIXTURES


def test_without_the_setting_only_the_packaged_referentials(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(referential.REFERENTIALS_DIR_ENV, raising=False)
    assert FIXTURE not in available_codes()
    with pytest.raises(KeyError):
        load_certification(FIXTURE)


def test_the_fixture_is_added_alongside_the_packaged_ones(fixture_dir: Path) -> None:
    assert {PACKAGED, FIXTURE} <= set(available_codes())
    cert = load_certification(FIXTURE)
    assert cert.note is not None and "TEST FIXTURE" in cert.note  # it says what it is
    assert cert.certifier.name != load_certification(PACKAGED).certifier.name
    assert cert.certifier.siret != load_certification(PACKAGED).certifier.siret
    assert [b.code for b in cert.mandatory_blocs] == ["RNCP99901BC01", "RNCP99901BC02"]
    assert cert.grants_bloc_attestations("formation_continue")
    assert not cert.grants_bloc_attestations("apprentissage")
    assert {c.code for c in load_all()} >= {PACKAGED, FIXTURE}


def _write(directory: Path, name: str, data: dict[str, Any]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def _fixture() -> dict[str, Any]:
    return dict(json.loads((FIXTURES / f"{FIXTURE}.json").read_text("utf-8")))


def _renamed(data: dict[str, Any], code: str) -> dict[str, Any]:
    text = json.dumps(data).replace(FIXTURE, code)
    return dict(json.loads(text))


def _broken(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, data: dict[str, Any]) -> str:
    path = _write(tmp_path / "refs", "RNCP99902.json", data)
    monkeypatch.setenv(referential.REFERENTIALS_DIR_ENV, str(path.parent))
    with pytest.raises(ReferentialError) as caught:
        load_certification("RNCP99902")
    message = str(caught.value)
    assert str(path) in message  # names the file
    with pytest.raises(ReferentialError):
        load_all()  # what a service runs at start: it stops there
    return message


def test_a_missing_field_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    data = _renamed(_fixture(), "RNCP99902")
    del data["certifier"]
    assert "certifier: Field required" in _broken(monkeypatch, tmp_path, data)


def test_a_wrong_nested_field_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    data = _renamed(_fixture(), "RNCP99902")
    data["diploma_rules"]["pass_average"] = "dix"
    assert "diploma_rules.pass_average" in _broken(monkeypatch, tmp_path, data)
    data = _renamed(_fixture(), "RNCP99902")
    data["blocs"][1]["modalities"] = {"1": "ccf", "2": "oral"}
    assert "blocs.1.modalities.2" in _broken(monkeypatch, tmp_path, data)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            lambda d: d.update(json.loads(json.dumps(d).replace("RNCP99902", "RNCP99903"))),
            "code: 'RNCP99903' differs from the file's name",
        ),
        (lambda d: d["blocs"][0].update(code="RNCP12345BC01"), "blocs[0].code"),
        (lambda d: d["blocs"][1].update(code=d["blocs"][0]["code"]), "appears twice"),
        (lambda d: d["blocs"][0]["modalities"].update({"3": "ccf"}), "candidate group 3"),
        (lambda d: d.update(valid_until="2020-01-01"), "valid_until"),
        (lambda d: d.update(unknown_field=1), "unknown_field: Extra inputs"),
    ],
    ids=["code-vs-name", "foreign-bloc", "duplicate-bloc", "unknown-group", "window", "extra"],
)
def test_inconsistent_referentials_are_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, change: Any, expected: str
) -> None:
    data = _renamed(_fixture(), "RNCP99902")
    change(data)
    assert expected in _broken(monkeypatch, tmp_path, data)


def test_a_file_that_is_not_json_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = tmp_path / "refs" / "RNCP99902.json"
    path.parent.mkdir()
    path.write_text("{not json", encoding="utf-8")
    monkeypatch.setenv(referential.REFERENTIALS_DIR_ENV, str(path.parent))
    with pytest.raises(ReferentialError, match=re.escape(str(path))):
        load_certification("RNCP99902")


def test_a_deployment_cannot_redefine_a_packaged_certification(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    packaged = (REPO_ROOT / "contracts" / "referentials" / f"{PACKAGED}.json").read_text("utf-8")
    path = tmp_path / "refs" / f"{PACKAGED}.json"
    path.parent.mkdir()
    path.write_text(packaged, encoding="utf-8")
    monkeypatch.setenv(referential.REFERENTIALS_DIR_ENV, str(path.parent))
    with pytest.raises(ReferentialError, match="already defined"):
        load_certification(PACKAGED)


def test_a_setting_naming_no_directory_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(referential.REFERENTIALS_DIR_ENV, str(tmp_path / "absent"))
    with pytest.raises(ReferentialError, match="not a directory"):
        available_codes()


# Every text file of the services: code, templates, catalogues, comments and docstrings too
# (none needs to name a certification; their examples use the made-up RNCP12345).
SERVICE_TEXT = ("*.py", "*.html", "*.txt", "*.po", "*.json", "*.css", "*.xsd")


def test_no_service_code_names_a_certification() -> None:
    named = [
        f"{path.relative_to(REPO_ROOT)}:{number}: {code}"
        for pattern in SERVICE_TEXT
        for path in sorted((REPO_ROOT / "services").rglob(pattern))
        for number, line in enumerate(path.read_text("utf-8").splitlines(), 1)
        for code in (PACKAGED, FIXTURE)
        if code in line
    ]
    assert named == []
