"""The attestations service's handlers on typed registry events, in this process (no NATS):
one candidate's decision issued (and revoked) as one unit, candidates scoped by center,
records written before that scoping still found, and what can never be applied refused for
the dead-letter stream rather than retried forever."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import UTC, date, datetime
from io import BytesIO
from pathlib import Path
from typing import Any

import orjson
import pytest

from contracts import registry_v1 as v1
from services.attestations.application import AttestationsApp
from services.attestations.composition import build_attestations
from services.attestations.domain.aggregates import Holder
from services.attestations.settings import AttestationsSettings
from services.attestations.verification import schema_problems
from services.runtime.messages import Rejected
from tests.support.feed import Feeder

A, B = "0750001A", "0690002B"


@pytest.fixture
def app(tmp_path: Path) -> Iterator[AttestationsApp]:
    attestations, _ = build_attestations(AttestationsSettings(var_dir=tmp_path))
    yield attestations
    attestations.close()


@pytest.fixture
def feed(app: AttestationsApp) -> Feeder:
    return Feeder(app, app.registry_handlers(), app.before_commit)


def registered(center: str, number: str, family: str) -> v1.CandidateRegistered:
    return v1.CandidateRegistered(
        candidate_number=number,
        certification="RNCP40705",
        exam_center=center,
        birth_name=family,
        given_names=["Léa"],
        email=f"{family.lower()}@example.org",
        access_route="formation_continue",
        candidate_group=1,
        registered_at=datetime.now(UTC),
    )


def _bloc(center: str, number: str, bloc: str) -> v1.ValidatedBloc:
    return v1.ValidatedBloc(
        validation_id=f"v-{center}-{number}-{bloc}",
        bloc=bloc,
        optional=False,
        via="grade",
        grade="12",
        session="2026-06",
        validated_on=date(2026, 7, 3),
        source_id="d1",
    )


def validated(
    center: str,
    number: str,
    bloc: str = "RNCP40705BC01",
    *more: str,
    award: bool = False,
    decision_id: str = "d1",
) -> v1.DecisionRecorded:
    """A PV's decision for one candidate, validating ``bloc`` and ``more``."""
    return v1.DecisionRecorded(
        decision_id=decision_id,
        decision="deliberation",
        candidate_number=number,
        exam_center=center,
        certification="RNCP40705",
        access_route="formation_continue",
        route="exam",
        decided_on=date(2026, 7, 3),
        session="2026-06",
        validated=[_bloc(center, number, b) for b in (bloc, *more)],
        award=v1.AwardDecided(
            award_id=f"a-{number}",
            via="exam",
            session="2026-06",
            awarded_on=date(2026, 7, 3),
            average="12",
            mention="assez_bien",
            source_id=decision_id,
        )
        if award
        else None,
    )


def test_the_same_number_at_two_centers_is_two_holders(app: AttestationsApp, feed: Feeder) -> None:
    feed.send(registered(A, "C0001", "Durand"))
    feed.send(registered(B, "C0001", "Martin"))
    feed.send(validated(B, "C0001"))
    assert app.attestations_of(A, "C0001") == []
    (issued,) = app.attestations_of(B, "C0001") or []
    assert issued.holder["family_name"] == "Martin" and issued.exam_center == B


def test_a_holder_recorded_before_scoping_keeps_its_attestations_coming(
    app: AttestationsApp, feed: Feeder
) -> None:
    legacy = Holder._create(
        Holder.Registered,
        id=Holder.legacy_id("L0001"),
        candidate_number="L0001",
        exam_center=A,
        given_names=["Léa"],
        family_name="Durand",
        birth_name=None,
        email="lea@example.org",
        access_route="formation_continue",
        certification="RNCP40705",
        exam_center_name=None,  # an event class takes every field (replays default it)
        preferred_language="fr",
    )
    app.save(legacy)
    feed.send(registered(A, "L0001", "Durand"))  # replayed registration: nothing new
    feed.send(validated(A, "L0001"))
    assert [a.code for a in app.attestations_of(A, "L0001") or []] == ["RNCP40705BC01"]
    assert app.holder(A, "L0001") is not None and app.holder(A, "L0001").id == legacy.id  # type: ignore[union-attr]
    # The old record is A's: another center's candidate L0001 is someone else.
    assert app.attestations_of(B, "L0001") is None
    feed.send(registered(B, "L0001", "Martin"))
    assert app.attestations_of(B, "L0001") == []


