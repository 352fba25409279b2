"""``engine.risk``: list, enable, disable and configure rules per account; read the risk log."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from tradeguard.adapters import validate_settings
from tradeguard.clock import utcnow
from tradeguard.errors import NotFound, ValidationError
from tradeguard.orders.locking import account_lock
from tradeguard.risk.engine import RiskEngine, RuleState, _jsonable
from tradeguard.service import in_engine_db
from tradeguard.storage.models import Account, RiskLog, RiskRuleConfig


def rule_dict(state: RuleState) -> dict[str, Any]:
    """JSON-ready view of a rule's configuration."""
    return {
        "rule": state.name,
        "plugin": state.plugin,
        "enabled": state.enabled,
        "mandatory": state.mandatory,
        "description": getattr(state.rule, "description", ""),
        "settings": {k: _jsonable(v) for k, v in state.settings.items()},
        "schema": [{"name": s.name, "type": getattr(s.type, "__name__", str(s.type)), "default": _jsonable(s.default),
                    "help": s.help} for s in state.specs],
    }


def log_dict(row: RiskLog, account_name: str) -> dict[str, Any]:
    return {
        "id": row.id, "account": account_name, "order": row.order_id, "rule": row.rule,
        "event_type": row.event_type, "severity": row.severity, "message": row.message,
        "current_position_size": row.current_position_size, "daily_loss": row.daily_loss,
        "available_balance": row.available_balance, "total_exposure": row.total_exposure,
        "action_taken": row.action_taken, "action_result": row.action_result, "metrics": row.metrics,
        "created_at": row.created_at.isoformat(),
    }


class Risk(RiskEngine):
    """The risk engine plus its per-account configuration API."""

    def _state(self, account: Account, rule: str) -> RuleState:
        for state in self.states(account):
            if state.name == rule:
                return state
        known = ", ".join(s.name for s in self.states(account))
        raise NotFound(f"unknown risk rule {rule!r} (known: {known})")

    @in_engine_db
    def rules(self, account: str | None = None) -> list[dict[str, Any]]:
        """Every rule with its settings and source plugin (for *account*, or the defaults)."""
        if account is None:
            row = Account(id=0, name="(defaults)")
            return [rule_dict(s) for s in self.states(row)]
        return [rule_dict(s) for s in self.states(self.engine.accounts.get(account))]

    @in_engine_db
    def enable(self, account: str, rule: str, *, actor: str = "cli") -> dict[str, Any]:
        """Turn *rule* on for *account* (audited)."""
        return self._switch(account, rule, True, actor)

    @in_engine_db
    def disable(self, account: str, rule: str, *, actor: str = "cli") -> dict[str, Any]:
        """Turn *rule* off for *account* (mandatory rules refuse; audited)."""
        return self._switch(account, rule, False, actor)

    def _switch(self, account_name: str, rule: str, enabled: bool, actor: str) -> dict[str, Any]:
        row = self.engine.accounts.get(account_name)
        state = self._state(row, rule)
        if state.mandatory and not enabled:
            raise ValidationError(f"risk rule {rule!r} is mandatory and cannot be disabled")
        with account_lock(self.engine.db, [row.id]) as tx:
            self._upsert(row, rule, enabled=enabled)
            tx.audit(actor, "risk.enable" if enabled else "risk.disable", f"account:{account_name}", {"rule": rule})
        return rule_dict(self._state(row, rule))

    @in_engine_db
    def set(self, account: str, rule: str, values: dict[str, Any], *, actor: str = "cli") -> dict[str, Any]:
        """Change *rule*'s settings for *account*, validated against the schema it declares (audited)."""
        row = self.engine.accounts.get(account)
        state = self._state(row, rule)
        if not values:
            raise ValidationError("nothing to set: give key=value pairs")
        parsed = validate_settings(state.specs, values, partial=True, owner=f"risk rule {rule}")
        validator = getattr(state.rule, "validate_settings", None)
        if validator is not None:
            validator({**state.settings, **parsed})
        with account_lock(self.engine.db, [row.id]) as tx:
            config = RiskRuleConfig.get_or_none((RiskRuleConfig.account == row.id) & (RiskRuleConfig.rule == rule))
            old = dict(config.settings or {}) if config is not None else {}
            new = {**old, **{k: _jsonable(v) for k, v in parsed.items()}}
            self._upsert(row, rule, settings=new, enabled=state.enabled)
            tx.audit(actor, "risk.set", f"account:{account}", {"rule": rule, "old": old, "new": new})
        return rule_dict(self._state(row, rule))

    @staticmethod
    def _upsert(account: Account, rule: str, *, enabled: bool, settings: dict[str, Any] | None = None) -> None:
        config = RiskRuleConfig.get_or_none((RiskRuleConfig.account == account.id) & (RiskRuleConfig.rule == rule))
        if config is None:
            RiskRuleConfig.create(account=account.id, rule=rule, enabled=enabled, settings=settings or {})
        else:
            config.enabled = enabled
            if settings is not None:
                config.settings = settings
            config.updated_at = utcnow()
            config.save()

    @in_engine_db
    def log(self, account: str | None = None, *, since: datetime | None = None, limit: int = 200) -> list[dict[str, Any]]:
        """Risk log rows, newest first."""
        query = RiskLog.select(RiskLog, Account.name).join(Account).order_by(RiskLog.id.desc()).limit(limit)
        if account is not None:
            query = query.where(RiskLog.account == self.engine.accounts.get(account, include_archived=True).id)
        if since is not None:
            query = query.where(RiskLog.created_at >= since)
        return [log_dict(row, row.account.name) for row in query]
