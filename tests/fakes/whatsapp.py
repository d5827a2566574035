"""A fake WhatsApp Cloud API on 127.0.0.1: `POST /{version}/{phone-number-id}/messages` with the
real answer (`{"messaging_product", "contacts", "messages": [{"id": "wamid..."}]}`) and the Graph
error shape with WhatsApp's codes and `error_data.details`. It knows one approved template,
"berita_terbaru" in "id" with two body parameters, and (as in test mode) an allow-list of
recipients. Use the `whatsapp_api` fixture.

Where its behaviour comes from:
- WhatsApp Cloud API, "Error codes" (developers.facebook.com/documentation/business-messaging/
  whatsapp/support/error-codes, updated 2026-06-18): the error shape with `error_data.details`;
  132000 parameter count mismatch, 132001 template does not exist in the language, 132005 translated
  text too long, 132012 parameter format mismatch, 131030 recipient not in the allowed list, 190 token.
  Tests script the account-wide refusals with `enqueue` and wa_error(): 131005 "Access denied"
  (HTTP 403, "Permission is either not granted or has been removed."), 131037 (display name not
  approved), 33 ("The business phone number has been deleted."), as third-party mirrors of that
  page give them (niswey.com, botbee.io; the stored copy of Meta's page is partial).
  Per-recipient failures (131026, 131047, 131049, 131050) are asynchronous there: they come in the
  status webhook, never in this answer, so this fake never answers them to a send.
- Meta's template guidelines: a template body holds at most 1024 characters; this fake applies the
  limit to the body with its parameters filled in and answers 132005 past it (an assumption: the
  error page names 132005 without the exact threshold). A text parameter may hold no newline, tab or
  more than four consecutive spaces (code 100 with that detail, as reported by users of the API).
"""

from __future__ import annotations

import itertools

import pytest

from tests.fakes.facebook import graph_error
from tests.fakes.http_fake import Answer, FakeServer, Request

PHONE_NUMBER_ID = "1098765"
ACCESS_TOKEN = "EAAGfakeWhatsAppSystemUserToken0123456789"
VERSION = "v25.0"
TEMPLATES = {("berita_terbaru", "id"): 2}
"""Approved templates: (name, language) -> how many body parameters it takes."""
TEMPLATE_BODIES = {("berita_terbaru", "id"): "Berita terbaru Kemenpora: {{1}} Selengkapnya: {{2}}"}
BODY_MAX = 1024
"""A template's body, parameters filled in, is at most 1024 characters."""
RECIPIENTS = ["6281234567890", "6289876543210"]


def wa_error(message: str, code: int, details: str) -> dict:
    body = graph_error(message, code)
    body["error"]["error_data"] = {"messaging_product": "whatsapp", "details": details}
    return body


TEXT_TOO_LONG = wa_error("(#132005) Translated text too long", 132005,
                         "Translated text is too long. Check the parameter values.")
PARAMETER_FORMAT = wa_error("(#132012) Parameter format does not match format in the created template", 132012,
                            "body: Format mismatch, expected TEXT, received UNKNOWN")


class FakeWhatsApp(FakeServer):
    """`messages` holds every message accepted: {"id", "to", "template", "language", "parameters"}."""

    def __init__(self, token: str = ACCESS_TOKEN):
        super().__init__()
        self.token = token
        self.allowed = set(RECIPIENTS)
        self.messages: list[dict] = []
        self._ids = itertools.count(1)

    def route(self, method: str, path: str) -> str:
        return path.removeprefix(f"/{VERSION}")

    def handle(self, request: Request) -> Answer:
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return Answer(401, graph_error("Invalid OAuth access token - Cannot parse access token", 190))
        if (request.method, request.route) == ("GET", f"/{PHONE_NUMBER_ID}"):
            return Answer(200, {"verified_name": "Kemenpora RI", "display_phone_number": "+62 21 5700000",
                                "id": PHONE_NUMBER_ID})
        if request.route != f"/{PHONE_NUMBER_ID}/messages":
            return Answer(400, graph_error("Unsupported post request.", 100, 33, "GraphMethodException"))
        body = request.body if isinstance(request.body, dict) else {}
        template = body.get("template") or {}
        key = (template.get("name"), (template.get("language") or {}).get("code"))
        if key not in TEMPLATES:
            return Answer(404, wa_error("(#132001) Template name does not exist in the translation", 132001,
                                        f"template name ({key[0]}) does not exist in {key[1]}"))
        parameters = [p.get("text") for c in template.get("components") or [] if c.get("type") == "body"
                      for p in c.get("parameters") or []]
        if len(parameters) != TEMPLATES[key]:
            return Answer(400, wa_error("(#132000) Number of parameters does not match the expected number of "
                                        "params", 132000, "body: number of localizable_params does not match"))
        if any(not p or "\n" in p or "\t" in p or "     " in p for p in parameters):
            return Answer(400, wa_error("(#100) Invalid parameter", 100, "Param text cannot have new-line/tab "
                                        "characters or more than 4 consecutive spaces"))
        filled = TEMPLATE_BODIES[key].replace("{{1}}", parameters[0]).replace("{{2}}", parameters[1])
        if len(filled) > BODY_MAX:
            return Answer(400, TEXT_TOO_LONG)
        to = body.get("to")
        if to not in self.allowed:
            return Answer(400, wa_error("(#131030) Recipient phone number not in allowed list", 131030,
                                        "Recipient phone number not in allowed list"))
        message_id = f"wamid.HBgNNjI4MTIzNDU2Nzg5MBUCABEYEjA{next(self._ids):06d}"
        self.messages.append({"id": message_id, "to": to, "template": key[0], "language": key[1],
                              "parameters": parameters})
        return Answer(200, {"messaging_product": "whatsapp", "contacts": [{"input": to, "wa_id": to}],
                            "messages": [{"id": message_id, "message_status": "accepted"}]})


@pytest.fixture
def whatsapp_api():
    """A running fake WhatsApp Cloud API; stopped after the test."""
    fake = FakeWhatsApp().start()
    try:
        yield fake
    finally:
        fake.stop()
