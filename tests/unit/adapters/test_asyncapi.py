"""Tests of the JSON Schema and AsyncAPI export of the topic contracts."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from processor.adapters.asyncapi import (
    ASYNCAPI_FILE_NAME,
    CONTRACT_VERSION,
    DEFAULT_TOPIC_PREFIX,
    JSON_SCHEMA_DIALECT,
    SCHEMA_FILE_SUFFIX,
    YAML_HEADER,
    asyncapi_document,
    export,
    json_schemas,
    render_asyncapi_yaml,
)
from processor.config.settings import Settings
from schemas.control import Metric, PauseCommand, PauseEvidence, PauseScope, TriggerEvent
from schemas.events import DeliveryEvent
from schemas.topics import TOPIC_CONTRACTS, Direction

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

COMMITTED_ASYNCAPI = Path(__file__).resolve().parents[3] / "docs" / ASYNCAPI_FILE_NAME
REGENERATE = (
    "docs/asyncapi.yaml is stale; regenerate it with `sendguard schemas export docs/`, or with "
    """.venv/bin/python -c "from pathlib import Path; from processor.adapters.asyncapi import """
    """asyncapi_document, render_asyncapi_yaml; Path('docs/asyncapi.yaml').write_text("""
    """render_asyncapi_yaml(asyncapi_document()), encoding='utf-8')" """
)

SAMPLE_DELIVERY_EVENT: dict[str, Any] = {
    "schema_version": 1,
    "event_id": "ses:0100018f-bounce-1",
    "tenant_id": "acme",
    "campaign_id": "spring-sale",
    "recipient": {"contact_id": "c-42", "address": "ana@example.com"},
    "type": "bounce",
    "bounce_class": "hard",
    "occurred_at": "2024-05-01T12:00:00Z",
    "provider": "ses",
    "provider_message_id": "0100018f",
}


# A small JSON Schema validator for the keywords pydantic emits (jsonschema is not a dependency).
# It refuses keywords it does not know, so a schema can never pass by being misunderstood.

_ANNOTATIONS = frozenset(
    {"$schema", "$id", "$defs", "title", "description", "default", "format", "discriminator"}
)
_JSON_TYPES: dict[str, Callable[[Any], bool]] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}


def _resolve(root: Any, ref: str) -> Any:
    assert ref.startswith("#/"), f"{ref!r} points outside the document"
    node = root
    for token in ref[2:].split("/"):
        key = token.replace("~1", "/").replace("~0", "~")
        assert isinstance(node, dict), f"{ref!r} runs through a non-object"
        assert key in node, f"{ref!r} does not resolve ({key!r} missing)"
        node = node[key]
    return node


def _errors(schema: dict[str, Any], instance: Any, root: dict[str, Any], at: str) -> list[str]:
    errors: list[str] = []
    for keyword, value in schema.items():
        if keyword in _ANNOTATIONS:
            continue
        check = _CHECKS.get(keyword)
        assert check is not None, f"the test validator does not know keyword {keyword!r}"
        errors += check(value, instance, schema, root, at)
    return errors


def _properties(value: Any, inst: Any, _s: Any, root: Any, at: str) -> list[str]:
    if not isinstance(inst, dict):
        return []
    return [
        error
        for name, sub in value.items()
        if name in inst
        for error in _errors(sub, inst[name], root, f"{at}.{name}")
    ]


def _additional(value: Any, inst: Any, schema: Any, root: Any, at: str) -> list[str]:
    if not isinstance(inst, dict):
        return []
    extra = [name for name in inst if name not in schema.get("properties", {})]
    if value is False:
        return [f"{at}: unexpected {extra}"] if extra else []
    return [e for name in extra for e in _errors(value, inst[name], root, f"{at}.{name}")]


def _one_of(value: Any, inst: Any, _s: Any, root: Any, at: str) -> list[str]:
    matches = sum(not _errors(sub, inst, root, at) for sub in value)
    return [] if matches == 1 else [f"{at}: matches {matches} of oneOf"]


