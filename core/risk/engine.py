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
_CONFIG_SQL = "SELECT rule, enabled, settings FROM risk_rule_config WHERE account_id = {0}"


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
    """Every rule's decision on one request, and the combined verdict."""

    results: list[tuple[str, Decision]] = field(default_factory=list)

    @property
    def blocks(self) -> list[tuple[str, Decision]]:
        return [(n, d) for n, d in self.results if d.verdict is Verdict.BLOCK]

    @property
    def confirmations(self) -> list[tuple[str, Decision]]:
        return [(n, d) for n, d in self.results if d.verdict is Verdict.CONFIRM]

    @property
    def warnings(self) -> list[tuple[str, Decision]]:
        return [(n, d) for n, d in self.results if d.verdict is Verdict.ALLOW and d.severity is Severity.WARNING]

    @property
    def verdict(self) -> Verdict:
        verdicts = {d.verdict for _, d in self.results}
        if Verdict.BLOCK in verdicts:
            return Verdict.BLOCK
        if Verdict.CONFIRM in verdicts:
            return Verdict.CONFIRM
        return Verdict.ALLOW

    def reason(self) -> str:
        """One line: the blocking (or confirming) rules and their reasons."""
        chosen = self.blocks or self.confirmations or self.warnings
        return "; ".join(f"{name}: {decision.reason}" for name, decision in chosen)

    def combined(self) -> Decision:
        """A single `Decision` for event hooks (every rule's verdict in its metrics)."""
        chosen = self.blocks or self.confirmations
        severity = max((d.severity for _, d in chosen), default=Severity.INFO,
                       key=[Severity.INFO, Severity.WARNING, Severity.CRITICAL].index)
        return Decision(self.verdict, rule=",".join(n for n, _ in chosen), reason=self.reason(), severity=severity,
                        metrics={"rules": self.details()["rules"]})

    def details(self) -> dict[str, Any]:
        """JSON-ready: stored on the order as its risk decision."""
        return {
            "verdict": self.verdict.value,
            "rules": [
                {"rule": name, "verdict": d.verdict.value, "severity": d.severity.value, "reason": d.reason,
                 "metrics": {k: _jsonable(v) for k, v in d.metrics.items()}}
                for name, d in self.results
            ],
        }

    def wants_emergency_stop(self) -> list[str]:
        """Rules that asked for an automatic emergency stop."""
        return [n for n, d in self.blocks if d.metrics.get("trigger_emergency_stop")]


def _jsonable(value: Any) -> Any:
    if isinstance(value, Decimal):
        return plain(value)
    return getattr(value, "value", value)


class RiskEngine:
    """Rule configuration per account and evaluation of requests (``engine.risk``)."""

    def __init__(self, engine: Any):
        self.engine = engine
        # account id -> (registrations, stored config rows, states): `evaluate` reuses the validated
        # settings while neither the registered rules nor the account's stored configuration changed
        self._evaluated: dict[int, tuple[tuple[Registration, ...], list[tuple], list[RuleState]]] = {}

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
        config rows and reuses the states built from identical rows (rules must not change settings)."""
        registrations = tuple(self._registrations())
        db = database.obj
        raw = db.execute_sql(_CONFIG_SQL.format(db.param), (account.id,)).fetchall()
        raw = sorted((rule, bool(enabled), settings) for rule, enabled, settings in raw)
        cached = self._evaluated.get(account.id)
        if cached is not None and cached[1] == raw and len(cached[0]) == len(registrations) \
                and all(a is b for a, b in zip(cached[0], registrations)):
            return cached[2]
        configs = {c.rule: c for c in rows.select(RiskRuleConfig, "account_id = {p}", (account.id,))}
        states = self._build_states(registrations, configs)
        self._evaluated[account.id] = (registrations, raw, states)
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
        """Run every enabled rule for *context* (inside the account lock)."""
        assessment = Assessment()
        for state in self._states_for_check(context.account):
            if not state.enabled:
                continue
            decision = self._run(state, context)
            if skip_confirmation and decision.verdict is Verdict.CONFIRM:
                decision = Decision(Verdict.ALLOW, rule=state.name, reason=f"confirmed ({decision.reason})",
                                    metrics=decision.metrics)
            assessment.results.append((state.name, decision))
        return assessment

    def _run(self, state: RuleState, context: RiskContext) -> Decision:
        if "__invalid__" in state.settings:
            return Decision.block(f"rule {state.name} has invalid settings: {state.settings['__invalid__']}")
        started = time.monotonic()
        try:
            decision = state.rule.check(context.request, context, state.settings)
        except MissingData as exc:
            return Decision.block(f"rule {state.name} cannot check the order: {exc}", error=str(exc))
        except Exception as exc:
            log.error("risk rule %s failed: %s", state.name, exc)
            first = (str(exc).splitlines() or [""])[0]
            return Decision.block(f"rule {state.name} failed: {type(exc).__name__}: {first}", error=first)
        elapsed = time.monotonic() - started
        if elapsed > RULE_TIMEOUT:
            return Decision.block(f"rule {state.name} timed out ({elapsed:.1f}s > {RULE_TIMEOUT}s)")
        if not isinstance(decision, Decision):
            return Decision.block(f"rule {state.name} returned {type(decision).__name__}, not a Decision")
        return decision

    def record(self, context: RiskContext, assessment: Assessment, order: Order | None, *, action: str,
               result: str) -> None:
        """Write a ``risk_log`` row for every block, confirmation and warning."""
        rows = [("BLOCK", n, d) for n, d in assessment.blocks]
        rows += [("CONFIRM", n, d) for n, d in assessment.confirmations]
        rows += [("WARNING", n, d) for n, d in assessment.warnings]
        if not rows:
            return
        numbers = context.snapshot()
        for event_type, name, decision in rows:
            RiskLog.create(
                account=context.account.id, order=order.id if order is not None else None, rule=name,
                event_type=event_type, severity=decision.severity.value, message=decision.reason,
                action_taken=action if event_type != "WARNING" else "none", action_result=result,
                metrics={k: _jsonable(v) for k, v in decision.metrics.items()}, **numbers,
            )
