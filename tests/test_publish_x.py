"""bridge.publish.x against the fake X API over real HTTP: success, every error mapping, routing and OAuth."""

from __future__ import annotations

import logging
import socket
from datetime import datetime, timedelta, timezone

import pytest
import requests
from requests.adapters import HTTPAdapter
from requests_oauthlib import OAuth1

from bridge.errors import AlreadyPosted, ConfigError, InDoubt, PostRejected, RetryLater, TargetPaused
from bridge.model import Image, Post
from bridge.publish._http import short_reason
from bridge.publish.x import X_CREDENTIAL_FIELDS, X_LENGTH_RULE, XPublisher, x_weighted_length
from tests.fakes.http_fake import DROP, GARBLED, GATEWAY_TIMEOUT
from tests.fakes.x_api import ALT_TEXT_MAX, CREDENTIALS

NOW = datetime(2026, 11, 26, 3, 0, tzinfo=timezone.utc)
RESET = int((NOW + timedelta(minutes=9)).timestamp())
POST = Post(text="Menpora membuka PON XXI https://www.antaranews.com/berita/4123456", link="https://www.antaranews.com/berita/4123456")
SECRETS = [CREDENTIALS[field] for field in X_CREDENTIAL_FIELDS]

NOT_ENROLLED = {
    "client_id": "29741234",
    "detail": "When authenticating requests to the Twitter API v2 endpoints, you must use keys and tokens from a "
              "Twitter developer App that is attached to a Project. You can create a project via the developer portal.",
    "registration_url": "https://developer.twitter.com/en/docs/projects/overview",
    "title": "Client Forbidden",
    "required_enrollment": "Appropriate Level of API Access",
    "reason": "client-not-enrolled",
    "type": "https://api.twitter.com/2/problems/client-forbidden",
}
SUBSET_453 = {"errors": [{"code": 453, "message": "You currently have access to a subset of X API V2 endpoints and "
                          "limited v1.1 endpoints (e.g. media post, oauth) only. If you need access to this endpoint, "
                          "you may need a different access level. You can learn more here: "
                          "https://developer.x.com/en/portal/product"}]}
INVALID = {
    "errors": [{"parameters": {"text": ["a very long post text"]}, "message": "Your Tweet text is too long."}],
    "title": "Invalid Request",
    "detail": "One or more parameters to your request was invalid.",
    "type": "https://api.twitter.com/2/problems/invalid-request",
}


def make(fake, *, api_base: str | None = None, credentials=None, timeout: float = 5.0) -> XPublisher:
    return XPublisher("kemenpora-x", api_base=api_base or fake.base_url, credentials=credentials or CREDENTIALS,
                      timeout=timeout, clock=lambda: NOW)


@pytest.fixture
def publisher(x_api):
    publisher = make(x_api)
    yield publisher
    publisher.close()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class TestLengthRule:
    def test_weights(self):
        """X's count: a URL is 23 whatever its length, CJK and emoji 2, Latin 1."""
        assert x_weighted_length("https://www.antaranews.com/berita/" + "a" * 200) == 23
        assert x_weighted_length("日本語") == 6
        assert x_weighted_length("👨‍👩‍👧") == 2
        assert x_weighted_length("Menpora") == 7

    def test_publisher_attributes(self):
        """The publisher declares X's rule, its kind, and that a resend in doubt is safe."""
        assert (XPublisher.kind, XPublisher.length_rule, XPublisher.duplicate_safe_for) == ("x", X_LENGTH_RULE, timedelta.max)
        assert X_LENGTH_RULE.max_length == 280


