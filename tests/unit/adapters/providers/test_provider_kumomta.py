"""Tests of the KumoMTA log-record adapter, on the records KumoMTA's documentation shows.

The shared samples are read in place: the Reception record of `checking_logs.md` is JSON as it
is; the annotated record of `log_record.md` is JSON once its `//` comments, trailing commas and
one stray brace are taken out. Bounce, OOB, Feedback... records are that record varied as
`log_record.md` and `fbl.md` describe their fields.
"""

from __future__ import annotations

import copy
import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import pytest

from processor.adapters.providers import AttributionConfig, NormalizeResult, Provider, normalize
from processor.adapters.providers.kumomta import parse_queue
from schemas.events import BounceClass, EventType

KUMOMTA: Final = Path(__file__).resolve().parents[4].parent / "shared" / "mta-samples" / "kumomta"
HARD, SOFT, BLOCK = BounceClass.HARD, BounceClass.SOFT, BounceClass.BLOCK


def _json_blocks(name: str) -> list[str]:
    path = KUMOMTA / name
    if not path.is_file():
        pytest.fail(f"shared KumoMTA samples not found at {KUMOMTA}")
    return re.findall(r"```json\n(.*?)```", path.read_text(encoding="utf-8"), re.DOTALL)


def documented_record() -> dict[str, Any]:
    """The annotated Delivery record of log_record.md, as JSON."""
    text = _json_blocks("log_record.md")[0]
    text = re.sub(r"^\s*//.*$", "", text, flags=re.MULTILINE)
    text = text.replace(
        '"emailAddress=me@myhost.mydomain"]},', '"emailAddress=me@myhost.mydomain"],'
    )
    text = re.sub(r",(\s*[}\]])", r"\1", text)
    record: dict[str, Any] = json.loads(text)
    return record


def reception_sample() -> dict[str, Any]:
    """The Reception record of checking_logs.md, unchanged."""
    record: dict[str, Any] = json.loads(_json_blocks("checking_logs.md")[0])
    return record


def kumomta(payload: Any, attribution: AttributionConfig | None = None) -> NormalizeResult:
    """Normalize for tenant `tenant` (the tenant the documented queue names)."""
    return normalize(Provider.KUMOMTA, payload, tenant_id="tenant", attribution=attribution)


def test_the_documented_delivery_record_is_a_delivery_of_the_queues_campaign() -> None:
    """log_record.md's record: queue `campaign:tenant@domain` names campaign and tenant."""
    [event] = kumomta(documented_record()).events

    assert event.type is EventType.DELIVERED
    assert (event.tenant_id, event.campaign_id) == ("tenant", "campaign")
    assert event.recipient.address == "user@recipient.example.com"
    assert event.occurred_at == datetime(2025, 9, 12, 11, 8, 1, 440526, tzinfo=UTC)
    assert event.provider == "kumomta"
    assert event.provider_message_id == "1d98076abbbc11ed940250ebf67f93bd"


def test_the_documented_reception_record_is_a_send_once_it_has_a_campaign() -> None:
    """checking_logs.md's Reception has queue `example.com`: no campaign, unless a fallback."""
    record = reception_sample()

    [rejection] = kumomta(record).rejected
    [event] = kumomta(record, AttributionConfig(fallback_campaign_id="default")).events

    assert rejection.field == "kumomta.meta.campaign_id"
    assert (event.type, event.campaign_id) == (EventType.SENT, "default")
    assert event.occurred_at == datetime.fromtimestamp(1695847980, UTC)


def _varied(kind: str, **fields: Any) -> dict[str, Any]:
    record = copy.deepcopy(documented_record())
    record["type"] = kind
    record.update(fields)
    return record


def _response(code: int, enhanced: tuple[int, int, int] | None, content: str) -> dict[str, Any]:
    klass, subject, detail = enhanced or (None, None, None)
    return {
        "code": code,
        "enhanced_code": None
        if enhanced is None
        else {"class": klass, "subject": subject, "detail": detail},
        "content": content,
        "command": "RCPT TO",
    }


