"""Wallets (``engine.wallets``): keys, balances, transfers and signatures of
accounts' on-chain wallets, with the same safety as orders.

* Keys are stored only through the vault (credential field
  ``wallet_private_key``); the address is kept in clear on the account.
  Every wallet belongs to exactly one account: there is no shared key.
* A transfer passes the trading state (a HALTED account or installation
  refuses it, `EmergencyStopActive`) and the ``wallet_transfer_limits`` risk
  rule inside the account's lock; the nonce is allocated there too (the
  larger of the node's pending count and one past the highest nonce of the
  wallet's transfer rows that are or may be on chain, so concurrent senders,
  restarts and refused transactions never reuse a nonce or leave a gap), the
  transaction is signed and written as a ``trade`` row
  (state ``signed``, with its hash and raw bytes) and committed *before* it
  is broadcast. After a crash, `settle` finds each unsettled transfer by its
  hash: mined ones are settled, pending ones waited for, and ones the node
  never saw are re-broadcast (the same signed bytes, so never twice).
* Every send, refusal, settlement, signature and key export is an audit entry.

Transfer rows: ``exchange_trade_id`` ``wallet:<uuid>``, ``side`` sell,
``symbol`` the asset, ``quantity`` the amount, ``price`` 0, ``fee`` the gas
cost in the native coin; ``settlement_status`` one of ``signed`` (recorded,
maybe not broadcast), ``pending``, ``confirmed``, ``reverted``, ``failed``
(refused by the node, never on chain) or ``dropped`` (the node forgot it and
its nonce was used by another transaction).
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from datetime import datetime, time as dtime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any, Iterable, Mapping

from tradeguard import audit
from tradeguard.adapters import DEFAULT_WALLET, validate_settings
from tradeguard.clock import utcnow
from tradeguard.errors import (
    EmergencyStopActive,
    RiskRejected,
    TradeguardError,
    ValidationError,
    VenueRejected,
    VenueUnavailable,
)
from tradeguard.money import plain, to_decimal
from tradeguard.orders.locking import account_lock, write_transaction
from tradeguard.service import Service, in_engine_db
from tradeguard.storage.models import (
    Account,
    BalanceSnapshot,
    CashFlow,
    RiskLog,
    RiskRuleConfig,
    Trade,
)
from tradeguard.types import Receipt, Side, TradingState, TransferRequest, Verdict
from tradeguard.plugins.evm.settings import KEY_FIELD
from tradeguard.vault import crash_point

log = logging.getLogger("tradeguard.wallets")

TRANSFER_PREFIX = "wallet:"
OPEN_STATES = ("signed", "pending")
COUNTED_STATES = ("signed", "pending", "confirmed")
FINAL_STATES = ("confirmed", "reverted", "failed", "dropped")
KEYSTORE_MAX_BYTES = 64 * 1024
MIN_KEYSTORE_PASSWORD = 8
LIGHT_SCRYPT_N = 4096  # geth --lightkdf


class TransferReverted(VenueRejected):
    """The transfer was mined but reverted (its gas is spent); ``receipt`` has the details."""

    def __init__(self, message: str, receipt: Receipt):
        super().__init__(message, code="reverted")
        self.receipt = receipt


def transfer_dict(row: Trade) -> dict[str, Any]:
    """A JSON-ready view of a transfer row (no raw transaction bytes)."""
    data = dict(row.audit_data or {})
    return {
        "id": row.id,
        "account": row.account.name,
        "tx_hash": row.tx_hash,
        "status": row.settlement_status,
        "asset": row.symbol,
        "amount": plain(row.quantity),
        "to": data.get("to"),
        "from": data.get("from"),
        "token": data.get("token"),
        "network": data.get("network"),
        "chain_id": data.get("chain_id"),
        "nonce": data.get("nonce"),
        "block_number": row.block_number,
        "gas_used": row.gas_used,
        "gas_price": plain(row.gas_price) if row.gas_price is not None else None,
        "fee": plain(row.fee),
        "fee_currency": row.fee_currency,
        "explorer_url": data.get("explorer_url"),
        "error": data.get("error"),
        "created_at": row.created_at.isoformat(),
        "settled_at": row.settled_at.isoformat() if row.settled_at else None,
    }


class Wallets(Service):
    """The Engine's wallet API (``engine.wallets``)."""

    # -- keys ------------------------------------------------------------------------------

    @in_engine_db
    def add(
        self,
        account: str,
        network: str,
        *,
        private_key: str | None = None,
        generate: bool = False,
        rpc_url: str | None = None,
        chain_id: int | str | None = None,
        native_symbol: str | None = None,
        plugin: str = DEFAULT_WALLET,
        actor: str = "cli",
    ) -> dict[str, Any]:
        """Give *account* a wallet on *network*: import *private_key* or ``generate`` one.

        The key goes into the vault (the vault must be unlocked), the checksummed
        address onto the account. Mainnet networks need an account marked mainnet.
        Returns ``{account, address, network, chain_id, generated}`` (never the key).
        """
        from tradeguard.plugins.evm.networks import check_rpc_url, check_symbol, resolve_network
        from tradeguard.plugins.evm.wallet import address_of, new_private_key, normalise_key

        if generate == (private_key is not None):
            raise ValidationError("give exactly one of a private key or --generate")
        registration = self.engine.plugins.wallets.get(plugin)
        acct = self.engine.accounts.get(account)
        if acct.wallet_address:
            raise ValidationError(
                f"account {account!r} already has wallet {acct.wallet_address} on {acct.wallet_network}: "
                "a wallet's key is never replaced; use another account")
        extra: dict[str, Any] = {}
        if rpc_url:
            extra["rpc_url"] = check_rpc_url(rpc_url)
        if chain_id is not None:
            extra["chain_id"] = chain_id
        if native_symbol:
            extra["native_symbol"] = check_symbol(native_symbol)
        if str(network).lower() != "custom" and ("chain_id" in extra or "native_symbol" in extra):
            raise ValidationError("--chain-id and --native-symbol are for --network custom only")
        net = resolve_network(network, extra)
        if net.name == "custom":
            extra["chain_id"] = net.chain_id
            extra["native_symbol"] = net.symbol
        if not net.testnet and acct.testnet:
            raise ValidationError(
                f"network {net.name} is a mainnet and account {account!r} is testnet-only: "
                f"mark it first with `tradeguard account set {account} --mainnet`")
        if generate:
            key, address = new_private_key()
        else:
            address = address_of(private_key or "")
            key = normalise_key(private_key or "")
        owner = Account.get_or_none((Account.wallet_address == address) & (Account.id != acct.id))
        if owner is not None:
            raise ValidationError(f"address {address} is already the wallet of account {owner.name!r}: "
                                  "every wallet belongs to one account")
        settings = dict(acct.settings or {})
        settings.update(extra)
        if plugin != DEFAULT_WALLET or "wallet" in settings:
            settings["wallet"] = plugin
        plain_names = {s.name for s in registration.settings if not s.secret}
        validate_settings(registration.settings, {k: v for k, v in settings.items() if k in plain_names},
                          owner=f"wallet {plugin}")
        with write_transaction(self.engine.db):
            self.engine.vault.set_credentials(acct.name, {KEY_FIELD: key}, actor=actor)
            Account.update(wallet_address=address, wallet_network=net.name, settings=settings,
                           updated_at=utcnow()).where(Account.id == acct.id).execute()
            audit.append(actor, "wallet.add", f"account:{acct.name}", {
                "address": address, "network": net.name, "chain_id": net.chain_id,
                "source": "generated" if generate else "imported", "plugin": plugin})
        del key
        self.engine.drop_adapters(acct.name)
        return {"account": acct.name, "address": address, "network": net.name, "chain_id": net.chain_id,
                "generated": generate}

    @in_engine_db
    def show(self, account: str) -> dict[str, Any]:
        """The wallet of *account*: address, network, chain id, RPC host, signing flag, open transfers."""
        from tradeguard.plugins.evm.networks import redact_rpc_url, resolve_network, rpc_env_var

        acct = self._wallet_account(account)
        settings = dict(acct.settings or {})
        net = resolve_network(acct.wallet_network, settings)
        rpc = settings.get("rpc_url") or os.environ.get(rpc_env_var(net.name))
        open_count = self._transfers_query(acct).where(Trade.settlement_status.in_(OPEN_STATES)).count()
        return {"account": acct.name, "address": acct.wallet_address, "network": net.name, "chain_id": net.chain_id,
                "native_symbol": net.symbol, "testnet": net.testnet, "explorer": net.explorer,
                "rpc": redact_rpc_url(rpc) if rpc else None,
                "rpc_source": "account" if settings.get("rpc_url") else (rpc_env_var(net.name) if rpc else None),
                "allow_signing": bool(settings.get("allow_signing", False)),
                "plugin": settings.get("wallet") or DEFAULT_WALLET, "open_transfers": open_count,
                "limits": self.limits(acct.name)}

    @in_engine_db
    def set(self, account: str, *, actor: str = "cli", tokens: Mapping[str, str] | None = None,
            **changes: Any) -> dict[str, Any]:
        """Change wallet settings (``rpc_url``, ``allow_signing``, ``receipt_timeout``, ``rpc_timeout``)
        or add token symbols (*tokens*: SYMBOL -> address). Audited (RPC URLs redacted)."""
        from tradeguard.plugins.evm.networks import check_rpc_url, redact_rpc_url
        from tradeguard.plugins.evm.wallet import parse_token_map

        acct = self._wallet_account(account)
        registration = self._registration(acct)
        allowed = {"rpc_url", "allow_signing", "receipt_timeout", "rpc_timeout"}
        unknown = set(changes) - allowed
        if unknown:
            raise ValidationError(f"cannot set {', '.join(sorted(unknown))} on a wallet (known: {', '.join(sorted(allowed))})")
        values = {k: v for k, v in changes.items() if v is not None}
        if "rpc_url" in values:
            values["rpc_url"] = None if str(values["rpc_url"]).strip() in ("", "default") else check_rpc_url(values["rpc_url"])
        settings = dict(acct.settings or {})
        if tokens:
            merged = {**parse_token_map(settings.get("tokens")), **parse_token_map(tokens)}
            values["tokens"] = ",".join(f"{k}={v}" for k, v in sorted(merged.items()))
        if not values:
            raise ValidationError("nothing to change: give at least one option")
        checked = validate_settings(registration.settings, {k: v for k, v in values.items() if v is not None},
                                    partial=True, owner=f"wallet {registration.name}")

        def shown(key: str, value: Any) -> Any:
            return redact_rpc_url(value) if key == "rpc_url" and value else value

        old = {k: shown(k, settings.get(k)) for k in values}
        for key in values:
            if values[key] is None:
                settings.pop(key, None)
            else:
                settings[key] = checked[key]
        with write_transaction(self.engine.db):
            Account.update(settings=settings, updated_at=utcnow()).where(Account.id == acct.id).execute()
            audit.append(actor, "wallet.set", f"account:{acct.name}",
                         {"old": old, "new": {k: shown(k, settings.get(k)) for k in values}})
        self.engine.drop_adapters(acct.name)
        return self.show(acct.name)

    @in_engine_db
    def export_keystore(self, account: str, path: str | os.PathLike[str], password: str, *,
                        overwrite: bool = False, light_kdf: bool = False, actor: str = "cli") -> dict[str, Any]:
        """Write the account's key as a Web3 Secret Storage (v3) keystore file, mode 0600.

        The key is decrypted from the vault (an audited decryption) and
        encrypted under *password* with scrypt (n=262144, geth's standard;
        ``light_kdf``: n=4096 like geth's ``--lightkdf``, for slow devices).
        """
        from eth_account import Account as EthAccount

        acct = self._wallet_account(account)
        if not isinstance(password, str) or len(password) < MIN_KEYSTORE_PASSWORD:
            raise ValidationError(f"keystore password: at least {MIN_KEYSTORE_PASSWORD} characters")
        target = Path(path).expanduser()
        if target.exists() and not overwrite:
            raise ValidationError(f"{target} exists: choose another path (or --force)")
        if not target.parent.is_dir():
            raise ValidationError(f"directory {target.parent} does not exist")
        with account_lock(self.engine.db, [acct.id]):  # the decryption is audited
            secrets = self.engine.vault.secrets_for(acct.name, purpose="wallet:export-keystore", actor=actor,
                                                    fields=[KEY_FIELD])
        key = secrets.get(KEY_FIELD)
        if not key:
            raise ValidationError(f"account {acct.name!r} has no stored wallet key")
        keystore = EthAccount.encrypt(key, password, kdf="scrypt", iterations=LIGHT_SCRYPT_N if light_kdf else None)
        del key, secrets
        if str(keystore.get("address", "")).lower() != acct.wallet_address[2:].lower():
            raise TradeguardError("the stored key does not match the wallet address; nothing was written")
        data = json.dumps(keystore, indent=2).encode("utf-8")
        tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(tmp, 0o600)
            os.replace(tmp, target)
        except BaseException:
            if tmp.exists():
                tmp.unlink()
            raise
        with write_transaction(self.engine.db):
            audit.append(actor, "wallet.export_keystore", f"account:{acct.name}",
                         {"address": acct.wallet_address, "path": str(target)})
        return {"account": acct.name, "address": acct.wallet_address, "path": str(target)}

    @in_engine_db
    def import_keystore(self, account: str, path: str | os.PathLike[str], password: str, network: str, *,
                        actor: str = "cli", **options: Any) -> dict[str, Any]:
        """Give *account* the wallet stored in a Web3 Secret Storage keystore file (see `add`)."""
        from eth_account import Account as EthAccount

        source = Path(path).expanduser()
        try:
            if source.stat().st_size > KEYSTORE_MAX_BYTES:
                raise ValidationError(f"{source} is too large for a keystore file")
            keystore = json.loads(source.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ValidationError(f"no keystore file at {source}") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValidationError(f"{source} is not a JSON keystore file ({type(exc).__name__})") from None
        if not isinstance(keystore, dict) or not ({"crypto", "Crypto"} & set(keystore)):
            raise ValidationError(f"{source} is not a Web3 Secret Storage keystore (no crypto section)")
        try:
            key = EthAccount.decrypt(keystore, password)
        except ValueError:
            raise ValidationError("the keystore did not decrypt: wrong password or a damaged file") from None
        except Exception as exc:
            raise ValidationError(f"unsupported keystore file ({type(exc).__name__})") from None
        result = self.add(account, network, private_key=key.hex(), actor=actor, **options)
        del key
        stated = str(keystore.get("address") or "").lower().removeprefix("0x")
        if stated and stated != result["address"][2:].lower():
            log.warning("keystore %s states address 0x%s but its key is %s", source, stated, result["address"])
        with write_transaction(self.engine.db):
            audit.append(actor, "wallet.import_keystore", f"account:{result['account']}",
                         {"address": result["address"], "path": str(source)})
        return result

    # -- limits ----------------------------------------------------------------------------

    @in_engine_db
    def limits(self, account: str) -> dict[str, Any]:
        """The transfer rule's state for *account*: enabled, daily limits, allow-list."""
        from tradeguard.plugins.evm.rules import RULE_NAME, parse_daily_limits, parse_destinations

        acct = self.engine.accounts.get(account)
        enabled, settings = self._rule_config(acct)
        return {"rule": RULE_NAME, "enabled": enabled,
                "daily_limits": {k: plain(v) for k, v in parse_daily_limits(settings.get("daily_limits")).items()},
                "allowed_destinations": parse_destinations(settings.get("allowed_destinations"))}

    @in_engine_db
    def set_limits(self, account: str, *, daily: Mapping[str, Any] | None = None, allow: Iterable[str] = (),
                   disallow: Iterable[str] = (), clear_allow: bool = False, actor: str = "cli") -> dict[str, Any]:
        """Set daily limits (``{ASSET: amount}``; an empty amount removes one) and edit the allow-list."""
        from tradeguard.plugins.evm.rules import RULE_NAME, parse_daily_limits, parse_destinations

        acct = self.engine.accounts.get(account)
        enabled, settings = self._rule_config(acct)
        limits = parse_daily_limits(settings.get("daily_limits"))
        for asset, amount in (daily or {}).items():
            if amount in (None, "", "none"):
                limits.pop(str(asset).upper(), None)
            else:
                limits.update(parse_daily_limits({asset: amount}))
        allowed = [] if clear_allow else parse_destinations(settings.get("allowed_destinations"))
        for address in parse_destinations(list(allow)):
            if address not in allowed:
                allowed.append(address)
        removed = set(parse_destinations(list(disallow)))
        allowed = [a for a in allowed if a not in removed]
        new = {"daily_limits": ",".join(f"{k}={plain(v)}" for k, v in sorted(limits.items())),
               "allowed_destinations": ",".join(allowed)}
        with write_transaction(self.engine.db):
            RiskRuleConfig.insert(account=acct.id, rule=RULE_NAME, enabled=enabled, settings=new,
                                  updated_at=utcnow()).on_conflict(
                conflict_target=[RiskRuleConfig.account, RiskRuleConfig.rule],
                update={RiskRuleConfig.settings: new, RiskRuleConfig.updated_at: utcnow()}).execute()
            audit.append(actor, "wallet.limits", f"account:{acct.name}", {"old": dict(settings), "new": new})
        return self.limits(acct.name)

    # -- balances ----------------------------------------------------------------------------

    @in_engine_db
    def balance(self, account: str, asset: str | None = None, *, record: bool = True) -> dict[str, Any]:
        """The wallet's balance of *asset* (native coin by default), recorded as a balance snapshot."""
        acct = self._wallet_account(account)
        wallet = self.engine.wallet_for(acct.name)
        resolved = wallet.resolve_asset(asset)
        amount = wallet.balance_of(resolved)
        if record:
            with write_transaction(self.engine.db):
                BalanceSnapshot.create(account=acct.id, asset=resolved.symbol[:16], free=amount, used=Decimal(0),
                                       total=amount, source="chain")
                Account.update(last_balance_sync=utcnow()).where(Account.id == acct.id).execute()
        return {"account": acct.name, "address": wallet.address, "network": wallet.network, "asset": resolved.symbol,
                "token": resolved.token, "decimals": resolved.decimals, "balance": amount}

    # -- transfers ---------------------------------------------------------------------------

    @in_engine_db
    def send(self, account: str, to: str, amount: Any, asset: str | None = None, *, actor: str = "cli",
             wait: bool = True, timeout: float | None = None) -> dict[str, Any]:
        """Send *amount* of *asset* (native coin by default) to *to*.

        Order of events: trading state, validation and balance (incl. gas) check,
        then under the account lock the risk rule, nonce, signature and the
        ``signed`` trade row, committed; then broadcast and (``wait``) the receipt.

        Returns the transfer (see `transfer_dict`); its ``status`` is ``pending``
        if no receipt came within *timeout*. Raises EmergencyStopActive or
        RiskRejected (exit 3, nothing signed), ValidationError, VenueRejected
        (nothing on chain), TransferReverted (mined, reverted) or
        VenueUnavailable (outcome unknown: `settle` will tell).
        """
        for attempt in range(2):
            try:
                return self._send_once(account, to, amount, asset, actor=actor, wait=wait, timeout=timeout)
            except VenueRejected as exc:
                if exc.code != "nonce_too_low" or attempt:
                    raise
                log.warning("nonce too low for %s (the address was used elsewhere): retrying with a fresh nonce", account)
        raise AssertionError("unreachable")

    @in_engine_db
    def _send_once(self, account: str, to: str, amount: Any, asset: str | None, *, actor: str, wait: bool,
                   timeout: float | None) -> dict[str, Any]:
        acct = self._wallet_account(account)
        request = TransferRequest(acct.name, str(to or "").strip(), to_decimal(amount, "amount"), str(asset or ""))
        try:
            self._check_state(acct)
        except EmergencyStopActive as exc:
            with write_transaction(self.engine.db):
                audit.append(actor, "wallet.send_refused", f"account:{acct.name}",
                             {"to": request.to, "amount": request.amount, "asset": request.asset, "reason": str(exc)})
            raise
        self._settle_stale(acct, actor)
        wallet = self.engine.wallet_for(acct.name)
        with account_lock(self.engine.db, [acct.id]):  # the vault audits the decryption and touches the account
            wallet.unlock()  # decrypt the key now, before the transfer's own lock
        prepared = wallet.prepare_transfer(request)
        chain_nonce = wallet.pending_nonce()
        blocked: Exception | None = None
        with account_lock(self.engine.db, [acct.id]) as tx:
            acct = Account.get_by_id(acct.id)
            subject = f"account:{acct.name}"
            try:
                self._check_state(acct)
                if acct.testnet and not wallet.testnet:  # the account was switched back to testnet-only
                    self.engine.drop_adapters(acct.name)
                    raise ValidationError(f"account {acct.name!r} is testnet-only and its wallet is on {wallet.network}, a mainnet")
                decision = self._risk_decision(acct, request, prepared, wallet)
            except EmergencyStopActive as exc:  # halted while the transfer was being prepared
                tx.audit(actor, "wallet.send_refused", subject, {**prepared.summary(), "reason": str(exc)})
                blocked, decision = exc, None
            if decision is not None and decision.verdict is not Verdict.ALLOW:
                blocked = self._refuse(acct, decision, prepared, tx, actor)
            elif decision is not None:
                if decision.severity.value == "WARNING":
                    RiskLog.create(account=acct.id, rule=decision.rule, event_type="WARNING", severity="WARNING",
                                   message=decision.reason, action_taken="transfer_allowed",
                                   metrics=_jsonable(decision.metrics))
                nonce = self._next_nonce(acct, wallet, chain_nonce)
                signed = wallet.sign_transfer(prepared, nonce)
                row = self._record(acct, wallet, prepared, signed, actor)
                tx.audit(actor, "wallet.send", subject, {**prepared.summary(), "tx_hash": signed.tx_hash,
                                                         "nonce": nonce, "network": wallet.network, "trade_id": row.id})
        if blocked is not None:
            raise blocked
        crash_point("wallet.before_broadcast")  # test hook: a crash after the record, before the send
        try:
            wallet.broadcast(signed)
        except VenueRejected as exc:
            self._set_status(row.id, "failed", only_if=OPEN_STATES, error=str(exc), actor=actor)
            raise
        except VenueUnavailable as exc:
            raise VenueUnavailable(
                f"{exc}; the transfer is recorded as {signed.tx_hash}: `tradeguard wallet settle {acct.name}` "
                "finds it or sends it again") from None
        self._set_status(row.id, "pending", only_if=("signed",))
        if wait:
            receipt = wallet.wait_for_receipt(signed.tx_hash, timeout)
            if receipt is not None:
                self._settle_row(row.id, receipt, wallet, actor)
        result = transfer_dict(Trade.get_by_id(row.id))
        if result["status"] == "reverted":
            raise TransferReverted(f"transaction {signed.tx_hash} was mined in block {result['block_number']} but "
                                   f"reverted (gas spent: {result['fee']} {result['fee_currency']})",
                                   wallet.receipt(signed.tx_hash) or Receipt(signed.tx_hash, "reverted"))
        return result

    @staticmethod
    def _refuse(acct: Account, decision: Any, prepared: Any, tx: Any, actor: str) -> RiskRejected:
        """Log and audit a transfer the rule blocked; return the error to raise after the commit."""
        RiskLog.create(account=acct.id, rule=decision.rule, event_type="BLOCK", severity=decision.severity.value,
                       message=decision.reason, action_taken="transfer_refused", metrics=_jsonable(decision.metrics))
        tx.audit(actor, "wallet.send_refused", f"account:{acct.name}",
                 {**prepared.summary(), "rule": decision.rule, "reason": decision.reason})
        return RiskRejected(f"transfer refused by {decision.rule}: {decision.reason}")

    @staticmethod
    def _record(acct: Account, wallet: Any, prepared: Any, signed: Any, actor: str) -> Trade:
        """The ``signed`` transfer row: everything needed to find, re-send and settle it later."""
        now = utcnow()
        return Trade.create(
            account=acct.id, exchange_trade_id=f"{TRANSFER_PREFIX}{uuid.uuid4().hex}", exchange_timestamp=now,
            symbol=prepared.asset.symbol, side=Side.SELL, price=Decimal(0), quantity=prepared.amount,
            fee=Decimal(0), fee_currency=prepared.native_symbol, tx_hash=signed.tx_hash,
            settlement_status="signed", created_at=now,
            audit_data={"kind": "transfer", "plugin": wallet.name, "network": wallet.network,
                        "chain_id": wallet.chain_id, "from": wallet.address, "to": prepared.to,
                        "token": prepared.asset.token, "decimals": prepared.asset.decimals,
                        "units": str(prepared.units), "nonce": signed.nonce, "raw": signed.raw,
                        "explorer_url": wallet.explorer_url(signed.tx_hash), "actor": actor},
        )

    @in_engine_db
    def settle(self, account: str | None = None, *, timeout: float = 0, actor: str = "cli") -> list[dict[str, Any]]:
        """Settle unsettled transfers (of *account*, or of every account): after a crash or a timeout.

        Each ``signed``/``pending`` row is looked up by its hash: a receipt
        settles it (once); a transaction the node knows stays pending (waited for
        up to *timeout* seconds); one the node does not know is re-broadcast if
        its nonce is still free, else marked ``dropped``. Returns the rows looked at;
        without *account*, a row that could not be checked carries ``settle_error``.
        """
        query = Trade.select().join(Account).where(
            Trade.exchange_trade_id.startswith(TRANSFER_PREFIX) & Trade.settlement_status.in_(OPEN_STATES))
        if account is not None:
            query = query.where(Account.id == self._wallet_account(account).id)
        results = []
        for row in list(query.order_by(Trade.id)):
            try:
                self._settle_one(row, self.engine.wallet_for(row.account.name), timeout, actor)
            except TradeguardError as exc:
                if account is not None:
                    raise
                # settling everything: one account's unreachable node does not stop the others
                log.warning("settling %s of %s failed: %s", row.tx_hash, row.account.name, exc)
                results.append({**transfer_dict(Trade.get_by_id(row.id)), "settle_error": str(exc)})
                continue
            results.append(transfer_dict(Trade.get_by_id(row.id)))
        return results

    def _settle_one(self, row: Trade, wallet: Any, timeout: float, actor: str) -> None:
        from tradeguard.plugins.evm.wallet import SignedTransfer

        data = dict(row.audit_data or {})
        found = wallet.find_transaction(row.tx_hash)
        if found.receipt is None and not found.known:
            nonce = int(data.get("nonce", -1))
            if nonce >= wallet.latest_nonce() and data.get("raw"):
                try:
                    self._check_state(Account.get_by_id(row.account_id))
                except EmergencyStopActive:
                    log.warning("transfer %s is not on chain and %s is HALTED: not sent again until resumed",
                                row.tx_hash, row.account.name)
                    return
                try:
                    wallet.broadcast(SignedTransfer(row.tx_hash, nonce, data["raw"]))
                except VenueRejected as exc:
                    status = "dropped" if exc.code == "nonce_too_low" else "failed"
                    self._set_status(row.id, status, only_if=OPEN_STATES, error=str(exc), actor=actor)
                    return
                with write_transaction(self.engine.db):
                    audit.append(actor, "wallet.rebroadcast", f"account:{row.account.name}",
                                 {"tx_hash": row.tx_hash, "nonce": nonce})
                self._set_status(row.id, "pending", only_if=("signed",))
            else:
                self._set_status(row.id, "dropped", only_if=OPEN_STATES,
                                 error="the node does not know this transaction and its nonce was used", actor=actor)
                return
        elif row.settlement_status == "signed":
            self._set_status(row.id, "pending", only_if=("signed",))
        receipt = found.receipt or (wallet.wait_for_receipt(row.tx_hash, timeout) if timeout else wallet.receipt(row.tx_hash))
        if receipt is not None:
            self._settle_row(row.id, receipt, wallet, actor)

    @in_engine_db
    def transfers(self, account: str, *, limit: int = 50) -> list[dict[str, Any]]:
        """The account's transfers, newest first."""
        acct = self.engine.accounts.get(account, include_archived=True)
        return [transfer_dict(r) for r in self._transfers_query(acct).order_by(Trade.id.desc()).limit(limit)]

    # -- signing -----------------------------------------------------------------------------

    @in_engine_db
    def sign_message(self, account: str, message: bytes | str, *, actor: str = "cli") -> dict[str, Any]:
        """EIP-191 signature of *message* (needs ``allow_signing``; refused while HALTED). Audited."""
        from eth_account.messages import encode_defunct

        signable = encode_defunct(primitive=message) if isinstance(message, bytes) else encode_defunct(text=str(message))
        digest = _digest(signable)
        return self._sign(account, "eip191", digest, lambda wallet: wallet.sign_message(message), actor)

    @in_engine_db
    def sign_typed_data(self, account: str, data: Mapping[str, Any], *, actor: str = "cli") -> dict[str, Any]:
        """EIP-712 signature of *data* (needs ``allow_signing``; refused while HALTED). Audited."""
        from eth_account.messages import encode_typed_data

        try:
            digest = _digest(encode_typed_data(full_message=dict(data)))
        except Exception as exc:
            raise ValidationError(f"typed data: {(str(exc).splitlines() or [''])[0]}") from None
        return self._sign(account, "eip712", digest, lambda wallet: wallet.sign_typed_data(data), actor,
                          {"domain": _jsonable(dict(data.get("domain") or {})), "primary_type": data.get("primaryType")})

    def _sign(self, account: str, kind: str, digest: str, sign: Any, actor: str,
              extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
        acct = self._wallet_account(account)
        subject = f"account:{acct.name}"
        payload = {"kind": kind, "digest": digest, "address": acct.wallet_address, **(extra or {})}
        try:
            self._check_state(acct)
            wallet = self.engine.wallet_for(acct.name)
            if getattr(wallet, "allow_signing", True):
                with account_lock(self.engine.db, [acct.id]):  # the key's decryption is audited
                    wallet.unlock()
            signature = sign(wallet)
        except (ValidationError, EmergencyStopActive) as exc:
            with write_transaction(self.engine.db):
                audit.append(actor, "wallet.sign_refused", subject, {**payload, "reason": str(exc)})
            raise
        with write_transaction(self.engine.db):
            audit.append(actor, "wallet.sign", subject, {**payload, "signature": signature})
        return {"account": acct.name, "address": acct.wallet_address, "kind": kind, "digest": digest,
                "signature": signature}

    # -- internals ---------------------------------------------------------------------------

    def _wallet_account(self, account: str) -> Account:
        acct = self.engine.accounts.get(account)
        if not acct.wallet_address:
            raise ValidationError(f"account {account!r} has no wallet: add one with `tradeguard wallet add {account} --network N`")
        return acct

    def _registration(self, acct: Account) -> Any:
        return self.engine.plugins.wallets.get(str((acct.settings or {}).get("wallet") or DEFAULT_WALLET))

    def _transfers_query(self, acct: Account) -> Any:
        return Trade.select().where((Trade.account == acct.id) & Trade.exchange_trade_id.startswith(TRANSFER_PREFIX))

    def _installation_state(self) -> TradingState:
        trading = getattr(self.engine, "trading", None)
        if trading is not None:
            return trading.installation_state()
        value = self.engine.get_setting("trading_state", {"state": "ACTIVE"})
        try:
            return TradingState((value or {}).get("state", "ACTIVE") if isinstance(value, dict) else value)
        except ValueError:
            return TradingState.HALTED  # an unreadable state fails closed

    def _check_state(self, acct: Account) -> None:
        """HALTED (account or installation) refuses transfers and signatures; REDUCING does not
        (moving funds adds no market exposure)."""
        if acct.trading_state is TradingState.HALTED:
            raise EmergencyStopActive(f"account {acct.name!r} is HALTED: no transfer or signature until `tradeguard resume {acct.name}`")
        if self._installation_state() is TradingState.HALTED:
            raise EmergencyStopActive("the installation is HALTED: no transfer or signature until `tradeguard resume`")

    def _rule_config(self, acct: Account) -> tuple[bool, dict[str, Any]]:
        from tradeguard.plugins.evm.rules import RULE_NAME

        row = RiskRuleConfig.get_or_none((RiskRuleConfig.account == acct.id) & (RiskRuleConfig.rule == RULE_NAME))
        if row is None:
            return True, {}
        return bool(row.enabled), dict(row.settings or {})

    def _risk_decision(self, acct: Account, request: TransferRequest, prepared: Any, wallet: Any) -> Any:
        """The transfer rule's decision (fails closed: a missing or failing rule blocks)."""
        from tradeguard.plugins.evm.rules import RULE_NAME, TransferContext
        from tradeguard.types import Decision, Severity

        _, settings = self._rule_config(acct)  # the rule is mandatory: always runs
        if RULE_NAME not in self.engine.plugins.risk_rules:
            return Decision(Verdict.BLOCK, rule=RULE_NAME, reason="the transfer rule is not loaded", severity=Severity.CRITICAL)
        rule = self.engine.plugins.risk_rules.get(RULE_NAME).factory
        start = datetime.combine(utcnow().date(), dtime(0), tzinfo=timezone.utc)
        sent = [r.quantity for r in self._transfers_query(acct).where(
            (Trade.symbol == prepared.asset.symbol) & Trade.settlement_status.in_(COUNTED_STATES)
            & (Trade.created_at >= start))]
        context = TransferContext(prepared.asset.symbol, prepared.to, sum(sent, Decimal(0)), not wallet.testnet)
        try:
            decision = rule.check(TransferRequest(request.account, prepared.to, prepared.amount, prepared.asset.symbol),
                                  context, settings)
        except Exception as exc:
            return Decision(Verdict.BLOCK, rule=RULE_NAME, reason=f"rule failed ({type(exc).__name__}: {exc}); blocked",
                            severity=Severity.CRITICAL)
        return Decision(decision.verdict, rule=RULE_NAME, reason=decision.reason, severity=decision.severity,
                        metrics=decision.metrics)

    #: A ``signed`` transfer older than this (seconds) was left by a crash: `send` settles it first.
    stale_after = 2.0

    def _settle_stale(self, acct: Account, actor: str) -> None:
        """Send again what a crashed process recorded but never broadcast, so its nonce leaves no gap."""
        cutoff = utcnow().timestamp() - self.stale_after
        stale = [r for r in self._transfers_query(acct).where(Trade.settlement_status == "signed")
                 if r.created_at.timestamp() <= cutoff]
        for row in stale:
            self._settle_one(row, self.engine.wallet_for(acct.name), 0, actor)

    def _next_nonce(self, acct: Account, wallet: Any, chain_nonce: int) -> int:
        """The node's pending count, or one past the highest nonce of this wallet's transfers that
        are or may be on chain (signed, pending, confirmed, reverted), whichever is larger.

        Read inside the account lock: a concurrent sender's row is seen as soon as it
        commits, a restart sees every row, and failed or dropped rows free their nonce.
        """
        rows = (self._transfers_query(acct).where(Trade.settlement_status.in_(("signed", "pending", "confirmed", "reverted")))
                .order_by(Trade.id.desc()).limit(256))
        used = [int(data["nonce"]) for data in (r.audit_data or {} for r in rows)
                if data.get("from") == wallet.address and data.get("chain_id") == wallet.chain_id
                and data.get("nonce") is not None]
        return max([chain_nonce, *(n + 1 for n in used)])

    def _set_status(self, row_id: int, status: str, *, only_if: Iterable[str], error: str | None = None,
                    actor: str = "engine") -> None:
        with write_transaction(self.engine.db):
            row = Trade.get_by_id(row_id)
            if row.settlement_status not in tuple(only_if):
                return
            data = dict(row.audit_data or {})
            if error:
                data["error"] = error
            Trade.update(settlement_status=status, audit_data=data,
                         settled_at=utcnow() if status in FINAL_STATES else None).where(Trade.id == row_id).execute()
            if status in FINAL_STATES:
                audit.append(actor, f"wallet.{status}", f"account:{row.account.name}",
                             {"tx_hash": row.tx_hash, "error": error})

    def _settle_row(self, row_id: int, receipt: Receipt, wallet: Any, actor: str) -> None:
        """Record *receipt* on the transfer row, once (a second call changes nothing)."""
        with write_transaction(self.engine.db):
            row = Trade.get_by_id(row_id)
            if row.settlement_status not in OPEN_STATES:
                return
            fee = wallet.gas_cost(receipt)
            now = utcnow()
            Trade.update(settlement_status=receipt.status, block_number=receipt.block_number, gas_used=receipt.gas_used,
                         gas_price=Decimal(receipt.gas_price) if receipt.gas_price is not None else None,
                         fee=fee, settled_at=now).where(Trade.id == row_id).execute()
            if receipt.status == "confirmed":
                CashFlow.insert(account=row.account_id, kind="TRANSFER_OUT", asset=row.symbol[:16], amount=row.quantity,
                                external_id=row.tx_hash, source="chain",
                                note=f"to {(row.audit_data or {}).get('to')}", occurred_at=now).on_conflict_ignore().execute()
            audit.append(actor, "wallet.settled", f"account:{row.account.name}",
                         {"tx_hash": row.tx_hash, "status": receipt.status, "block_number": receipt.block_number,
                          "gas_used": receipt.gas_used, "gas_price": receipt.gas_price, "fee": fee})


def _digest(signable: Any) -> str:
    """The 32-byte hash an EIP-191/EIP-712 signature covers, 0x-hex (what the audit trail records)."""
    from eth_utils import keccak

    return "0x" + keccak(b"\x19" + signable.version + signable.header + signable.body).hex()


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Decimal):
        return plain(value)
    if isinstance(value, bytes):
        return "0x" + value.hex()
    return value
