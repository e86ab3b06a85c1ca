"""Per-user scoping of user-owned rows, in one place, enforced twice.

1. Django. For the length of a web request (`RequestScopeMiddleware`) a scope is current:
   the signed-in user's, `staff` (a staff user in the admin), `system` (operational
   endpoints such as /metrics) or nobody's (not signed in). In a user's or nobody's scope, a
   user-owned queryset must say whose rows it reads with `for_user(...)`, and only the
   current user's: evaluating one that does not raises UnscopedQueryError. Workers and
   management commands run outside any request scope and are not checked here.
   A subquery (`Exists(...)`) is part of its outer query and is not checked on its own.
2. PostgreSQL row-level security (migration trading 0006). The same scope is written to the
   database session (`oracle.scope`, `oracle.user_id`); the policies on every user-owned table
   admit only the user's rows, or all rows in the staff and system scopes, so a query that
   slips past both (raw SQL, a forgotten filter) still sees only the user's rows. An empty
   setting admits nothing.

No ATOMIC_REQUESTS: the web runs in autocommit, so a per-transaction `SET LOCAL` would last
one statement. The scope is therefore set on the session with `set_config(..., false)` when
a request starts (or its user is authenticated), and cleared when it ends. It cannot leak into
the next request: a connection belongs to one thread, which serves one request at a time;
every request overwrites both settings before its first query and clears them in `finally`;
and if clearing fails the connection is closed, so the next query opens a fresh one with
nothing set (which sees nothing).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Self

from django.db import connection, models
from django.urls import reverse

USER, STAFF, SYSTEM, NOBODY = "user", "staff", "system", ""


class UnscopedQueryError(RuntimeError):
    """A bug: request code read user-owned rows without naming whose (code UNSCOPED_QUERY)."""

    code = "UNSCOPED_QUERY"


@dataclass(frozen=True)
class Scope:
    kind: str
    user_id: int | None = None

    @property
    def all_users(self) -> bool:
        return self.kind in (STAFF, SYSTEM)


_current: ContextVar[Scope | None] = ContextVar("oracle_request_scope", default=None)


def _database_scope_set(scope: Scope) -> None:
    if connection.vendor != "postgresql":
        return  # SQLite (the demo) has no row-level security
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT set_config('oracle.scope', %s, false), set_config('oracle.user_id', %s, false)",
            [scope.kind, "" if scope.user_id is None else str(scope.user_id)],
        )


def _database_scope_clear() -> None:
    """Nothing set on this thread's connection, without opening one just for that."""
    if connection.vendor != "postgresql" or connection.connection is None:
        return  # no open connection: a new one starts with nothing set
    try:
        _database_scope_set(Scope(NOBODY))
    except Exception:
        # A connection we cannot clear is never reused: the next query opens a fresh one.
        connection.close()


def scope_enter(scope: Scope) -> None:
    """Makes `scope` the current request's scope, in Django and in the database session."""
    _current.set(scope)
    _database_scope_set(scope)


def scope_enter_user(user) -> None:
    """The authenticated `user`'s scope, once DRF knows who it is."""
    scope_enter(Scope(USER, user.pk))


def scope_narrow_to_user(user) -> None:
    """Inside a request, `user`'s scope from here on (a request that learns whose it is
    late, such as a bot's webhook); outside one, nothing changes."""
    if _current.get() is not None:
        scope_enter_user(user)


@contextlib.contextmanager
def request_scope(scope: Scope) -> Iterator[None]:
    """A request's scope for its whole length; cleared at the end, whatever happens."""
    token = _current.set(scope)
    try:
        if scope.kind == NOBODY:
            _database_scope_clear()
        else:
            _database_scope_set(scope)
        yield
    finally:
        _current.reset(token)
        _database_scope_clear()


def in_user_scope() -> bool:
    """Inside a request limited to one user's rows (or nobody's)."""
    scope = _current.get()
    return scope is not None and not scope.all_users


