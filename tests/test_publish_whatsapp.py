"""bridge.publish.whatsapp against the fake Cloud API over real HTTP: template messages per
recipient, parameters WhatsApp accepts, and every error class."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from bridge.errors import ConfigError, InDoubt, PostRejected, RetryLater, TargetPaused
from bridge.model import Post
from bridge.publish.whatsapp import LENGTH_RULE, WhatsAppPublisher
from tests.fakes.facebook import MISSING_PROOF
from tests.fakes.http_fake import BAD_GATEWAY, DROP, GARBLED, GATEWAY_TIMEOUT, HANG, NO_ID
from tests.fakes.whatsapp import ACCESS_TOKEN, PARAMETER_FORMAT, PHONE_NUMBER_ID, RECIPIENTS, wa_error

MESSAGES = f"/{PHONE_NUMBER_ID}/messages"

NOW = datetime(2026, 11, 26, 3, 0, tzinfo=timezone.utc)
LINK = "https://www.antaranews.com/berita/4123456/menpora-buka-pon"
POST = Post(text="Menpora membuka PON\nXXI  di   Aceh", link=LINK, recipient=RECIPIENTS[0])


def make(fake, *, token: str = ACCESS_TOKEN, template: str = "berita_terbaru", timeout: float = 5) -> WhatsAppPublisher:
    return WhatsAppPublisher("kemenpora-wa", api_base=fake.base_url, version="v25.0", phone_number_id=PHONE_NUMBER_ID,
                             template=template, language="id", access_token=token, timeout=timeout, clock=lambda: NOW)


@pytest.fixture
def publisher(whatsapp_api):
    publisher = make(whatsapp_api)
    yield publisher
    publisher.close()


class TestPublish:
    def test_template_message(self, publisher, whatsapp_api):
        """The approved template goes to the delivery's recipient with {{1}} the text on one line and {{2}} the link."""
        wamid = publisher.publish(POST, "k")
        [message] = whatsapp_api.messages
        assert wamid == message["id"] and message["to"] == RECIPIENTS[0]
        assert (message["template"], message["language"]) == ("berita_terbaru", "id")
        assert message["parameters"] == ["Menpora membuka PON XXI di Aceh", LINK]

    def test_length_rule(self):
        """The text parameter is kept to 700 characters, leaving the template room within WhatsApp's 1024."""
        assert LENGTH_RULE.max_length == 700 and LENGTH_RULE.measure("abc") == 3

    def test_no_recipient_is_rejected(self, publisher):
        """A delivery without a recipient is rejected, saying where recipients are listed."""
        with pytest.raises(PostRejected, match="recipients"):
            publisher.publish(Post(text="x", link=LINK), "k")


