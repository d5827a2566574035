"""Sending each story to opted-in WhatsApp numbers through the WhatsApp Cloud API.

No official API posts to a WhatsApp Channel, and unofficial WhatsApp-Web automations get numbers
banned. What Meta allows a business is an approved *template message* to people who opted in:
`POST /{version}/{phone-number-id}/messages` with the template's name, its language, and body
parameters: {{1}} is the composed text (by default the story's title) and {{2}} the link.

The outbox holds one delivery per recipient (the pipeline sets Post.recipient), so a recipient
WhatsApp cannot reach fails alone while the others get the story. The Graph error shape and the
codes shared with Facebook are in _graph.py; WhatsApp's own codes are here.

"Sent" means Meta accepted the message: a 200 naming its `wamid`. Whether it reached the phone is
told later, and only to a webhook (statuses with errors such as 131026, 131047, 131049, 131050),
which the bridge does not run; those failures show in WhatsApp Manager. A POST /messages whose answer
is lost (timeout, dropped connection, 500/502/503/504, a 200 without messages[0].id) is InDoubt: the
Cloud API cannot read a message back, so the operator settles it.

Error codes: WhatsApp Cloud API "Error codes" (developers.facebook.com/documentation/
business-messaging/whatsapp/support/error-codes, updated 2026-06-18).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime

from bridge.clock import utc_now
from bridge.errors import ConfigError, InDoubt, PostRejected, PublishError, RetryLater, TargetPaused
from bridge.model import Post
from bridge.publish._graph import GraphClient, GraphFailure, common_error, throttled
from bridge.publish._http import scrub
from bridge.publish.limits import WHATSAPP_LENGTH_RULE, WHATSAPP_MAX_IMAGE_BYTES, WHATSAPP_TEXT_PARAMETER_MAX
from bridge.secrets import credential_env_var

TEXT_PARAMETER_MAX = WHATSAPP_TEXT_PARAMETER_MAX
MAX_IMAGE_BYTES = WHATSAPP_MAX_IMAGE_BYTES
_PARAMETER_SPACING = re.compile(r"\s+")
"""A text parameter may hold no newline or tab, nor more than four spaces in a row."""

THROTTLING = {130429, 131048, 80007}
"""Throughput, spam-rate and account-level rate limits: wait, for the whole target."""
PAIR_RATE_LIMIT = 131056
"""Too many messages to this one number: retry this delivery later, the others go on."""
RECIPIENT_PROBLEMS = {131026, 131030, 131047, 131049, 131050, 131051}
"""Undeliverable, not in the test allow-list, outside the window, not sent to keep engagement,
stopped marketing messages, unsupported: this recipient's delivery fails; the others go on."""
MESSAGE_PROBLEMS = {131008, 131009, 132005, 132007, 132012}
"""Caused by this one message's parameters, not by the template: a required parameter missing
(131008), a parameter value not valid (131009), the text too long once filled in (132005), its
content against the template's character policy (132007), a parameter in the wrong format (132012).
This delivery fails; the next story may well pass."""
TEMPLATE_PROBLEMS = {132000, 132001, 132015, 132016}
"""The template takes another number of parameters (132000), does not exist in that language
(132001), is paused (132015) or disabled (132016) for low quality: every message would fail the same
way, so the target pauses."""
ACCOUNT_PROBLEMS = {131031, 131037, 131042, 131045, 133010}
"""Account locked, the number's display name not yet approved, payment problem, incorrect
certificate, phone number not registered: every message would meet it."""
ACCESS_DENIED = 131005
""""Access denied" (HTTP 403): the token's permission was not granted or was removed, for every message."""
SECRET_PROOF_WANTED = (100, "appsecret_proof")
"""Code 100 naming appsecret_proof: the app has "Require App Secret" on, which holds for its WhatsApp
calls too, and WhatsApp targets send no proof: every message would be refused."""
NUMBER_DELETED = 33
""""Parameter value is not valid: the business phone number has been deleted": phone_number_id names
no number any more."""

LENGTH_RULE = WHATSAPP_LENGTH_RULE


def post_url(remote_id: str, target) -> str | None:
    """A WhatsApp message has no public address (it went to one person): the page shows how many
    recipients it reached instead."""
    return None


def build(target, *, timeout: float, clock=None) -> "WhatsAppPublisher":
    options = target.options
    return WhatsAppPublisher(target.name, api_base=target.api_base, version=options["version"],
                             phone_number_id=options["phone_number_id"], template=options["message_template"],
                             language=options["language"], access_token=target.credentials.get("access_token", ""),
                             timeout=timeout, clock=clock or utc_now)


