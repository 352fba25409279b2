"""The ``evm`` wallet's account settings (light: importable without web3)."""

from __future__ import annotations

from tradeguard.types import SettingSpec

#: The credential field holding the wallet's private key (encrypted by the vault).
KEY_FIELD = "wallet_private_key"

SETTINGS: tuple[SettingSpec, ...] = (
    SettingSpec(KEY_FIELD, secret=True, required=True,
                help="hex private key (set by `tradeguard wallet add`, stored encrypted)"),
    SettingSpec("rpc_url", str, help="JSON-RPC endpoint; default $TRADEGUARD_RPC_<NETWORK>"),
    SettingSpec("chain_id", int, help="custom network only: its chain id"),
    SettingSpec("native_symbol", str, help="custom network only: symbol of the native coin (default ETH)"),
    SettingSpec("tokens", str, default="", help="extra token symbols: SYM=0xADDRESS,SYM2=0xADDRESS"),
    SettingSpec("allow_signing", bool, default=False,
                help="allow signing arbitrary messages and EIP-712 typed data with this key"),
    SettingSpec("receipt_timeout", int, default=120, help="seconds to wait for a transfer's receipt"),
    SettingSpec("rpc_timeout", int, default=20, help="seconds per JSON-RPC request"),
)
