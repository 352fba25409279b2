"""What an exchange or wallet factory receives: `AdapterConfig`.

A plugin's factory is called as ``factory(config)`` when the Engine first
needs an adapter for an account (`Engine.exchange_for`, `Engine.wallet_for`).
The config carries the account name, the testnet flag, the API base URL, the
account's non-secret settings and ``config.secrets``: a read-only mapping of
*that account's* secrets only, decrypted on first access (never before), and
shown as ``<secrets of 'main': 2 fields>`` in any repr. The vault supplies
the decryption through a provider — a function ``provider() -> Mapping``; an
engine without a vault gives a provider that raises `VaultLocked` on access.

`validate_settings` checks user input against the `SettingSpec` list a plugin
declared (``account add``/``creds set`` use it).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from decimal import Decimal
from types import MappingProxyType
from typing import Any, Callable, Iterator, Mapping, Sequence

from tradeguard.errors import CredentialsError, ValidationError, VaultLocked
from tradeguard.money import to_decimal
from tradeguard.types import SettingSpec

#: Returns the secrets of one account (field -> plaintext). Called at most once, lazily.
SecretProvider = Callable[[], Mapping[str, str]]


class Secrets(Mapping[str, str]):
    """One account's secrets, fetched from the provider on first access.

    Values never appear in ``repr``/``str``; a missing field read with
    `require` raises CredentialsError naming the field (not the value).
    """

    __slots__ = ("_account", "_provider", "_values", "_lock")

    def __init__(self, account: str, provider: SecretProvider | Mapping[str, str] | None):
        self._account = account
        if provider is None:
            provider = _no_vault(account)
        elif isinstance(provider, Mapping):
            provider = _constant(provider)
        self._provider: SecretProvider = provider
        self._values: Mapping[str, str] | None = None
        self._lock = threading.Lock()

    def _load(self) -> Mapping[str, str]:
        with self._lock:
            if self._values is None:
                values = self._provider()
                if not isinstance(values, Mapping):
                    raise TypeError("a secret provider must return a Mapping")
                self._values = MappingProxyType(dict(values))
            return self._values

    def __getitem__(self, name: str) -> str:
        return self._load()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._load())

    def __len__(self) -> int:
        return len(self._load())

    def require(self, name: str) -> str:
        """The secret *name*; CredentialsError if the account has none (say how to set it)."""
        try:
            return self._load()[name]
        except KeyError:
            raise CredentialsError(
                f"account {self._account!r} has no secret {name!r}: set it with `tradeguard creds set {self._account} {name}`"
            ) from None

    @property
    def loaded(self) -> bool:
        """Whether the secrets were decrypted yet (they are only on first access)."""
        return self._values is not None

    def __repr__(self) -> str:
        count = f"{len(self._values)} fields" if self._values is not None else "not loaded"
        return f"<secrets of {self._account!r}: {count}>"

    __str__ = __repr__

    def __reduce__(self) -> Any:  # never pickle plaintext
        raise TypeError("secrets cannot be pickled")


def _constant(values: Mapping[str, str]) -> SecretProvider:
    frozen = dict(values)
    return lambda: frozen


def _no_vault(account: str) -> SecretProvider:
    def provider() -> Mapping[str, str]:
        raise VaultLocked(f"the secrets of account {account!r} are unavailable: the vault is locked (give the master key)")

    return provider


@dataclass(frozen=True, repr=False)
class AdapterConfig:
    """Everything an exchange or wallet factory gets for one account.

    :ivar account: the account name.
    :ivar venue: the registered name of the adapter (``paper``, ``binance`` …).
    :ivar kind: ``"exchange"`` or ``"wallet"``.
    :ivar testnet: True on a testnet/sandbox (the default for new accounts).
    :ivar api_base_url: an override of the venue's API URL, or None.
    :ivar settings: the account's non-secret settings, defaults filled in.
    :ivar secrets: the account's own secrets, decrypted lazily (`Secrets`).
    :ivar network: a wallet's network name (None for exchanges).
    :ivar address: a wallet's address (None for exchanges).
    """

    account: str
    venue: str
    kind: str = "exchange"
    testnet: bool = True
    api_base_url: str | None = None
    settings: Mapping[str, Any] = field(default_factory=dict)
    secrets: Secrets = None  # type: ignore[assignment]
    network: str | None = None
    address: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "settings", MappingProxyType(dict(self.settings)))
        if self.secrets is None:
            object.__setattr__(self, "secrets", Secrets(self.account, {}))
        elif not isinstance(self.secrets, Secrets):
            object.__setattr__(self, "secrets", Secrets(self.account, self.secrets))

    def __repr__(self) -> str:
        return (
            f"AdapterConfig(account={self.account!r}, venue={self.venue!r}, kind={self.kind!r}, "
            f"testnet={self.testnet!r}, api_base_url={self.api_base_url!r}, settings={dict(self.settings)!r}, "
            f"secrets={self.secrets!r})"
        )


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def coerce_setting(spec: SettingSpec, value: Any) -> Any:
    """*value* converted to ``spec.type`` (str, int, bool, Decimal, float as Decimal); ValidationError if it cannot be."""
    kind = spec.type
    try:
        if kind is bool:
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in _TRUE:
                return True
            if text in _FALSE:
                return False
            raise ValueError
        if kind is int:
            if isinstance(value, bool):
                raise ValueError
            if isinstance(value, int):
                return value
            return int(str(value).strip())
        if kind in (Decimal, float):
            return to_decimal(value, spec.name)
        if kind is str:
            if not isinstance(value, (str, int, Decimal)) or isinstance(value, bool):
                raise ValueError
            return str(value)
        return kind(value)
    except ValidationError:
        raise
    except (ValueError, TypeError, ArithmeticError):
        shown = "(hidden)" if spec.secret else repr(value)
        raise ValidationError(f"{spec.name}: expected {getattr(kind, '__name__', kind)}, got {shown}") from None


def validate_settings(
    specs: Sequence[SettingSpec],
    values: Mapping[str, Any],
    *,
    secret: bool = False,
    partial: bool = False,
    owner: str = "",
) -> dict[str, Any]:
    """Check *values* against a plugin's declared settings and return them coerced.

    :param secret: validate the secret settings (``creds set``) instead of the plain ones.
    :param partial: accept missing required settings (an update of some fields).
    :param owner: e.g. ``"exchange binance"``, for messages.
    Unknown names, a secret given as a plain setting (or the reverse) and a
    missing required setting are ValidationErrors; defaults fill the rest.
    """
    where = f" for {owner}" if owner else ""
    by_name = {spec.name: spec for spec in specs}
    result: dict[str, Any] = {}
    for name, value in values.items():
        spec = by_name.get(name)
        if spec is None:
            known = ", ".join(s.name for s in specs if s.secret == secret) or "none"
            raise ValidationError(f"unknown setting {name!r}{where} (known: {known})")
        if spec.secret != secret:
            if spec.secret:
                raise ValidationError(f"{name!r} is a secret{where}: set it with `tradeguard creds set`, never as a plain setting")
            raise ValidationError(f"{name!r} is not a secret{where}: set it as an account setting")
        result[name] = coerce_setting(spec, value)
    for spec in specs:
        if spec.secret != secret or spec.name in result:
            continue
        if spec.default is not None:
            if not partial:
                result[spec.name] = coerce_setting(spec, spec.default)
        elif spec.required and not partial:
            raise ValidationError(f"missing required setting {spec.name!r}{where}")
    return result


#: The wallet plugin used when an account's settings do not name one (``settings["wallet"]``).
DEFAULT_WALLET = "evm"


def build_adapter(engine: Any, kind: str, account_name: str) -> Any:
    """Build the exchange (``kind="exchange"``) or wallet adapter of *account_name*.

    The factory registered for the account's venue receives an `AdapterConfig`
    whose secrets are that account's, limited to the secret settings the plugin
    declared, and decrypted only when the adapter first reads one (through
    ``engine.vault.secrets_for(account, purpose="adapter")``, which audits each decryption).
    """
    account = engine.accounts.get(account_name)
    stored = dict(account.settings or {})
    if kind == "exchange":
        registration = engine.plugins.exchanges.get(account.exchange)
        network = address = None
    elif kind == "wallet":
        if not account.wallet_address and not account.wallet_network:
            raise ValidationError(f"account {account_name!r} has no wallet: add one with `tradeguard wallet add`")
        registration = engine.plugins.wallets.get(str(stored.get("wallet") or DEFAULT_WALLET))
        network, address = account.wallet_network, account.wallet_address
    else:
        raise ValueError(f"kind must be 'exchange' or 'wallet', not {kind!r}")
    owner = f"{kind} {registration.name}"
    plain_names = {spec.name for spec in registration.settings if not spec.secret}
    settings = validate_settings(registration.settings, {k: v for k, v in stored.items() if k in plain_names}, owner=owner)
    secret_names = frozenset(spec.name for spec in registration.settings if spec.secret)
    config = AdapterConfig(
        account=account.name,
        venue=registration.name,
        kind=kind,
        testnet=bool(account.testnet),
        api_base_url=account.api_base_url,
        settings=settings,
        secrets=Secrets(account.name, _vault_provider(engine, account.name, secret_names)),
        network=network,
        address=address,
    )
    return registration.factory(config)


def _vault_provider(engine: Any, account: str, names: frozenset[str]) -> SecretProvider | None:
    secrets_for = getattr(getattr(engine, "vault", None), "secrets_for", None)
    if secrets_for is None:
        return None
    if not names:
        return _constant({})

    def provider() -> Mapping[str, str]:
        # Decrypt (and audit) only the fields this plugin declared: a wallet key never
        # reaches an exchange adapter, and is not even decrypted for one.
        values = secrets_for(account, purpose="adapter", fields=sorted(names))
        return {name: value for name, value in values.items() if name in names}

    return provider
