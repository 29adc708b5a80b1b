"""Fencing tokens: whatever order results, re-issues and duplicates arrive in, a task accepts
at most one result, and only one carrying the token that was current when it arrived."""

from __future__ import annotations

import asyncio
from pathlib import Path

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from delegation_machine.engine.agents.base import AgentResult
from delegation_machine.engine.config import ScaleConfig
from delegation_machine.engine.ledger import Ledger
from delegation_machine.engine.protocol import (
    AuditTrail,
    ContextPackage,
    DelegationRequest,
    EnvironmentSnapshot,
    GoalHint,
    Mutation,
    TaskManifest,
    TextEdit,
)
from delegation_machine.engine.scale.host import RemoteHost, _Pending
from delegation_machine.engine.scale.wire import (
    WIRE_VERSION,
    BlobRef,
    ResultMessage,
    TaskMessage,
    entry_fields,
)

TASKS = 3
AGENT = "builtin:fix@remote-1"


def task_message(task_id: str, token: int) -> TaskMessage:
    return TaskMessage(
        v=WIRE_VERSION,
        task_id=task_id,
        token=token,
        kind="fix",
        agent_id=AGENT,
        host="h",
        package=ContextPackage(
            TaskManifest(task_id, "p", "fix", "fix"),
            EnvironmentSnapshot(1),
            GoalHint("fix"),
            AuditTrail("user", 0.0),
        ),
        request=DelegationRequest("fix"),
        files=(BlobRef("a.py", 1, "0" * 64),),
    )


operations = st.lists(
    st.one_of(
        st.tuples(st.just("reissue"), st.integers(0, TASKS - 1), st.just(0)),
        st.tuples(st.just("result"), st.integers(0, TASKS - 1), st.integers(0, 6)),
        st.tuples(st.just("current"), st.integers(0, TASKS - 1), st.just(0)),
    ),
    max_size=40,
)


@settings(max_examples=200, deadline=None)
@given(operations)
def test_each_task_accepts_at_most_one_result_with_its_current_token(ops: list) -> None:
    async def scenario() -> None:
        ledger = Ledger(":memory:")
        host = RemoteHost(ScaleConfig(redis="redis://127.0.0.1:1"), root=Path("."), ledger=ledger)
        loop = asyncio.get_running_loop()
        pendings = []
        for n in range(TASKS):
            task_id = f"t{n}"
            pending = _Pending(
                task_message(task_id, host.next_token(task_id)), [], loop.create_future()
            )
            host._pending[task_id] = pending
            pendings.append(pending)
        accepted_token: dict[int, int] = {}
        for op, n, token in ops:
            pending = pendings[n]
            task_id = pending.message.task_id
            if op == "reissue":  # reclaimed, released or re-issued after a Redis loss
                pending.message = msgspec.structs.replace(
                    pending.message, token=host.next_token(task_id)
                )
                continue
            sent = pending.message.token if op == "current" else token
            edit = Mutation(task_id, AGENT, "a.py", 1, (TextEdit(0, 0, f"# {sent}\n"),))
            answer = ResultMessage(WIRE_VERSION, task_id, sent, "w", mutations=(edit,))
            was_done = pending.future.done()
            host._on_result_entry(b"1-0", entry_fields(answer))
            if not was_done and sent == pending.message.token:
                accepted_token[n] = sent
            if was_done or sent != pending.message.token:
                assert not (pending.future.done() and not was_done)  # nothing else resolves it
        for n, pending in enumerate(pendings):
            if n in accepted_token:
                result = pending.future.result()
                assert isinstance(result, AgentResult)
                assert result.mutations[0].edits[0].new_text == f"# {accepted_token[n]}\n"
            else:
                assert not pending.future.done()
        ledger.close()

    asyncio.run(scenario())