def test_an_event_for_a_candidate_never_registered_is_rejected(feed: Feeder) -> None:
    with pytest.raises(Rejected, match="no registration seen"):
        feed.send(validated(A, "NOBODY"))


def test_a_bloc_the_referential_does_not_hold_is_rejected(feed: Feeder) -> None:
    feed.send(registered(A, "C0002", "Durand"))
    with pytest.raises(Rejected, match="no bloc RNCP40705BC99"):
        feed.send(validated(A, "C0002", bloc="RNCP40705BC99"))


def test_data_that_does_not_fit_the_contract_is_dead_before_any_handler(feed: Feeder) -> None:
    payload, subject = feed.encode(registered(A, "C0003", "Durand"))
    tampered = payload.replace(b'"Durand"', b'"Dur\\u202eand"')
    message = feed.table.parse(tampered, subject)
    assert message.handler is None and message.dead is not None
    assert message.dead[0] == "invalid" and "birth_name" in message.dead[1]
    assert message.in_chain  # from the producer: its position passes


def test_a_holder_named_as_the_old_api_allowed_is_still_published(
    app: AttestationsApp, feed: Feeder
) -> None:
    """Names the API refuses today (parentheses, 150 characters) were taken before: their
    attestations must still be publishable, valid for their consumers."""
    from contracts.attestations_v1 import AttestationsRecorded
    from services.attestations.domain.aggregates import Holder
    from services.attestations.translation import translator

    legacy = registered(A, "O0001", "Martin")
    old = legacy.model_copy(update={"given_names": ["Marie (dite Maïté)", "A" * 150]})
    feed.send(old)
    feed.send(validated(A, "O0001"))
    (attestation,) = app.attestations_of(A, "O0001") or []
    attested = next(
        app.mapper.to_domain_event(n)
        for n in app.process_recorder.select_notifications(start=0, limit=100)
        if isinstance(app.mapper.to_domain_event(n), Holder.DecisionAttested)
    )
    (out,) = translator(app.links.verify)(attested)
    published = AttestationsRecorded.model_validate(out.event.model_dump(mode="json"))
    assert published.holder_given_names[0] == "Marie (dite Maïté)"
    assert attestation.holder["given_names"][1] == "A" * 150


def test_one_decision_is_issued_as_one_unit_and_published_as_one_message(
    app: AttestationsApp, feed: Feeder
) -> None:
    from services.attestations.translation import translator

    blocs = [f"RNCP40705BC{n:02d}" for n in range(1, 13)]
    feed.send(registered(A, "D0001", "Durand"))
    before = app.process_recorder.max_notification_id() or 0
    feed.send(validated(A, "D0001", *blocs, award=True))
    stored = [
        app.mapper.to_domain_event(n)
        for n in app.process_recorder.select_notifications(
            start=before, limit=100, inclusive_of_start=False
        )
    ]
    names = [type(e).__name__ for e in stored]
    assert names.count("Issued") == 13  # each verifiable on its own id
    assert names.count("DecisionAttested") == 1
    published = [out for e in stored for out in translator(app.links.verify)(e)]
    (message,) = published
    data = message.event.model_dump(mode="json")
    assert message.event_type == "fr.certibloc.attestations.attestations-recorded.v1"
    assert message.key == f"{A}/D0001"
    assert [a["code"] for a in data["issued"]] == [*blocs, "RNCP40705"]
    assert data["decision_id"] == "d1" and data["decided_on"] == "2026-07-03"
    assert data["holder_family_name"] == "Durand" and data["revoked"] == []


