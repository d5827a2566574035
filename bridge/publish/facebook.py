"""Publishing to a Facebook Page through the Graph API, with a Page access token.

The only module that knows the Page endpoints: `POST /{version}/{page-id}/feed` with `message` and
`link` (Facebook builds the link preview, photo included, from the story's page), or, with
`photo_posts = true`, `POST /{version}/{page-id}/photos` with the photo's bytes and the text as its
caption. The Graph error shape and the codes Facebook shares with WhatsApp are in _graph.py.

Outcomes: a /feed or /photos call whose answer is lost (timeout, dropped connection,
500/502/503/504, a 2xx without an id or unreadable) is InDoubt. The Page can be read back, so
find_post settles it: after verify_after it reads `GET /{page-id}/posts` (fields id, message,
created_time, permalink_url; newest first, paged with cursors) for a post with our text made since
the first attempt: found = sent with that id, not found = sent again (Pages API "Posts" guide and the
Graph reference for Page /posts, /feed and Page Post; `link` is no readable field since v3.3).

With the optional secret `app_secret` (for apps with "Require App Secret" on), every call carries
`appsecret_proof` (_graph.py).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from urllib.parse import quote

from bridge.clock import utc_now
from bridge.errors import AlreadyPosted, ConfigError, InDoubt, PostRejected, PublishError, RetryLater, TargetPaused
from bridge.model import Post
from bridge.publish._graph import GraphClient, GraphFailure, common_error
from bridge.publish._http import scrub
from bridge.publish.limits import FACEBOOK_LENGTH_RULE, FACEBOOK_MAX_IMAGE_BYTES, FACEBOOK_MAX_MESSAGE_CHARACTERS
from bridge.secrets import credential_env_var

MAX_MESSAGE_CHARACTERS = FACEBOOK_MAX_MESSAGE_CHARACTERS
MAX_IMAGE_BYTES = FACEBOOK_MAX_IMAGE_BYTES
DUPLICATE_POST = 506
"""Code 506: the same text was just posted: the Page already has it."""
INVALID_PARAMETER = 100
UNKNOWN_OBJECT = 33
"""Subcode of 100: the page id names nothing this token can post to."""

APPSECRET_PROOF_WORD = "appsecret_proof"
"""In the message of the code-100 answer to a call without a right proof ("API calls from the server
require an appsecret_proof argument", "Invalid appsecret_proof provided in the API argument")."""
PERMISSIONS = ("pages_manage_posts, pages_read_engagement, pages_manage_engagement, pages_read_user_engagement "
               "and pages_show_list, from someone who can do the CREATE_CONTENT task on the Page")
"""What the Pages API posting guide lists for publishing as the Page."""
VERIFY_AFTER = timedelta(minutes=2)
"""How long a new Page post may take to show in /{page-id}/posts."""
FIND_PAGE_SIZE = 25
FIND_PAGES = 4
"""find_post reads at most 4 pages of 25 posts: a Page posts far fewer between two checks."""
CLOCK_ALLOWANCE = timedelta(minutes=2)
"""Facebook's created_time comes from Meta's clock, `since` from ours: allow them to differ this much."""

LENGTH_RULE = FACEBOOK_LENGTH_RULE


def post_url(remote_id: str, target) -> str | None:
    """Where a sent post can be seen: a Page post's id is "{page_id}_{post_id}", which the site shows
    at /{page_id}/posts/{post_id}; any other id (a photo) opens at facebook.com/{id}."""
    if not remote_id:
        return None
    page, underscore, post = remote_id.partition("_")
    if underscore and page and post:
        return f"https://www.facebook.com/{quote(page, safe='')}/posts/{quote(post, safe='')}"
    return f"https://www.facebook.com/{quote(remote_id, safe='')}"


def build(target, *, timeout: float, clock=None) -> "FacebookPublisher":
    return FacebookPublisher(target.name, api_base=target.api_base, version=target.options["version"],
                             page_id=target.options["page_id"], page_token=target.credentials.get("page_token", ""),
                             photo_posts=target.options.get("photo_posts", False), timeout=timeout,
                             clock=clock or utc_now, app_secret=target.credentials.get("app_secret"))


class FacebookPublisher:
    """Posts to one Facebook Page. Satisfies bridge.publish.Publisher."""

    kind = "facebook"
    length_rule = LENGTH_RULE
    max_image_bytes = MAX_IMAGE_BYTES
    duplicate_safe_for = None
    """Code 506 refuses only an immediate duplicate; an hour later the same text posts again."""
    verify_after = VERIFY_AFTER

    def __init__(self, name: str, *, api_base: str, version: str, page_id: str, page_token: str,
                 photo_posts: bool = False, timeout: float = 20.0, clock: Callable[[], datetime] = utc_now,
                 app_secret: str | None = None):
        self.name = name
        self._token_var = credential_env_var(name, "page_token")
        if not page_token:
            raise ConfigError([f"targets.{name}: page_token is missing (set {self._token_var})"])
        self._page_id = page_id
        self._photo_posts = photo_posts
        self.takes_photos = photo_posts
        """A link post carries no photo (Facebook builds the preview from the story's page), so only
        photo_posts = true has the pipeline download one."""
        self._clock = clock
        self._secret_var = credential_env_var(name, "app_secret")
        self._graph = GraphClient("Facebook", api_base, version, page_token, timeout, app_secret=app_secret)
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

    def find_post(self, post: Post, since: datetime) -> str | None:
        """The id of the Page's post with this text made since `since`, or None when there is none.
        Raises a PublishError when the Page cannot be read now."""
        wanted = _words(post.text)
        earliest = since - CLOCK_ALLOWANCE
        params = {"fields": "id,message,created_time,permalink_url", "limit": str(FIND_PAGE_SIZE),
                  "since": str(int(earliest.timestamp()))}
        for _ in range(FIND_PAGES):
            answer = self._call(f"{self._page_id}/posts", method="GET", params=params, posting=False)
            data = answer.get("data")
            if not isinstance(data, list):
                raise RetryLater(f"Facebook's list of the posts of page {self._page_id} was unreadable")
            for entry in data:
                if not isinstance(entry, dict):
                    continue
                made = _graph_time(entry.get("created_time"))
                if made is not None and made < earliest:
                    return None  # newest first: everything further is older
                if entry.get("id") and _words(entry.get("message")) == wanted:
                    return str(entry["id"])
            paging = answer.get("paging") if isinstance(answer.get("paging"), dict) else {}
            cursors = paging.get("cursors") if isinstance(paging.get("cursors"), dict) else {}
            if not paging.get("next") or not cursors.get("after"):
                return None
            params = {**params, "after": str(cursors["after"])}
        return None

    def verify(self) -> str:
        """Check the token against the Page; return the Page's name."""
        page = self._call(self._page_id, method="GET", params={"fields": "id,name"}, posting=False)
        return f"{page.get('name', '?')} (page {page.get('id', self._page_id)})"

    def token_expires_at(self) -> datetime | None:
        """When the Page token stops working (Graph's /debug_token `expires_at`; 0 there means never),
        or None when it never does. Raises TargetPaused for a token Graph calls invalid, another
        PublishError when Graph cannot be asked now. For [alerts], once a day."""
        answer = self._call("debug_token", method="GET", params={"input_token": self._graph.token}, posting=False)
        data = answer.get("data") if isinstance(answer.get("data"), dict) else {}
        if data.get("is_valid") is False:
            raise TargetPaused(f"Facebook says the Page token of target {self.name!r} is no longer valid: "
                               f"generate a long-lived Page token for page {self._page_id} and set {self._token_var} "
                               f"(under systemd: /etc/bridge/credentials/{self.name}/page_token)")
        expires = _int_or_zero(data.get("expires_at"))
        return datetime.fromtimestamp(expires, timezone.utc) if expires > 0 else None

    def close(self) -> None:
        self._graph.close()

    def _no_id(self, edge: str) -> str:
        # A 2xx without an id: the post may exist, nothing proves it. find_post settles it.
        raise InDoubt(f"Facebook answered /{self._page_id}/{edge} without a post id")

    def _call(self, path: str, method: str = "POST", posting: bool = True, **kwargs) -> dict:
        try:
            return self._graph.request(method, path, creates=posting, **kwargs)
        except GraphFailure as failure:
            raise scrub(self._map(failure, posting), self._graph.secrets) from None

    def _map(self, failure: GraphFailure, posting: bool) -> PublishError:
        if failure.code == INVALID_PARAMETER and APPSECRET_PROOF_WORD in failure.message:
            return TargetPaused(f"Facebook wants an app secret proof for target {self.name!r} "
                                f"({failure.describe()}): set {self._secret_var} to the App Secret of the app "
                                "the Page token belongs to (App Dashboard, App settings > Basic)")
        known = common_error(
            failure, network="Facebook", target=self.name, now=self._clock(), creates=posting,
            token_hint=(f"a Page access token expires or is invalidated (password change, app removed): "
                        f"generate a long-lived Page token for page {self._page_id} and set {self._token_var}"),
            permission_hint=f"the token needs {PERMISSIONS}")
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


def _int_or_zero(value) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def _words(text) -> str:
    """A text with its whitespace evened out, as Facebook may trim or fold it."""
    return " ".join(text.split()) if isinstance(text, str) else ""


def _graph_time(value) -> datetime | None:
    """Graph's created_time, e.g. "2026-11-26T03:00:05+0000"."""
    try:
        return datetime.strptime(str(value), "%Y-%m-%dT%H:%M:%S%z")
    except ValueError:
        return None
