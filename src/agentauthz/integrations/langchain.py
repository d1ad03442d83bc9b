"""Authorizing the tool calls of LangChain agents: a middleware, and guarded tools.

::

    from langchain.agents import create_agent
    from agentauthz.integrations.langchain import AgentAuthzMiddleware

    agent = create_agent(model, tools, middleware=[AgentAuthzMiddleware(authz)])
    with authz.acting_as("agent:support-assistant", on_behalf_of="user:alice"), \\
            authz.task(scope=[("read", "ticket:*")], purpose="answer ticket 1001"):
        agent.invoke({"messages": [("user", "Please look at ticket 1001")]})

**The middleware** puts a :class:`~agentauthz.agents.guard.ToolGuard` in front of
every tool call of a ``create_agent`` loop (``wrap_tool_call`` and
``awrap_tool_call``, so ``invoke``, ``stream``, ``ainvoke`` and ``astream`` alike).
The guard decides with the tool name and the arguments *exactly as the model
produced them*, before LangChain validates them, and it decides a call to a
tool name the model invented as well (for an agent: denied, the tool is not
declared) instead of leaving it to LangGraph's "not a valid tool" message.

- **Denied** — a hard block, an undeclared or unapproved tool, an argument
  constraint, the policy, a chain rule, an ``approval_required`` decision the
  guard has no approval handler for, or any failure inside the guard: the tool
  does not run, and the model reads ``ToolMessage(content="DENIED: <reason>",
  status="error")``. An approval request's id is in the reason; once a person
  approves it (``authz.approvals.approve(request_id, approver=...)``) the same
  call, in the same task, runs. With ``on_deny="raise"`` the middleware raises
  :class:`~agentauthz.agents.guard.ToolDenied` (or
  :class:`~agentauthz.errors.ApprovalRequired`) out of ``invoke`` instead.
- **Allowed** — the tool runs, and :meth:`ToolGuard.finish` audits the call
  and filters its result when the tool's declaration has a ``result:``
  section. LangChain has turned the tool's output into a ``ToolMessage`` by
  then, so the raw output is taken back from it: the message's ``artifact``
  if it has one (``response_format="content_and_artifact"``), else its content
  parsed as JSON (LangChain renders a dict or list result as JSON text). The
  filtered value replaces the content, as JSON, and the artifact. Content that
  cannot be filtered — plain text, a ``Command`` — is withheld whole: the
  model reads ``WITHHELD: ...`` instead. An error message (the tool raised a
  handled error, or its arguments did not validate) passes through unfiltered.

**Who is acting** is the current principal (and authorizer) of
:mod:`agentauthz.enforce`: run the agent inside ``with authz.acting_as(agent,
on_behalf_of=user)`` and, usually, a task. LangGraph carries the caller's
:mod:`contextvars` context to the tool calls: with ``invoke``/``stream`` each
call of a turn runs in a worker thread of a ``ContextThreadPoolExecutor``,
which copies the context per call; with ``ainvoke``/``astream`` they are
asyncio tasks, which copy it too, and a sync tool's thread gets a copy again.
So the principal is the one in force where ``invoke`` was called; keep the
whole run (and the consumption of a ``stream``) inside the ``with`` block.
Calls of one turn run concurrently; the guard decides and records each under
its ledger's lock, so a budget cannot be overspent by parallel calls.

**Other loops** take :func:`guard_langchain_tools`: each ``BaseTool`` (a
``@tool`` function, a ``StructuredTool``, any subclass) is wrapped in a
:class:`GuardedTool` whose ``run``/``arun`` — and so ``invoke``/``ainvoke`` —
decide first. A denial is the tool's output: an error ``ToolMessage`` when the
tool was invoked with a tool call, else the ``"DENIED: <reason>"`` string (or
an exception, with ``on_deny="raise"``). Use either the middleware or guarded
tools in one agent, not both: each call would be decided, and counted, twice.

Importing this module works without LangChain; using it without LangChain
raises an ``ImportError`` that names the extra to install.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Final, Literal

from agentauthz import enforce
from agentauthz.agents.guard import GuardedCall, ToolDenied, ToolGuard
from agentauthz.errors import ApprovalRequired, ConfigurationError
from agentauthz.model import Outcome

_MISSING: ImportError | None = None
try:
    from langchain.agents.middleware import AgentMiddleware, AgentState, ToolCallRequest
    from langchain_core.messages import ToolMessage
    from langchain_core.tools import BaseTool
    from langgraph.types import Command
except ImportError as exc:  # pragma: no cover - exercised in a subprocess by the tests
    _MISSING = exc
    if not TYPE_CHECKING:
        class _Absent:
            """Stands in for LangChain's classes, so that this module imports without them."""

            def __class_getitem__(cls, item: object) -> type:
                return cls

        AgentMiddleware = AgentState = BaseTool = Command = ToolCallRequest = ToolMessage = _Absent

