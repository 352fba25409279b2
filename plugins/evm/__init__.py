"""The built-in ``evm`` wallet plugin: Ethereum and EVM chains through web3.py.

Registers the ``evm`` wallet (`tradeguard.plugins.evm.wallet.EvmWallet`) and
the ``wallet_transfer_limits`` risk rule (`tradeguard.plugins.evm.rules`),
through the same hooks a third-party plugin uses.
"""

from __future__ import annotations

from tradeguard.hookspecs import hookimpl


@hookimpl
def register_wallets(register):
    """The ``evm`` wallet adapter and its account settings."""
    from tradeguard.plugins.evm.settings import SETTINGS

    register("evm", make_wallet, settings=SETTINGS, chains="evm")


def make_wallet(config):
    """Build an `EvmWallet`; web3 is imported only when a wallet is used (keeps CLI start-up fast)."""
    from tradeguard.plugins.evm.wallet import EvmWallet

    return EvmWallet(config)


@hookimpl
def register_risk_rules(register):
    """The wallet transfer rule (daily limit per asset, allow-listed destinations)."""
    from tradeguard.plugins.evm.rules import TransferLimitsRule

    register(TransferLimitsRule.name, TransferLimitsRule())