class TestPublish:
    def test_success(self, publisher, x_api):
        """A post is sent as OAuth-signed JSON to POST /2/tweets and its id is returned."""
        assert publisher.publish(POST, "delivery-1") == "1445880548472328192"
        (request,) = x_api.requests
        assert (request.method, request.path, request.body) == ("POST", "/2/tweets", {"text": POST.text})
        assert request.auth_problem is None and request.headers["Authorization"].startswith("OAuth ")

    def test_duplicate_is_already_posted(self, publisher, x_api):
        """X's 403 for duplicate content becomes AlreadyPosted."""
        publisher.publish(POST, "delivery-1")
        with pytest.raises(AlreadyPosted, match="already has this post"):
            publisher.publish(POST, "delivery-1")
        assert x_api.requests[-1].auth_problem is None

    def test_path_prefix(self, x_api):
        """An api_base with a path prefix keeps the prefix, and the signature still matches."""
        publisher = make(x_api, api_base=x_api.base_url + "/proxy/x/")
        assert publisher.publish(POST, "k") == "1445880548472328192"
        assert x_api.requests[0].path == "/proxy/x/2/tweets" and x_api.requests[0].auth_problem is None

    def test_fake_catches_url_rewritten_after_signing(self, x_api):
        """A request signed for api.twitter.com but sent elsewhere (rewriting in an adapter) gets a 401."""

        class RewriteAfterSigning(HTTPAdapter):
            def send(self, request, **kwargs):
                request.url = request.url.replace("https://api.twitter.com", x_api.base_url)
                return super().send(request, **kwargs)

        session = requests.Session()
        session.mount("https://api.twitter.com", RewriteAfterSigning())
        auth = OAuth1(CREDENTIALS["consumer_key"], CREDENTIALS["consumer_secret"],
                      CREDENTIALS["access_token"], CREDENTIALS["access_token_secret"])
        response = session.post("https://api.twitter.com/2/tweets", json={"text": "x"}, auth=auth, timeout=5)
        assert response.status_code == 401
        assert "signature does not match" in x_api.requests[0].auth_problem

    def test_wrong_credentials(self, x_api):
        """A 401 pauses the target, naming the BRIDGE_<NAME>_* settings and no secret."""
        publisher = make(x_api, credentials={**CREDENTIALS, "access_token_secret": "not-the-right-secret-000"})
        with pytest.raises(TargetPaused, match=r"rejected the credentials.*BRIDGE_KEMENPORA_X_\*.*regenerate") as caught:
            publisher.publish(POST, "k")
        assert x_api.requests[0].auth_problem.startswith("signature does not match")
        assert not any(secret in str(caught.value) for secret in SECRETS + ["not-the-right-secret-000"])

    def test_short_values_not_masked(self, x_api):
        """Credential values too short to be real are not masked, which would garble the message."""
        publisher = make(x_api, credentials={**CREDENTIALS, "consumer_key": "t"})
        with pytest.raises(TargetPaused, match="rejected the credentials of target 'kemenpora-x'"):
            publisher.publish(POST, "k")

    def test_client_not_enrolled(self, publisher, x_api):
        """A client-not-enrolled 403 pauses the target, saying what to change in the developer portal."""
        x_api.enqueue("POST", "/2/tweets", status=403, json=NOT_ENROLLED)
        with pytest.raises(TargetPaused, match=r"no access to POST /2/tweets.*developer portal.*Project.*access level"):
            publisher.publish(POST, "k")

    def test_v11_subset_453(self, publisher, x_api):
        """The v1.1-style code 453 ("a subset of X API V2 endpoints") pauses the target the same way."""
        x_api.enqueue("POST", "/2/tweets", status=403, json=SUBSET_453)
        with pytest.raises(TargetPaused, match=r"no access to POST /2/tweets.*subset of X API V2.*developer portal"):
            publisher.publish(POST, "k")

    def test_v11_duplicate_187(self, publisher, x_api):
        """The v1.1-style duplicate code 187 also counts as already posted."""
        x_api.enqueue("POST", "/2/tweets", status=403, json={"errors": [{"code": 187, "message": "Status is a duplicate."}]})
        with pytest.raises(AlreadyPosted):
            publisher.publish(POST, "k")

    def test_other_forbidden(self, publisher, x_api):
        """Any other 403 pauses the target with X's detail."""
        detail = "You are not permitted to perform this action."
        x_api.enqueue("POST", "/2/tweets", status=403,
                      json={"detail": detail, "type": "about:blank", "title": "Forbidden", "status": 403})
        with pytest.raises(TargetPaused, match=f"refused POST /2/tweets for target 'kemenpora-x': {detail}"):
            publisher.publish(POST, "k")

    def test_invalid_request(self, publisher, x_api):
        """A 400 rejects the post with X's message, not the echoed text."""
        x_api.enqueue("POST", "/2/tweets", status=400, json=INVALID)
        with pytest.raises(PostRejected, match=r"refused the post \(400\): Your Tweet text is too long\.$"):
            publisher.publish(POST, "k")

    def test_other_client_error(self, publisher, x_api):
        """Another 4xx with no message rejects the post with the status line."""
        x_api.enqueue("POST", "/2/tweets", status=413, body="<html>too large</html>")
        with pytest.raises(PostRejected, match=r"\(413\): 413 Request Entity Too Large"):
            publisher.publish(POST, "k")

    def test_usage_capped_pauses(self, publisher, x_api):
        """X's 429 usage-capped (credits or spend cap used up) pauses the target with what to do, not a rate-limit wait."""
        x_api.usage_capped = True
        with pytest.raises(TargetPaused, match="usage cap or credits.*used up.*add credits or raise the spend cap.*`bridge unpause kemenpora-x`"):
            publisher.publish(POST, "k")
        assert x_api.tweets == []

    def test_credits_exhausted_in_any_answer_pauses(self, publisher, x_api):
        """Any answer that says the credits are exhausted pauses the target, whatever its status."""
        x_api.enqueue("POST", "/2/tweets", status=402,
                      json={"title": "CreditsDepleted", "detail": "Your account does not have any credits.",
                            "type": "https://api.twitter.com/2/problems/credits"})
        with pytest.raises(TargetPaused, match="does not have any credits.*developer portal"):
            publisher.publish(POST, "k")

    def test_payment_required_pauses(self, publisher, x_api):
        """A bare 402 pauses the target: the app needs credits or another plan."""
        x_api.enqueue("POST", "/2/tweets", status=402, json={})
        with pytest.raises(TargetPaused, match="payment.*developer portal"):
            publisher.publish(POST, "k")

    def test_not_found(self, publisher, x_api):
        """A 404 pauses the target and points at api_base."""
        x_api.enqueue("POST", "/2/tweets", status=404, json={"title": "Not Found Error"})
        with pytest.raises(TargetPaused, match=f"404 for POST /2/tweets: check api_base \\({x_api.base_url}\\)"):
            publisher.publish(POST, "k")

    def test_request_timeout_status(self, publisher, x_api):
        """A 408 is transient."""
        x_api.enqueue("POST", "/2/tweets", status=408, json={})
        with pytest.raises(RetryLater, match="X answered 408 Request Timeout"):
            publisher.publish(POST, "k")

    def test_created_without_id(self, publisher, x_api):
        """A 2xx without an id leaves the post in doubt (it may exist)."""
        x_api.enqueue("POST", "/2/tweets", status=201, json={"data": {}})
        with pytest.raises(InDoubt, match="without a post id"):
            publisher.publish(POST, "k")

    def test_unreadable_answer(self, publisher, x_api):
        """A 2xx whose body is not JSON leaves the post in doubt."""
        x_api.enqueue("POST", "/2/tweets", status=200, body="<html>ok</html>")
        with pytest.raises(InDoubt, match="unreadable: JSONDecodeError"):
            publisher.publish(POST, "k")

    def test_json_not_an_object(self, publisher, x_api):
        """A 500 whose body is JSON but not an object (tweepy trips on it) leaves the post in doubt."""
        x_api.enqueue("POST", "/2/tweets", status=500, json=None)
        with pytest.raises(InDoubt, match="unreadable: AttributeError"):
            publisher.publish(POST, "k")

    def test_secret_in_detail_scrubbed(self, publisher, x_api):
        """Should X ever echo a credential, it is masked in the message."""
        x_api.enqueue("POST", "/2/tweets", status=403, json={"detail": f"bad key {CREDENTIALS['consumer_secret']}"})
        with pytest.raises(TargetPaused) as caught:
            publisher.publish(POST, "k")
        assert "bad key ***" in str(caught.value) and caught.value.message == str(caught.value)
        assert CREDENTIALS["consumer_secret"] not in str(caught.value)