def test_a_correction_revokes_and_reissues_in_one_message(
    app: AttestationsApp, feed: Feeder
) -> None:
    from services.attestations.translation import translator

    feed.send(registered(A, "R0001", "Durand"))
    feed.send(validated(A, "R0001", "RNCP40705BC01", "RNCP40705BC02", award=True))
    first = {a.code: a for a in app.attestations_of(A, "R0001") or []}
    correction = v1.DecisionRecorded(
        decision_id="k1",
        decision="correction",
        candidate_number="R0001",
        exam_center=A,
        certification="RNCP40705",
        access_route="formation_continue",
        route="exam",
        decided_on=date(2026, 7, 3),
        session="2026-06",
        corrects="d1",
        reason="Erreur de report de note",
        withdrawn=[
            v1.WithdrawnBloc(validation_id=f"v-{A}-R0001-RNCP40705BC01", bloc="RNCP40705BC01")
        ],
        award_withdrawn="a-R0001",
    )
    before = app.process_recorder.max_notification_id() or 0
    feed.send(correction)
    statuses = {a.code: a.status for a in app.attestations_of(A, "R0001") or []}
    assert statuses == {
        "RNCP40705BC01": "revoked",
        "RNCP40705BC02": "valid",
        "RNCP40705": "revoked",
    }
    stored = app.process_recorder.select_notifications(
        start=before, limit=100, inclusive_of_start=False
    )
    (message,) = [
        out for n in stored for out in translator(app.links.verify)(app.mapper.to_domain_event(n))
    ]
    data = message.event.model_dump(mode="json")
    assert [r["code"] for r in data["revoked"]] == ["RNCP40705BC01", "RNCP40705"]
    assert {r["reason"] for r in data["revoked"]} == {"Erreur de report de note"}
    assert data["revoked"][0]["attestation_id"] == first["RNCP40705BC01"].public_id


def test_status_lists_are_allocated_per_partition(tmp_path: Path) -> None:
    """Partitions applied side by side (by several replicas) never share an allocator: each
    has its own lists, interleaved in the numbering."""
    from services.attestations.domain.aggregates import StatusAllocator

    attestations, _ = build_attestations(AttestationsSettings(var_dir=tmp_path, partitions=4))
    try:
        feed = Feeder(attestations, attestations.registry_handlers(), attestations.before_commit)
        for k in range(8):
            feed.send(registered(A, f"P{k:04d}", "Durand"))
            feed.send(validated(A, f"P{k:04d}"))
        lists = {
            a.status_list
            for k in range(8)
            for a in attestations.attestations_of(A, f"P{k:04d}") or []
        }
        owners = {StatusAllocator.list_owner(n)[0] for n in lists}
        assert len(owners) > 1 and lists == {1 + p for p in owners}
        for n in lists:
            assert attestations.status_list_credential(n) is not None
        assert attestations.status_list_credential(1 + 256 * 3) is None  # not reached yet
    finally:
        attestations.close()


# --- the jury's facts: on the credential, the page (HTML and JSON) and the PDF ---------------


def _payload(token: str) -> dict[str, Any]:
    body = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))))


def _shown(app: AttestationsApp, attestation: Any) -> tuple[dict[str, Any], str, str]:
    """The JSON answer, the HTML page and the PDF's text of one attestation."""
    from types import SimpleNamespace

    import pypdf

    from services.attestations import wording
    from services.attestations.api import views
    from services.attestations.api.routes import pdf_content
    from services.attestations.pdf import render

    body = views.as_json(attestation, app.links.verify(attestation.public_id))
    page = views.VerificationViews(app, wording.page_templates(wording.catalogues()))
    rendered = page.lookup(attestation.public_id)
    assert rendered is not None and orjson.loads(rendered.json) == body
    html = page.html(attestation.public_id, rendered, date(2026, 12, 3)).decode()
    context: Any = SimpleNamespace(app=app)  # what pdf_content reads
    pdf = render(pdf_content(context, attestation), attestation.credential)
    text = " ".join(" ".join(p.extract_text().split()) for p in pypdf.PdfReader(BytesIO(pdf)).pages)
    return body, html, text


