#!/usr/bin/env python
"""A small JSON-RPC-over-HTTP server in front of an in-process eth-tester chain.

Why: tests of the EVM wallet plugin need a *real* chain that outlives the client
process (kill the bot/wallet process, restart it, reconnect to the same chain and
find the transactions it sent). web3's ``EthereumTesterProvider`` only lives inside
one process, so this program serves it on ``http://127.0.0.1:<port>``.

Run it::

    python tests/chain_server.py --port 0 --port-file /tmp/x/port [--manual-mine] [-v]

It prints the URL (``http://127.0.0.1:PORT``) as the first line on stdout and
writes the bare port number to ``--port-file`` (atomically, once it is listening).
It stops cleanly on SIGTERM/SIGINT (and on stdin EOF with ``--exit-on-stdin-eof``,
so it cannot outlive a test process that dies). Connect with
``web3.Web3(web3.HTTPProvider(url))``.

From Python tests use :class:`ChainServerProcess` (subprocess) or
:class:`ChainServer` (background thread in the current process).

Standard methods are those of web3's ``EthereumTesterProvider`` (chain id
131277322940537, 10 funded dev accounts with 1,000,000 ETH each, Prague rules),
with these differences, aimed at making it behave like a geth/anvil node:

* Transactions (``eth_sendRawTransaction`` and ``eth_sendTransaction``) go through a
  small mempool.  ``eth_getTransactionCount(addr, "pending")`` counts pooled
  transactions, several transactions per sender can be queued, a future nonce is
  queued until the gap is filled, same-nonce replacement needs a +10% fee bump
  ("replacement transaction underpriced"), duplicates give "already known", and
  errors use geth wording ("nonce too low", "insufficient funds for gas * price +
  value", ...).  With automine (default) every submission that is executable is
  mined at once in its own block; with ``--manual-mine`` transactions stay pending
  (``eth_getTransactionReceipt`` -> null, ``eth_getTransactionByHash`` -> tx with
  ``blockNumber: null``) until ``evm_mine``/``tg_mine``.
* ``eth_sendTransaction`` (from the unlocked dev accounts) fills ``gas`` (estimate),
  ``nonce`` (pending) and EIP-1559 fees when missing.
* Reverts in ``eth_call``/``eth_estimateGas`` are geth-style errors
  ``{"code": 3, "message": "execution reverted: <reason>", "data": "0x08c379a0..."}``
  so web3 raises ``ContractLogicError``.
* ``eth_call``/``eth_estimateGas`` without fee fields use gas price 0 like geth, so an
  account holding tokens but no ETH can call/estimate (eth-tester charges 1 gwei x gas
  up front: "cannot afford txn gas"); ``eth_estimateGas`` accepts ``"pending"``.
* ``net_version`` is the chain id (eth-tester answers ``"1"``, i.e. mainnet).
* ``eth_feeHistory`` is spec-compliant (eth-tester's returns ``oldestBlock: 1`` and no
  rewards); ``eth_gasPrice`` is pending base fee + 1 gwei (eth-tester: constant 1 gwei);
  ``eth_maxPriorityFeePerGas`` stays the constant 1 gwei.

Custom methods:

* ``tg_fund [address, wei]`` -> tx hash.  Sends ``wei`` from a hidden faucet account
  (not in ``eth_accounts``) and mines it immediately in its own block, even with
  manual mining (pooled transactions are left pending).
* ``tg_mine [n=1]`` -> list of new block hashes (``evm_mine [n]`` -> ``"0x0"``).
  Each block includes every pooled transaction that is executable.
* ``tg_setAutomine [bool]`` / ``evm_setAutomine [bool]``; ``tg_getAutomine``.
  Switching automine on mines what is pending.
* ``tg_txpool`` -> ``[{"hash", "from", "nonce"}, ...]`` (everything in the pool).
* ``tg_dropTransaction [hash]`` -> bool.  Evicts a pooled tx (simulates a node that
  forgot a transaction).
* ``tg_info`` -> ``{"chainId", "automine", "blockNumber", "accounts", "faucet"}``.
* ``evm_snapshot`` / ``evm_revert`` pass through to eth-tester (the pool is not
  snapshotted).
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

log = logging.getLogger("tradeguard.chain_server")

HOST = "127.0.0.1"
GWEI = 10**9
DEFAULT_PRIORITY_FEE = GWEI
ERROR_SELECTOR = bytes.fromhex("08c379a0")  # Error(string)
NUM_DEV_ACCOUNTS = 10


class RpcError(Exception):
    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data

    def to_json(self) -> dict:
        err: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            err["data"] = self.data
        return err


def _server_error(message: str) -> RpcError:
    return RpcError(-32000, message)


# --------------------------------------------------------------------------- #
# Result encoding
# --------------------------------------------------------------------------- #


def to_jsonrpc(obj: Any, key: str | None = None) -> Any:
    """Encode eth-tester/python values the way a JSON-RPC node would."""
    if obj is None or isinstance(obj, (bool, str, float)):
        return obj
    if isinstance(obj, int):
        if key == "logsBloom":
            return "0x" + format(obj, "0512x")
        if obj < 0:
            raise ValueError(f"negative quantity {obj} for {key!r}")
        return hex(obj)
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return "0x" + bytes(obj).hex()
    if isinstance(obj, Mapping):
        return {str(k): to_jsonrpc(v, str(k)) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonrpc(v) for v in obj]
    raise TypeError(f"cannot encode {type(obj).__name__} for JSON-RPC")


def _hex_to_int(value: Any) -> int:
    if isinstance(value, bool):
        raise RpcError(-32602, "invalid argument: expected a quantity")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value, 16) if value.lower().startswith("0x") else int(value)
        except ValueError:
            pass
    raise RpcError(-32602, f"invalid argument: expected a quantity, got {value!r}")


def _hex_to_bytes(value: Any) -> bytes:
    if isinstance(value, str) and value.lower().startswith("0x"):
        try:
            return bytes.fromhex(value[2:])
        except ValueError:
            pass
    raise RpcError(-32602, f"invalid argument: expected 0x-prefixed hex data, got {value!r}")


def _revert_data(exc: BaseException) -> bytes:
    """Best effort: recover the raw revert data from an eth-tester TransactionFailed."""
    arg: Any = exc.args[0] if exc.args else None
    if isinstance(arg, BaseException):
        arg = arg.args[0] if arg.args else None
    if isinstance(arg, (bytes, bytearray)):
        return bytes(arg)
    if isinstance(arg, str):
        if arg.startswith(("b'", 'b"')):
            with contextlib.suppress(Exception):
                value = ast.literal_eval(arg)
                if isinstance(value, bytes):
                    return value
        if arg.startswith("0x"):
            with contextlib.suppress(ValueError):
                return bytes.fromhex(arg[2:])
        if arg in ("", "execution reverted"):
            return b""
        from eth_abi import encode

        # eth-tester's `call` gives us the already-decoded reason string.
        return ERROR_SELECTOR + encode(["string"], [arg])
    return b""


def _revert_error(exc: BaseException) -> RpcError:
    data = _revert_data(exc)
    message = "execution reverted"
    if data[:4] == ERROR_SELECTOR:
        from eth_abi import decode

        with contextlib.suppress(Exception):
            message = f"execution reverted: {decode(['string'], data[4:])[0]}"
    return RpcError(3, message, "0x" + data.hex())


# --------------------------------------------------------------------------- #
# The chain + mempool
# --------------------------------------------------------------------------- #


@dataclass
class PoolEntry:
    raw: bytes
    tx: Any  # py-evm signed transaction
    hash: bytes
    sender: bytes
    nonce: int
    max_fee: int
    priority_fee: int
    seq: int


class ChainRPC:
    """JSON-RPC dispatcher around an EthereumTester chain. Thread-safe (one lock)."""

    def __init__(self, automine: bool = True) -> None:
        from eth_tester import EthereumTester, PyEVMBackend
        from web3 import EthereumTesterProvider, Web3
        from web3.middleware import combine_middleware
        from web3.providers.eth_tester.defaults import API_ENDPOINTS
        from web3.providers.eth_tester.middleware import (
            default_transaction_fields_middleware,
            ethereum_tester_middleware,
        )

        # One extra funded dev key becomes the hidden faucet used by tg_fund.
        genesis_state = PyEVMBackend.generate_genesis_state(
            num_accounts=NUM_DEV_ACCOUNTS + 1
        )
        backend = PyEVMBackend(genesis_state=genesis_state)
        self._faucet_key = backend.account_keys[NUM_DEV_ACCOUNTS]
        backend.account_keys = backend.account_keys[:NUM_DEV_ACCOUNTS]

        self.tester = EthereumTester(backend)  # auto-mining stays on: we own the pool
        self.backend = backend
        self.provider = EthereumTesterProvider(self.tester)
        self.w3 = Web3(self.provider)
        self.chain_id = int(backend.chain.chain_id)
        self._api = API_ENDPOINTS
        self._lock = threading.RLock()
        self.automine = automine
        self._pool: dict[bytes, dict[int, PoolEntry]] = {}
        self._by_hash: dict[bytes, PoolEntry] = {}
        self._seq = 0
        self._dev_keys = {k.public_key.to_canonical_address(): k for k in backend.account_keys}
        self._pipeline = combine_middleware(
            middleware=(default_transaction_fields_middleware, ethereum_tester_middleware),
            w3=self.w3,
            provider_request_fn=self._inner,
        )
        self._custom = {
            "tg_fund": self._rpc_fund,
            "tg_mine": self._rpc_mine,
            "evm_mine": self._rpc_evm_mine,
            "tg_setAutomine": self._rpc_set_automine,
            "evm_setAutomine": self._rpc_set_automine,
            "tg_getAutomine": lambda params: self.automine,
            "hardhat_getAutomine": lambda params: self.automine,
            "tg_txpool": self._rpc_txpool,
            "tg_dropTransaction": self._rpc_drop,
            "tg_info": self._rpc_info,
        }

    # ---- entry point -------------------------------------------------------

    def handle(self, method: Any, params: Any) -> Any:
        """Return the JSON-encodable result or raise RpcError."""
        if not isinstance(method, str):
            raise RpcError(-32600, "invalid request: method must be a string")
        if params is None:
            params = []
        if not isinstance(params, list):
            raise RpcError(-32602, "invalid params: expected a list")
        with self._lock:
            custom = self._custom.get(method)
            if custom is not None:
                return to_jsonrpc(custom(params))
            params = self._preformat(method, params)
            try:
                response = self._pipeline(method, params)
            except RpcError:
                raise
            except Exception as exc:  # formatter failures on bad input, etc.
                raise self._map_exception(method, exc) from exc
            if "error" in response:
                err = response["error"]
                if isinstance(err, RpcError):
                    raise err
                raise RpcError(err.get("code", -32000), err.get("message", str(err)))
            return to_jsonrpc(self._postformat(method, response.get("result")))

    # ---- request/response shaping ----------------------------------------

    @staticmethod
    def _preformat(method: str, params: list) -> list:
        if method in ("eth_call", "eth_estimateGas", "eth_sendTransaction") and params:
            tx = params[0]
            if isinstance(tx, dict) and "input" in tx:
                tx = dict(tx)
                data = tx.pop("input")
                tx.setdefault("data", data)
                params = [tx, *params[1:]]
        return params

    @staticmethod
    def _fix_tx(tx: Any) -> Any:
        if not isinstance(tx, Mapping):
            return tx
        from web3.providers.eth_tester.middleware import (
            transaction_result_formatter,
            transaction_result_remapper,
        )

        tx = dict(transaction_result_remapper(transaction_result_formatter(dict(tx))))
        if "y_parity" in tx:
            tx["yParity"] = tx.pop("y_parity")
        return tx

    @staticmethod
    def _fix_log(entry: Any) -> Any:
        if not isinstance(entry, Mapping):
            return entry
        entry = dict(entry)
        entry.pop("type", None)  # eth-tester's "mined"/"pending" marker
        entry.setdefault("removed", False)
        return entry

    def _postformat(self, method: str, result: Any) -> Any:
        if result is None:
            return None
        if method in ("eth_getBlockByNumber", "eth_getBlockByHash") and isinstance(result, Mapping):
            result = dict(result)
            result["transactions"] = [self._fix_tx(t) for t in result.get("transactions", [])]
        elif method in (
            "eth_getTransactionByHash",
            "eth_getTransactionByBlockHashAndIndex",
            "eth_getTransactionByBlockNumberAndIndex",
        ):
            result = self._fix_tx(result)
        elif method == "eth_getTransactionReceipt" and isinstance(result, Mapping):
            result = dict(result)
            result.pop("state_root", None)  # pre-Byzantium field, bytes b"\x01"
            result["logs"] = [self._fix_log(e) for e in result.get("logs", [])]
        elif method in ("eth_getLogs", "eth_getFilterLogs", "eth_getFilterChanges") and isinstance(
            result, (list, tuple)
        ):
            result = [self._fix_log(e) for e in result]
        elif method == "eth_getStorageAt" and isinstance(result, int):
            result = result.to_bytes(32, "big")
        return result

    def _map_exception(self, method: str, exc: BaseException) -> RpcError:
        from eth_tester.exceptions import TransactionFailed
        from eth_tester.exceptions import ValidationError as TesterValidationError
        from eth_utils.exceptions import ValidationError as EthValidationError
        from web3.exceptions import ContractLogicError

        if isinstance(exc, RpcError):
            return exc
        if isinstance(exc, TransactionFailed):
            return _revert_error(exc)
        if isinstance(exc, ContractLogicError):
            data = exc.data if isinstance(exc.data, str) else None
            return RpcError(3, str(exc.message or "execution reverted"), data)
        if isinstance(exc, NotImplementedError):
            return RpcError(-32601, f"the method {method} is not implemented")
        if isinstance(exc, (TesterValidationError, EthValidationError, ValueError, TypeError)):
            return _server_error(str(exc) or type(exc).__name__)
        log.error("internal error in %s:\n%s", method, traceback.format_exc())
        return RpcError(-32603, f"internal error: {type(exc).__name__}: {exc}")

    # ---- inner dispatch (params already in eth-tester format) -------------

    def _inner(self, method: str, params: Any) -> dict:
        try:
            result = self._inner_result(method, list(params or []))
        except Exception as exc:
            return {"jsonrpc": "2.0", "id": 0, "error": self._map_exception(method, exc)}
        return {"jsonrpc": "2.0", "id": 0, "result": result}

    def _inner_result(self, method: str, params: list) -> Any:
        t = self.tester
        if method == "eth_sendRawTransaction":
            return "0x" + self._submit(_hex_to_bytes(params[0])).hex()
        if method == "eth_sendTransaction":
            return "0x" + self._submit(self._sign_dev_transaction(params[0])).hex()
        if method == "eth_getTransactionCount":
            block = params[1] if len(params) > 1 else "latest"
            if block == "pending":
                return self._pending_nonce(self._canonical(params[0]))
        if method == "eth_getTransactionByHash":
            entry = self._by_hash.get(_hex_to_bytes(params[0]))
            if entry is not None:
                return self._pending_tx_dict(entry)
        if method == "eth_getTransactionReceipt":
            if _hex_to_bytes(params[0]) in self._by_hash:
                return None
        if method == "eth_call":
            return self._call(*params[:2])
        if method == "eth_estimateGas":
            return self._estimate_gas(*params[:2])
        if method == "net_version":  # eth-tester says "1" (mainnet's id!)
            return str(self.chain_id)
        if method == "eth_gasPrice":
            return self._pending_base_fee() + DEFAULT_PRIORITY_FEE
        if method == "eth_feeHistory":
            return self._fee_history(*params)

        namespace, _, endpoint = method.partition("_")
        try:
            delegator = self._api[namespace][endpoint]
        except KeyError:
            raise RpcError(
                -32601, f"the method {method} does not exist/is not available"
            ) from None
        return delegator(t, params)

    # ---- helpers -----------------------------------------------------------

    @staticmethod
    def _canonical(address: Any) -> bytes:
        from eth_utils import is_address, to_canonical_address

        if not isinstance(address, str) or not is_address(address):
            raise RpcError(-32602, f"invalid argument: bad address {address!r}")
        return to_canonical_address(address)

    def _state(self):
        # state of the chain's pending header == latest state + already applied txs
        return self.backend.chain.get_vm().state

    def _pending_base_fee(self) -> int:
        return int(self.backend.chain.header.base_fee_per_gas)

    def _pending_nonce(self, sender: bytes) -> int:
        nonce = self._state().get_nonce(sender)
        queued = self._pool.get(sender, {})
        while nonce in queued:
            nonce += 1
        return nonce

    @staticmethod
    def _has_fee_fields(txn: Mapping) -> bool:
        return any(
            txn.get(k) is not None
            for k in ("gas_price", "max_fee_per_gas", "max_priority_fee_per_gas")
        )

    def _estimate_gas(self, txn: dict, block: Any = "latest") -> int:
        if block == "pending":  # eth-tester raises NotImplementedError for "pending"
            block = "latest"
        if isinstance(txn, Mapping) and not self._has_fee_fields(txn):
            # geth: no fee fields -> gas price 0, so the sender needs no ETH for gas
            # (eth-tester would default to 1 gwei and fail for an empty account).
            txn = dict(txn, max_fee_per_gas=0, max_priority_fee_per_gas=0)
        return self.tester.estimate_gas(txn, block)

    def _call(self, txn: dict, block: Any = "latest") -> Any:
        if not isinstance(txn, Mapping) or self._has_fee_fields(txn):
            return self.tester.call(txn, block)
        # geth semantics for a call without fee fields: gas price 0 and BASEFEE 0, so
        # an account without ETH can eth_call (eth-tester charges 1 gwei * block gas
        # limit up front: "cannot afford txn gas").
        from eth.vm.spoof import SpoofTransaction
        from eth_tester.backends.pyevm.main import _get_vm_for_block_number

        t, backend = self.tester, self.backend
        txn = dict(txn, max_fee_per_gas=0, max_priority_fee_per_gas=0)
        t.validator.validate_inbound_transaction(txn, txn_internal_type="call")
        raw_txn = dict(t.normalizer.normalize_inbound_transaction(txn))
        t.validator.validate_inbound_block_number(block)
        raw_block = t.normalizer.normalize_inbound_block_number(block)
        raw_txn.setdefault("gas", backend._max_available_gas())
        unsigned = backend._get_normalized_and_unsigned_evm_transaction(raw_txn, raw_block)
        spoofed = SpoofTransaction(unsigned, from_=raw_txn["from"])
        vm = _get_vm_for_block_number(backend.chain, raw_block)
        header = vm.get_header().copy(base_fee_per_gas=0)
        state = vm.build_state(vm.chaindb.db, header, vm.chain_context, vm.previous_hashes)
        snapshot = state.snapshot()
        try:
            computation = state.apply_transaction(spoofed)
        finally:
            state.revert(snapshot)
        if computation.is_error:
            from eth.exceptions import Revert

            err = computation._error
            if isinstance(err, Revert):
                raise _revert_error(err)
            raise _server_error(f"execution failed: {type(err).__name__}: {err}")
        return bytes(computation.output)

    def _pending_tx_dict(self, entry: PoolEntry) -> dict:
        from eth_tester.backends.pyevm.serializers import serialize_transaction

        raw = serialize_transaction(None, entry.tx, None, True)
        return self.tester.normalizer.normalize_outbound_transaction(raw)

    def _decode(self, raw: bytes):
        if not raw:
            raise _server_error("typed transaction too short")
        if raw[0] == 3:
            raise _server_error("transaction type not supported: blob transactions")
        try:
            tx = self.backend.chain.get_vm().get_transaction_builder().decode(raw)
        except Exception as exc:
            raise _server_error(f"rlp: invalid transaction: {exc}") from exc
        try:
            sender = tx.sender
        except Exception as exc:
            raise _server_error(f"invalid sender: {exc}") from exc
        return tx, sender

    def _submit(self, raw: bytes) -> bytes:
        """Validate and add a signed tx to the pool; mine it if automining."""
        from eth_utils import to_checksum_address

        tx, sender = self._decode(raw)
        txhash = tx.hash
        addr = to_checksum_address(sender)
        if txhash in self._by_hash:
            raise _server_error("already known")
        chain_id = getattr(tx, "chain_id", None)
        if chain_id is not None and chain_id != self.chain_id:
            raise _server_error(
                f"invalid chain id for signer: have {chain_id} want {self.chain_id}"
            )
        max_fee = int(tx.max_fee_per_gas)
        prio = int(tx.max_priority_fee_per_gas)
        if prio > max_fee:
            raise _server_error(
                "max priority fee per gas higher than max fee per gas: "
                f"address {addr}, maxPriorityFeePerGas: {prio}, maxFeePerGas: {max_fee}"
            )
        if tx.gas < tx.intrinsic_gas:
            raise _server_error(f"intrinsic gas too low: gas {tx.gas}, minimum needed {tx.intrinsic_gas}")
        if tx.gas > self.backend.chain.header.gas_limit:
            raise _server_error("exceeds block gas limit")
        state = self._state()
        state_nonce = state.get_nonce(sender)
        if tx.nonce < state_nonce:
            raise _server_error(f"nonce too low: address {addr}, tx: {tx.nonce} state: {state_nonce}")
        cost = tx.gas * max_fee + tx.value
        balance = state.get_balance(sender)
        if balance < cost:
            raise _server_error(
                f"insufficient funds for gas * price + value: address {addr} have {balance} want {cost}"
            )
        if self.automine and max_fee < self._pending_base_fee():
            raise _server_error(
                f"max fee per gas less than block base fee: address {addr}, "
                f"maxFeePerGas: {max_fee}, baseFee: {self._pending_base_fee()}"
            )
        queued = self._pool.setdefault(sender, {})
        old = queued.get(tx.nonce)
        if old is not None:
            # geth's default price bump: 10% on both fee caps
            if max_fee * 10 < old.max_fee * 11 or prio * 10 < old.priority_fee * 11:
                raise _server_error("replacement transaction underpriced")
            del self._by_hash[old.hash]
        self._seq += 1
        entry = PoolEntry(bytes(raw), tx, txhash, sender, tx.nonce, max_fee, prio, self._seq)
        queued[tx.nonce] = entry
        self._by_hash[txhash] = entry
        log.info("pooled tx %s from %s nonce %d", "0x" + txhash.hex(), addr, tx.nonce)
        if self.automine:
            _, failed = self._mine(1, only_if_ready=True)
            if txhash in failed:
                raise _server_error(failed[txhash])
        return txhash

    def _drop(self, entry: PoolEntry) -> None:
        queued = self._pool.get(entry.sender, {})
        if queued.get(entry.nonce) is entry:
            del queued[entry.nonce]
        if not queued:
            self._pool.pop(entry.sender, None)
        self._by_hash.pop(entry.hash, None)

    def _apply_ready(self) -> tuple[list[bytes], dict[bytes, str]]:
        """Apply every executable pooled tx to the chain's pending block."""
        applied: list[bytes] = []
        failed: dict[bytes, str] = {}
        progress = True
        while progress:
            progress = False
            senders = sorted(self._pool, key=lambda s: min(e.seq for e in self._pool[s].values()))
            for sender in senders:
                state_nonce = self._state().get_nonce(sender)
                for entry in list(self._pool.get(sender, {}).values()):
                    if entry.nonce < state_nonce:  # replaced by a mined tx
                        self._drop(entry)
                        failed[entry.hash] = "nonce too low"
                entry = self._pool.get(sender, {}).get(state_nonce)
                if entry is None or entry.max_fee < self._pending_base_fee():
                    continue
                try:
                    self.backend.send_raw_transaction(entry.raw)
                except Exception as exc:  # invalid against current state: evict
                    self._drop(entry)
                    failed[entry.hash] = str(exc) or type(exc).__name__
                    log.info("dropped tx %s: %s", "0x" + entry.hash.hex(), failed[entry.hash])
                    continue
                self._drop(entry)
                applied.append(entry.hash)
                with contextlib.suppress(Exception):  # feed eth-tester's filters
                    self.tester._handle_filtering_for_transaction("0x" + entry.hash.hex())
                progress = True
        return applied, failed

    def _mine(self, blocks: int = 1, only_if_ready: bool = False) -> tuple[list[str], dict]:
        hashes: list[str] = []
        failed: dict[bytes, str] = {}
        for _ in range(blocks):
            applied, f = self._apply_ready()
            failed.update(f)
            if only_if_ready and not applied:
                break
            hashes.extend(self.tester.mine_blocks(1))
        return hashes, failed

    def _sign_dev_transaction(self, txn: dict) -> bytes:
        """eth_sendTransaction from an unlocked dev account -> signed raw tx."""
        from eth_account import Account
        from eth_utils import to_checksum_address

        if not isinstance(txn, Mapping):
            raise RpcError(-32602, "invalid argument: transaction must be an object")
        sender = self._canonical(txn.get("from"))
        key = self._dev_keys.get(sender)
        if key is None:
            raise _server_error("unknown account")
        unsigned: dict[str, Any] = {
            "chainId": txn.get("chain_id", self.chain_id),
            "nonce": txn["nonce"] if txn.get("nonce") is not None else self._pending_nonce(sender),
            "value": txn.get("value", 0),
            "data": txn.get("data", "0x"),
        }
        if txn.get("to"):
            unsigned["to"] = to_checksum_address(txn["to"])
        if txn.get("access_list"):
            unsigned["accessList"] = [
                {"address": a["address"], "storageKeys": list(a.get("storage_keys", []))}
                for a in txn["access_list"]
            ]
        if txn.get("gas_price") is not None:
            unsigned["gasPrice"] = txn["gas_price"]
        else:
            prio = txn.get("max_priority_fee_per_gas")
            max_fee = txn.get("max_fee_per_gas")
            if prio is None:
                prio = DEFAULT_PRIORITY_FEE if max_fee is None else min(DEFAULT_PRIORITY_FEE, max_fee)
            if max_fee is None:
                max_fee = 2 * self._pending_base_fee() + prio
            unsigned.update(type=2, maxPriorityFeePerGas=prio, maxFeePerGas=max_fee)
        if txn.get("gas") is not None:
            unsigned["gas"] = txn["gas"]
        else:
            est = {k: txn[k] for k in ("from", "to", "value", "data") if txn.get(k) is not None}
            unsigned["gas"] = self.tester.estimate_gas(est)
        return bytes(Account.sign_transaction(unsigned, key.to_bytes()).raw_transaction)

    def _fee_history(self, block_count: Any, newest: Any = "latest", percentiles: Any = None) -> dict:
        chain = self.backend.chain
        count = _hex_to_int(block_count)
        if not 1 <= count <= 1024:
            raise _server_error("block_count must be between 1 and 1024")
        head = chain.get_canonical_head().block_number
        if newest in ("latest", "pending", "safe", "finalized"):
            newest_n = head
        elif newest == "earliest":
            newest_n = 0
        else:
            newest_n = _hex_to_int(newest)
        if newest_n > head:
            raise _server_error(f"request beyond head block: requested {newest_n}, head {head}")
        percentiles = [float(p) for p in (percentiles or [])]
        if any(not 0 <= p <= 100 for p in percentiles) or percentiles != sorted(percentiles):
            raise _server_error("invalid reward percentiles")
        oldest = max(0, newest_n - count + 1)
        base_fees: list[int] = []
        ratios: list[float] = []
        rewards: list[list[int]] = []
        for n in range(oldest, newest_n + 1):
            block = chain.get_canonical_block_by_number(n)
            header = block.header
            base_fee = int(header.base_fee_per_gas or 0)
            base_fees.append(base_fee)
            ratios.append(header.gas_used / header.gas_limit if header.gas_limit else 0.0)
            if percentiles:
                rewards.append(self._block_rewards(block, base_fee, percentiles))
        if newest_n == head:
            base_fees.append(self._pending_base_fee())
        else:
            base_fees.append(int(chain.get_canonical_block_by_number(newest_n + 1).header.base_fee_per_gas))
        result: dict[str, Any] = {
            "oldest_block": oldest,
            "base_fee_per_gas": base_fees,
            "gas_used_ratio": ratios,
        }
        if percentiles:
            result["reward"] = rewards
        return result

    def _block_rewards(self, block, base_fee: int, percentiles: list[float]) -> list[int]:
        txs = block.transactions
        if not txs:
            return [0 for _ in percentiles]
        receipts = block.get_receipts(self.backend.chain.chaindb)
        items = []
        prev = 0
        for tx, receipt in zip(txs, receipts):
            used = receipt.gas_used - prev  # receipts carry cumulative gas
            prev = receipt.gas_used
            tip = min(int(tx.max_priority_fee_per_gas), int(tx.max_fee_per_gas) - base_fee)
            items.append((tip, used))
        items.sort()
        total = sum(u for _, u in items)
        out = []
        idx, cumulative = 0, items[0][1]
        for p in percentiles:
            threshold = total * p / 100
            while cumulative < threshold and idx < len(items) - 1:
                idx += 1
                cumulative += items[idx][1]
            out.append(items[idx][0])
        return out

    # ---- custom methods ---------------------------------------------------

    def _rpc_fund(self, params: list) -> str:
        from eth_account import Account

        if len(params) < 2:
            raise RpcError(-32602, "tg_fund expects [address, wei]")
        to = self._canonical(params[0])
        wei = _hex_to_int(params[1])
        faucet = self._faucet_key.public_key.to_canonical_address()
        prio = DEFAULT_PRIORITY_FEE
        raw = Account.sign_transaction(
            {
                "type": 2,
                "chainId": self.chain_id,
                "nonce": self._state().get_nonce(faucet),
                "to": self._faucet_checksum(to),
                "value": wei,
                "gas": 21000 if not self._state().get_code(to) else 200_000,
                "maxPriorityFeePerGas": prio,
                "maxFeePerGas": 2 * self._pending_base_fee() + prio,
            },
            self._faucet_key.to_bytes(),
        ).raw_transaction
        # Own block, bypassing the pool: pooled txs stay pending.
        txhash = self.backend.send_raw_transaction(bytes(raw))
        self.tester.mine_blocks(1)
        return "0x" + bytes(txhash).hex()

    @staticmethod
    def _faucet_checksum(address: bytes) -> str:
        from eth_utils import to_checksum_address

        return to_checksum_address(address)

    def _rpc_mine(self, params: list) -> list[str]:
        n = _hex_to_int(params[0]) if params else 1
        if not 1 <= n <= 10_000:
            raise RpcError(-32602, "block count must be between 1 and 10000")
        return self._mine(n)[0]

    def _rpc_evm_mine(self, params: list) -> str:
        n = 1
        if params:
            arg = params[0]
            if isinstance(arg, Mapping):  # hardhat/anvil style {"blocks": n}
                arg = arg.get("blocks", 1)
            n = _hex_to_int(arg)
        self._rpc_mine([n])
        return "0x0"

    def _rpc_set_automine(self, params: list) -> bool:
        if not params or not isinstance(params[0], bool):
            raise RpcError(-32602, "expected [true|false]")
        self.automine = params[0]
        if self.automine and self._pool:
            self._mine(1, only_if_ready=True)
        return True

    def _rpc_txpool(self, params: list) -> list[dict]:
        from eth_utils import to_checksum_address

        entries = sorted(self._by_hash.values(), key=lambda e: e.seq)
        return [
            {"hash": "0x" + e.hash.hex(), "from": to_checksum_address(e.sender), "nonce": e.nonce}
            for e in entries
        ]

    def _rpc_drop(self, params: list) -> bool:
        if not params:
            raise RpcError(-32602, "expected [txHash]")
        entry = self._by_hash.get(_hex_to_bytes(params[0]))
        if entry is None:
            return False
        self._drop(entry)
        return True

    def _rpc_info(self, params: list) -> dict:
        from eth_utils import to_checksum_address

        return {
            "chainId": self.chain_id,
            "automine": self.automine,
            "blockNumber": self.backend.chain.get_canonical_head().block_number,
            "accounts": [to_checksum_address(a) for a in self._dev_keys],
            "faucet": to_checksum_address(self._faucet_key.public_key.to_canonical_address()),
        }


