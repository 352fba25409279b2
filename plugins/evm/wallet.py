"""`EvmWallet`: the ``evm`` wallet adapter (web3.py + eth-account).

It talks to one chain through JSON-RPC for one account. Keys never leave
it: the private key is read from the account's vault secrets the first time
something is signed, and only ``sign_*`` methods use it.

Safety checks it makes on its own, whoever calls it:

* the network must be a testnet unless the account is marked mainnet;
* before anything is signed the RPC's ``eth_chainId`` must equal the network's;
* the stored key must belong to the account's wallet address;
* destination addresses must be valid (EIP-55 checksum when mixed case);
* transfers check balance *including* the maximum gas cost first;
* signing arbitrary messages or typed data is off unless ``allow_signing``.

The two-phase API (`prepare_transfer`, `sign_transfer`, `broadcast`,
`receipt`, `find_transaction`, `pending_nonce`) is what
`tradeguard.wallets.Wallets` uses to record a transfer before it is sent and
to settle it after a crash. `transfer` runs all phases in one call (the
`WalletAdapter` protocol) without the database: prefer ``engine.wallets.send``.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from dataclasses import dataclass
from decimal import Decimal, localcontext
from typing import Any, Callable, Mapping, TypeVar

from eth_account import Account as EthAccount
from eth_account.messages import encode_defunct, encode_typed_data
from eth_utils import is_address, is_checksum_address, to_checksum_address
from web3 import HTTPProvider, Web3
from web3 import exceptions as w3exc

from tradeguard.errors import (
    ConfigError,
    CredentialsError,
    ValidationError,
    VenueRejected,
    VenueUnavailable,
)
from tradeguard.money import to_decimal
from tradeguard.plugins.evm.networks import (
    Network,
    check_symbol,
    redact_rpc_url,
    resolve_network,
    rpc_url_for,
    with_tokens,
)
from tradeguard.plugins.evm.settings import KEY_FIELD, SETTINGS  # noqa: F401  (SETTINGS re-exported)
from tradeguard.types import Receipt, TransferRequest

log = logging.getLogger("tradeguard.plugins.evm")

T = TypeVar("T")

#: The vault field holding the account's private key.
NATIVE_DECIMALS = 18
ZERO_ADDRESS = "0x" + "0" * 40
PLAIN_TRANSFER_GAS = 21_000
#: Gas limit = estimate x this (except a plain 21,000 transfer), so a small state change does not run out of gas.
GAS_MARGIN = Decimal("1.2")


ERC20_ABI: list[dict[str, Any]] = [
    {"type": "function", "name": "balanceOf", "stateMutability": "view",
     "inputs": [{"name": "owner", "type": "address"}], "outputs": [{"name": "", "type": "uint256"}]},
    {"type": "function", "name": "decimals", "stateMutability": "view", "inputs": [],
     "outputs": [{"name": "", "type": "uint8"}]},
    {"type": "function", "name": "symbol", "stateMutability": "view", "inputs": [],
     "outputs": [{"name": "", "type": "string"}]},
    {"type": "function", "name": "transfer", "stateMutability": "nonpayable",
     "inputs": [{"name": "to", "type": "address"}, {"name": "value", "type": "uint256"}],
     "outputs": [{"name": "", "type": "bool"}]},
]


class SigningDisabled(ValidationError):
    """Signing arbitrary data is off for this account (``allow_signing``)."""


# -- values ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Asset:
    """What a transfer or balance is in: the native coin (``token`` None) or an ERC-20."""

    symbol: str
    decimals: int
    token: str | None = None

    @property
    def native(self) -> bool:
        return self.token is None

    def to_units(self, amount: Decimal) -> int:
        """*amount* in the asset's base units; ValidationError if it has more decimals than the asset."""
        with localcontext() as ctx:
            ctx.prec = 100
            scaled = amount.scaleb(self.decimals)
            if scaled != scaled.to_integral_value():
                raise ValidationError(f"amount {amount} has more than {self.decimals} decimals ({self.symbol})")
            return int(scaled)

    def from_units(self, units: int) -> Decimal:
        """Base units as a Decimal amount (exact)."""
        with localcontext() as ctx:
            ctx.prec = 100
            return Decimal(units).scaleb(-self.decimals)