if TYPE_CHECKING:
    from agentauthz.authorizer import Authorizer

__all__ = ["WITHHELD", "AgentAuthzMiddleware", "GuardedTool", "OnDeny", "guard_langchain_tools"]

log = logging.getLogger("agentauthz.integrations.langchain")

OnDeny = Literal["message", "raise"]
"""What a denial becomes: a message the model reads, or an exception out of the loop."""

WITHHELD: Final = ("WITHHELD: the tool ran, but its result could not be filtered for this "
                   "principal, so none of it is shown")
ToolOutput = Any  # a ToolMessage, a Command, a list of them, or (no tool call id) the raw value


def _require(what: str) -> None:
    if _MISSING is not None:
        raise ImportError(f"{what} needs LangChain ({_MISSING}); "
                          "pip install 'agentauthz[langchain]'") from _MISSING


def _check_on_deny(on_deny: object) -> None:
    if on_deny not in ("message", "raise"):
        raise ConfigurationError("on_deny must be 'message' or 'raise'")


# --------------------------------------------------------------------------- deciding
def _unguarded(tool: str) -> GuardedCall:
    return GuardedCall.denied(tool, "unauthenticated", "no authorizer is bound: pass one to the "
                              "middleware, or run the agent inside `with authz.acting_as(...)`")


def _failed(tool: str, exc: Exception) -> GuardedCall:
    """Deny on doubt: a guard that fails lets nothing through."""
    log.warning("agentauthz: the guard failed deciding %r (%s: %s); denying", tool[:64],
                type(exc).__name__, exc)
    return GuardedCall.denied(tool, "guard_error",
                              f"the guard could not decide ({type(exc).__name__})")


def _error(call: GuardedCall) -> Exception:
    if call.decision.outcome is Outcome.APPROVAL_REQUIRED:
        return ApprovalRequired(call.decision, call.decision.reasons[0].rule or "", call.message)
    return ToolDenied(call.decision, call.tool)


def _denied_message(call: GuardedCall, tool_call_id: str, name: str) -> ToolMessage:
    """What the model reads instead of a result: an error, never mistakable for success."""
    return ToolMessage(content=call.message, tool_call_id=tool_call_id, name=name,
                       status="error")


# --------------------------------------------------------------------------- results
def _audit_only(guard: ToolGuard, call: GuardedCall) -> None:
    """Audit an allowed call whose tool failed: there is no result to filter or withhold."""
    try:
        guard.abort(call)
    except Exception as exc:  # the tool's own error is the one to report
        log.error("agentauthz: auditing %r failed: %s", call.tool, exc)


def _structured(content: Any) -> Any:
    """A ToolMessage's content as the tool returned it: JSON text parsed back, if it is JSON."""
    if isinstance(content, str):
        try:
            value = json.loads(content)
        except ValueError:
            return content
        if isinstance(value, dict | list):
            return value
    return content


def _withheld(tool_call_id: str | None, name: str) -> ToolMessage | None:
    if tool_call_id is None:
        return None  # a raw value was asked for: nothing is the withheld result
    return ToolMessage(content=WITHHELD, tool_call_id=tool_call_id, name=name, status="error")


def _finished(guard: ToolGuard, call: GuardedCall, output: ToolOutput, tool_call_id: str | None,
              name: str) -> ToolOutput:
    """Audit an allowed call and filter its output (see the module docstring).

    ``tool_call_id`` is ``None`` when the tool ran without a tool call, for its raw value.
    """
    spec = call.spec
    if spec is None or spec.result is None:
        try:
            guard.finish(call, None)  # nothing to filter: this only audits
        except Exception as exc:
            log.error("agentauthz: auditing %r failed: %s", call.tool, exc)
        return output
    try:
        if isinstance(output, ToolMessage):
            if output.status == "error":
                _audit_only(guard, call)
                return output
            has_artifact = output.artifact is not None
            kept = guard.finish(call, output.artifact if has_artifact else
                                _structured(output.content))
            if kept is None:
                return _withheld(output.tool_call_id, name)
            update: dict[str, Any] = {"content": json.dumps(kept, ensure_ascii=False, default=str)}
            if has_artifact:
                update["artifact"] = kept
            return output.model_copy(update=update)
        if isinstance(output, Command | list):
            # a Command's update (or a list of messages) cannot be filtered: none of it goes on
            guard.finish(call, None)
            return _withheld(tool_call_id, name)
        return guard.finish(call, output)  # a raw value: a tool run without a tool call id
    except Exception as exc:
        log.error("agentauthz: filtering the result of %r failed (%s: %s); withholding it",
                  call.tool, type(exc).__name__, exc)
        return _withheld(tool_call_id, name)