@pytest.mark.parametrize(
    ("kind", "classification", "response", "expected"),
    [
        ("Bounce", "InvalidRecipient", _response(550, (5, 1, 1), "user unknown"),
         (HARD, "bad_mailbox")),
        ("Bounce", "Uncategorized", _response(550, (5, 1, 1), "The email account that you tried "
         "to reach does not exist."), (HARD, "bad_mailbox")),
        ("Bounce", "Uncategorized", _response(554, (5, 7, 1), "Service unavailable; Client host "
         "[192.0.2.1] blocked using zen.spamhaus.org"), (BLOCK, "spam_block")),
        ("Bounce", None, _response(552, (5, 2, 2), "mailbox full"), (SOFT, "mailbox_full")),
        ("Bounce", "MyOwnClass", _response(550, None, "no such user here"), (HARD, "bad_mailbox")),
        ("Bounce", "PolicyRelated", _response(550, (5, 1, 1), "user unknown"), (BLOCK, "policy")),
        ("Bounce", "Uncategorized", _response(554, None, "transaction failed"), (SOFT, "other")),
        ("OOB", "Uncategorized", _response(550, (5, 1, 1), "Mailbox does not exist"),
         (HARD, "bad_mailbox")),
        ("Expiration", "Uncategorized", _response(551, (5, 4, 7), "Next delivery time would be "
         "past the expiry time"), (SOFT, "transient")),
        ("Expiration", "Uncategorized", _response(450, (4, 1, 1), "user unknown"),
         (SOFT, "bad_mailbox")),
    ],
)  # fmt: skip
def test_bounce_records_take_kumomtas_classification_else_the_answer(
    kind: str, classification: str | None, response: dict[str, Any], expected: tuple[Any, str]
) -> None:
    """A predefined classification is a verdict; Uncategorized or none: the response decides."""
    record = _varied(kind, bounce_classification=classification, response=response)

    [event] = kumomta(record).events

    assert event.type is EventType.BOUNCE
    assert (event.bounce_class, event.bounce_category) == expected


def test_a_transient_failure_is_a_deferral_and_each_attempt_its_own_event() -> None:
    """TransientFailure records of one message are deferrals with distinct event ids."""
    first = _varied("TransientFailure", num_attempts=1, response=_response(451, (4, 7, 1), "later"))
    second = _varied("TransientFailure", num_attempts=2, event_time="2025-09-12T11:18:01Z")

    events = kumomta([first, second]).events

    assert [e.type for e in events] == [EventType.DEFERRED, EventType.DEFERRED]
    assert events[0].event_id != events[1].event_id
    assert kumomta(first).events[0].event_id == events[0].event_id  # a redelivery: same id


@pytest.mark.parametrize(
    "kind", ["AdminBounce", "Rejection", "AdminRebind", "Delayed", "XferIn", "XferOut"]
)
def test_records_that_are_no_verdict_of_a_receiver_are_ignored(kind: str) -> None:
    """An operator's admin bounce, rebinds, transfers, refused injections: ignored by type."""
    result = kumomta(_varied(kind))

    assert result.events == ()
    assert [i.field for i in result.ignored] == ["kumomta.type"]


def test_meta_fields_name_tenant_campaign_and_contact_before_the_queue() -> None:
    """Logger-configured meta fields win over the queue name."""
    record = _varied(
        "Delivery",
        meta={"tenant": "tenant", "campaign_id": "spring-sale", "contact_id": "c-42"},
    )

    [event] = kumomta(record).events

    assert (event.campaign_id, event.recipient.contact_id) == ("spring-sale", "c-42")


@pytest.mark.parametrize(
    ("queue", "meta"),
    [("campaign:other@domain", {}), ("campaign:tenant@domain", {"tenant": "other"})],
)
def test_a_record_of_another_kumomta_tenant_is_rejected(queue: str, meta: dict[str, Any]) -> None:
    """The credential's tenant owns the events: a record naming another tenant is refused."""
    result = kumomta(_varied("Delivery", queue=queue, meta=meta))

    assert result.events == ()
    [rejection] = result.rejected
    assert "not this credential's tenant" in rejection.problem