# --------------------------------------------------------------------------- #
# HTTP
# --------------------------------------------------------------------------- #


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # else ~40 ms per keep-alive request (Nagle + delayed ACK)
    server_version = "tradeguard-chain-server/1"
    rpc: ChainRPC  # set on the subclass

    def log_message(self, fmt: str, *args: Any) -> None:  # silence default stderr log
        log.debug("http: " + fmt, *args)

    def _send(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # simple health check
        self._send(200, b"ok\n", "text/plain")

    def do_POST(self) -> None:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = 0
        raw = self.rfile.read(length) if length > 0 else b""
        try:
            payload = json.loads(raw)
        except ValueError:
            reply: Any = {"jsonrpc": "2.0", "id": None, "error": {"code": -32700, "message": "parse error"}}
        else:
            if isinstance(payload, list):
                reply = [self._one(item) for item in payload] if payload else self._invalid(None)
            else:
                reply = self._one(payload)
        self._send(200, json.dumps(reply).encode())

    @staticmethod
    def _invalid(req_id: Any) -> dict:
        return {"jsonrpc": "2.0", "id": req_id, "error": {"code": -32600, "message": "invalid request"}}

    def _one(self, req: Any) -> dict:
        if not isinstance(req, dict):
            return self._invalid(None)
        req_id = req.get("id")
        method = req.get("method")
        start = time.monotonic()
        try:
            result = self.rpc.handle(method, req.get("params", []))
        except RpcError as exc:
            log.info("%s -> error %s (%.1f ms)", method, exc.message, (time.monotonic() - start) * 1e3)
            return {"jsonrpc": "2.0", "id": req_id, "error": exc.to_json()}
        except Exception as exc:  # never kill the connection on a bug
            log.error("internal error in %s:\n%s", method, traceback.format_exc())
            return {
                "jsonrpc": "2.0",
                "id": req_id,
                "error": {"code": -32603, "message": f"internal error: {type(exc).__name__}: {exc}"},
            }
        log.info("%s (%.1f ms)", method, (time.monotonic() - start) * 1e3)
        return {"jsonrpc": "2.0", "id": req_id, "result": result}


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class ChainServer:
    """In-process variant: serves a fresh chain from a background thread."""

    def __init__(self, automine: bool = True, port: int = 0) -> None:
        self.rpc = ChainRPC(automine=automine)
        handler = type("Handler", (_Handler,), {"rpc": self.rpc})
        self.httpd = _HTTPServer((HOST, port), handler)
        self.port = self.httpd.server_address[1]
        self.url = f"http://{HOST}:{self.port}"
        self._thread: threading.Thread | None = None

    def start(self) -> str:
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.1},
            name="chain-server", daemon=True,
        )
        self._thread.start()
        return self.url

    def stop(self) -> None:
        if self._thread is not None:
            self.httpd.shutdown()
            self._thread.join(5)
            self._thread = None
        self.httpd.server_close()

    def __enter__(self) -> ChainServer:
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


