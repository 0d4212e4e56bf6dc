"""The JSON Schema of a rule file, so that editors complete and check rules as they are typed.

It is generated from the pydantic models that `automator check` validates with, so the two
cannot drift apart. What the models read from a marketer's shorthand (durations such as `3d`,
conditions such as `- event.total: {gte: 100}`) or check in Python (before or after, not
both) is said here in JSON Schema terms; `check` stays the judge, the schema is its preview.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import core_schema

from automator.durations import format_duration
from automator.model import OPERATORS, Rule

DIALECT = "https://json-schema.org/draft/2020-12/schema"
# What parse_duration accepts: `30m`, `1h`, `1d12h`, `1h 30m`.
DURATION: JsonSchemaValue = {
    "type": "string",
    "pattern": r"^\s*(\d+ *[smhdw] *)+\s*$",
    "description": "a number and a unit, or several: 30s, 45m, 1h, 3d, 2w, 1d12h",
}
VALUE: JsonSchemaValue = {"type": ["string", "number", "boolean", "null"]}
VALUES: JsonSchemaValue = {"type": "array", "items": {"$ref": "#/$defs/value"}}
TAG: JsonSchemaValue = {
    "type": "string",
    "pattern": "^[a-z][a-z0-9_]*$",
    "description": "a tag: lowercase letters, digits and _, e.g. vip",
}


class RuleFileSchema(GenerateJsonSchema):
    """pydantic's generator, speaking the rule file's spelling: durations as `3d`, not ISO 8601."""

    def timedelta_schema(self, schema: core_schema.TimedeltaSchema) -> JsonSchemaValue:
        return dict(DURATION)

    def encode_default(self, dft: Any) -> Any:
        if isinstance(dft, timedelta):
            return format_duration(dft)
        return super().encode_default(dft)

    def field_title_should_be_set(self, schema: Any) -> bool:
        return False  # a field's key is its name; "Latest Per" adds nothing in an editor


def rule_schema(stages: Sequence[str] | None = None) -> dict[str, Any]:
    """The schema of one rule file; with `stages` (the journey's), stage names are an enum."""
    schema = Rule.model_json_schema(schema_generator=RuleFileSchema)
    _as_written(schema)
    _checked_in_python(schema)
    if stages:
        _name_stages(schema, list(stages))
    return {"$schema": DIALECT, **schema}


def _as_written(schema: dict[str, Any]) -> None:
    """The fields as a rule file spells them, not as a loaded Rule holds them."""
    properties, defs = schema["properties"], schema["$defs"]
    for internal in ("file", "lines"):  # where a loaded rule came from
        properties.pop(internal)
    properties["then"].pop("default")  # {move_to: null, tag: null}: nothing to offer in an editor
    properties["send"]["description"] = "what to send: a template and an optional coupon, or variants"
    properties["when"]["items"] = {"$ref": "#/$defs/condition"}
    defs["Step"]["properties"]["when"]["items"] = {"$ref": "#/$defs/condition"}
    defs.pop("Condition")  # what a `when` item becomes once read
    defs.pop("HistoryCondition")
    defs.update(condition=CONDITION, value=VALUE, values=VALUES, tag=TAG)


def _checked_in_python(schema: dict[str, Any]) -> None:
    """What the models' validators check, said in JSON Schema."""
    defs = schema["$defs"]
    defs["DateTrigger"]["not"] = {"required": ["before", "after"]}
    schema["oneOf"] = [{"required": ["send"]}, {"required": ["steps"]}]  # one message, or a journey
    schema["properties"]["steps"]["anyOf"][0]["prefixItems"] = [
        {"allOf": [{"$ref": "#/$defs/Step"}], "properties": {"delay": {"pattern": ZERO_DURATION}}}
    ]
    defs["Send"]["oneOf"] = [{"required": ["template"]}, {"required": ["variants"]}]
    variants = defs["Send"]["properties"]["variants"]["anyOf"][0]
    variants.update(minProperties=2, additionalProperties=False)  # names are identifiers
    defs["ScheduleTrigger"]["oneOf"] = [{"required": ["schedule"]}, {"required": ["every"]}]
    defs["ScheduleTrigger"]["dependentRequired"] = {"timezone": ["schedule"]}  # not with every
    for name in ("EventTrigger", "StageTrigger", "ScheduleTrigger"):
        # cancel_if.within widens a date trigger's window; other triggers refuse it, alone or
        # in a list. (allOf, not a keyword beside $ref: editors on draft 7 would ignore that.)
        one, several = defs[name]["properties"]["cancel_if"]["anyOf"]
        one_here = {"allOf": [one], "properties": {"within": False}}
        defs[name]["properties"]["cancel_if"]["anyOf"] = [one_here, {**several, "items": one_here}]
    # Event properties can be tested only by an event trigger's rule, in `when` or a step's.
    schema["if"] = {"properties": {"trigger": {"required": ["event"]}}}
    contact_or_history = {"items": {"propertyNames": {"pattern": r"^(contact\.|history$)"}}}
    schema["else"] = {
        "properties": {
            "when": contact_or_history,
            "steps": {"items": {"properties": {"when": contact_or_history}}},
        }
    }


# The first step goes when the trigger fires: a delay of its own belongs to the trigger.
ZERO_DURATION = r"^\s*(0+ *[smhdw] *)+\s*$"


def _name_stages(schema: dict[str, Any], stages: list[str]) -> None:
    """Stage names from the journey, so that an editor offers them and flags a typo."""
    defs = schema["$defs"]
    schema["properties"]["stages"]["items"] = {"enum": stages}
    defs["StageTrigger"]["properties"]["stage_entered"]["enum"] = stages
    defs["Then"]["properties"]["move_to"]["anyOf"][0]["enum"] = stages


def _operator(name: str) -> JsonSchemaValue:
    if name in ("in", "not_in"):
        return {"$ref": "#/$defs/values", "description": f"{name} needs a list"}
    return {"anyOf": [{"$ref": "#/$defs/value"}, {"$ref": "#/$defs/values"}]}


# One `field: test` pair: the test is a value (eq), a list (in), or one operator and its value.
CONDITION: JsonSchemaValue = {
    "title": "condition",
    "description": "one field: test pair, e.g. event.total: {gte: 100000} or contact.locale: vi",
    "type": "object",
    "minProperties": 1,
    "maxProperties": 1,
    "propertyNames": {"pattern": r"^((contact|event)\.[A-Za-z_][A-Za-z0-9_]*|history)$"},
    "properties": {
        "history": {
            "description": "events of a type the contact had, e.g. {event: order_placed, count: {gte: 2}}",
            "type": "object",
            "required": ["event"],
            "additionalProperties": False,
            "properties": {
                "event": {"type": "string", "pattern": "^[a-z][a-z0-9_]*$"},
                "within": {"type": "string", "pattern": r"^\s*(\d+ *[smhdw] *)+\s*$"},
                "count": {
                    "anyOf": [
                        {"type": "integer", "minimum": 0},
                        {
                            "type": "object",
                            "minProperties": 1,
                            "maxProperties": 1,
                            "propertyNames": {"enum": ["eq", "ne", "gt", "gte", "lt", "lte"]},
                            "additionalProperties": {"type": "integer", "minimum": 0},
                        },
                    ]
                },
            },
        },
        "contact.tags": {
            "description": "the contact's tags: {contains: vip} (any of a list) or {not_contains: vip}",
            "type": "object",
            "minProperties": 1,
            "maxProperties": 1,
            "propertyNames": {"enum": ["contains", "not_contains"]},
            "additionalProperties": {
                "anyOf": [
                    {"$ref": "#/$defs/tag"},
                    {"type": "array", "items": {"$ref": "#/$defs/tag"}, "minItems": 1},
                ]
            },
        },
    },
    "additionalProperties": {
        "anyOf": [
            {"$ref": "#/$defs/value"},
            {"$ref": "#/$defs/values"},
            {
                "type": "object",
                "minProperties": 1,
                "maxProperties": 1,
                "properties": {name: _operator(name) for name in OPERATORS},
                "additionalProperties": False,
            },
        ]
    },
}