class TestErrors:
    def test_recipient_not_allowed_fails_alone(self, publisher, whatsapp_api):
        """A recipient WhatsApp will not reach (131030) fails that delivery only."""
        with pytest.raises(PostRejected, match="131030.*other recipients are not affected"):
            publisher.publish(Post(text="x", link=LINK, recipient="6280000000000"), "k")

    def test_unknown_template_pauses(self, whatsapp_api):
        """A template WhatsApp does not know (132001) pauses the target with what to check."""
        with pytest.raises(TargetPaused, match=r"132001.*approved.*\{\{1\}\} the text and \{\{2\}\} the link"):
            make(whatsapp_api, template="berita_lama").publish(POST, "k")

    def test_bad_token_pauses(self, whatsapp_api):
        """A refused token (190) pauses the target, naming the variable, never the token."""
        with pytest.raises(TargetPaused, match="BRIDGE_KEMENPORA_WA_ACCESS_TOKEN") as caught:
            make(whatsapp_api, token="EAAGanotherToken0000").publish(POST, "k")
        assert "anotherToken" not in str(caught.value)

    def test_throughput_limit_defers(self, publisher, whatsapp_api):
        """The throughput limit (130429) holds the target without counting an attempt."""
        whatsapp_api.enqueue("POST", f"/{PHONE_NUMBER_ID}/messages", status=429,
                             json=wa_error("(#130429) Rate limit hit", 130429, "Cloud API message throughput has been reached."))
        with pytest.raises(RetryLater) as caught:
            publisher.publish(POST, "k")
        assert caught.value.retry_at == NOW + timedelta(minutes=30) and not caught.value.counts_as_attempt

    def test_pair_rate_limit_retries_this_recipient(self, publisher, whatsapp_api):
        """Too many messages to one number (131056) retries that delivery later, without holding the target."""
        whatsapp_api.enqueue("POST", f"/{PHONE_NUMBER_ID}/messages", status=400,
                             json=wa_error("(#131056) (Business Account, Consumer Account) pair rate limit hit",
                                           131056, "Message failed to send because there were too many messages"))
        with pytest.raises(RetryLater) as caught:
            publisher.publish(POST, "k")
        assert caught.value.retry_at is None and not caught.value.counts_as_attempt

    def test_server_error_is_in_doubt(self, publisher, whatsapp_api):
        """An unknown error (131000, HTTP 500) to a send may come after Meta took the message: in doubt."""
        whatsapp_api.enqueue("POST", MESSAGES, status=500,
                             json=wa_error("Something went wrong", 131000, "Message failed to send due to an unknown error."))
        with pytest.raises(InDoubt, match="answered 500"):
            publisher.publish(POST, "k")

    def test_server_error_on_a_check_retries(self, publisher, whatsapp_api):
        """A 5xx to the phone number check creates nothing: retried."""
        whatsapp_api.enqueue("GET", f"/{PHONE_NUMBER_ID}", status=503, body="<html>unavailable</html>")
        with pytest.raises(RetryLater, match="answered 503"):
            publisher.verify()

    def test_invalid_parameter_rejects(self, publisher, whatsapp_api):
        """Another invalid parameter (100) rejects the message with WhatsApp's details."""
        whatsapp_api.enqueue("POST", f"/{PHONE_NUMBER_ID}/messages", status=400,
                             json=wa_error("(#100) Invalid parameter", 100, "Parameter value is not valid"))
        with pytest.raises(PostRejected, match=r"\(#100\) Invalid parameter \(Parameter value is not valid\)"):
            publisher.publish(POST, "k")


    def test_text_too_long_fails_that_message(self, publisher, whatsapp_api):
        """A text too long for the template once filled in (132005) fails that one delivery, not the target."""
        with pytest.raises(PostRejected, match="132005.*next story"):
            publisher.publish(Post(text="kata " * 220, link=LINK, recipient=RECIPIENTS[0]), "k")

    def test_parameter_format_fails_that_message(self, publisher, whatsapp_api):
        """A parameter in the wrong format (132012) fails that one delivery."""
        whatsapp_api.enqueue("POST", MESSAGES, status=400, json=PARAMETER_FORMAT)
        with pytest.raises(PostRejected, match="132012"):
            publisher.publish(POST, "k")

    @pytest.mark.parametrize("code", [132015, 132016])
    def test_paused_or_disabled_template_pauses(self, publisher, whatsapp_api, code):
        """A template paused or disabled for quality stops every message: the target pauses."""
        whatsapp_api.enqueue("POST", MESSAGES, status=400, json=wa_error(f"(#{code}) Template is paused", code,
                                                                        "Template is paused due to low quality"))
        with pytest.raises(TargetPaused, match=f"{code}.*WhatsApp Manager"):
            publisher.publish(POST, "k")

    def test_account_problem_pauses(self, publisher, whatsapp_api):
        """A locked business account (131031) pauses the target."""
        whatsapp_api.enqueue("POST", MESSAGES, status=400, json=wa_error(
            "(#131031) Business Account locked", 131031, "Business Account locked"))
        with pytest.raises(TargetPaused, match="131031"):
            publisher.publish(POST, "k")


    @pytest.mark.parametrize("code, title, details", [
        (131005, "Access denied", "Permission is either not granted or has been removed."),
        (131037, "WhatsApp provided number needs display name approval before message can be sent.",
         "WhatsApp provided number needs display name approval before message can be sent."),
        (33, "Parameter value is not valid", "The business phone number has been deleted."),
    ])
    def test_account_wide_refusals_pause(self, publisher, whatsapp_api, code, title, details):
        """A refusal every message would meet (permission removed, display name not approved, number deleted) pauses the target."""
        whatsapp_api.enqueue("POST", MESSAGES, status=403 if code == 131005 else 400,
                             json=wa_error(f"(#{code}) {title}", code, details))
        with pytest.raises(TargetPaused, match=str(code)):
            publisher.publish(POST, "k")


    def test_app_requiring_a_secret_proof_pauses(self, publisher, whatsapp_api):
        """An app with "Require App Secret" on refuses every call without appsecret_proof (code 100): the target pauses."""
        whatsapp_api.enqueue("POST", MESSAGES, status=400, json=MISSING_PROOF)
        with pytest.raises(TargetPaused, match="Require App Secret"):
            publisher.publish(POST, "k")


