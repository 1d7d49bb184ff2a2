"""Value objects of a candidate's record: result lines, acquired blocs, the diploma award.

They travel inside stored events as plain dicts (``to_dict``/``from_dict``) so stored events
hold only primitives.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from services.registry.domain.marks import Mark, parse_mark


@dataclass(frozen=True)
class ResultLine:
    result_id: str
    bloc: str
    session: str
    mark: Mark
    modality: str | None
    deliberation_id: str
    deliberated_on: str
    justification: str | None = None

    def to_dict(self) -> dict[str, Any]:
        # Built by hand: dataclasses.asdict deep-copies every field and dominates bulk PVs.
        return {
            "result_id": self.result_id,
            "bloc": self.bloc,
            "session": self.session,
            "mark": self.mark.to_text(),
            "modality": self.modality,
            "deliberation_id": self.deliberation_id,
            "deliberated_on": self.deliberated_on,
            "justification": self.justification,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ResultLine:
        return cls(**{**data, "mark": parse_mark(data["mark"])})


@dataclass(frozen=True)
class Acquisition:
    validation_id: str
    bloc: str
    via: Literal["grade", "vae"]
    grade: str | None
    session: str | None
    validated_on: str
    source_id: str
    result_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Acquisition:
        return cls(**data)


@dataclass(frozen=True)
class Award:
    award_id: str
    via: Literal["exam", "vae"]
    session: str | None
    average: str | None
    mention: str | None
    awarded_on: str
    source_id: str

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Award:
        return cls(**data)
