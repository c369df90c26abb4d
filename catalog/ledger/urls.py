"""Ledger URLs: which database a ``postgresql://`` URL names, and how to show one without its password."""

from __future__ import annotations

from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

URL_SCHEMES = ("postgresql", "postgres")


def is_postgres_url(url: str | None) -> bool:
    """Whether ``url`` names a PostgreSQL database (``postgresql://…``)."""
    return bool(url) and urlsplit(str(url)).scheme in URL_SCHEMES


def chosen_ledger_url(given: str | None, configured: str | None) -> str | None:
    """A flow's ``ledger_url`` parameter against ``STEMCAT_LEDGER_URL``: None takes the configured
    one, ``""`` insists on ``ledger.sqlite`` in the data directory (the demo, against the simulator)."""
    if given is None:
        return configured or None
    return given or None


def masked_url(url: str) -> str:
    """``url`` with its password (in the user part or the query) replaced by ``***``, for messages."""
    return _rebuild(url, "***")


def split_password(url: str) -> tuple[str, str | None]:
    """``url`` without its password, and the password (None when it has none).

    libpq reads a password from ``PGPASSWORD`` or ``~/.pgpass`` as well, so the URL that travels
    (a Prefect flow parameter, which Prefect stores) need not carry it.
    """
    parts = urlsplit(url)
    password = parts.password
    if password is None:
        password = next((value for key, value in parse_qsl(parts.query) if key.lower() == "password"), None)
    else:
        password = unquote(password)
    return _rebuild(url, None), password


def _rebuild(url: str, replacement: str | None) -> str:
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        if ":" in userinfo:
            user = userinfo.split(":", 1)[0]
            userinfo = user if replacement is None else f"{user}:{replacement}"
        netloc = f"{userinfo}@{host}"
    pairs = [
        (key, replacement if key.lower() == "password" else value)
        for key, value in parse_qsl(parts.query, keep_blank_values=True)
        if not (key.lower() == "password" and replacement is None)
    ]
    return urlunsplit((parts.scheme, netloc, parts.path, urlencode(pairs, safe="*"), parts.fragment))