class TestSpecLimits:
    PNG = b"\x89PNG\r\n\x1a\n" + b"\x01" * 200

    def test_long_alt_text_is_cut_to_the_spec(self, publisher, x_api):
        """An alt text over the spec's 1000 characters is cut to 1000, so the photo keeps its alt text."""
        image = Image(data=self.PNG, mime_type="image/png", url="http://127.0.0.1/f.png", alt_text="Menpora " * 200)
        publisher.publish(Post(text="Menpora membuka PON", image=image), "k")
        (media,) = x_api.media.values()
        assert publisher.image_problem is None and media["alt_text"] == image.alt_text[:ALT_TEXT_MAX]

    def test_fake_refuses_what_the_spec_refuses(self, publisher, x_api):
        """The fake answers the spec's 400 problem for an unknown post field, five media ids, or a long alt text."""
        session, auth = publisher._client.session, publisher._oauth()
        base = x_api.base_url
        unknown = session.post(f"{base}/2/tweets", json={"text": "x", "media_type": "image/png"}, auth=auth)
        too_many = session.post(f"{base}/2/tweets", json={"text": "x", "media": {"media_ids": ["1"] * 5}}, auth=auth)
        long_alt = session.post(f"{base}/2/media/metadata", auth=auth,
                                json={"id": "1", "metadata": {"alt_text": {"text": "a" * 1001}}})
        for answer, parameter in ((unknown, "media_type"), (too_many, "media.media_ids"),
                                  (long_alt, "metadata.alt_text.text")):
            assert answer.status_code == 400 and answer.json()["parameter"] == parameter
        assert x_api.tweets == []