# --------------------------------------------------------------------------- middleware
class AgentAuthzMiddleware(AgentMiddleware[AgentState[Any], Any]):
    """Decides every tool call of a ``create_agent`` loop (see the module docstring).

    ``authz``: the authorizer whose default guard (``authz.guard``) decides;
    ``guard``: a guard of your own instead (``authz.tool_guard(approval_handler=...,
    audit=...)``). With neither, the authorizer bound by the enclosing
    ``acting_as`` decides, and without one every call is denied.
    ``on_deny``: ``"message"`` (the model reads the denial) or ``"raise"``.
    """

    def __init__(self, authz: Authorizer | None = None, *, guard: ToolGuard | None = None,
                 on_deny: OnDeny = "message") -> None:
        _require("AgentAuthzMiddleware")
        from agentauthz.authorizer import Authorizer

        super().__init__()
        if authz is not None and not isinstance(authz, Authorizer):
            raise ConfigurationError(f"AgentAuthzMiddleware needs an Authorizer, got "
                                     f"{type(authz).__name__}")
        if guard is not None and not isinstance(guard, ToolGuard):
            raise ConfigurationError(f"AgentAuthzMiddleware(guard=...) must be a ToolGuard, got "
                                     f"{type(guard).__name__}")
        if guard is not None and authz is not None and guard.authz is not authz:
            raise ConfigurationError("AgentAuthzMiddleware: the guard belongs to another "
                                     "authorizer")
        _check_on_deny(on_deny)
        self.authz = authz if authz is not None or guard is None else guard.authz
        self.guard = guard
        self.on_deny: OnDeny = on_deny

    def _current_guard(self) -> ToolGuard | None:
        if self.guard is not None:
            return self.guard
        authz = self.authz if self.authz is not None else enforce.current_authorizer()
        return authz.guard if authz is not None else None

    @staticmethod
    def _requested(request: ToolCallRequest) -> tuple[str, Any, str | None, str]:
        """The call as the model made it — name, raw arguments (before any validation) —
        the tool's description, and the tool call's id."""
        tool_call = request.tool_call
        tool = request.tool
        return (str(tool_call.get("name")), tool_call.get("args"),
                tool.description if tool is not None else None, str(tool_call.get("id") or ""))

    def _refused(self, call: GuardedCall, name: str, tool_call_id: str) -> ToolMessage:
        if self.on_deny == "raise":
            raise _error(call)
        return _denied_message(call, tool_call_id, name)

    def wrap_tool_call(self, request: ToolCallRequest,
                       handler: Callable[[ToolCallRequest], ToolMessage | Command[Any]]
                       ) -> ToolMessage | Command[Any]:
        name, arguments, description, tool_call_id = self._requested(request)
        guard = self._current_guard()
        try:
            call = (guard.begin(name, arguments, description=description) if guard is not None
                    else _unguarded(name))
        except Exception as exc:
            call = _failed(name, exc)
        if guard is None or not call.allowed:
            return self._refused(call, name, tool_call_id)
        try:
            output = handler(request)
        except BaseException:
            _audit_only(guard, call)
            raise
        result: ToolMessage | Command[Any] = _finished(guard, call, output, tool_call_id, name)
        return result

    async def awrap_tool_call(
            self, request: ToolCallRequest,
            handler: Callable[[ToolCallRequest], Awaitable[ToolMessage | Command[Any]]]
    ) -> ToolMessage | Command[Any]:
        name, arguments, description, tool_call_id = self._requested(request)
        guard = self._current_guard()
        try:
            call = (await guard.abegin(name, arguments, description=description)
                    if guard is not None else _unguarded(name))
        except Exception as exc:
            call = _failed(name, exc)
        if guard is None or not call.allowed:
            return self._refused(call, name, tool_call_id)
        try:
            output = await handler(request)
        except BaseException:
            _audit_only(guard, call)
            raise
        result: ToolMessage | Command[Any] = _finished(guard, call, output, tool_call_id, name)
        return result


# --------------------------------------------------------------------------- guarded tools
def _field_names(schema: object) -> set[str]:
    """The argument names of a tool schema: a pydantic model (v2 or v1) or a JSON schema."""
    if isinstance(schema, Mapping):
        properties = schema.get("properties")
        return set(properties) if isinstance(properties, Mapping) else set()
    fields = getattr(schema, "model_fields", None) or getattr(schema, "__fields__", None)
    return set(fields) if isinstance(fields, Mapping) else set()