class TestOutcomes:
    """After POST /messages left, only a wamid proves Meta took the message."""

    def test_read_timeout_is_in_doubt(self, whatsapp_api):
        """A send whose answer does not come within the timeout may have gone: in doubt."""
        whatsapp_api.fail("POST", MESSAGES, HANG)
        with pytest.raises(InDoubt, match="after receiving the post"):
            make(whatsapp_api, timeout=0.3).publish(POST, "k")
        assert len(whatsapp_api.messages) == 1

    def test_dropped_connection_is_in_doubt(self, publisher, whatsapp_api):
        """A connection closed before any answer is in doubt."""
        whatsapp_api.fail("POST", MESSAGES, DROP)
        with pytest.raises(InDoubt, match="broke after the post was sent"):
            publisher.publish(POST, "k")

    @pytest.mark.parametrize("fault", [BAD_GATEWAY, GATEWAY_TIMEOUT])
    def test_gateway_errors_are_in_doubt(self, publisher, whatsapp_api, fault):
        """A proxy's 502 or 504 to a send is in doubt."""
        whatsapp_api.fail("POST", MESSAGES, fault)
        with pytest.raises(InDoubt, match=f"answered {fault}"):
            publisher.publish(POST, "k")

    def test_ok_without_message_id_is_in_doubt(self, publisher, whatsapp_api):
        """A 200 without messages[0].id is in doubt, not retried."""
        whatsapp_api.fail("POST", MESSAGES, NO_ID)
        with pytest.raises(InDoubt, match="without a message id"):
            publisher.publish(POST, "k")

    def test_unreadable_answer_is_in_doubt(self, publisher, whatsapp_api):
        """A 200 whose body is cut off is in doubt."""
        whatsapp_api.fail("POST", MESSAGES, GARBLED)
        with pytest.raises(InDoubt, match="unreadable"):
            publisher.publish(POST, "k")

    def test_refused_connection_is_never_sent(self, whatsapp_api):
        """A refused port means nothing left: retried."""
        whatsapp_api.refuse_connections()
        try:
            with pytest.raises(RetryLater, match="could not reach WhatsApp"):
                make(whatsapp_api).publish(POST, "k")
        finally:
            whatsapp_api.accept_connections()
        assert whatsapp_api.messages == []


class TestVerifyAndConfig:
    def test_verify(self, publisher):
        """verify() names the business number."""
        assert publisher.verify() == "Kemenpora RI (+62 21 5700000)"

    def test_missing_token(self):
        """A live target without its token is a configuration error naming the variable."""
        with pytest.raises(ConfigError, match="BRIDGE_KEMENPORA_WA_ACCESS_TOKEN"):
            WhatsAppPublisher("kemenpora-wa", api_base="https://graph.facebook.com", version="v25.0",
                              phone_number_id="1", template="t", language="id", access_token="")