class TestTransient:
    def rate_limited(self, publisher, x_api, headers):
        x_api.enqueue("POST", "/2/tweets", status=429, headers=headers,
                      json={"title": "Too Many Requests", "detail": "Too Many Requests", "type": "about:blank", "status": 429})
        with pytest.raises(RetryLater) as caught:
            publisher.publish(POST, "k")
        assert caught.value.counts_as_attempt is False
        return caught.value

    def test_rate_limit_reset(self, publisher, x_api):
        """A 429 waits until x-rate-limit-reset and does not count as an attempt."""
        error = self.rate_limited(publisher, x_api, {"x-rate-limit-limit": "100", "x-rate-limit-remaining": "0",
                                                     "x-rate-limit-reset": str(RESET)})
        assert error.retry_at == datetime.fromtimestamp(RESET, timezone.utc)
        assert "15-minute limit" in str(error) and "03:09:00 UTC" in str(error)

    def test_daily_limit_wins_when_exhausted(self, publisher, x_api):
        """When the 24-hour user limit is the one at 0, its (later) reset is used."""
        daily = RESET + 20 * 3600
        error = self.rate_limited(publisher, x_api, {
            "x-rate-limit-remaining": "57", "x-rate-limit-reset": str(RESET),
            "x-user-limit-24hour-limit": "17", "x-user-limit-24hour-remaining": "0",
            "x-user-limit-24hour-reset": str(daily)})
        assert error.retry_at == datetime.fromtimestamp(daily, timezone.utc) and "24-hour" in str(error)

    def test_later_of_exhausted_limits(self, publisher, x_api):
        """When several limits are at 0, the later reset is used."""
        daily = RESET + 3600
        error = self.rate_limited(publisher, x_api, {
            "x-rate-limit-remaining": "0", "x-rate-limit-reset": str(daily),
            "x-app-limit-24hour-remaining": "0", "x-app-limit-24hour-reset": str(RESET)})
        assert error.retry_at == datetime.fromtimestamp(daily, timezone.utc)

    def test_no_exhausted_limit_uses_latest_reset(self, publisher, x_api):
        """When no limit says 0 remaining, the latest reset given is used."""
        error = self.rate_limited(publisher, x_api, {"x-rate-limit-remaining": "3", "x-rate-limit-reset": str(RESET)})
        assert error.retry_at == datetime.fromtimestamp(RESET, timezone.utc)

    def test_no_headers(self, publisher, x_api):
        """A 429 without rate-limit headers waits 15 minutes."""
        assert self.rate_limited(publisher, x_api, {}).retry_at == NOW + timedelta(minutes=15)

    def test_reset_in_the_past(self, publisher, x_api):
        """A reset already past (clock skew) still waits a minute."""
        error = self.rate_limited(publisher, x_api, {"x-rate-limit-remaining": "0", "x-rate-limit-reset": "1000"})
        assert error.retry_at == NOW + timedelta(minutes=1)

    def test_garbled_reset(self, publisher, x_api):
        """An unparseable or absurd reset header falls back to 15 minutes."""
        error = self.rate_limited(publisher, x_api, {"x-rate-limit-remaining": "0", "x-rate-limit-reset": "9" * 30,
                                                     "x-user-limit-24hour-reset": "soon"})
        assert error.retry_at == NOW + timedelta(minutes=15)

    @pytest.mark.parametrize(("status", "body", "line"), [
        (503, {"title": "Service Unavailable", "detail": "Service Unavailable", "type": "about:blank", "status": 503},
         "X answered 503 Service Unavailable to POST /2/tweets; the post may exist"),
        (502, "<html><body><h1>Bad Gateway</h1></body></html>",
         "X answered 502 Bad Gateway to POST /2/tweets; the post may exist"),
        (504, "", "X answered 504 Gateway Timeout to POST /2/tweets; the post may exist"),
        (500, "", "X answered 500 Internal Server Error to POST /2/tweets; the post may exist"),
    ])
    def test_server_errors_leave_the_post_in_doubt(self, publisher, x_api, status, body, line):
        """A 500/502/503/504 to POST /2/tweets (JSON, HTML or empty) leaves the post in doubt, with a short message."""
        if isinstance(body, dict):
            x_api.enqueue("POST", "/2/tweets", status=status, json=body)
        else:
            x_api.enqueue("POST", "/2/tweets", status=status, body=body)
        with pytest.raises(InDoubt) as caught:
            publisher.publish(POST, "k")
        assert str(caught.value) == line

    def test_other_server_error_is_retried(self, publisher, x_api):
        """A 5xx outside 500-504 (507) says nothing was made: retried, counted as an attempt."""
        x_api.enqueue("POST", "/2/tweets", status=507, body="")
        with pytest.raises(RetryLater, match="^X answered 507 Insufficient Storage$") as caught:
            publisher.publish(POST, "k")
        assert caught.value.counts_as_attempt and caught.value.retry_at is None

    def test_server_error_on_verify_is_retried(self, publisher, x_api):
        """A 503 to GET /2/users/me creates nothing: retried."""
        x_api.enqueue("GET", "/2/users/me", status=503, json={})
        with pytest.raises(RetryLater, match="^X answered 503 Service Unavailable$"):
            publisher.verify()

    def test_read_timeout_leaves_the_post_in_doubt(self, x_api):
        """An answer slower than the timeout, after X received the post, leaves it in doubt."""
        publisher = make(x_api, timeout=0.5)
        x_api.enqueue("POST", "/2/tweets", status=201, json={"data": {"id": "1"}}, delay=5)
        with pytest.raises(InDoubt, match=r"^X did not answer within 0.5s after receiving the post$"):
            publisher.publish(POST, "k")

    def test_dropped_connection_leaves_the_post_in_doubt(self, publisher, x_api):
        """The connection closed before any answer to POST /2/tweets: the post is in doubt."""
        x_api.fail("POST", "/2/tweets", DROP)
        with pytest.raises(InDoubt, match="connection to X broke after the post was sent"):
            publisher.publish(POST, "k")
        assert len(x_api.tweets) == 1

    def test_garbled_answer_leaves_the_post_in_doubt(self, publisher, x_api):
        """A 200 cut off mid-body to POST /2/tweets: the post is in doubt."""
        x_api.fail("POST", "/2/tweets", GARBLED)
        with pytest.raises(InDoubt, match="unreadable"):
            publisher.publish(POST, "k")

    def test_in_doubt_resend_gets_the_duplicate_answer(self, publisher, x_api):
        """After an answer lost, the identical re-send is X's duplicate 403: already posted, one post."""
        x_api.fail("POST", "/2/tweets", GATEWAY_TIMEOUT)
        with pytest.raises(InDoubt):
            publisher.publish(POST, "k")
        with pytest.raises(AlreadyPosted):
            publisher.publish(POST, "k")
        assert len(x_api.tweets) == 1

    def test_connection_refused(self, x_api):
        """Nothing listening is retried, with the reason in a few words."""
        base = f"http://127.0.0.1:{closed_port()}"
        with pytest.raises(RetryLater, match=f"^could not reach X at {base}: Connection refused$"):
            make(x_api, api_base=base).publish(POST, "k")

    def test_short_reason_fallback(self):
        """Without an errno, the reason is the exception's type."""
        assert short_reason(requests.ConnectionError("odd")) == "ConnectionError"


    def test_default_clock_is_utc_now(self, x_api):
        """Without an injected clock, a bare 429 waits 15 minutes from the real UTC time."""
        publisher = XPublisher("x", api_base=x_api.base_url, credentials=CREDENTIALS)
        x_api.enqueue("POST", "/2/tweets", status=429, json={})
        before = datetime.now(timezone.utc)
        with pytest.raises(RetryLater) as caught:
            publisher.publish(POST, "k")
        assert before + timedelta(minutes=15) <= caught.value.retry_at <= datetime.now(timezone.utc) + timedelta(minutes=15)


