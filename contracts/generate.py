"""Generate the committed JSON Schemas and AsyncAPI document from the contract models.

``python -m contracts.generate`` (``make schemas``) writes, relative to the repository root:

- ``contracts/schemas/<event type>.json``: one JSON Schema (draft 2020-12) per event model, with
  ``$id`` ``urn:certibloc:schema:<event type>``, the value the relay puts in each CloudEvent's
  ``dataschema`` attribute;
- ``contracts/schemas/cloudevent.json``: the JSON Schema of the CloudEvents envelope;
- ``contracts/asyncapi.json``: an AsyncAPI 3.0.0 document with one channel per event type.

``python -m contracts.generate --check`` writes nothing and exits 1 if a file is out of date.

Events are those of ``contracts.catalog.PUBLISHED`` (each service's ``EVENTS`` tuples):
pydantic models with a classmethod ``event_type()`` returning
``fr.certibloc.<service>.<event>.v<N>``. The output is deterministic, so the test suite can
check the committed files against it.
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from contracts.catalog import PUBLISHED, RETIRED
from contracts.envelope import CloudEvent
from contracts.subjects import EVENT_TYPE_PREFIX, STREAMS, source_for, subject_for

REPO_ROOT = Path(__file__).resolve().parent.parent
SCHEMAS_DIR = "contracts/schemas"
ASYNCAPI_PATH = "contracts/asyncapi.json"
JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
SCHEMA_URN_PREFIX = "urn:certibloc:schema:"
ENVELOPE_SCHEMA_NAME = "cloudevent"
CLOUDEVENTS_CONTENT_TYPE = "application/cloudevents+json"
COMPONENT_REF = "#/components/schemas/{model}"

ASYNCAPI_DESCRIPTION = """\
Events published by the certibloc services on NATS JetStream. The unit of work is the \
candidate's decision: the registry publishes one `decision-recorded` per candidate in each PV, \
VAE decision or correction; the attestations service one `attestations-recorded` per candidate \
and decision. (The per-bloc and per-attestation types of before 2026-12 are retired: their \
schemas stay in `contracts/schemas/` for reading older streams; no service publishes them.)

