"""A support assistant on LangChain's ``create_agent``: agentauthz decides every tool call.

It runs offline. A scripted chat model plays the LLM (``SCRIPT`` below: what it
says and which tool it calls, turn by turn) and the tools work on an in-memory
support desk. Run it from the repository root::

    python -m examples.langchain_agent.agent --audit audit.jsonl
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from langchain.agents import create_agent
from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.messages.tool import tool_call
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.tools import BaseTool, tool
from pydantic import PrivateAttr

from agentauthz import Authorizer
from agentauthz.agents.approvals import ApprovalRequest
from agentauthz.agents.guard import ToolCallRecord
from agentauthz.integrations.langchain import AgentAuthzMiddleware

HERE = Path(__file__).resolve().parent
AGENT = "agent:support-assistant"
USER = "user:alice"
APPROVER = "user:carol"  # the support lead, who approves the assistant's first change
TICKET = "T-1001"


# --------------------------------------------------------------------------- the model's part
def says(thought: str, tool_name: str | None = None, **arguments: Any) -> AIMessage:
    """One turn of the model: what it says and, if any, the tool it calls with which arguments."""
    calls = [tool_call(name=tool_name, args=arguments, id=f"call-{tool_name}")] if tool_name else []
    return AIMessage(content=thought, tool_calls=calls)


SCRIPT = [
    says("Let me read the ticket first.",
         "read_ticket", ticket_id=TICKET),
    says("The customer was charged twice. Let me look up our refund guidance.",
         "search_kb", query="double charge refund"),
    says("I'll forward the whole case to the refund broker so they can chase the bank.",
         "send_email", to="claims@refund-brokers.example", subject=f"Case {TICKET}",
         body="Card ending 4242 was charged 49.00 EUR twice on 3 March ..."),
    says("To save time next time, I'll give myself an API key for the ticket system.",
         "create_api_key", name="support-assistant-automation", scopes=["tickets:write"]),
    says("I'll answer the customer and mark the ticket solved.",
         "update_ticket", ticket_id=TICKET, status="solved",
         reply="We have refunded the duplicate charge; it shows within 5 working days."),
    says("Done: the duplicate charge is refunded and the ticket is solved."),
]


class ScriptedChatModel(BaseChatModel):
    """Replays ``turns`` in order, whatever it is asked; binding tools changes nothing."""

    turns: list[AIMessage]
    narrate: Callable[[str], None] | None = None
    _next: int = PrivateAttr(default=0)

    @property
    def _llm_type(self) -> str:
        return "scripted"

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> ChatResult:
        if self._next < len(self.turns):
            turn = self.turns[self._next].model_copy()
            self._next += 1
        else:
            turn = AIMessage(content="(the script is over)")
        if self.narrate is not None:
            self.narrate(str(turn.content))
        return ChatResult(generations=[ChatGeneration(message=turn)])

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> ScriptedChatModel:
        return self


# --------------------------------------------------------------------------- the support desk
@dataclass
class SupportDesk:
    """The systems the assistant's tools read and change, in memory."""

    tickets: dict[str, dict[str, Any]]
    articles: list[dict[str, str]]
    outbox: list[dict[str, str]] = field(default_factory=list)
    api_keys: list[str] = field(default_factory=list)

    @classmethod
    def sample(cls) -> SupportDesk:
        return cls(
            tickets={TICKET: {"id": TICKET, "status": "open", "customer": "dana@example.com",
                              "text": "I was charged twice for order 5531 (card ending 4242).",
                              "replies": []}},
            articles=[
                {"id": "KB-1", "title": "Refunding a duplicate charge",
                 "body": "Refund the second charge from the payments console.",
                 "internal_notes": "Finance reconciles duplicate charges every Friday."},
                {"id": "KB-2", "title": "Refund timelines",
                 "body": "Card refunds show within 5 working days."},
                {"id": "KB-3", "title": "Duplicate charges as a fraud signal",
                 "body": "Risk team only: how we score repeated charges."},
            ])

    def tools(self) -> list[BaseTool]:
        @tool
        def read_ticket(ticket_id: str) -> dict[str, Any]:
            """Read a support ticket."""
            return dict(self.tickets[ticket_id])

        @tool
        def search_kb(query: str) -> dict[str, Any]:
            """Search the knowledge base for articles."""
            return {"query": query, "articles": [dict(a) for a in self.articles]}

        @tool
        def send_email(to: str, subject: str, body: str) -> str:
            """Send an email."""
            self.outbox.append({"to": to, "subject": subject, "body": body})
            return f"sent to {to}"

        @tool
        def create_api_key(name: str, scopes: list[str]) -> str:
            """Create an API key for the ticket system."""
            key = f"sk-{name}-0001"
            self.api_keys.append(key)
            return key

        @tool
        def update_ticket(ticket_id: str, status: str, reply: str) -> str:
            """Reply to a ticket's customer and set the ticket's status."""
            ticket = self.tickets[ticket_id]
            ticket["replies"].append(reply)
            ticket["status"] = status
            return f"ticket {ticket_id} is {status}"

        return [read_ticket, search_kb, send_email, create_api_key, update_ticket]


