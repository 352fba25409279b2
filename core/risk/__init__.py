"""The risk engine: rules from plugins, run inside the account lock, failing closed."""

from tradeguard.risk.context import MissingData, RiskContext
from tradeguard.risk.engine import Assessment, RiskEngine
from tradeguard.risk.service import Risk

__all__ = ["Assessment", "MissingData", "Risk", "RiskContext", "RiskEngine"]