@contextlib.contextmanager
def scope_system() -> Iterator[None]:
    """Every user's rows for the length of the block, inside a request; then the request's
    scope again. For reads that must span users by design (the shared exchange account's
    balance recheck sums every user's claims). Outside a request it changes nothing: there
    the database role decides."""
    previous = _current.get()
    if previous is None:
        yield
        return
    scope_enter(Scope(SYSTEM))
    try:
        yield
    finally:
        scope_enter(previous)


def system_scope_view(view):
    """For operational views that report on every user's rows (metrics), never user data."""

    @functools.wraps(view)
    def wrapper(request, *args, **kwargs):
        scope_enter(Scope(SYSTEM))
        return view(request, *args, **kwargs)

    return wrapper


class RequestScopeMiddleware:
    """Opens the request scope: the session user's, or staff in the admin for a staff user.

    Token-authenticated API users are known only inside DRF:
    `accounts.authentication.ApiTokenAuthentication` enters their scope. Must come after
    AuthenticationMiddleware.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        with request_scope(self._scope_of(request)):
            return self.get_response(request)

    @staticmethod
    def _scope_of(request) -> Scope:
        user = getattr(request, "user", None)
        if user is None or not user.is_authenticated:
            return Scope(NOBODY)
        # The admin itself refuses anyone who is not active staff (admin_view).
        if user.is_active and user.is_staff and request.path.startswith(reverse("admin:index")):
            return Scope(STAFF, user.pk)
        return Scope(USER, user.pk)


class UserOwnedQuerySet(models.QuerySet):
    """Rows that belong to one user (a `user` foreign key)."""

    _scoped = False

    def for_user(self, user) -> Self:
        """Only `user`'s rows (a user or a user id). Anonymous or None sees nothing."""
        if user is None or (not isinstance(user, int) and not user.is_authenticated):
            chained = self.none()
        else:
            user_id = user if isinstance(user, int) else user.pk
            scope = _current.get()
            if scope is not None and not scope.all_users and scope.user_id != user_id:
                raise UnscopedQueryError(
                    f"UNSCOPED_QUERY: {self.model.__name__} rows of user #{user_id} read in the "
                    f"request scope of user #{scope.user_id}."
                )
            chained = self.filter(user_id=user_id)
        chained._scoped = True
        return chained

    def visible(self) -> Self:
        """The rows the current scope may see, the same rule as the database policies: the
        user's own in a user's request, all in the staff and system scopes and outside
        requests. For services shared by request code and workers that act on a row by id."""
        scope = _current.get()
        if scope is not None and not scope.all_users:
            return self.for_user(scope.user_id)
        chained = self.all()
        chained._scoped = True
        return chained

    def _check_scoped(self) -> None:
        scope = _current.get()
        if scope is None or scope.all_users or self._scoped:
            return
        raise UnscopedQueryError(
            f"UNSCOPED_QUERY: {self.model.__name__} queried without for_user(...) inside a "
            "request; name whose rows it reads."
        )

    def _clone(self):
        clone = super()._clone()
        clone._scoped = self._scoped
        return clone

    # Combinations that widen a result are scoped only if every part is.
    def _scoped_if_all(self, combined, parts) -> Self:
        combined = combined._chain()  # a copy: Django may return one of the parts itself
        combined._scoped = all(getattr(part, "_scoped", False) for part in parts)
        return combined

    def __or__(self, other):
        return self._scoped_if_all(super().__or__(other), [self, other])

    def __xor__(self, other):
        return self._scoped_if_all(super().__xor__(other), [self, other])

    def union(self, *other_qs, all=False):
        return self._scoped_if_all(super().union(*other_qs, all=all), [self, *other_qs])

    # Every way a queryset reaches the database.
    def _fetch_all(self):
        if self._result_cache is None:
            self._check_scoped()
        super()._fetch_all()

    def iterator(self, *args, **kwargs):
        self._check_scoped()
        return super().iterator(*args, **kwargs)

    def count(self):
        self._check_scoped()
        return super().count()

    def exists(self):
        self._check_scoped()
        return super().exists()

    def aggregate(self, *args, **kwargs):
        self._check_scoped()
        return super().aggregate(*args, **kwargs)

    def update(self, **kwargs):
        self._check_scoped()
        return super().update(**kwargs)

    def delete(self):
        self._check_scoped()
        return super().delete()