class TestVerify:
    def test_username(self, publisher, x_api):
        """verify() returns the signed-in account as @username."""
        assert publisher.verify() == "@kemenpora"
        assert (x_api.requests[0].method, x_api.requests[0].path, x_api.requests[0].auth_problem) == (
            "GET", "/2/users/me", None)

    def test_bad_credentials(self, x_api):
        """verify() with unknown credentials pauses the target."""
        with pytest.raises(TargetPaused, match="rejected the credentials"):
            make(x_api, credentials={**CREDENTIALS, "consumer_key": "some-other-consumer-key"}).verify()
        assert x_api.requests[0].auth_problem == "unknown consumer key"

    def test_client_error_pauses(self, publisher, x_api):
        """A 400 to verify() pauses the target rather than rejecting a post."""
        x_api.enqueue("GET", "/2/users/me", status=400, json=INVALID)
        with pytest.raises(TargetPaused, match=r"refused GET /2/users/me \(400\)"):
            publisher.verify()

    def test_errors_only(self, publisher, x_api):
        """A 200 carrying only errors is retried with X's message."""
        x_api.enqueue("GET", "/2/users/me", status=200, json={"errors": [{"message": "Could not find user"}]})
        with pytest.raises(RetryLater, match="without the account: Could not find user"):
            publisher.verify()

    def test_unexpected_shape(self, publisher, x_api):
        """A user without a username (tweepy raises KeyError) is retried as an unreadable answer."""
        x_api.enqueue("GET", "/2/users/me", status=200, json={"data": {"id": "1", "name": "x"}})
        with pytest.raises(RetryLater, match="GET /2/users/me was unreadable: KeyError"):
            publisher.verify()


