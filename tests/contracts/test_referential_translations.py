"""A referential may carry an English version of its texts (translations.en), checked at load;
what it does not translate stays French, and the real RNCP40705 has none."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from contracts.referential import Certification, load_certification

FIXTURE = Path(__file__).resolve().parents[1] / "data" / "referentials" / "RNCP99901.json"


def _data() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(FIXTURE.read_text("utf-8"))
    return data


def test_english_where_given_french_elsewhere() -> None:
    cert = Certification.model_validate(_data())
    assert cert.title_in("en").startswith("Invented test certification")
    assert cert.title_in("fr") == cert.title
    assert cert.bloc_title_in("RNCP99901BC01", "en") == "Welcoming the public on site and remotely"
    assert cert.competences_in("RNCP99901BC01", "en")[0].startswith("Identify")
    # Not translated: French.
    assert cert.bloc_title_in("RNCP99901BC02", "en") == "Traiter les informations et le courrier"
    assert cert.competences_in("RNCP99901BC02", "en") == cert.blocs[1].competences
    assert cert.mention_label_in("bien", "en") == "Good"
    assert cert.mention_label_in("assez_bien", "en") == "Assez bien"
    real = load_certification("RNCP40705")
    assert real.translations == {}  # nothing invented for the real certification
    assert real.title_in("en") == real.title


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda t: t.update({"de": {}}), "translations.de: not one of en"),
        (lambda t: t["en"]["blocs"].update({"RNCP99901BC99": {"title": "x"}}), "not a bloc"),
        (
            lambda t: t["en"]["blocs"]["RNCP99901BC01"].update({"competences": ["one"]}),
            "1 competences, the French text has 3",
        ),
        (lambda t: t["en"]["mentions"].update({"excellent": "x"}), "is not a mention"),
        (lambda t: t["en"].update({"subtitle": "x"}), "Extra inputs are not permitted"),
    ],
)
def test_bad_translations_are_refused_at_load(change: Any, message: str) -> None:
    data = _data()
    change(data["translations"])
    with pytest.raises(ValidationError, match=message):
        Certification.model_validate(data)