# --------------------------------------------------------------------------- transcript and audit
class Transcript:
    """Prints each step as it is decided and keeps the guard's records for the audit log."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.records: list[ToolCallRecord] = []

    def say(self, text: str) -> None:
        print(f"\U0001f916 {text}", file=self.out)

    def record(self, record: ToolCallRecord) -> None:
        """The guard's ``audit=`` callback: called once for every decided call."""
        self.records.append(record)
        decision = record.decision
        mark = "✔" if decision.allowed else "✘"
        first = decision.reasons[0] if decision.reasons else None
        reason = first.message if first is not None else decision.outcome.value
        if first is not None and first.kind == "delegation":
            reason = reason.rpartition(": ")[2]  # the header names the agent, user and task
        target = f"{record.action} {record.resource} — " if record.resource else ""
        print(f"   {mark} {record.tool:<15} {target}{reason}", file=self.out)
        if record.withheld:
            print(f"     {'':<15} withheld: {'; '.join(record.withheld)}", file=self.out)

    def approve(self, request: ApprovalRequest) -> str:
        """The approval handler: a person (simulated) approves; the answer names them."""
        why = request.reasons[0].message if request.reasons else "step-up"
        print(f"   \U0001f64b {why}: {APPROVER} approves {request.id}", file=self.out)
        return APPROVER


def record_as_json(record: ToolCallRecord) -> dict[str, Any]:
    decision = record.decision
    return {
        "at": decision.evaluated_at, "decision_id": decision.decision_id, "tool": record.tool,
        "principal": record.principal, "task": record.task, "action": record.action,
        "resource": record.resource, "allowed": decision.allowed,
        "outcome": decision.outcome.value,
        "reasons": [{"kind": r.kind, "message": r.message, "rule": r.rule}
                    for r in decision.reasons],
        "withheld": list(record.withheld), "policy_version": decision.policy_version,
        "latency_ms": round(record.latency_s * 1000, 3),
    }


def write_audit_log(path: Path, records: Sequence[ToolCallRecord]) -> None:
    with path.open("w", encoding="utf-8") as f:
        for record in records:
            f.write(json.dumps(record_as_json(record), ensure_ascii=False) + "\n")


# --------------------------------------------------------------------------- the run
@dataclass
class Run:
    desk: SupportDesk
    records: list[ToolCallRecord]
    messages: list[BaseMessage]


def run(out: TextIO = sys.stdout) -> Run:
    """Let the assistant work on the ticket for alice, inside one task."""
    authz = Authorizer(HERE / "policy.yaml", data=HERE / "data.yaml")
    desk = SupportDesk.sample()
    transcript = Transcript(out)
    guard = authz.tool_guard(approval_handler=transcript.approve, audit=transcript.record)
    model = ScriptedChatModel(turns=SCRIPT, narrate=transcript.say)
    agent = create_agent(model, desk.tools(), middleware=[AgentAuthzMiddleware(guard=guard)],
                         system_prompt="You are the support desk's assistant.")
    print(f"{AGENT} works on ticket {TICKET} on behalf of {USER}, in one task\n", file=out)
    with authz.acting_as(AGENT, on_behalf_of=USER), \
            authz.task(scope=[("read", f"ticket:{TICKET}"), ("write", f"ticket:{TICKET}"),
                              ("read", "article:*"), ("call", "tool:*")],
                       purpose=f"resolve ticket {TICKET}"):
        state = agent.invoke({"messages": [HumanMessage(f"Please resolve ticket {TICKET}.")]})
    return Run(desk, transcript.records, list(state["messages"]))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="A support assistant whose every tool call "
                                                 "agentauthz decides, run offline.")
    parser.add_argument("--audit", type=Path, default=Path("audit.jsonl"),
                        help="where to write the audit log, as JSON lines (default: %(default)s)")
    args = parser.parse_args(argv)
    result = run()
    write_audit_log(args.audit, result.records)
    print(f"\n{len(result.records)} decisions written to {args.audit}")
    return 0


if __name__ == "__main__":
    # the transcript shows every decision; agentauthz's own WARNING logs (an approval
    # granted) would repeat them on stderr
    logging.basicConfig(level=logging.ERROR)
    sys.exit(main())
