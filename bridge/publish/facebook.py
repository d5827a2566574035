"""Publishing to a Facebook Page through the Graph API, with a Page access token.

The only module that knows the Page endpoints: `POST /{version}/{page-id}/feed` with `message` and
`link` (Facebook builds the link preview, photo included, from the story's page), or, with
`photo_posts = true`, `POST /{version}/{page-id}/photos` with the photo's bytes and the text as its
caption. The Graph error shape and the codes Facebook shares with WhatsApp are in _graph.py.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from bridge.clock import utc_now
from bridge.compose import LengthRule
from bridge.errors import AlreadyPosted, ConfigError, PostRejected, PublishError, RetryLater, TargetPaused
from bridge.model import Post
from bridge.publish._graph import GraphClient, GraphFailure, common_error
from bridge.publish._http import scrub
from bridge.secrets import credential_env_var

MAX_MESSAGE_CHARACTERS = 63206
"""The longest text Facebook takes in a Page post."""
MAX_IMAGE_BYTES = 4 * 1024 * 1024
"""Facebook asks for photos under 4 MB."""
DUPLICATE_POST = 506
"""Code 506: the same text was just posted: the Page already has it."""
INVALID_PARAMETER = 100
UNKNOWN_OBJECT = 33
"""Subcode of 100: the page id names nothing this token can post to."""

LENGTH_RULE = LengthRule(MAX_MESSAGE_CHARACTERS, len)


def build(target, *, timeout: float, clock=None) -> "FacebookPublisher":
    return FacebookPublisher(target.name, api_base=target.api_base, version=target.options["version"],
                             page_id=target.options["page_id"], page_token=target.credentials.get("page_token", ""),
                             photo_posts=target.options.get("photo_posts", False), timeout=timeout,
                             clock=clock or utc_now)


class FacebookPublisher:
    """Posts to one Facebook Page. Satisfies bridge.publish.Publisher."""

    kind = "facebook"
    length_rule = LENGTH_RULE
    max_image_bytes = MAX_IMAGE_BYTES
    duplicate_safe_for = None
    """Code 506 refuses only an immediate duplicate; an hour later the same text posts again."""

    def __init__(self, name: str, *, api_base: str, version: str, page_id: str, page_token: str,
                 photo_posts: bool = False, timeout: float = 20.0, clock: Callable[[], datetime] = utc_now):
        self.name = name
        self._token_var = credential_env_var(name, "page_token")
        if not page_token:
            raise ConfigError([f"targets.{name}: page_token is missing (set {self._token_var})"])
        self._page_id = page_id
        self._photo_posts = photo_posts
        self._clock = clock
        self._graph = GraphClient("Facebook", api_base, version, page_token, timeout)
        self.hold_until: datetime | None = None
        self.image_problem: str | None = None

    def publish(self, post: Post, idempotency_key: str) -> str:
        """A photo post when photo_posts is on and there is a photo, else a link post; return the post id."""
        del idempotency_key  # the Graph API has none
        self.hold_until = None
        self.image_problem = None
        if self._photo_posts and post.image is not None:
            try:
                answer = self._call(f"{self._page_id}/photos", data={"caption": post.text},
                                    files={"source": ("photo", post.image.data, post.image.mime_type)})
                return str(answer.get("post_id") or answer.get("id") or self._no_id("photos"))
            except PostRejected as error:  # the photo itself: post the link instead, never lose the story
                self.image_problem = error.message
        data = {"message": post.text}
        if post.link:
            data["link"] = post.link
        answer = self._call(f"{self._page_id}/feed", data=data)
        return str(answer.get("id") or self._no_id("feed"))

    def verify(self) -> str:
        """Check the token against the Page; return the Page's name."""
        page = self._call(self._page_id, method="GET", params={"fields": "id,name"}, posting=False)
        return f"{page.get('name', '?')} (page {page.get('id', self._page_id)})"

    def close(self) -> None:
        self._graph.close()

    def _no_id(self, edge: str) -> str:
        # A 2xx without an id: the post most likely exists; resending could post it twice.
        raise AlreadyPosted(f"Facebook accepted /{self._page_id}/{edge} but named no post id")

    def _call(self, path: str, method: str = "POST", posting: bool = True, **kwargs) -> dict:
        try:
            return self._graph.request(method, path, **kwargs)
        except GraphFailure as failure:
            raise scrub(self._map(failure, posting), [self._graph.token]) from None

    def _map(self, failure: GraphFailure, posting: bool) -> PublishError:
        known = common_error(
            failure, network="Facebook", target=self.name, now=self._clock(),
            token_hint=(f"a Page access token expires or is invalidated (password change, app removed): "
                        f"generate a long-lived Page token for page {self._page_id} and set {self._token_var}"),
            permission_hint="the token needs pages_manage_posts and pages_read_engagement for this Page")
        if known is not None:
            return known
        detail = failure.describe()
        if failure.code == DUPLICATE_POST:
            return AlreadyPosted(f"Facebook already has this post ({detail})")
        if failure.code == INVALID_PARAMETER and failure.subcode == UNKNOWN_OBJECT or failure.status == 404:
            return TargetPaused(f"Facebook cannot post to page {self._page_id!r} of target {self.name!r} "
                                f"({detail}): check page_id and that the token is this Page's")
        if posting and 400 <= failure.status < 500:
            return PostRejected(f"Facebook refused the post ({failure.status}): {detail}")
        if posting:
            return RetryLater(f"Facebook answered {failure.status}: {detail}")
        return TargetPaused(f"Facebook refused the check of target {self.name!r}: {detail}")
