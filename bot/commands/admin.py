"""`stats` / `统计` and `audit <calendar>` / `审计 …`: answers for the admins in BOT_ADMINS, refused (and audited) for
anyone else."""

from __future__ import annotations

import time

from bot.commands.base import Context
from bot.commands.parse import split_targets
from bot.models import Command, Outcome, Reply
from bot.stores.audit import MAX_SUBJECT_LENGTH

AUDIT_SHOWN = 20  # latest records one audit card shows


async def stats(context: Context, command: Command) -> Reply:
    if not context.is_admin:
        return await _refuse(context, "stats", "")
    return Reply(Outcome.STATS, context.stats.report(), private=True)


async def audit(context: Context, command: Command) -> Reply:
    targets = split_targets(command.argument, 1)  # a quoted id or name; anything else is taken as written
    subject = (targets[0].text if targets else command.argument.strip())[:MAX_SUBJECT_LENGTH]
    if not context.is_admin:
        return await _refuse(context, "audit", subject)
    if not subject:
        return Reply(Outcome.AUDIT, {"subject": "", "entries": await _refusals(context)}, private=True)
    # an ISV organization's admin sees only their organization's records: chosen in the query, before the limit
    corp_id = context.message.chatbot_corp_id if context.message.per_organization else None
    records = await context.audits.latest(subject, AUDIT_SHOWN, corp_id)
    entries = [
        {
            "when": _when(record.at),
            "staff_id": record.staff_id,
            "action": record.action,
            "calendar": record.name or record.calendar_id,
            "result": record.result,
            "code": record.code,
            "request_id": record.request_id,
        }
        for record in records
    ]
    return Reply(Outcome.AUDIT, {"subject": subject, "entries": entries}, private=True)


async def _refusals(context: Context) -> list[dict[str, object]]:
    refusals = await context.audits.refusals(context.organization)
    return [
        {
            "when": _when(refusal.at),
            "staff_id": refusal.staff_id,
            "action": refusal.action,
            "calendar": refusal.subject,
            "count": refusal.count,
        }
        for refusal in refusals
    ]


def _when(at: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(at))


async def _refuse(context: Context, action: str, subject: str) -> Reply:
    await context.audit_refusal(action, subject)
    return Reply(Outcome.ADMINS_ONLY, {"command": action}, private=True)
