"""Payment backends: a Protocol any provider can implement, and the default ledger in the database."""

from __future__ import annotations

from typing import Protocol

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from faceatlas.apps.retail.db import LedgerEntry
from faceatlas.db import erases
from faceatlas.errors import NotFound


class PaymentBackend(Protocol):
    """Moves money. Every call carries an idempotency key: repeating a call with the same key
    returns the first call's transaction reference and moves no money again."""

    def charge(self, account: str, amount_cents: int, currency: str, *, idempotency_key: str) -> str:
        """Charge ``account`` (a member's payment method reference); returns a transaction ref."""
        ...

    def refund(self, transaction_ref: str, amount_cents: int, currency: str, *, idempotency_key: str) -> str:
        """Give back ``amount_cents`` of a charge; returns the refund's transaction ref."""
        ...

    def forget(self, account: str) -> None:
        """Erase the account reference from the backend's own records (member erasure)."""
        ...


class LedgerPayments:
    """The default backend: rows in ``retail_ledger``, unique per idempotency key."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def charge(self, account: str, amount_cents: int, currency: str, *, idempotency_key: str) -> str:
        """Book a charge (positive amount) once per key."""
        return self._book("charge", account, amount_cents, currency, idempotency_key, None)

    def refund(self, transaction_ref: str, amount_cents: int, currency: str, *, idempotency_key: str) -> str:
        """Book a refund (negative amount) against ``transaction_ref`` once per key."""
        with self._sessions() as session:
            account = session.scalar(select(LedgerEntry.account).where(LedgerEntry.id == _ledger_id(transaction_ref)))
        if account is None:
            raise NotFound(f"no ledger transaction {transaction_ref}")
        return self._book("refund", account, -amount_cents, currency, idempotency_key, transaction_ref)

    def forget(self, account: str) -> None:
        """Replace the account reference by ``erased`` in every row (the amounts stay booked)."""
        with self._sessions.begin() as session:
            session.execute(update(LedgerEntry).where(LedgerEntry.account == account).values(account="erased"))
            erases(session)

    def _book(self, kind: str, account: str, amount: int, currency: str, key: str, reference: str | None) -> str:
        try:
            with self._sessions.begin() as session:
                row = LedgerEntry(idempotency_key=key, account=account, kind=kind, amount_cents=amount,
                                  currency=currency, reference=reference)
                session.add(row)
                session.flush()
                return f"ledger:{row.id}"
        except IntegrityError:
            with self._sessions() as session:
                existing = session.scalar(select(LedgerEntry.id).where(LedgerEntry.idempotency_key == key))
            if existing is None:
                raise
            return f"ledger:{existing}"


def _ledger_id(transaction_ref: str) -> int:
    prefix, _, number = transaction_ref.partition(":")
    if prefix != "ledger" or not number.isdigit():
        raise NotFound(f"not a ledger transaction: {transaction_ref}")
    return int(number)
