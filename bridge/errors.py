"""The error types. Each carries, in words, what the operator should do next.

The CLI turns a BridgeError into one line and an exit code; the pipeline turns a PublishError
into a delivery state. Nothing else should need to know an HTTP status code.
"""

from __future__ import annotations

from datetime import datetime


def one_line(text: str) -> str:
    """A reason for the log and the database, on one line: a server's multi-line text collapsed."""
    return " ".join(str(text).split())


class BridgeError(Exception):
    """Base class: `str(error)` is a complete sentence an operator can act on."""


class ConfigError(BridgeError):
    """settings.toml (or a secret) is unusable. Holds every problem found, each with its key path."""

    def __init__(self, problems: list[str], path: str | None = None):
        self.problems = list(problems)
        self.path = path
        where = f" in {path}" if path else ""
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{len(self.problems)} problem(s){where}:\n{lines}")


class DatabaseError(BridgeError):
    """The database cannot be opened or migrated."""


class FetchError(BridgeError):
    """A source could not be fetched or read. `reason` is short and human ("timed out after 20s")."""

    def __init__(self, url: str, reason: str):
        self.url = url
        self.reason = one_line(reason)
        super().__init__(f"{url}: {self.reason}")


class FeedParseError(FetchError):
    """The body is not a feed we can read."""


# --- Publishing outcomes -------------------------------------------------------------------------
# A publisher returns the remote id on success or raises exactly one of these. The delivery stage
# maps them to states; publishers never touch the database.


class PublishError(BridgeError):
    """Base class for everything a publisher may raise."""

    def __init__(self, message: str):
        self.message = one_line(message)  # every reason a publisher gives is logged and stored
        super().__init__(self.message)


class RetryLater(PublishError):
    """Never sent (nothing reached the network, or it answered that it took nothing): try again. `retry_at` is set when the network said when (rate limit reset);
    otherwise the caller backs off exponentially. `counts_as_attempt` is False for rate limits,
    which are not the post's fault."""

    def __init__(self, message: str, retry_at: datetime | None = None, counts_as_attempt: bool = True):
        self.retry_at = retry_at
        self.counts_as_attempt = counts_as_attempt
        super().__init__(message)


class TargetPaused(PublishError):
    """The target cannot post at all until the operator acts (bad credentials, missing access).
    The delivery stays pending; the target is paused with this message."""


class PostRejected(PublishError):
    """The network refused this post for good (invalid text). The delivery fails; others go on."""


class InDoubt(PublishError):
    """The request may have reached the network and no proof of the outcome came back: a read or
    write timeout after it was sent, the connection closed before a complete answer, a 5xx to a
    create call, a 2xx without the post's id. Retrying as if nothing was sent could post twice, so
    the delivery becomes `in_doubt` and the network's own rule settles it (see pipeline.py)."""


def settle_in_doubt_hint(delivery_id: int) -> str:
    """What the operator does with a post in doubt that only they can settle (log, status, database)."""
    return (f"look at the account: `bridge resolve {delivery_id} --sent` if the post is there, "
            f"`bridge retry {delivery_id}` if it is not")


class AlreadyPosted(PublishError):
    """The network already has this post (X's duplicate-content 403): counts as sent."""

    def __init__(self, message: str, remote_id: str | None = None):
        self.remote_id = remote_id
        super().__init__(message)


NO_STORIES_FOUND = "no stories found"
"""How every NoStoriesFound reason starts: `bridge status` shows it, `bridge check` looks for it."""


class NoStoriesFound(FeedParseError):
    """An HTML listing gave no stories: its layout changed, or the selectors never matched it."""