def test_the_jurys_date_session_route_and_mention_are_on_every_form(
    app: AttestationsApp, feed: Feeder
) -> None:
    feed.send(
        registered(A, "F0001", "Durand").model_copy(
            update={"show_exam_center": True, "exam_center_name": "Lycée Jean Moulin"}
        )
    )
    decision = validated(A, "F0001", "RNCP40705BC01", award=True)
    carried = _bloc(A, "F0001", "RNCP40705BC02").model_copy(
        update={"session": "2025-06", "carried_over": True, "validation_id": "v-carried"}
    )
    feed.send(decision.model_copy(update={"validated": [*decision.validated, carried]}))
    by_code = {a.code: a for a in app.attestations_of(A, "F0001") or []}

    diploma = by_code["RNCP40705"]
    credential = _payload(diploma.credential)
    assert schema_problems(credential) == []  # VC 2.0 and OB 3.0 JSON Schemas
    assert credential["awardedDate"] == "2026-07-03T00:00:00Z"  # the jury's, not the signing
    assert credential["validFrom"].startswith(diploma.issued_at[:10])
    assert credential["validFrom"] != credential["awardedDate"]
    subject = credential["credentialSubject"]
    assert subject["term"] == "session de juin 2026"
    assert subject["result"] == [
        {
            "type": ["Result"],
            "value": "Assez bien",
            "resultDescription": subject["achievement"]["resultDescription"][0]["id"],
        }
    ]
    assert "Assez bien" in subject["achievement"]["resultDescription"][0]["allowedValue"]
    assert subject["source"]["name"] == "Lycée Jean Moulin"
    assert subject["source"]["otherIdentifier"][0]["identifier"] == A
    assert credential["evidence"][0]["description"] == (
        "Certification obtenue par examen, session de juin 2026, mention Assez bien, "
        "sur décision du jury du 3 juillet 2026."
    )
    body, html, pdf = _shown(app, diploma)
    assert body["awarded_on"] == "2026-07-03"
    assert body["session"] == {"code": "2026-06", "label": "session de juin 2026"}
    assert body["route"] == {"code": "exam", "label": "par examen"}
    assert body["mention"] == {"code": "assez_bien", "label": "Assez bien"}
    assert body["exam_center"] == {"uai": A, "name": "Lycée Jean Moulin"}
    for shown in (
        "<dt>Décision du jury</dt>",
        '<time datetime="2026-07-03">3 juillet 2026</time>',
        "<dd>Session de juin 2026</dd>",
        "<dt>Obtenue</dt>\n  <dd>Par examen</dd>",
        "<dt>Mention</dt>\n  <dd>Assez bien</dd>",
        "<dt>Centre d'examen</dt>\n  <dd>Lycée Jean Moulin</dd>",
        "<dt>Attestation émise le</dt>",
    ):
        assert shown in html
    assert "Certification obtenue par examen, session de juin 2026, mention Assez bien." in pdf
    assert "sur décision du jury du 3 juillet 2026." in pdf
    assert "Centre d'examen : Lycée Jean Moulin." in pdf
    assert "Attestation signée électroniquement le" in pdf

    bloc = by_code["RNCP40705BC01"]
    credential = _payload(bloc.credential)
    assert schema_problems(credential) == []
    assert credential["awardedDate"] == "2026-07-03T00:00:00Z"
    assert "result" not in credential["credentialSubject"]  # a bloc has no mention
    body, html, pdf = _shown(app, bloc)
    assert body["route"]["label"] == "par examen" and "mention" not in body
    assert "<dt>Acquis</dt>\n  <dd>Par examen</dd>" in html
    assert "Bloc de compétences acquis par examen, session de juin 2026." in pdf

    over = by_code["RNCP40705BC02"]
    assert schema_problems(_payload(over.credential)) == []
    body, html, pdf = _shown(app, over)
    label = "par report d'une note obtenue à une session antérieure (session de juin 2025)"
    assert body["route"] == {"code": "carried_over", "label": label, "grade_session": "2025-06"}
    assert body["session"]["code"] == "2026-06"  # the decision's session
    assert "<dd>Par report d&#39;une note obtenue à une session antérieure" in html
    assert f"Bloc de compétences acquis {label}, session de juin 2026." in pdf