class ChainServerProcess:
    """Run this file as a subprocess; always call stop() (or use ``with``)."""

    def __init__(self, automine: bool = True, extra_args: tuple[str, ...] = (),
                 python: str | None = None, startup_timeout: float = 30.0) -> None:
        self.automine = automine
        self.extra_args = tuple(extra_args)
        self.python = python or sys.executable
        self.startup_timeout = startup_timeout
        self.proc: subprocess.Popen | None = None
        self.url: str | None = None
        self.port: int | None = None
        self._tmp: tempfile.TemporaryDirectory | None = None
        self.log_path: str | None = None

    def start(self) -> str:
        self._tmp = tempfile.TemporaryDirectory(prefix="tg-chain-")
        port_file = os.path.join(self._tmp.name, "port")
        self.log_path = os.path.join(self._tmp.name, "server.log")
        cmd = [self.python, os.path.abspath(__file__), "--port", "0", "--port-file", port_file,
               "--exit-on-stdin-eof", *self.extra_args]
        if not self.automine:
            cmd.append("--manual-mine")
        with open(self.log_path, "wb") as logf:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=logf, stderr=logf)
        deadline = time.monotonic() + self.startup_timeout
        try:
            while True:
                if os.path.exists(port_file):
                    with open(port_file) as fh:
                        text = fh.read().strip()
                    if text:
                        self.port = int(text)
                        break
                if self.proc.poll() is not None:
                    raise RuntimeError(f"chain server exited early (rc={self.proc.returncode}):\n{self.log()}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"chain server did not start in {self.startup_timeout}s:\n{self.log()}")
                time.sleep(0.05)
        except BaseException:
            self.stop()
            raise
        self.url = f"http://{HOST}:{self.port}"
        return self.url

    def log(self) -> str:
        if self.log_path and os.path.exists(self.log_path):
            with open(self.log_path, errors="replace") as fh:
                return fh.read()
        return ""

    def stop(self, timeout: float = 5.0) -> int | None:
        rc = None
        proc, self.proc = self.proc, None
        if proc is not None:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout)
            rc = proc.returncode
            if proc.stdin is not None:
                with contextlib.suppress(OSError):
                    proc.stdin.close()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
        return rc

    def __enter__(self) -> ChainServerProcess:
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