def _any_of(value: Any, inst: Any, _s: Any, root: Any, at: str) -> list[str]:
    return [] if any(not _errors(sub, inst, root, at) for sub in value) else [f"{at}: no anyOf"]


def _check(
    test: Callable[[Any, Any], bool], applies: Callable[[Any], bool] = lambda _: True
) -> Callable[[Any, Any, Any, Any, str], list[str]]:
    def check(value: Any, inst: Any, _s: Any, _root: Any, at: str) -> list[str]:
        return [] if not applies(inst) or test(value, inst) else [f"{at}: fails {value!r}"]

    return check


_is_str = _JSON_TYPES["string"]
_is_num = _JSON_TYPES["number"]
_is_list = _JSON_TYPES["array"]
_is_obj = _JSON_TYPES["object"]
_CHECKS: dict[str, Callable[[Any, Any, Any, Any, str], list[str]]] = {
    "$ref": lambda value, inst, _s, root, at: _errors(_resolve(root, value), inst, root, at),
    "properties": _properties,
    "additionalProperties": _additional,
    "oneOf": _one_of,
    "anyOf": _any_of,
    "items": lambda value, inst, _s, root, at: (
        [e for i, item in enumerate(inst) for e in _errors(value, item, root, f"{at}[{i}]")]
        if isinstance(inst, list)
        else []
    ),
    "propertyNames": lambda value, inst, _s, root, at: (
        [e for name in inst for e in _errors(value, name, root, f"{at} key")]
        if isinstance(inst, dict)
        else []
    ),
    "type": _check(lambda t, v: _JSON_TYPES[t](v)),
    "enum": _check(lambda options, v: v in options),
    "const": _check(lambda const, v: v == const and type(v) is type(const)),
    "required": _check(lambda names, v: all(n in v for n in names), _is_obj),
    "pattern": _check(lambda pattern, v: re.search(pattern, v) is not None, _is_str),
    "minLength": _check(lambda n, v: len(v) >= n, _is_str),
    "maxLength": _check(lambda n, v: len(v) <= n, _is_str),
    "minItems": _check(lambda n, v: len(v) >= n, _is_list),
    "maxItems": _check(lambda n, v: len(v) <= n, _is_list),
    "minimum": _check(lambda n, v: v >= n, _is_num),
    "maximum": _check(lambda n, v: v <= n, _is_num),
    "exclusiveMinimum": _check(lambda n, v: v > n, _is_num),
    "exclusiveMaximum": _check(lambda n, v: v < n, _is_num),
}


def validation_errors(schema: dict[str, Any], instance: Any) -> list[str]:
    """Every way `instance` breaks the self-contained `schema` (empty when it is valid)."""
    return _errors(schema, instance, schema, "$")


