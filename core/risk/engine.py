"""The risk engine: runs every enabled rule on a request, inside the
account's lock, and combines their decisions.

Rules fail closed: a rule that raises, cannot get its data (`MissingData`)
or takes longer than ``RULE_TIMEOUT`` seconds blocks the order with a
CRITICAL decision naming the rule and the error. The combined verdict is
block if any rule blocks, else require-confirmation if any rule asks for it,
else allow; allowed decisions with severity WARNING (a limit 80% used) are
logged without blocking.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Mapping

from tradeguard.adapters import validate_settings
from tradeguard.money import plain
from tradeguard.plugin_manager import Registration
from tradeguard.risk.context import MissingData, RiskContext
from tradeguard.storage import database, rows
from tradeguard.storage.models import Account, Order, RiskLog, RiskRuleConfig
from tradeguard.types import Decision, SettingSpec, Severity, Verdict

log = logging.getLogger("tradeguard.risk")

#: A rule slower than this (seconds) is treated as failed: the order is blocked.
RULE_TIMEOUT = 2.0
BUILTIN_RULE_PLUGIN = "standard_rules"
_CONFIG_SQL = "SELECT rule, enabled, settings FROM risk_rule_config WHERE account_id = {0} ORDER BY rule"


@dataclass(frozen=True)
class RuleState:
    """A rule as configured for one account."""

    name: str
    rule: Any
    plugin: str
    enabled: bool
    mandatory: bool
    settings: Mapping[str, Any]
    specs: tuple[SettingSpec, ...]


@dataclass
class Assessment:
    """Every rule's decision on one request, and the combined verdict.

    The verdict and the groups (blocks, confirmations, warnings) are sorted out
    once per list of results, and again whenever `results` changes.
    """

    results: list[tuple[str, Decision]] = field(default_factory=list)
    _sorted: tuple | None = field(default=None, init=False, repr=False, compare=False)

    def _groups(self) -> tuple[tuple, Verdict, tuple, tuple, tuple]:
        """(the results sorted out, verdict, blocks, confirmations, warnings)."""
        results = tuple(self.results)
        cached = self._sorted
        if cached is not None and cached[0] == results:
            return cached
        blocks, confirmations, warnings = [], [], []
        any_block = any_confirm = False
        for item in results:
            decision = item[1]
            verdict = decision.verdict
            any_block = any_block or verdict == Verdict.BLOCK
            any_confirm = any_confirm or verdict == Verdict.CONFIRM
            if verdict is Verdict.BLOCK:
                blocks.append(item)
            elif verdict is Verdict.CONFIRM:
                confirmations.append(item)
            elif verdict is Verdict.ALLOW and decision.severity is Severity.WARNING:
                warnings.append(item)
        verdict = Verdict.BLOCK if any_block else Verdict.CONFIRM if any_confirm else Verdict.ALLOW
        self._sorted = (results, verdict, tuple(blocks), tuple(confirmations), tuple(warnings))
        return self._sorted

    @property
    def blocks(self) -> list[tuple[str, Decision]]:
        return list(self._groups()[2])

    @property
    def confirmations(self) -> list[tuple[str, Decision]]:
        return list(self._groups()[3])

    @property
    def warnings(self) -> list[tuple[str, Decision]]:
        return list(self._groups()[4])

    @property
    def verdict(self) -> Verdict:
        return self._groups()[1]

    def reason(self) -> str:
        """One line: the blocking (or confirming) rules and their reasons."""
        _, _, blocks, confirmations, warnings = self._groups()
        chosen = blocks or confirmations or warnings
        return "; ".join(f"{name}: {decision.reason}" for name, decision in chosen)

    def combined(self) -> Decision:
        """A single `Decision` for event hooks (every rule's verdict in its metrics)."""
        _, verdict, blocks, confirmations, _ = self._groups()
        chosen = blocks or confirmations
        severity = max((d.severity for _, d in chosen), default=Severity.INFO,
                       key=[Severity.INFO, Severity.WARNING, Severity.CRITICAL].index)
        return Decision(verdict, rule=",".join(n for n, _ in chosen), reason=self.reason(), severity=severity,
                        metrics={"rules": self.details()["rules"]})

    def details(self) -> dict[str, Any]:
        """JSON-ready: stored on the order as its risk decision."""
        # `_value_` is what Enum.value returns, read without the property call
        return {
            "verdict": self.verdict._value_,
            "rules": [
                {"rule": name, "verdict": d.verdict._value_, "severity": d.severity._value_, "reason": d.reason,
                 "metrics": _json_metrics(d.metrics) if d.metrics else {}}
                for name, d in self.results
            ],
        }

    def wants_emergency_stop(self) -> list[str]:
        """Rules that asked for an automatic emergency stop."""
        return [n for n, d in self._groups()[2] if d.metrics.get("trigger_emergency_stop")]


#: Types `_jsonable` returns unchanged (they have no ``value`` attribute)
_AS_IS = frozenset({str, int, float, bool, type(None)})


def _jsonable(value: Any) -> Any:
    if isinstance(value, Decimal):
        return plain(value)
    return getattr(value, "value", value)


def _json_metrics(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """``{k: _jsonable(v)}``, with the common types (Decimal, str, int …) converted inline."""
    out = {}
    for key, value in metrics.items():
        kind = value.__class__
        out[key] = plain(value) if kind is Decimal else value if kind in _AS_IS else _jsonable(value)
    return out


class RiskEngine:
    """Rule configuration per account and evaluation of requests (``engine.risk``)."""

    def __init__(self, engine: Any):
        self.engine = engine
        # account id -> (rule registry, its size, stored config rows, states): `evaluate` reuses the
        # validated settings while neither the registered rules nor the account's stored configuration changed
        self._evaluated: dict[int, tuple[Any, int, list[tuple], list[RuleState]]] = {}

    # -- configuration ----------------------------------------------------------------------

    def _registrations(self) -> list[Registration]:
        return list(self.engine.plugins.risk_rules)

    @staticmethod
    def _specs(registration: Registration) -> tuple[SettingSpec, ...]:
        return tuple(getattr(registration.factory, "settings", None) or registration.settings or ())

    @staticmethod
    def _mandatory(registration: Registration) -> bool:
        return bool(registration.meta.get("mandatory") or getattr(registration.factory, "mandatory", False))

    def _default_enabled(self, registration: Registration) -> bool:
        explicit = getattr(registration.factory, "enabled_by_default", None)
        if registration.plugin == BUILTIN_RULE_PLUGIN:
            return True if explicit is None else bool(explicit)
        return bool(explicit)

    def states(self, account: Account) -> list[RuleState]:
        """Every registered rule with its switch and settings for *account* (one query)."""
        configs = {c.rule: c for c in rows.select(RiskRuleConfig, "account_id = {p}", (account.id,))}
        return self._build_states(self._registrations(), configs)

    def _states_for_check(self, account: Account) -> list[RuleState]:
        """`states`, validated once per stored configuration: the check path reads only the raw
        config rows and reuses the states built from identical rows (rules must not change settings)
        while the rule registry is the same (a registry only grows; plugin changes replace it)."""
        registry = self.engine.plugins.risk_rules
        db = database.obj
        raw = db.execute_sql(_CONFIG_SQL.format(db.param), (account.id,)).fetchall()
        cached = self._evaluated.get(account.id)
        if cached is not None and cached[0] is registry and cached[1] == len(registry) and cached[2] == raw:
            return cached[3]
        registrations = list(registry)
        configs = {c.rule: c for c in rows.select(RiskRuleConfig, "account_id = {p}", (account.id,))}
        states = self._build_states(registrations, configs)
        self._evaluated[account.id] = (registry, len(registrations), raw, states)
        return states

    def _build_states(self, registrations: Any, configs: dict[str, RiskRuleConfig]) -> list[RuleState]:
        out = []
        for registration in registrations:
            config = configs.get(registration.name)
            specs = self._specs(registration)
            mandatory = self._mandatory(registration)
            enabled = True if mandatory else (config.enabled if config is not None else self._default_enabled(registration))
            stored = dict(config.settings or {}) if config is not None else {}
            try:
                settings = validate_settings(specs, stored, owner=f"risk rule {registration.name}")
            except Exception as exc:  # a stored value no longer valid: the rule fails closed at check time
                settings = {"__invalid__": str(exc)}
            out.append(RuleState(registration.name, registration.factory, registration.plugin, enabled, mandatory,
                                 settings, specs))
        return out

    # -- evaluation -------------------------------------------------------------------------

    def evaluate(self, context: RiskContext, *, skip_confirmation: bool = False) -> Assessment:
        """Run every enabled rule for *context* (inside the account lock), failing closed.

        Each rule's time runs from the end of the previous rule's check (one clock read per rule).
        """
        states = self._states_for_check(context.account)
        results: list[tuple[str, Decision]] = []
        request = context.request
        clock = time.monotonic
        started = clock()
        for state in states:
            if not state.enabled:
                continue
            name, settings = state.name, state.settings
            if "__invalid__" in settings:
                decision = Decision.block(f"rule {name} has invalid settings: {settings['__invalid__']}")
            else:
                try:
                    decision = state.rule.check(request, context, settings)
                except Exception as exc:
                    decision = self._failed(name, exc)
                    started = clock()
                else:
                    finished = clock()
                    elapsed, started = finished - started, finished
                    if elapsed > RULE_TIMEOUT:
                        decision = Decision.block(f"rule {name} timed out ({elapsed:.1f}s > {RULE_TIMEOUT}s)")
                    elif decision.__class__ is not Decision and not isinstance(decision, Decision):
                        decision = Decision.block(f"rule {name} returned {type(decision).__name__}, not a Decision")
            if skip_confirmation and decision.verdict is Verdict.CONFIRM:
                decision = Decision(Verdict.ALLOW, rule=name, reason=f"confirmed ({decision.reason})",
                                    metrics=decision.metrics)
            results.append((name, decision))
        return Assessment(results)

    @staticmethod
    def _failed(name: str, exc: Exception) -> Decision:
        """The block for a rule that raised: MissingData, or any other error (logged)."""
        if isinstance(exc, MissingData):
            return Decision.block(f"rule {name} cannot check the order: {exc}", error=str(exc))
        log.error("risk rule %s failed: %s", name, exc)
        first = (str(exc).splitlines() or [""])[0]
        return Decision.block(f"rule {name} failed: {type(exc).__name__}: {first}", error=first)

    def record(self, context: RiskContext, assessment: Assessment, order: Order | None, *, action: str,
               result: str) -> None:
        """Write a ``risk_log`` row for every block, confirmation and warning."""
        _, _, blocks, confirmations, warnings = assessment._groups()
        if not (blocks or confirmations or warnings):
            return
        rows = [("BLOCK", n, d) for n, d in blocks]
        rows += [("CONFIRM", n, d) for n, d in confirmations]
        rows += [("WARNING", n, d) for n, d in warnings]
        numbers = context.snapshot()
        for event_type, name, decision in rows:
            RiskLog.create(
                account=context.account.id, order=order.id if order is not None else None, rule=name,
                event_type=event_type, severity=decision.severity.value, message=decision.reason,
                action_taken=action if event_type != "WARNING" else "none", action_result=result,
                metrics=_json_metrics(decision.metrics), **numbers,
            )
