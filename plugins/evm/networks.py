"""The EVM networks the ``evm`` wallet knows, and where their RPC endpoints come from.

Each `Network` carries its chain id, native symbol, testnet flag, block
explorer and a small map of well-known token contracts (by symbol). The
``custom`` network takes its chain id, RPC URL and native symbol from the
account's settings and is always treated as a testnet (anvil, hardhat,
ganache, a private devnet).

RPC URL: the account's ``rpc_url`` setting, else the environment variable
``TRADEGUARD_RPC_<NETWORK>`` (upper case, ``-`` as ``_``: ``TRADEGUARD_RPC_BSC_TESTNET``).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, replace
from typing import Any, Mapping

from tradeguard.errors import ConfigError, ValidationError

CUSTOM = "custom"


@dataclass(frozen=True)
class Network:
    """One EVM chain.

    :ivar legacy_gas: prefer legacy (type 0) gas pricing even if blocks carry a base fee.
    :ivar tokens: well-known ERC-20 contracts by upper-case symbol.
    """

    name: str
    chain_id: int
    symbol: str
    testnet: bool
    explorer: str | None
    title: str
    legacy_gas: bool = False
    tokens: Mapping[str, str] = field(default_factory=dict)

    def tx_url(self, tx_hash: str) -> str | None:
        """The explorer page of *tx_hash*, if the network has an explorer."""
        return f"{self.explorer}/tx/{tx_hash}" if self.explorer else None

    @property
    def env_var(self) -> str:
        """The environment variable that may hold this network's RPC URL."""
        return rpc_env_var(self.name)


NETWORKS: dict[str, Network] = {
    n.name: n
    for n in (
        Network("ethereum", 1, "ETH", False, "https://etherscan.io", "Ethereum mainnet", tokens={
            "USDC": "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48",
            "USDT": "0xdAC17F958D2ee523a2206206994597C13D831ec7",
            "DAI": "0x6B175474E89094C44Da98b954EedeAC495271d0F",
            "WETH": "0xC02aaA39b223FE8D0A0e5C4F27eAD9083C756Cc2",
        }),
        Network("sepolia", 11155111, "ETH", True, "https://sepolia.etherscan.io", "Ethereum Sepolia testnet", tokens={
            "USDC": "0x1c7D4B196Cb0C7B01d743Fbc6116a902379C7238",
        }),
        Network("polygon", 137, "POL", False, "https://polygonscan.com", "Polygon PoS", tokens={
            "USDC": "0x3c499c542cEF5E3811e1192ce70d8cC03d5c3359",
            "USDT": "0xc2132D05D31c914a87C6611C10748AEb04B58e8F",
        }),
        Network("amoy", 80002, "POL", True, "https://amoy.polygonscan.com", "Polygon Amoy testnet"),
        Network("bsc", 56, "BNB", False, "https://bscscan.com", "BNB Smart Chain", legacy_gas=True, tokens={
            "USDT": "0x55d398326f99059fF775485246999027B3197955",
            "USDC": "0x8AC76a51cc950d9822D68b83fE1Ad97B32Cd580d",
        }),
        Network("bsc-testnet", 97, "tBNB", True, "https://testnet.bscscan.com", "BNB Smart Chain testnet",
                legacy_gas=True),
        Network("arbitrum", 42161, "ETH", False, "https://arbiscan.io", "Arbitrum One", tokens={
            "USDC": "0xaf88d065e77c8cC2239327C5EDb3A432268e5831",
        }),
        Network("base", 8453, "ETH", False, "https://basescan.org", "Base", tokens={
            "USDC": "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913",
        }),
        Network("optimism", 10, "ETH", False, "https://optimistic.etherscan.io", "OP Mainnet", tokens={
            "USDC": "0x0b2C639c533813f4Aa9D7837CAf62653d097Ff85",
        }),
    )
}