def refs(node: Any) -> Iterator[str]:
    """Every `$ref` and discriminator mapping target anywhere under `node`."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            elif key == "mapping" and isinstance(value, dict):
                yield from value.values()
            else:
                yield from refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from refs(item)


def test_committed_asyncapi_document_matches_the_schemas() -> None:
    """The committed docs/asyncapi.yaml is exactly what the export renders from the schemas now."""
    assert COMMITTED_ASYNCAPI.is_file(), REGENERATE
    committed = COMMITTED_ASYNCAPI.read_text(encoding="utf-8")
    assert committed == render_asyncapi_yaml(asyncapi_document()), REGENERATE


def test_rendering_is_deterministic_and_round_trips_through_yaml() -> None:
    """Two renders are identical, start with the do-not-edit header and load back as the doc."""
    document = asyncapi_document()
    rendered = render_asyncapi_yaml(document)
    assert rendered == render_asyncapi_yaml(asyncapi_document())
    assert rendered.startswith(YAML_HEADER)
    assert yaml.safe_load(rendered) == json.loads(json.dumps(document))
    assert "&id" not in rendered, "shared objects must not become YAML anchors"


def test_every_topic_has_a_channel_at_its_prefixed_address() -> None:
    """Each topic in the catalog is a channel addressed by prefix plus role, naming its message."""
    channels = asyncapi_document("ops.").get("channels", {})
    assert set(channels) == {contract.role.value for contract in TOPIC_CONTRACTS}
    for contract in TOPIC_CONTRACTS:
        channel = channels[contract.role.value]
        assert channel["address"] == f"ops.{contract.role.value}"
        assert list(channel["messages"]) == [contract.message_name]
        assert contract.key in channel["description"]


def test_every_topic_has_an_operation_whose_action_follows_its_direction() -> None:
    """The service receives from every input topic and sends to every output topic."""
    document = asyncapi_document()
    operations = document["operations"]
    assert len(operations) == len(TOPIC_CONTRACTS)
    by_channel = {op["channel"]["$ref"]: op for op in operations.values()}
    for contract in TOPIC_CONTRACTS:
        operation = by_channel[f"#/channels/{contract.role.value}"]
        expected = "receive" if contract.direction is Direction.IN else "send"
        assert operation["action"] == expected, contract.role
        assert operation["messages"] == [
            {"$ref": f"#/channels/{contract.role.value}/messages/{contract.message_name}"}
        ]


def test_only_compacted_topics_carry_cleanup_policy_compact() -> None:
    """A compacted topic's Kafka channel binding says cleanup.policy compact; no other does."""
    channels = asyncapi_document()["channels"]
    for contract in TOPIC_CONTRACTS:
        kafka = channels[contract.role.value].get("bindings", {}).get("kafka", {})
        policy = kafka.get("topicConfiguration", {}).get("cleanup.policy")
        assert policy == (["compact"] if contract.compacted else None), contract.role


def test_every_message_documents_its_kafka_key_as_a_string() -> None:
    """Each message's Kafka binding gives a string key schema whose description names the key."""
    messages = asyncapi_document()["components"]["messages"]
    for contract in TOPIC_CONTRACTS:
        key = messages[contract.message_name]["bindings"]["kafka"]["key"]
        assert key["type"] == "string"
        assert contract.key in key["description"]


def test_every_ref_in_the_asyncapi_document_resolves_inside_it() -> None:
    """No `$ref` points outside the document or at a missing node (pydantic's $defs included)."""
    document = asyncapi_document()
    found = list(refs(document))
    assert found
    for ref in found:
        _resolve(document, ref)
    assert "$defs" not in json.dumps(document)


def test_discriminated_unions_become_a_oneof_of_their_member_schemas() -> None:
    """The control and recipient-set payloads are oneOf their members, told apart by a property."""
    schemas = asyncapi_document()["components"]["schemas"]
    expected = {
        "ControlCommand": ("command", ["PauseCommand", "ResumeCommand"]),
        "RecipientSetMessage": ("kind", ["RecipientChunk", "RecipientSetManifest"]),
    }
    for name, (discriminator, members) in expected.items():
        union = schemas[name]
        assert union["discriminator"] == discriminator
        assert union["oneOf"] == [{"$ref": f"#/components/schemas/{m}"} for m in members]
        for member in members:
            assert discriminator in schemas[member]["required"]
            assert "const" in schemas[member]["properties"][discriminator]


def test_json_schemas_declare_dialect_id_and_title_for_every_message() -> None:
    """Each message has one draft 2020-12 schema with its name as title and a unique $id."""
    schemas = json_schemas()
    assert list(schemas) == [contract.message_name for contract in TOPIC_CONTRACTS]
    for name, schema in schemas.items():
        assert schema["$schema"] == JSON_SCHEMA_DIALECT
        assert schema["title"] == name
        assert name in schema["$id"]
        for ref in refs(schema):
            _resolve(schema, ref)
    assert len({schema["$id"] for schema in schemas.values()}) == len(schemas)


def test_inputs_may_omit_defaulted_fields_but_outputs_always_carry_them() -> None:
    """Validation-mode input schemas leave defaults optional; serialization-mode outputs don't."""
    schemas = json_schemas()
    delivery = schemas["DeliveryEvent"]
    assert "provider" not in delivery["required"]
    assert "schema_version" not in delivery["required"]
    assert "additionalProperties" not in delivery
    outcome = schemas["ResumeOutcome"]
    assert {"schema_version", "rejection", "excluded"} <= set(outcome["required"])
    assert outcome["additionalProperties"] is False