@dataclass(frozen=True)
class PreparedTransfer:
    """A checked, unsigned transfer: everything but the nonce."""

    to: str
    amount: Decimal
    asset: Asset
    units: int
    tx: Mapping[str, Any]  # to, value, data, gas, fee fields (no nonce, no chainId)
    max_gas_cost: Decimal  # native units, the most the gas can cost
    native_symbol: str
    eip1559: bool

    def summary(self) -> dict[str, Any]:
        """JSON-ready description (for the audit trail and the CLI)."""
        fees = {k: int(v) for k, v in self.tx.items() if k in ("maxFeePerGas", "maxPriorityFeePerGas", "gasPrice")}
        return {"to": self.to, "amount": self.amount, "asset": self.asset.symbol, "token": self.asset.token,
                "units": str(self.units), "gas": int(self.tx["gas"]), "max_gas_cost": self.max_gas_cost,
                "native_symbol": self.native_symbol, "type": 2 if self.eip1559 else 0, **fees}


@dataclass(frozen=True, repr=False)
class SignedTransfer:
    """A signed transaction: its hash, nonce and raw bytes (public once broadcast, not a secret)."""

    tx_hash: str
    nonce: int
    raw: str  # 0x-hex

    def __repr__(self) -> str:
        return f"SignedTransfer(tx_hash={self.tx_hash!r}, nonce={self.nonce})"


@dataclass(frozen=True)
class ChainTx:
    """What the chain says about a transaction hash."""

    known: bool
    receipt: Receipt | None = None
    nonce: int | None = None


# -- helpers ---------------------------------------------------------------------------------


def check_address(value: Any, what: str = "address") -> str:
    """*value* as a checksummed address.

    Mixed case must carry a valid EIP-55 checksum (a typo is caught); all
    lower- or upper-case hex is accepted and checksummed, as ethers' ``getAddress`` does.
    """
    text = str(value or "").strip()
    if not re.fullmatch(r"0x[0-9a-fA-F]{40}", text):
        raise ValidationError(f"{what}: expected a 0x-prefixed 20-byte hex address, got {text!r}")
    body = text[2:]
    mixed = body != body.lower() and body != body.upper()
    if mixed and not is_checksum_address(text):
        raise ValidationError(f"{what}: {text} has a wrong EIP-55 checksum (a typo?); copy the address again")
    if not is_address(text):
        raise ValidationError(f"{what}: {text} is not a valid address")
    return to_checksum_address(text)


def parse_token_map(text: Any) -> dict[str, str]:
    """``"USDC=0x…,DAI=0x…"`` (or a mapping) as {SYMBOL: checksummed address}."""
    if not text:
        return {}
    items = text.items() if isinstance(text, Mapping) else (
        part.split("=", 1) if "=" in part else (part, "") for part in str(text).split(",") if part.strip())
    result: dict[str, str] = {}
    for symbol, address in items:
        sym = check_symbol(str(symbol).strip(), "token symbol").upper()
        result[sym] = check_address(str(address).strip(), f"token {sym}")
    return result


def _first_line(exc: BaseException) -> str:
    text = (str(exc).strip().splitlines() or [""])[0]
    return text[:300] or type(exc).__name__


def _revert_reason(exc: BaseException) -> str | None:
    """The revert message of a failed call, estimate or transaction, else None.

    Over HTTP web3 raises ``ContractLogicError``; in process eth-tester raises
    its own ``TransactionFailed("execution reverted: …")``.
    """
    if isinstance(exc, w3exc.ContractLogicError) or type(exc).__name__ == "TransactionFailed":
        message = getattr(exc, "message", None) or (exc.args[0] if exc.args else "")
        if isinstance(message, bytes):
            message = message.decode("utf-8", "replace")
        message = str(message).strip().strip("'\"")
        return message.removeprefix("execution reverted:").strip() or "execution reverted"
    return None


def _connection_error(exc: BaseException) -> bool:
    import requests

    return isinstance(exc, (requests.RequestException, w3exc.ProviderConnectionError, w3exc.RequestTimedOut,
                            ConnectionError, TimeoutError))