Every message is a CloudEvents 1.0 event in structured JSON mode (content type \
`application/cloudevents+json`): the envelope attributes and the event's `data` travel together \
in the message body. Each producing service has its own JetStream stream \
({streams}), whose subjects are `certibloc.<service>.>`; an event's subject is \
`certibloc.<service>.p<partition>.<event>.v<N>`: the partition is derived from the candidate \
(CRC-32 of `<exam center>/<candidate number>`, or of the center's UAI for its key events, \
modulo `CERTIBLOC_PARTITIONS`), so everything about a candidate is in order in one partition, \
and each partition is an independent lane (`x-jetstream-stream` on each channel names its \
stream).

Publishers set the `Nats-Msg-Id` header to `<source>:<notification id>:<index>` (the producer's \
stored notification and the index of the event derived from it), so JetStream drops a message \
published twice within its duplicate window.

Two extension attributes let consumers apply each event exactly once and in order: `position` \
(strictly increasing per source, notification id * 1000 + index) and `previous` (the position of \
the same source's preceding event in the same partition, 0 for the first). A consumer that has \
applied everything up to `previous` in a partition knows nothing is missing; one that has \
already applied `position` ignores the event.

Types are versioned, `fr.certibloc.<service>.<event>.v<N>`, and `dataschema` names the JSON \
Schema of `data` (`urn:certibloc:schema:<type>`). A compatible change only adds optional fields; \
a breaking change is a new type (`.v<N+1>`), published beside the old one for a while.

Consumers parse each message into the model of its type. One whose type the producer's catalog \
does not hold (a later version) is skipped, its position passed. One that is not a CloudEvent, \
comes from another `source` than the stream's producer, or whose `data` does not fit its schema \
(every string is bounded: `maxLength` in each schema) is terminated and copied to the consuming \
service's dead-letter stream (`CERTIBLOC_<SERVICE>_DEADLETTER`, subject \
`certibloc.deadletter.<service>.<durable consumer>`, the original bytes with headers \
`Certibloc-Dead-Reason-Code`, `Certibloc-Dead-Reason`, `Certibloc-Dead-Stream`, \
`Certibloc-Dead-Stream-Sequence`, `Certibloc-Dead-Subject`, `Certibloc-Dead-At`); a message from \
the producer still has its position passed, so the chain goes on.

The bus is authenticated: each service connects with its own NKey and may publish only on its \
own subjects; a message never exceeds the servers' `max_payload` (1 MiB)."""


def event_type_of(model: type[BaseModel]) -> str:
    """The CloudEvents ``type`` an event model declares through its ``event_type()``."""
    declared = getattr(model, "event_type", None)
    name = declared() if callable(declared) else None
    if not isinstance(name, str):
        raise TypeError(f"{model.__module__}.{model.__name__}.event_type() must return a str")
    service_of(name)  # validates the shape
    return name


def event_models(
    published: Mapping[str, Iterable[type[BaseModel]]] = PUBLISHED,
) -> list[type[BaseModel]]:
    """The published event models, in declaration order; event types must be unique."""
    models: list[type[BaseModel]] = []
    seen: dict[str, str] = {}
    for service, events in published.items():
        for model in events:
            if not (isinstance(model, type) and issubclass(model, BaseModel)):
                raise TypeError(f"{service}: EVENTS holds {model!r}, not a pydantic model")
            name = event_type_of(model)
            where = f"{model.__module__}.{model.__name__}"
            if name in seen:
                raise ValueError(f"event type {name} declared by both {seen[name]} and {where}")
            seen[name] = where
            models.append(model)
    return models


def service_of(event_type_name: str) -> str:
    """``fr.certibloc.registry.bloc-validated.v1`` -> ``registry``."""
    prefix = EVENT_TYPE_PREFIX + "."
    if not event_type_name.startswith(prefix):
        raise ValueError(f"not a certibloc event type: {event_type_name}")
    parts = event_type_name[len(prefix) :].split(".")
    if len(parts) != 3 or not parts[2].startswith("v") or not parts[2][1:].isdigit():
        raise ValueError(f"event type is not <service>.<event>.v<N>: {event_type_name}")
    return parts[0]


def schema_id(name: str) -> str:
    return SCHEMA_URN_PREFIX + name


def schema_path(name: str) -> str:
    return f"{SCHEMAS_DIR}/{name}.json"


def _docstring(model: type[Any]) -> str:
    doc = model.__dict__.get("__doc__")
    if not doc or not doc.strip():
        raise ValueError(f"{model.__module__}.{model.__name__} needs a docstring (its description)")
    return inspect.cleandoc(doc)


def standalone_schema(model: type[Any], name: str) -> dict[str, Any]:
    """The model's serialization JSON Schema as a self-contained 2020-12 document."""
    schema: dict[str, Any] = model.model_json_schema(mode="serialization")
    schema.pop("title", None)
    schema.pop("description", None)
    return {
        "$schema": JSON_SCHEMA_DIALECT,
        "$id": schema_id(name),
        "title": model.__name__,
        "description": _docstring(model),
        **schema,
    }


def _component_schema(model: type[Any], components: dict[str, Any]) -> dict[str, Any]:
    """The model's schema for ``components.schemas``; nested models are hoisted beside it."""
    schema: dict[str, Any] = model.model_json_schema(
        mode="serialization", ref_template=COMPONENT_REF
    )
    for def_name, definition in schema.pop("$defs", {}).items():
        _add_component(components, def_name, definition)
    schema["title"] = model.__name__
    schema["description"] = _docstring(model)
    return schema


def _add_component(components: dict[str, Any], name: str, schema: dict[str, Any]) -> None:
    if name in components and components[name] != schema:
        raise ValueError(f"two different schemas are named {name} in components.schemas")
    components[name] = schema


def _component_id(event_type_name: str) -> str:
    """``fr.certibloc.registry.bloc-validated.v1`` -> ``registry-bloc-validated-v1``."""
    return event_type_name[len(EVENT_TYPE_PREFIX) + 1 :].replace(".", "-")


def asyncapi_document(models: Sequence[type[BaseModel]]) -> dict[str, Any]:
    component_schemas: dict[str, Any] = {}
    _add_component(
        component_schemas, CloudEvent.__name__, _component_schema(CloudEvent, component_schemas)
    )
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for model in models:
        type_name = event_type_of(model)
        service = service_of(type_name)
        ident = _component_id(type_name)
        summary = _docstring(model).splitlines()[0]
        # Keyed by type, not class name: registry_v1 and a later registry_v2 may both hold
        # a BlocValidated.
        _add_component(component_schemas, ident, _component_schema(model, component_schemas))
        channels[ident] = {
            "address": subject_for(type_name).replace(".p0.", ".{partition}.", 1),
            "title": type_name,
            "description": summary,
            "parameters": {
                "partition": {
                    "description": "p<k>: the partition of the candidate (or, for an exam "
                    "center's key events, of the center), k from 0 to CERTIBLOC_PARTITIONS - 1.",
                    "examples": ["p0", "p3"],
                }
            },
            "x-jetstream-stream": STREAMS[service],
            "messages": {ident: {"$ref": f"#/components/messages/{ident}"}},
        }
        operations[f"send-{ident}"] = {
            "action": "send",
            "channel": {"$ref": f"#/channels/{ident}"},
            "summary": f"The {service} service publishes {type_name}.",
            "messages": [{"$ref": f"#/channels/{ident}/messages/{ident}"}],
        }
        messages[ident] = {
            "name": type_name,
            "title": model.__name__,
            "summary": summary,
            "contentType": CLOUDEVENTS_CONTENT_TYPE,
            "headers": {
                "type": "object",
                "properties": {
                    "Nats-Msg-Id": {
                        "type": "string",
                        "description": "<source>:<notification id>:<index>, for deduplication.",
                    }
                },
            },
            "payload": {
                "allOf": [
                    {"$ref": COMPONENT_REF.format(model=CloudEvent.__name__)},
                    {
                        "type": "object",
                        "properties": {
                            "type": {"const": type_name},
                            "source": {"const": source_for(service)},
                            "dataschema": {"const": schema_id(type_name)},
                            "data": {"$ref": COMPONENT_REF.format(model=ident)},
                        },
                        "required": ["dataschema"],
                    },
                ]
            },
        }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "certibloc events",
            "version": "1.0.0",
            "description": ASYNCAPI_DESCRIPTION.format(
                streams=", ".join(f"{service}: {name}" for service, name in STREAMS.items())
            ),
        },
        "defaultContentType": CLOUDEVENTS_CONTENT_TYPE,
        "servers": {"local": {"host": "127.0.0.1:4250", "protocol": "nats"}},
        "channels": channels,
        "operations": operations,
        "components": {"schemas": component_schemas, "messages": messages},
    }


def _dump(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False, sort_keys=False) + "\n"


def generated_files() -> dict[str, str]:
    """Repository-relative path -> exact text of every generated file: the schemas of the
    published events and of the retired ones (for reading older streams); the AsyncAPI
    document of the published ones."""
    models = event_models()
    files: dict[str, str] = {}
    for model in [*models, *event_models(RETIRED)]:
        name = event_type_of(model)
        files[schema_path(name)] = _dump(standalone_schema(model, name))
    files[schema_path(ENVELOPE_SCHEMA_NAME)] = _dump(
        standalone_schema(CloudEvent, ENVELOPE_SCHEMA_NAME)
    )
    files[ASYNCAPI_PATH] = _dump(asyncapi_document(models))
    return files


def stale_files(root: Path = REPO_ROOT) -> list[str]:
    """JSON files under ``contracts/schemas`` that the generator no longer produces."""
    expected = set(generated_files())
    return sorted(
        path.relative_to(root).as_posix()
        for path in (root / SCHEMAS_DIR).glob("*.json")
        if path.relative_to(root).as_posix() not in expected
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m contracts.generate", description=__doc__)
    parser.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 if any file is out of date"
    )
    args = parser.parse_args(argv)
    files = generated_files()
    stale = stale_files()
    outdated = [
        rel
        for rel, text in files.items()
        if not (REPO_ROOT / rel).is_file() or (REPO_ROOT / rel).read_text(encoding="utf-8") != text
    ]
    if args.check:
        for rel in outdated:
            print(f"out of date: {rel}", file=sys.stderr)
        for rel in stale:
            print(f"stale: {rel}", file=sys.stderr)
        if outdated or stale:
            print("run `make schemas`", file=sys.stderr)
            return 1
        return 0
    for rel in outdated:
        path = REPO_ROOT / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(files[rel], encoding="utf-8", newline="\n")
        print(f"wrote {rel}")
    for rel in stale:
        (REPO_ROOT / rel).unlink()
        print(f"removed {rel}")
    if not outdated and not stale:
        print(f"{len(files)} files up to date")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