class TestConfiguration:
    def test_missing_credentials(self):
        """Missing credentials raise ConfigError naming each environment variable, not values."""
        with pytest.raises(ConfigError) as caught:
            XPublisher("kemenpora-x", api_base="https://api.x.com", credentials={"consumer_key": "abc"})
        assert caught.value.problems == [
            f"targets.kemenpora-x: {field} is missing (set BRIDGE_KEMENPORA_X_{field.upper()})"
            for field in X_CREDENTIAL_FIELDS[1:]
        ]

    def test_bad_api_base(self):
        """An api_base that is not an http(s) URL raises ConfigError."""
        with pytest.raises(ConfigError, match=r"api_base: 'api\.x\.com' is not an http\(s\) URL"):
            XPublisher("x", api_base="api.x.com", credentials=CREDENTIALS)


class TestSecretsStayOutOfLogs:
    def test_debug_logs_hold_no_credentials(self, publisher, x_api, caplog):
        """With the root logger at DEBUG, no credential value appears in any log record."""
        caplog.set_level(logging.DEBUG)
        caplog.set_level(logging.DEBUG, logger="urllib3")  # another test may have quietened it
        publisher.publish(POST, "k")
        publisher.verify()
        x_api.enqueue("POST", "/2/tweets", status=503, json={})
        with pytest.raises(InDoubt):
            publisher.publish(Post(text="lagi"), "k2")
        assert caplog.records  # urllib3 does log at DEBUG: the capture works
        logged = caplog.text + "".join(str(r.args) for r in caplog.records)
        assert not [secret for secret in SECRETS if secret in logged]
        assert not [r for r in caplog.records if r.name.split(".")[0] in ("tweepy", "requests_oauthlib", "oauthlib")
                    and r.levelno < logging.INFO]