class GuardedTool(BaseTool):
    """A LangChain tool that a :class:`ToolGuard` decides before every run.

    It presents the wrapped tool's name, description and schemas, and runs
    the wrapped tool itself (its validation, injection, callbacks and error
    handling) when the guard allows. Build it with :func:`guard_langchain_tools`.
    """

    wrapped: BaseTool
    guard: ToolGuard
    on_deny: OnDeny = "message"

    @classmethod
    def around(cls, tool: BaseTool, guard: ToolGuard, *, on_deny: OnDeny = "message"
               ) -> GuardedTool:
        _require("GuardedTool")
        if not isinstance(tool, BaseTool):
            raise ConfigurationError(
                f"guard_langchain_tools takes LangChain tools (BaseTool, @tool), got "
                f"{type(tool).__name__}; guard plain functions with agentauthz.agents.guard_tools")
        if isinstance(tool, GuardedTool):
            raise ConfigurationError(f"tool {tool.name!r} is guarded already")
        _check_on_deny(on_deny)
        return cls(name=tool.name, description=tool.description, args_schema=tool.args_schema,
                   return_direct=tool.return_direct, response_format=tool.response_format,
                   tags=tool.tags, metadata=tool.metadata, extras=tool.extras, wrapped=tool,
                   guard=guard, on_deny=on_deny)

    # the model must see exactly the wrapped tool's schema, injected arguments left out
    @property
    def tool_call_schema(self) -> Any:
        return self.wrapped.tool_call_schema

    def get_input_schema(self, config: Any = None) -> Any:
        return self.wrapped.get_input_schema(config)

    def _arguments(self, tool_input: str | dict[str, Any]) -> Any:
        """The arguments the caller gave, without those LangGraph injects (state, runtime)."""
        visible = _field_names(self.wrapped.tool_call_schema)
        if isinstance(tool_input, str):
            names = sorted(visible)
            return {names[0] if len(names) == 1 else "input": tool_input}
        if not isinstance(tool_input, Mapping):
            return tool_input  # the guard denies it: arguments must be a mapping
        injected = _field_names(self.wrapped.get_input_schema()) - visible
        return {k: v for k, v in tool_input.items() if k not in injected}

    def _refused(self, call: GuardedCall, tool_call_id: str | None) -> Any:
        if self.on_deny == "raise":
            raise _error(call)
        return call.message if tool_call_id is None else _denied_message(call, tool_call_id,
                                                                          self.name)

    def _run(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("GuardedTool runs the wrapped tool through run() and arun()")

    def run(self, tool_input: str | dict[str, Any], *args: Any, tool_call_id: str | None = None,
            **kwargs: Any) -> Any:
        try:
            call = self.guard.begin(self.name, self._arguments(tool_input),
                                    description=self.description)
        except Exception as exc:
            call = _failed(self.name, exc)
        if not call.allowed:
            return self._refused(call, tool_call_id)
        try:
            output = self.wrapped.run(tool_input, *args, tool_call_id=tool_call_id, **kwargs)
        except BaseException:
            _audit_only(self.guard, call)
            raise
        return _finished(self.guard, call, output, tool_call_id, self.name)

    async def arun(self, tool_input: str | dict[str, Any], *args: Any,
                   tool_call_id: str | None = None, **kwargs: Any) -> Any:
        try:
            call = await self.guard.abegin(self.name, self._arguments(tool_input),
                                           description=self.description)
        except Exception as exc:
            call = _failed(self.name, exc)
        if not call.allowed:
            return self._refused(call, tool_call_id)
        try:
            output = await self.wrapped.arun(tool_input, *args, tool_call_id=tool_call_id,
                                             **kwargs)
        except BaseException:
            _audit_only(self.guard, call)
            raise
        return _finished(self.guard, call, output, tool_call_id, self.name)


def guard_langchain_tools(tools: Iterable[BaseTool], *, authz: Authorizer,
                          on_deny: OnDeny = "message", **options: Any) -> list[BaseTool]:
    """Wrap each LangChain tool in a :class:`GuardedTool` deciding with one guard of ``authz``.

    ``options`` configure a new guard, as for :class:`ToolGuard` (``approval_handler``,
    ``audit``, ``tools``); without them ``authz.guard`` decides. ``on_deny`` is
    what a denial becomes (see the module docstring).
    """
    _require("guard_langchain_tools")
    _check_on_deny(on_deny)
    guard = authz.tool_guard(**options) if options else authz.guard
    return [GuardedTool.around(tool, guard, on_deny=on_deny) for tool in tools]