#: Names accepted by ``wallet add --network`` (the table plus ``custom``).
NETWORK_NAMES: tuple[str, ...] = (*NETWORKS, CUSTOM)

_SYMBOL = re.compile(r"^[A-Za-z][A-Za-z0-9.]{0,15}$")


def rpc_env_var(name: str) -> str:
    """``TRADEGUARD_RPC_<NAME>`` with ``-`` turned into ``_``."""
    return "TRADEGUARD_RPC_" + name.upper().replace("-", "_")


def check_symbol(symbol: Any, what: str = "native_symbol") -> str:
    """A token or native symbol: letters, digits and '.', at most 16 characters."""
    text = str(symbol or "").strip()
    if not _SYMBOL.match(text):
        raise ValidationError(f"{what}: expected a symbol such as ETH (letters and digits, at most 16), got {symbol!r}")
    return text


def resolve_network(name: str | None, settings: Mapping[str, Any] | None = None) -> Network:
    """The `Network` called *name*; for ``custom``, built from the account's settings
    (``chain_id`` and ``native_symbol``). Unknown names are a ValidationError."""
    settings = settings or {}
    key = str(name or "").strip().lower()
    if key in NETWORKS:
        return NETWORKS[key]
    if key != CUSTOM:
        raise ValidationError(f"unknown network {name!r}: expected one of {', '.join(NETWORK_NAMES)}")
    chain_id = settings.get("chain_id")
    if chain_id in (None, ""):
        raise ConfigError("the custom network needs a chain id (wallet add --chain-id)")
    try:
        chain_id = int(chain_id)
    except (TypeError, ValueError):
        raise ConfigError(f"chain_id: expected a whole number, got {chain_id!r}") from None
    if chain_id <= 0:
        raise ConfigError(f"chain_id: expected a positive number, got {chain_id}")
    known = next((n for n in NETWORKS.values() if n.chain_id == chain_id and not n.testnet), None)
    if known is not None:
        raise ConfigError(
            f"chain id {chain_id} is {known.title}, a mainnet: use --network {known.name} on an account marked mainnet, not custom"
        )
    symbol = check_symbol(settings.get("native_symbol") or "ETH")
    return Network(CUSTOM, chain_id, symbol, True, None, f"custom chain {chain_id}")


def rpc_url_for(network: Network, settings: Mapping[str, Any] | None = None,
                environ: Mapping[str, str] | None = None) -> str:
    """The RPC URL for *network*: the account's ``rpc_url`` setting, else ``TRADEGUARD_RPC_<NETWORK>``."""
    settings = settings or {}
    environ = os.environ if environ is None else environ
    url = str(settings.get("rpc_url") or "").strip() or str(environ.get(network.env_var) or "").strip()
    if not url:
        raise ConfigError(
            f"no RPC URL for network {network.name}: set one with `tradeguard wallet set ACCOUNT --rpc-url URL` "
            f"or the environment variable {network.env_var}"
        )
    return check_rpc_url(url)


def check_rpc_url(url: str) -> str:
    """An http(s) URL (credentials in it are allowed but never printed)."""
    text = str(url).strip()
    if not re.match(r"^https?://[^\s/]+", text):
        raise ValidationError(f"rpc_url: expected an http:// or https:// URL, got {redact_rpc_url(text)!r}")
    return text


def redact_rpc_url(url: str) -> str:
    """*url* without user info and with its path shortened: RPC URLs often embed an API key."""
    match = re.match(r"^([a-z]+://)(?:[^@/]*@)?([^/?#]*)(.*)$", str(url))
    if not match:
        return "(invalid URL)"
    scheme, host, rest = match.groups()
    return f"{scheme}{host}" + ("/…" if rest.strip("/") else "")


def with_tokens(network: Network, extra: Mapping[str, str]) -> Network:
    """*network* with the account's own token map (symbol -> address) over the built-in one."""
    if not extra:
        return network
    return replace(network, tokens={**network.tokens, **{k.upper(): v for k, v in extra.items()}})