# --------------------------------------------------------------------------- #
# CLI
# --------------------------------------------------------------------------- #


def _write_atomic(path: str, text: str) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1 (0 = pick a free one)")
    parser.add_argument("--port-file", help="write the port number here once listening (removed on exit)")
    parser.add_argument("--manual-mine", action="store_true",
                        help="do not mine on submission; use evm_mine/tg_mine")
    parser.add_argument("--exit-on-stdin-eof", action="store_true",
                        help="shut down when stdin is closed (parent died)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every request to stderr")
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s chain_server %(levelname)s %(message)s")

    server = ChainServer(automine=not args.manual_mine, port=args.port)
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if args.exit_on_stdin_eof:
        def watch_stdin() -> None:
            # raw fd reads: a daemon thread blocked in sys.stdin.buffer.read() makes
            # interpreter shutdown abort ("could not acquire lock for <stdin>").
            fd = sys.stdin.fileno()
            with contextlib.suppress(Exception):
                while os.read(fd, 4096):
                    pass
            stop.set()
        threading.Thread(target=watch_stdin, name="stdin-watch", daemon=True).start()

    server.start()
    if args.port_file:
        _write_atomic(args.port_file, f"{server.port}\n")
    print(server.url, flush=True)
    log.warning("listening on %s (chain id %d, automine=%s)", server.url, server.rpc.chain_id,
                server.rpc.automine)
    try:
        while not stop.wait(0.2):
            pass
    finally:
        server.stop()
        if args.port_file:
            with contextlib.suppress(OSError):
                os.unlink(args.port_file)
    return 0


if __name__ == "__main__":
    sys.exit(main())
