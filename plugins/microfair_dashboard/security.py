"""Authentication and permissions of the dashboard: Airflow's own, for every route.

* Who: :data:`airflow.api_fastapi.core_api.security.GetUserDep` (the ``_token`` cookie the
  Airflow UI sets, or an ``Authorization: Bearer`` JWT). No token, no page: 401.
* What they may see: the auth manager's ``is_authorized_dag(GET, RUN)``.
* What they may re-run: ``is_authorized_dag(PUT, TASK_INSTANCE, dag_id)``, the very
  check Airflow's ``clearTaskInstances`` endpoint makes; the endpoint checks it again.
* As whom the REST API is called: the user's own JWT (the one they presented).
* The confirmation form carries a signed, user-bound, short-lived token, so a forged
  or replayed POST is refused even from a logged-in browser.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from airflow.api_fastapi.app import get_auth_manager
from airflow.api_fastapi.auth.managers.base_auth_manager import COOKIE_NAME_JWT_TOKEN
from airflow.api_fastapi.auth.managers.models.base_user import BaseUser
from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity, DagDetails
from airflow.api_fastapi.core_api.security import get_user
from airflow.configuration import conf

CONFIRM_MAX_AGE_S = 600


def require_reader(user: Annotated[BaseUser, Depends(get_user)]) -> BaseUser:
    """Any authenticated user allowed to read DAG runs may read the dashboard."""
    if not get_auth_manager().is_authorized_dag(method="GET", access_entity=DagAccessEntity.RUN, user=user):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "You may not read DAG runs, so not the dashboard either")
    return user


Reader = Annotated[BaseUser, Depends(require_reader)]


def may_clear(user: BaseUser, dag_id: str | None) -> bool:
    """May ``user`` clear task instances of ``dag_id``? (what ``clearTaskInstances`` requires)."""
    if not dag_id:
        return False
    return bool(get_auth_manager().is_authorized_dag(
        method="PUT", access_entity=DagAccessEntity.TASK_INSTANCE, details=DagDetails(id=dag_id), user=user))


def user_token(request: Request, user: BaseUser) -> str:
    """The JWT the user authenticated this request with (bearer header first, then the UI cookie)."""
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    token = request.cookies.get(COOKIE_NAME_JWT_TOKEN)
    if token:
        return token
    # Authenticated by a trusted middleware without a cookie we can forward: issue one for the same user.
    return get_auth_manager().generate_jwt(user)


def _serializer() -> URLSafeTimedSerializer:
    secret = conf.get("api", "secret_key", fallback=None) or conf.get("api_auth", "jwt_secret", fallback=None)
    if not secret:
        raise HTTPException(status.HTTP_500_INTERNAL_SERVER_ERROR, "[api] secret_key is not set")
    return URLSafeTimedSerializer(secret, salt="microfair-dashboard-rerun")


def confirm_token(user: BaseUser, event_id: int) -> str:
    return _serializer().dumps({"u": user.get_id(), "e": event_id})


def check_confirm_token(token: str | None, user: BaseUser, event_id: int) -> None:
    if not token:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "missing confirmation: open the re-run page and confirm")
    try:
        data = _serializer().loads(token, max_age=CONFIRM_MAX_AGE_S)
    except SignatureExpired:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "the confirmation expired: open the re-run page again")
    except BadSignature:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "invalid confirmation token")
    if data.get("u") != user.get_id() or data.get("e") != event_id:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "this confirmation was issued for another user or item")


def login_url(request: Request) -> str:
    try:
        return get_auth_manager().get_url_login(next_url=str(request.url))
    except Exception:
        return "/"