def _rpc_message(exc: BaseException) -> str:
    if isinstance(exc, w3exc.Web3RPCError):
        error = getattr(exc, "rpc_response", None) or {}
        message = (error.get("error") or {}).get("message") if isinstance(error, Mapping) else None
        if message:
            return str(message)
        return getattr(exc, "message", None) or _first_line(exc)
    return _first_line(exc)


def classify_send_error(exc: BaseException) -> Exception:
    """A node's refusal of ``eth_sendRawTransaction`` as a tradeguard error with a stable ``code``."""
    message = _rpc_message(exc)
    lower = message.lower()
    for needle, code in (("nonce too low", "nonce_too_low"), ("already known", "already_known"),
                         ("known transaction", "already_known"), ("insufficient funds", "insufficient_funds"),
                         ("underpriced", "underpriced"), ("nonce too high", "nonce_too_high"),
                         ("exceeds block gas limit", "gas_limit"), ("intrinsic gas too low", "gas_limit")):
        if needle in lower:
            return VenueRejected(f"the node refused the transaction: {message}", code=code)
    if isinstance(exc, (w3exc.Web3RPCError, ValueError)):
        return VenueRejected(f"the node refused the transaction: {message}", code="rejected")
    return VenueUnavailable(f"sending the transaction failed, outcome unknown: {type(exc).__name__}")


# -- the adapter -------------------------------------------------------------------------------


