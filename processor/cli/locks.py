"""`sendguard lock` and `sendguard unlock`: an operator's hold on a campaign's pause.

Both are signed requests on resume-requests that the worker verifies and applies: this command
never writes Redis itself, so Redis credentials are not an operator's to hold.
"""

from __future__ import annotations

import click

from processor.cli.resume import ask_operator

_TIMEOUT = click.option(
    "--timeout",
    "timeout_s",
    type=click.FloatRange(min=0, min_open=True),
    default=60.0,
    show_default=True,
    help="Seconds to wait for the worker's answer.",
)
_REQUEST_ID = click.option("--request-id", default=None, help="Idempotency key (default: a UUID).")
_JSON = click.option("--json", "as_json", is_flag=True, help="Print the outcome as JSON.")


@click.command("lock")
@click.option("--tenant", "tenant_id", required=True)
@click.option("--campaign", "campaign_id", required=True)
@click.option("--by", "locked_by", required=True, help="Who locks it (shown to requesters).")
@click.option("--reason", default="", help="Why, for the record.")
@_TIMEOUT
@_REQUEST_ID
@_JSON
def lock_command(
    *,
    tenant_id: str,
    campaign_id: str,
    locked_by: str,
    reason: str,
    timeout_s: float,
    request_id: str | None,
    as_json: bool,
) -> None:
    """Lock a campaign's pause: only a privileged resume request may lift it.

    Signed with SENDGUARD_OPERATOR_KEY_ID / SENDGUARD_OPERATOR_KEY. Exit status: 0 locked,
    1 refused, 2 no answer in time or an error.
    """
    from schemas.resume import OperatorAction

    fields = {"tenant_id": tenant_id, "campaign_id": campaign_id, "requested_by": locked_by}
    ask_operator(
        {**fields, "reason": reason, "action": OperatorAction.LOCK},
        request_id=request_id,
        timeout_s=timeout_s,
        as_json=as_json,
        sign=True,
    )


@click.command("unlock")
@click.option("--tenant", "tenant_id", required=True)
@click.option("--campaign", "campaign_id", required=True)
@click.option("--by", "unlocked_by", required=True, help="Who lifts the lock (for the record).")
@click.option("--reason", default="", help="Why, for the record.")
@_TIMEOUT
@_REQUEST_ID
@_JSON
def unlock_command(
    *,
    tenant_id: str,
    campaign_id: str,
    unlocked_by: str,
    reason: str,
    timeout_s: float,
    request_id: str | None,
    as_json: bool,
) -> None:
    """Lift the operator lock of a campaign's pause (the pause itself stays).

    Signed like `lock`. Exit status: 0 unlocked, 1 refused, 2 no answer in time or an error.
    """
    from schemas.resume import OperatorAction

    fields = {"tenant_id": tenant_id, "campaign_id": campaign_id, "requested_by": unlocked_by}
    ask_operator(
        {**fields, "reason": reason, "action": OperatorAction.UNLOCK},
        request_id=request_id,
        timeout_s=timeout_s,
        as_json=as_json,
        sign=True,
    )