def test_a_vae_decision_says_so_and_the_center_stays_hidden_unless_asked(
    app: AttestationsApp, feed: Feeder
) -> None:
    feed.send(
        registered(A, "V0001", "Durand").model_copy(
            update={"access_route": "vae", "exam_center_name": "Lycée Jean Moulin"}
        )  # the name travels, but the candidate did not ask for it to be shown
    )
    feed.send(
        v1.DecisionRecorded(
            decision_id="vae1",
            decision="vae",
            candidate_number="V0001",
            exam_center=A,
            certification="RNCP40705",
            access_route="vae",
            route="vae",
            decided_on=date(2026, 5, 1),
            vae_decision="partielle",
            validated=[
                _bloc(A, "V0001", "RNCP40705BC03").model_copy(
                    update={
                        "via": "vae",
                        "grade": None,
                        "session": None,
                        "validated_on": date(2026, 5, 1),
                    }
                )
            ],
        )
    )
    (attestation,) = app.attestations_of(A, "V0001") or []
    credential = _payload(attestation.credential)
    assert schema_problems(credential) == []
    assert credential["awardedDate"] == "2026-05-01T00:00:00Z"
    assert "term" not in credential["credentialSubject"]  # a VAE jury has no session
    assert "source" not in credential["credentialSubject"]
    body, html, pdf = _shown(app, attestation)
    assert body["route"] == {"code": "vae", "label": "par la VAE"}
    assert "session" not in body and "exam_center" not in body
    assert '<time datetime="2026-05-01">1er mai 2026</time>' in html
    assert "<dd>Par la VAE</dd>" in html and "Centre d" not in html
    assert "Bloc de compétences acquis par la VAE." in pdf
    assert "sur décision du jury du 1er mai 2026." in pdf


def test_an_attestation_issued_before_the_facts_still_shows_what_it_knows(
    app: AttestationsApp, feed: Feeder
) -> None:
    """Issued before 2026-12: its Issued event lacks the facts (replayed through the same
    __init__), and its page, JSON and PDF show the signing date as they always did."""
    from services.attestations.domain.aggregates import Attestation

    feed.send(registered(A, "O0002", "Durand"))
    feed.send(validated(A, "O0002"))
    (new,) = app.attestations_of(A, "O0002") or []
    old_id = Attestation.new_public_id()
    fields = {
        "public_id": old_id,
        "kind": "bloc",
        "code": "RNCP40705BC01",
        "title": new.title,
        "certification": "RNCP40705",
        "candidate_number": "O0002",
        "exam_center": A,
        "holder": new.holder,
        "source_id": "v-old",
        "status_list": new.status_list,
        "status_index": new.status_index + 1,
        "kid": new.kid,
        "credential": new.credential,
        "issued_at": "2026-07-10T08:00:00+00:00",
        **dict.fromkeys(("awarded_on", "route", "session", "grade_session", "mention")),
        "exam_center_name": None,
    }
    legacy = Attestation.issued(**fields)
    for name in ("awarded_on", "route", "session", "grade_session", "mention", "exam_center_name"):
        del legacy.__dict__[name]  # as written before 2026-12
    app.recorder.insert_events([app.mapper.to_stored_event(legacy)])
    old = app.attestation(old_id)
    assert old is not None and old.awarded_on is None and old.route is None
    body, html, pdf = _shown(app, old)
    assert not {"awarded_on", "session", "route", "mention", "exam_center"} & set(body)
    assert '<dt>Date</dt>\n  <dd><time datetime="2026-07-10">10 juillet 2026</time>' in html
    assert "Décision du jury" not in html and "Session" not in html
    assert "le 10 juillet 2026." in pdf and "décision du jury" not in pdf


def test_sessions_and_routes_in_french() -> None:
    from services.attestations.domain import credential as vc

    assert vc.session_label("2026-06") == "session de juin 2026"
    assert vc.session_label("2027-04") == "session d'avril 2027"
    assert vc.session_label("2026-08") == "session d'août 2026"
    for bad in ("2026-13", "2026-00", "juin 2026", "2026-6"):
        with pytest.raises(ValueError, match="not a session"):
            vc.session_label(bad)
    assert vc.route_label("vae") == "par la VAE"