class EvmWallet:
    """The wallet of one account on one EVM network (see the module docstring)."""

    name = "evm"

    def __init__(self, config: Any, *, web3: Web3 | None = None, environ: Mapping[str, str] | None = None):
        settings = dict(config.settings)
        network = resolve_network(config.network, settings)
        if not network.testnet and config.testnet:
            raise ConfigError(
                f"network {network.name} is a mainnet and account {config.account!r} is testnet-only: "
                f"mark it mainnet first (`tradeguard account set {config.account} --mainnet`)"
            )
        self.account_name: str = config.account
        self.net: Network = with_tokens(network, parse_token_map(settings.get("tokens")))
        self.network: str = network.name
        self.chain_id: int = network.chain_id
        self.testnet: bool = network.testnet
        self.address: str = check_address(config.address, "wallet address")
        self.allow_signing: bool = bool(settings.get("allow_signing", False))
        self.receipt_timeout: float = float(settings.get("receipt_timeout") or 120)
        self._rpc_timeout = float(settings.get("rpc_timeout") or 20)
        self._secrets = config.secrets
        self._w3 = web3
        self._rpc_url = None if web3 is not None else rpc_url_for(self.net, settings, environ)
        self._signer: Any = None
        self._lock = threading.RLock()
        self._assets: dict[str, Asset] = {}
        self._local_nonce: int | None = None  # only for the database-less `transfer`

    def __repr__(self) -> str:
        return f"<EvmWallet {self.account_name!r} {self.address} on {self.network} ({self.chain_id})>"

    # -- connection ----------------------------------------------------------------------

    @property
    def rpc_host(self) -> str:
        """The RPC endpoint without credentials or path (safe to print)."""
        return redact_rpc_url(self._rpc_url) if self._rpc_url else "in-process provider"

    @property
    def w3(self) -> Web3:
        with self._lock:
            if self._w3 is None:
                self._w3 = Web3(HTTPProvider(self._rpc_url, request_kwargs={"timeout": self._rpc_timeout}))
            return self._w3

    def _rpc(self, what: str, call: Callable[[], T]) -> T:
        """Run one JSON-RPC call; network failures become VenueUnavailable without the URL's secrets."""
        try:
            return call()
        except (ValidationError, VenueRejected, VenueUnavailable, ConfigError, CredentialsError,
                w3exc.TransactionNotFound):
            raise
        except Exception as exc:
            if _revert_reason(exc) is not None:
                raise
            if _connection_error(exc):
                raise VenueUnavailable(f"{what}: the RPC node at {self.rpc_host} is unreachable ({type(exc).__name__})") from None
            raise VenueRejected(f"{what}: {_rpc_message(exc)}", code="rpc_error") from None

    def remote_chain_id(self) -> int:
        """The chain id the RPC node reports (``eth_chainId``; never ``net_version``)."""
        return int(self._rpc("reading the chain id", lambda: self.w3.eth.chain_id))

    def verify_chain(self) -> None:
        """Raise ConfigError unless the RPC serves this network's chain id. Called before every signature."""
        actual = self.remote_chain_id()
        if actual != self.chain_id:
            raise ConfigError(
                f"the RPC node at {self.rpc_host} serves chain id {actual}, but network {self.network} is "
                f"chain id {self.chain_id}: nothing was signed"
            )

    # -- keys ----------------------------------------------------------------------------

    def _account(self) -> Any:
        """The eth-account signer, built from the vault secret on first use; must match the address."""
        with self._lock:
            if self._signer is None:
                key = self._secrets.require(KEY_FIELD)
                try:
                    signer = EthAccount.from_key(key)
                except Exception:
                    raise CredentialsError(f"account {self.account_name!r}: the stored wallet key is not a valid private key") from None
                if signer.address != self.address:
                    raise CredentialsError(
                        f"account {self.account_name!r}: the stored wallet key belongs to another address than {self.address}"
                    )
                self._signer = signer
            return self._signer

    def unlock(self) -> None:
        """Decrypt and check the key now (so later signing does not touch the vault)."""
        self._account()

    # -- assets and balances -------------------------------------------------------------

    def resolve_asset(self, asset: str | None) -> Asset:
        """The native coin (None, '' or its symbol), a token by symbol (network map or ``tokens``
        setting) or a token by contract address; decimals read from ``decimals()``."""
        text = str(asset or "").strip()
        if not text or text.upper() == self.net.symbol.upper():
            return Asset(self.net.symbol, NATIVE_DECIMALS)
        if text.lower().startswith("0x"):
            token = check_address(text, "token")
        else:
            token = self.net.tokens.get(text.upper())
            if token is None:
                known = ", ".join([self.net.symbol, *sorted(self.net.tokens)])
                raise ValidationError(
                    f"unknown asset {text!r} on {self.network} (known: {known}): give the token's contract "
                    f"address or map the symbol with `tradeguard wallet set ACCOUNT --token {text.upper()}=0x…`"
                )
        with self._lock:
            cached = self._assets.get(token)
        if cached is not None:
            return cached
        resolved = self._load_token(token, None if text.lower().startswith("0x") else text.upper())
        with self._lock:
            self._assets[token] = resolved
        return resolved

    def _token(self, address: str) -> Any:
        return self.w3.eth.contract(address=address, abi=ERC20_ABI)

    def _load_token(self, address: str, symbol: str | None) -> Asset:
        code = self._rpc("reading the token contract", lambda: self.w3.eth.get_code(address))
        if not code:
            raise ValidationError(f"token {address} has no contract code on {self.network}")
        contract = self._token(address)
        try:
            decimals = int(self._rpc("reading decimals()", lambda: contract.functions.decimals().call()))
        except (VenueRejected, ValidationError):
            raise
        except Exception as exc:
            raise ValidationError(f"token {address} does not answer decimals(): not an ERC-20? ({_first_line(exc)})") from None
        if not 0 <= decimals <= 77:
            raise ValidationError(f"token {address} reports {decimals} decimals")
        if symbol is None:
            try:
                raw = self._rpc("reading symbol()", lambda: contract.functions.symbol().call())
                symbol = check_symbol(str(raw).strip(), "token symbol").upper()
            except Exception:
                symbol = address[:10]
        return Asset(symbol[:16], decimals, address)

    def get_balance(self, asset: str | None = None) -> Decimal:
        """The wallet's balance of *asset* (native coin by default), exact."""
        return self.balance_of(self.resolve_asset(asset))

    def balance_of(self, asset: Asset) -> Decimal:
        """The wallet's balance of a resolved `Asset`."""
        return asset.from_units(self._balance_units(asset))

    def _balance_units(self, asset: Asset) -> int:
        if asset.native:
            return int(self._rpc("reading the balance", lambda: self.w3.eth.get_balance(self.address)))
        contract = self._token(asset.token)
        return int(self._rpc("reading the token balance",
                             lambda: contract.functions.balanceOf(self.address).call()))

    # -- transfers: phases ---------------------------------------------------------------

    def prepare_transfer(self, request: TransferRequest) -> PreparedTransfer:
        """Validate and price a transfer: address, asset, amount, gas estimate, fees and the
        balance check including the most the gas can cost. Nothing is signed."""
        to = check_address(request.to, "destination")
        if to == ZERO_ADDRESS:
            raise ValidationError("destination: refusing to send to the zero address (that burns the funds)")
        asset = self.resolve_asset(request.asset)
        if asset.token is not None and to == asset.token:
            raise ValidationError(f"destination is the {asset.symbol} token contract itself: tokens sent there are lost")
        amount = to_decimal(request.amount, "amount")
        units = asset.to_units(amount)
        if units <= 0:
            raise ValidationError("amount: must be more than zero base units")
        native = Asset(self.net.symbol, NATIVE_DECIMALS)
        native_balance = self._balance_units(native)
        if asset.native:
            tx: dict[str, Any] = {"to": to, "value": units, "data": b""}
            if units > native_balance:
                raise self._insufficient(native, native_balance, units, 0, "the amount")
        else:
            token_balance = self._balance_units(asset)
            if units > token_balance:
                raise VenueRejected(
                    f"insufficient funds: the wallet holds {asset.from_units(token_balance)} {asset.symbol}, "
                    f"the transfer needs {amount}", code="insufficient_funds")
            data = self._token(asset.token).encode_abi("transfer", args=[to, units])
            tx = {"to": asset.token, "value": 0, "data": data}
            if native_balance == 0:
                raise VenueRejected(f"insufficient funds for gas: the wallet holds 0 {native.symbol}",
                                    code="insufficient_funds")
        if asset.native and not self._rpc("reading the destination", lambda: self.w3.eth.get_code(to)):
            estimate = PLAIN_TRANSFER_GAS  # a plain transfer to an account without code costs exactly this
        else:
            estimate = self._estimate_gas(tx)
        gas = estimate if estimate == PLAIN_TRANSFER_GAS else int(Decimal(estimate) * GAS_MARGIN)
        fees, eip1559 = self._fees()
        tx.update(gas=gas, **fees)
        fee_cap = fees.get("maxFeePerGas", fees.get("gasPrice"))
        max_gas_units = gas * fee_cap
        needed = tx["value"] + max_gas_units
        if needed > native_balance:
            raise self._insufficient(native, native_balance, tx["value"], max_gas_units,
                                     "the amount and gas" if asset.native else "gas")
        return PreparedTransfer(to, amount, asset, units, tx, native.from_units(max_gas_units), self.net.symbol, eip1559)

    def _insufficient(self, native: Asset, balance: int, value: int, gas_cost: int, what: str) -> VenueRejected:
        need = native.from_units(value + gas_cost)
        gas_note = f" (including up to {native.from_units(gas_cost)} for gas)" if gas_cost else ""
        return VenueRejected(
            f"insufficient funds for {what}: the wallet holds {native.from_units(balance)} {native.symbol}, "
            f"needs {need}{gas_note}", code="insufficient_funds")

    def _estimate_gas(self, tx: Mapping[str, Any]) -> int:
        call = {"from": self.address, "to": tx["to"], "value": tx["value"]}
        if tx.get("data"):
            call["data"] = tx["data"]
        try:
            return int(self.w3.eth.estimate_gas(call))
        except Exception as exc:
            if _connection_error(exc):
                raise VenueUnavailable(f"estimating gas: the RPC node at {self.rpc_host} is unreachable "
                                       f"({type(exc).__name__})") from None
            reason = _revert_reason(exc)
            if reason is not None:
                raise VenueRejected(f"the transfer would revert: {reason}; nothing was signed", code="reverted") from None
            message = _rpc_message(exc)
            if any(text in message.lower() for text in ("insufficient funds", "enough balance", "cannot afford")):
                raise VenueRejected(f"insufficient funds for the amount and gas: {message}",
                                    code="insufficient_funds") from None
            raise VenueRejected(f"gas estimation failed: {message}", code="estimate_failed") from None

    def _fees(self) -> tuple[dict[str, int], bool]:
        """EIP-1559 fee fields when the chain has a base fee (and is not a legacy-gas chain), else a gas price."""
        block = self._rpc("reading the latest block", lambda: self.w3.eth.get_block("latest"))
        base_fee = block.get("baseFeePerGas")
        if base_fee is not None and not self.net.legacy_gas:
            try:
                tip = int(self._rpc("reading the priority fee", lambda: self.w3.eth.max_priority_fee))
            except VenueRejected:  # node without eth_maxPriorityFeePerGas
                tip = 10**9
            return {"maxFeePerGas": 2 * int(base_fee) + tip, "maxPriorityFeePerGas": tip}, True
        return {"gasPrice": int(self._rpc("reading the gas price", lambda: self.w3.eth.gas_price))}, False

    def pending_nonce(self) -> int:
        """The next nonce the node expects, counting its pending pool."""
        return int(self._rpc("reading the nonce", lambda: self.w3.eth.get_transaction_count(self.address, "pending")))

    def latest_nonce(self) -> int:
        """Transactions of this wallet mined so far (the next nonce by the latest block)."""
        return int(self._rpc("reading the nonce", lambda: self.w3.eth.get_transaction_count(self.address, "latest")))

    def sign_transfer(self, prepared: PreparedTransfer, nonce: int) -> SignedTransfer:
        """Sign *prepared* with *nonce* after checking the RPC's chain id."""
        if nonce < 0:
            raise ValueError("nonce must be >= 0")
        self.verify_chain()
        tx = dict(prepared.tx, nonce=int(nonce), chainId=self.chain_id)
        if prepared.eip1559:
            tx["type"] = 2
        if not tx.get("data"):
            tx.pop("data", None)
        signed = self._account().sign_transaction(tx)
        return SignedTransfer(signed.hash.to_0x_hex(), int(nonce), signed.raw_transaction.to_0x_hex())

    def broadcast(self, signed: SignedTransfer) -> str:
        """Send a signed transaction; "already known" counts as sent. Returns the hash.

        Raises VenueRejected (with ``code``) for a definite refusal and
        VenueUnavailable when the outcome is unknown.
        """
        try:
            self.w3.eth.send_raw_transaction(signed.raw)
        except Exception as exc:
            error = classify_send_error(exc) if not _connection_error(exc) else VenueUnavailable(
                f"sending the transaction: the RPC node at {self.rpc_host} is unreachable, outcome unknown")
            if getattr(error, "code", None) == "already_known":
                return signed.tx_hash
            raise error from None
        return signed.tx_hash

    def receipt(self, tx_hash: str) -> Receipt | None:
        """The receipt of *tx_hash* (confirmed or reverted), or None while it is not mined."""
        try:
            raw = self._rpc("reading a receipt", lambda: self.w3.eth.get_transaction_receipt(tx_hash))
        except w3exc.TransactionNotFound:
            return None
        if raw is None or raw.get("blockNumber") is None:
            return None
        return Receipt(
            tx_hash=tx_hash,
            status="confirmed" if int(raw.get("status", 1)) == 1 else "reverted",
            block_number=int(raw["blockNumber"]),
            gas_used=int(raw["gasUsed"]),
            gas_price=int(raw.get("effectiveGasPrice") or 0) or None,
        )

    def find_transaction(self, tx_hash: str) -> ChainTx:
        """Whether the node knows *tx_hash* (pending or mined), with its receipt once mined."""
        receipt = self.receipt(tx_hash)
        if receipt is not None:
            return ChainTx(True, receipt)
        try:
            tx = self._rpc("looking up a transaction", lambda: self.w3.eth.get_transaction(tx_hash))
        except w3exc.TransactionNotFound:
            return ChainTx(False)
        if tx is None:
            return ChainTx(False)
        return ChainTx(True, None, int(tx["nonce"]))

    def wait_for_receipt(self, tx_hash: str, timeout: float | None = None, poll: float = 0.2) -> Receipt | None:
        """Poll for the receipt up to *timeout* seconds (default ``receipt_timeout``); None if not mined by then."""
        deadline = time.monotonic() + (self.receipt_timeout if timeout is None else timeout)
        while True:
            receipt = self.receipt(tx_hash)
            if receipt is not None or time.monotonic() >= deadline:
                return receipt
            time.sleep(min(poll, max(0.0, deadline - time.monotonic())))

    def gas_cost(self, receipt: Receipt) -> Decimal:
        """What the gas of *receipt* cost, in the native coin."""
        if receipt.gas_used is None or receipt.gas_price is None:
            return Decimal(0)
        return Asset(self.net.symbol, NATIVE_DECIMALS).from_units(receipt.gas_used * receipt.gas_price)

    def explorer_url(self, tx_hash: str) -> str | None:
        return self.net.tx_url(tx_hash)

    # -- the protocol's one-call transfer ---------------------------------------------------

    def transfer(self, request: TransferRequest) -> Receipt:
        """Prepare, sign, send and wait (no database, no risk gate: use ``engine.wallets.send``).

        The nonce is the larger of the node's pending count and the last one this
        object used, so concurrent calls on one adapter do not collide.
        """
        prepared = self.prepare_transfer(request)
        with self._lock:
            nonce = max(self.pending_nonce(), (self._local_nonce or 0))
            signed = self.sign_transfer(prepared, nonce)
            self._local_nonce = nonce + 1
        self.broadcast(signed)
        return self.wait_for_receipt(signed.tx_hash) or Receipt(signed.tx_hash, "pending")

    # -- signing -----------------------------------------------------------------------------

    def _check_signing(self) -> None:
        if not self.allow_signing:
            raise SigningDisabled(
                f"signing arbitrary data is off for account {self.account_name!r}: enable it with "
                f"`tradeguard wallet set {self.account_name} --allow-signing`"
            )

    def sign_message(self, message: bytes | str) -> str:
        """An EIP-191 (``personal_sign``) signature of *message*, 0x-hex."""
        self._check_signing()
        signable = encode_defunct(primitive=message) if isinstance(message, bytes) else encode_defunct(text=str(message))
        return self._account().sign_message(signable).signature.to_0x_hex()

    def sign_typed_data(self, data: Mapping[str, Any]) -> str:
        """An EIP-712 signature of *data* (``types``, ``primaryType``, ``domain``, ``message``), 0x-hex.

        A domain naming another chain id than this network's is refused.
        """
        self._check_signing()
        if not isinstance(data, Mapping) or not {"types", "primaryType", "domain", "message"} <= set(data):
            raise ValidationError("typed data: expected an EIP-712 object with types, primaryType, domain and message")
        chain = (data.get("domain") or {}).get("chainId")
        if chain is not None:
            try:
                chain_id = int(chain, 0) if isinstance(chain, str) else int(chain)
            except (TypeError, ValueError):
                raise ValidationError(f"typed data: domain chainId {chain!r} is not a number") from None
            if chain_id != self.chain_id:
                raise ValidationError(
                    f"typed data is for chain id {chain_id}, this wallet is on {self.network} ({self.chain_id}): refused")
        try:
            signable = encode_typed_data(full_message=dict(data))
        except Exception as exc:
            raise ValidationError(f"typed data: {_first_line(exc)}") from None
        return self._account().sign_message(signable).signature.to_0x_hex()

    def close(self) -> None:
        """Forget the signer and close the HTTP session."""
        with self._lock:
            self._signer = None
            provider = getattr(self._w3, "provider", None)
            session_close = getattr(provider, "disconnect", None)
            if callable(session_close):
                try:
                    session_close()
                except Exception:
                    pass


def new_private_key() -> tuple[str, str]:
    """A fresh random key: (0x-hex private key, checksummed address)."""
    account = EthAccount.create()
    return account.key.to_0x_hex(), account.address


def address_of(private_key: str) -> str:
    """The checksummed address of a hex private key; ValidationError (never showing the key) if invalid."""
    text = str(private_key or "").strip()
    if not re.fullmatch(r"(0x)?[0-9a-fA-F]{64}", text):
        raise ValidationError("private key: expected 64 hex digits (optionally 0x-prefixed)")
    try:
        return EthAccount.from_key(text if text.startswith("0x") else "0x" + text).address
    except Exception:
        raise ValidationError("private key: not a valid secp256k1 key") from None


def normalise_key(private_key: str) -> str:
    """A valid private key as lower-case 0x-hex (validated with `address_of`)."""
    address_of(private_key)
    text = private_key.strip().lower()
    return text if text.startswith("0x") else "0x" + text