def test_every_message_carries_the_document_contract_version() -> None:
    """Each payload's schema_version is the AsyncAPI info.version, so bumping one bumps both."""
    for name, schema in json_schemas().items():
        members = [_resolve(schema, sub["$ref"]) for sub in schema.get("oneOf", [])] or [schema]
        for member in members:
            stated = member["properties"]["schema_version"]
            # An input may accept a later version too (ResumeRequest: 2 for lock and unlock,
            # so that an older worker refuses them); the contract's version is always among.
            versions = [str(v) for v in stated.get("enum", [stated.get("const")])]
            assert CONTRACT_VERSION in versions, f"{name}: bump CONTRACT_VERSION"


def test_default_topic_prefix_matches_the_settings_default() -> None:
    """The documented addresses use the same prefix a default deployment does."""
    assert Settings.model_fields["topic_prefix"].default == DEFAULT_TOPIC_PREFIX


def test_export_writes_one_json_schema_per_message_and_the_asyncapi_document(
    tmp_path: Path,
) -> None:
    """export() writes `<Message>.schema.json` per message plus asyncapi.yaml, and returns them."""
    target = tmp_path / "out"
    written = export(target)
    names = [contract.message_name for contract in TOPIC_CONTRACTS]
    expected = [target / f"{name}{SCHEMA_FILE_SUFFIX}" for name in names]
    assert written == [*expected, target / ASYNCAPI_FILE_NAME]
    assert sorted(target.iterdir()) == sorted(written)
    for path, name in zip(expected, names, strict=True):
        text = path.read_text(encoding="utf-8")
        assert text.endswith("}\n")
        assert json.loads(text) == json_schemas()[name]
    asyncapi = (target / ASYNCAPI_FILE_NAME).read_text(encoding="utf-8")
    assert asyncapi == render_asyncapi_yaml(asyncapi_document())


def test_a_valid_delivery_event_validates_against_its_exported_schema(tmp_path: Path) -> None:
    """An event pydantic accepts passes the exported DeliveryEvent schema; broken ones fail."""
    DeliveryEvent.model_validate(SAMPLE_DELIVERY_EVENT)
    export(tmp_path)
    path = tmp_path / f"DeliveryEvent{SCHEMA_FILE_SUFFIX}"
    schema = json.loads(path.read_text(encoding="utf-8"))
    assert validation_errors(schema, SAMPLE_DELIVERY_EVENT) == []
    missing_recipient = {k: v for k, v in SAMPLE_DELIVERY_EVENT.items() if k != "recipient"}
    assert validation_errors(schema, missing_recipient)
    assert validation_errors(schema, {**SAMPLE_DELIVERY_EVENT, "type": "exploded"})
    assert validation_errors(schema, {**SAMPLE_DELIVERY_EVENT, "tenant_id": "a:b"})


def test_a_serialized_pause_command_validates_against_the_control_schema() -> None:
    """What sendguard publishes on the control topic carries every field its schema requires."""
    at = datetime(2024, 5, 1, 12, tzinfo=UTC)
    command = PauseCommand(
        command_id="pause:acme:spring-sale:1",
        scope=PauseScope.CAMPAIGN,
        tenant_id="acme",
        campaign_id="spring-sale",
        episode=1,
        policy_version="abc123",
        decided_at=at,
        trigger=TriggerEvent(event_id="e-1", occurred_at=at, topic="sendguard.delivery-events"),
        evidence=PauseEvidence(
            metric=Metric.HARD_BOUNCE,
            window="1h",
            numerator=30,
            denominator=400,
            rate=0.075,
            wilson_lower_bound=0.05,
            confidence=0.95,
            threshold=0.04,
            top_domains=[],
        ),
    )
    schema = json_schemas()["ControlCommand"]
    published = json.loads(command.model_dump_json())
    assert validation_errors(schema, published) == []
    assert validation_errors(schema, {**published, "command": "resume"})