def test_a_multi_recipient_record_gives_one_event_per_recipient() -> None:
    """Since 2025.12 `recipient` may be an array: each address gets its event."""
    record = _varied("Bounce", recipient=["a@example.com", "b@example.com"])

    events = kumomta(record).events

    assert [e.recipient.address for e in events] == ["a@example.com", "b@example.com"]
    assert len({e.event_id for e in events}) == 2


def _feedback(report: dict[str, Any]) -> dict[str, Any]:
    return _varied(
        "Feedback",
        recipient="fbl@fbl.examplecorp.com",
        queue="fbl.examplecorp.com",
        feedback_report=report,
    )


FBL_REPORT: Final = {
    "feedback_type": "abuse",
    "user_agent": "SomeGenerator/1.0",
    "version": 1,
    "arrival_date": "2005-03-08T18:00:00Z",
    "original_mail_from": "<somesender@example.net>",
    "original_rcpto_to": ["<user@example.com>"],
    "supplemental_trace": {"recipient": "test@example.com", "campaign": "spring-sale"},
}


def test_an_abuse_report_is_a_complaint_of_the_traced_recipient_and_campaign() -> None:
    """fbl.md: the X-KumoRef trace names the original recipient (and campaign, if included)."""
    [event] = kumomta(_feedback(FBL_REPORT)).events

    assert event.type is EventType.COMPLAINT
    assert (event.recipient.address, event.campaign_id) == ("test@example.com", "spring-sale")


def test_without_a_trace_the_reports_sole_original_recipient_complained() -> None:
    """No trace header: the report's one original recipient, brackets stripped."""
    report = {k: v for k, v in FBL_REPORT.items() if k != "supplemental_trace"}

    [event] = kumomta(_feedback(report), AttributionConfig(fallback_campaign_id="c")).events

    assert event.recipient.address == "user@example.com"


@pytest.mark.parametrize("feedback_type", ["not-spam", "virus", "other"])
def test_feedback_that_is_not_a_complaint_is_ignored(feedback_type: str) -> None:
    """Only abuse and fraud reports are complaints."""
    result = kumomta(_feedback(FBL_REPORT | {"feedback_type": feedback_type}))

    assert [i.field for i in result.ignored] == ["kumomta.feedback_report.feedback_type"]


def test_a_log_hooks_own_reception_is_ignored() -> None:
    """Records KumoMTA captured as messages for its log hook are not sends."""
    result = kumomta(_varied("Reception", reception_protocol="LogRecord"))

    assert [i.field for i in result.ignored] == ["kumomta.reception_protocol"]


@pytest.mark.parametrize(
    ("queue", "campaign", "tenant"),
    [
        ("campaign:tenant@domain", "campaign", "tenant"),
        ("campaign:tenant@domain!routing.example", "campaign", "tenant"),
        ("tenant@domain", None, "tenant"),
        ("campaign:@domain", "campaign", None),
        ("domain", None, None),
        ("null", None, None),
        ("webhook.log_hook", None, None),
    ],
)
def test_queue_names_split_as_queues_md_describes(
    queue: str, campaign: str | None, tenant: str | None
) -> None:
    """Every queue-name form of queues.md yields its campaign and tenant."""
    assert parse_queue(queue) == (campaign, tenant)


def test_a_batch_keeps_going_past_a_bad_record() -> None:
    """One record without a recipient is rejected by index; the others become events."""
    bad = _varied("Delivery")
    del bad["recipient"]

    result = kumomta([_varied("Delivery"), bad, _varied("Bounce")])

    assert [e.type for e in result.events] == [EventType.DELIVERED, EventType.BOUNCE]
    assert [(r.index, r.field) for r in result.rejected] == [(1, "kumomta[1].recipient")]