class WhatsAppPublisher:
    """Sends a template message per delivery to its recipient. Satisfies bridge.publish.Publisher."""

    kind = "whatsapp"
    length_rule = LENGTH_RULE
    max_image_bytes = MAX_IMAGE_BYTES
    takes_photos = False
    duplicate_safe_for = None
    """The Cloud API delivers the same template twice if asked twice."""

    def __init__(self, name: str, *, api_base: str, version: str, phone_number_id: str, template: str,
                 language: str, access_token: str, timeout: float = 20.0,
                 clock: Callable[[], datetime] = utc_now):
        self.name = name
        self._token_var = credential_env_var(name, "access_token")
        if not access_token:
            raise ConfigError([f"targets.{name}: access_token is missing (set {self._token_var})"])
        self._phone_number_id = phone_number_id
        self._template = template
        self._language = language
        self._clock = clock
        self._graph = GraphClient("WhatsApp", api_base, version, access_token, timeout)
        self.hold_until: datetime | None = None
        self.image_problem: str | None = None

    def publish(self, post: Post, idempotency_key: str) -> str:
        """Send the template to post.recipient with {{1}} the text and {{2}} the link; return the wamid."""
        del idempotency_key  # the Cloud API has none
        self.hold_until = None
        self.image_problem = None
        if not post.recipient:
            raise PostRejected("a WhatsApp delivery needs a recipient; list them in recipients = [...]")
        parameters = [_parameter(post.text), _parameter(post.link or post.title or post.text)]
        payload = {
            "messaging_product": "whatsapp", "recipient_type": "individual", "to": post.recipient,
            "type": "template",
            "template": {"name": self._template, "language": {"code": self._language},
                         "components": [{"type": "body", "parameters": [
                             {"type": "text", "text": value} for value in parameters]}]},
        }
        answer = self._call(f"{self._phone_number_id}/messages", json=payload)
        messages = answer.get("messages") if isinstance(answer.get("messages"), list) else []
        if not messages or not isinstance(messages[0], dict) or not messages[0].get("id"):
            raise InDoubt("WhatsApp answered the message without a message id; it may have been sent")
        return str(messages[0]["id"])

    def verify(self) -> str:
        """Check the token against the phone number; return its display number and verified name."""
        number = self._call(self._phone_number_id, method="GET",
                            params={"fields": "display_phone_number,verified_name"}, posting=False)
        return f"{number.get('verified_name', '?')} ({number.get('display_phone_number', self._phone_number_id)})"

    def close(self) -> None:
        self._graph.close()

    def _call(self, path: str, method: str = "POST", posting: bool = True, **kwargs) -> dict:
        try:
            return self._graph.request(method, path, creates=posting, **kwargs)
        except GraphFailure as failure:
            raise scrub(self._map(failure, posting), self._graph.secrets) from None

    def _map(self, failure: GraphFailure, posting: bool) -> PublishError:
        detail = failure.describe()
        now = self._clock()
        if failure.code in THROTTLING:
            return throttled(failure, "WhatsApp", now)
        if failure.code == PAIR_RATE_LIMIT:
            return RetryLater(f"WhatsApp: too many messages to this number for now ({detail})", counts_as_attempt=False)
        if failure.code in RECIPIENT_PROBLEMS:
            return PostRejected(f"WhatsApp cannot deliver to this recipient ({detail}); the other recipients "
                                "are not affected")
        if failure.code in MESSAGE_PROBLEMS and posting:
            return PostRejected(f"WhatsApp refused this message's parameters ({detail}); the next story is "
                                "sent as usual")
        if failure.code in TEMPLATE_PROBLEMS:
            return TargetPaused(
                f"WhatsApp refused template {self._template!r} ({self._language}) of target {self.name!r} "
                f"({detail}): in WhatsApp Manager, check it is approved in that language with a body taking "
                "exactly two parameters, {{1}} the text and {{2}} the link")
        if failure.code == ACCESS_DENIED:
            return TargetPaused(f"WhatsApp denied access to target {self.name!r} ({detail}): the token needs "
                                f"whatsapp_business_messaging for this WhatsApp Business account; set {self._token_var}")
        if failure.code == SECRET_PROOF_WANTED[0] and SECRET_PROOF_WANTED[1] in failure.message:
            return TargetPaused(f"WhatsApp wants an app secret proof for target {self.name!r} ({detail}): the "
                                "bridge sends none for WhatsApp; turn off \"Require App Secret\" (App Dashboard, "
                                "App settings > Advanced) for the app the token belongs to")
        if failure.code == NUMBER_DELETED:
            return TargetPaused(f"WhatsApp does not know phone number {self._phone_number_id} of target {self.name!r} "
                                f"({detail}): check phone_number_id in WhatsApp Manager (API Setup)")
        if failure.code in ACCOUNT_PROBLEMS:
            return TargetPaused(f"WhatsApp refused to send for target {self.name!r} ({detail}): check the "
                                "WhatsApp Business account and phone number in Meta Business Suite")
        known = common_error(
            failure, network="WhatsApp", target=self.name, now=now, creates=posting,
            token_hint=f"create a System User access token with whatsapp_business_messaging and set {self._token_var}",
            permission_hint="the token needs whatsapp_business_messaging for this WhatsApp Business account")
        if known is not None:
            return known
        if posting and 400 <= failure.status < 500:
            return PostRejected(f"WhatsApp refused the message ({failure.status}): {detail}")
        return TargetPaused(f"WhatsApp refused the check of target {self.name!r}: {detail}")


def _parameter(text: str) -> str:
    """One line, single spaces: WhatsApp refuses parameters with newlines, tabs or long runs of spaces."""
    return _PARAMETER_SPACING.sub(" ", text).strip()