def test_each_attestation_names_its_own_certifications_certifier(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One deployment, one did:web, two certifications: each credential, page and PDF names
    the certifier of its certification (from its referential); the status lists they share
    name the service (ATTESTATIONS_ISSUER_NAME)."""
    from contracts.referential import REFERENTIALS_DIR_ENV, load_certification
    from tests.support.system import FIXTURE_REFERENTIALS

    monkeypatch.setenv(REFERENTIALS_DIR_ENV, str(FIXTURE_REFERENTIALS))
    fixture = load_certification("RNCP99901")  # the test fixture's invented certification
    packaged = load_certification("RNCP40705")
    settings = AttestationsSettings(var_dir=tmp_path, issuer_name="Service de test")
    app, _ = build_attestations(settings)
    try:
        feed = Feeder(app, app.registry_handlers(), app.before_commit)
        feed.send(registered(A, "P1", "Durand"))
        feed.send(validated(A, "P1"))
        feed.send(registered(A, "F1", "Martin").model_copy(update={"certification": fixture.code}))
        bloc = validated(A, "F1", "RNCP99901BC01", award=True)
        feed.send(bloc.model_copy(update={"certification": fixture.code}))
        held = {a.code: a for n in ("P1", "F1") for a in app.attestations_of(A, n) or []}
        assert sorted(held) == ["RNCP40705BC01", "RNCP99901", "RNCP99901BC01"]
        for code, attestation in held.items():
            cert = fixture if code.startswith(fixture.code) else packaged
            credential = _payload(attestation.credential)
            assert schema_problems(credential) == []
            assert credential["issuer"]["id"] == app.issuers.did
            assert credential["issuer"]["name"] == cert.certifier.name
            assert credential["issuer"]["otherIdentifier"][0]["identifier"] == cert.certifier.siret
            body, html, text = _shown(app, attestation)
            assert body["issuer"] == {"id": app.issuers.did, "name": cert.certifier.name}
            assert cert.certifier.name.replace("'", "&#39;") in html
            assert f"Délivrée par {cert.certifier.name}" in text
        status = app.status_list_credential(1)
        assert status is not None
        assert _payload(status)["issuer"] == {"id": app.issuers.did, "name": "Service de test"}
    finally:
        app.close()


def test_the_candidates_preferred_language_travels_to_the_published_events(
    app: AttestationsApp, feed: Feeder
) -> None:
    """Registered with preferred_language "en": the holder keeps it, and the events that drive
    the e-mails (attestations-recorded, download-links-revoked) carry it, with each issued
    attestation's route and session; older registrations (no field) are French."""
    from contracts.attestations_v1 import AttestationsRecorded, DownloadLinksRevoked
    from services.attestations.domain.aggregates import Holder
    from services.attestations.translation import translator

    feed.send(registered(A, "E0001", "Smith").model_copy(update={"preferred_language": "en"}))
    feed.send(registered(A, "E0002", "Durand"))  # as published before 2027-01: French
    feed.send(validated(A, "E0001"))
    feed.send(validated(A, "E0002"))
    app.revoke_links(A, "E0001", by="test", send_new_links=True)
    published: dict[tuple[str, str], Any] = {}
    for n in app.process_recorder.select_notifications(start=0, limit=1000):
        event = app.mapper.to_domain_event(n)
        if isinstance(event, Holder.DecisionAttested | Holder.LinksRevoked):
            for out in translator(app.links.verify)(event):
                published[(type(out.event).__name__, out.event.candidate_number)] = out.event
    english = published[("AttestationsRecorded", "E0001")]
    assert isinstance(english, AttestationsRecorded) and english.preferred_language == "en"
    assert english.issued[0].route == "exam" and english.issued[0].session == "2026-06"
    assert published[("AttestationsRecorded", "E0002")].preferred_language == "fr"
    renewed = published[("DownloadLinksRevoked", "E0001")]
    assert isinstance(renewed, DownloadLinksRevoked) and renewed.preferred_language == "en"
    # An event published before the field existed reads as French.
    old = english.model_dump(mode="json")
    del old["preferred_language"]
    assert AttestationsRecorded.model_validate(old).preferred_language == "fr"
